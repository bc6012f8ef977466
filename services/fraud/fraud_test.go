package fraud

import (
	"encoding/json"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/steptest"
	"github.com/jetcheckout/jetcheckout/runner"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	bolt "go.etcd.io/bbolt"
)

type harness struct {
	*steptest.Harness
	svc   *Service
	clock *clock
	build func(db *bolt.DB, log *slog.Logger) (*Service, error)
}

// start runs the service with the default rules behind the real runner on an embedded
// JetStream, with its endpoints, on a clock the test moves.
func start(t *testing.T) harness { return startWith(t, DefaultConfig()) }

// startWith runs the service with the rules cfg, its view rebuilt from the stream when lost.
func startWith(t *testing.T, cfg Config) harness {
	t.Helper()
	clk := newClock()
	build := func(db *bolt.DB, log *slog.Logger) (*Service, error) {
		svc, err := New(db, log, cfg)
		if svc != nil {
			svc.now = clk.now
		}
		return svc, err
	}
	h, svc := steptest.Start(t, runner.Config{Name: events.ServiceFraud, Rebuild: true}, build)
	h.Serve(t, func(nc *nats.Conn) (micro.Service, error) { return svc.Serve(nc, h.Env.JS, nil) })
	return harness{h, svc, clk, build}
}

// clock is a time the test sets; the service reads it from the runner's goroutine.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(time.Now().UTC().Truncate(time.Second).UnixNano()) // now: the runner checks deadlines on its own clock
	return c
}

func (c *clock) now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) advance(d time.Duration) { c.ns.Add(int64(d)) }

func TestClearedCheckoutIsStored(t *testing.T) {
	h := start(t)
	h.Env.Publish(t, events.Must("co_clean", events.CartValidated, testQuote()))

	var got events.RiskAssessment
	h.Expect(t, "co_clean", events.FraudCleared, &got, events.FraudFailed)
	if !got.Risk.Equal(dec("0.02")) || len(got.Reasons) != 0 {
		t.Errorf("assessment = %+v, want risk 0.02 and no reasons", got)
	}
	a, found, err := h.svc.Assessment("co_clean")
	if err != nil || !found {
		t.Fatalf("stored assessment: found=%v err=%v", found, err)
	}
	if a.Rejected || !a.Risk.Equal(dec("0.02")) || a.CheckoutID != "co_clean" || a.AssessedAt.IsZero() {
		t.Errorf("stored = %+v", a)
	}
}

func TestRiskyCheckoutFails(t *testing.T) {
	h := start(t)
	q := testQuote()
	q.CustomerEmail = "mallory@fraud.test"
	q.BillingAddress.Country = "DE"
	h.Env.Publish(t, events.Must("co_risky", events.CartValidated, q))

	var f events.StepFailure
	h.Expect(t, "co_risky", events.FraudFailed, &f, events.FraudCleared)
	if f.Step != events.StepCheckFraud || f.Code != events.CodeFraudRejected {
		t.Errorf("failure = %+v", f)
	}
	for _, want := range []string{"fraud.test is blocklisted", "billing country DE", "limit 0.75"} {
		if !strings.Contains(f.Message, want) {
			t.Errorf("message %q does not mention %q", f.Message, want)
		}
	}
	a, found, err := h.svc.Assessment("co_risky")
	if err != nil || !found || !a.Rejected || !a.Risk.Equal(dec("1")) || len(a.Reasons) != 2 {
		t.Fatalf("stored = %+v found=%v err=%v", a, found, err)
	}
}

func TestDuplicatesAreAssessedOnce(t *testing.T) {
	h := start(t)
	in := events.Must("co_dup", events.CartValidated, testQuote())
	h.PublishCopy(t, in, "first")
	h.Wait(t, "co_dup", events.FraudCleared)
	first, _, err := h.svc.Assessment("co_dup")
	if err != nil {
		t.Fatal(err)
	}

	// The same event again under another Nats-Msg-Id, then a different event of the same
	// checkout whose quote would now be rejected: the stored answer stands.
	h.PublishCopy(t, in, "second")
	risky := testQuote()
	risky.CustomerEmail = "mallory@fraud.test"
	replay := events.Must("co_dup", events.CartValidated, risky)
	replay.ID += ":replayed"
	h.Env.Publish(t, replay)
	h.Idle(t)

	if n := h.Watch.Count("co_dup", events.FraudFailed); n != 0 {
		t.Errorf("%d fraud failures after a cleared assessment", n)
	}
	again, _, err := h.svc.Assessment("co_dup")
	if err != nil {
		t.Fatal(err)
	}
	if !again.AssessedAt.Equal(first.AssessedAt) || again.Rejected {
		t.Errorf("assessment changed: %+v, was %+v", again, first)
	}
}

func TestMalformedQuoteIsRejected(t *testing.T) {
	h := start(t)
	noLines := testQuote()
	noLines.Lines = nil
	h.Env.Publish(t, events.Must("co_nolines", events.CartValidated, noLines))
	bad := events.Must("co_unknown", events.CartValidated, testQuote())
	bad.Payload = json.RawMessage(`{"cart_id":"c","surprise":true}`)
	h.Env.Publish(t, bad)

	for _, id := range []string{"co_nolines", "co_unknown"} {
		h.Refusal(t, id, events.FraudFailed, events.FraudCleared)
		if _, found, _ := h.svc.Assessment(id); found {
			t.Errorf("%s: a malformed quote was assessed", id)
		}
	}
}
