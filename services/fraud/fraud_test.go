package fraud

import (
	"context"
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/jetcheckout/jetcheckout/internal/store"
	"github.com/jetcheckout/jetcheckout/services/runner"
)

const wait = 10 * time.Second

type harness struct {
	svc   *Service
	env   *natstest.Env
	watch *natstest.Watcher
}

// start runs the service behind the real runner on an embedded JetStream.
func start(t *testing.T) harness {
	t.Helper()
	env := natstest.Start(t)
	db, err := store.Open(filepath.Join(t.TempDir(), "fraud.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	log := slog.New(slog.NewTextHandler(t.Output(), nil))
	svc, err := New(db, log, DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	r, err := runner.New(runner.Config{Name: "fraud", Routes: svc.Routes(), JS: env.JS, DB: db, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	watch := env.Watch(t, events.CheckoutSubjects)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runner: %v", err)
		}
	})
	return harness{svc: svc, env: env, watch: watch}
}

// idle waits until the runner has acked everything on its subjects.
func (h harness) idle(t *testing.T) {
	t.Helper()
	natstest.Eventually(t, wait, func() bool {
		c, err := h.env.JS.Consumer(t.Context(), events.StreamCheckout, "fraud")
		if err != nil {
			return false
		}
		info, err := c.Info(t.Context())
		return err == nil && info.NumPending == 0 && info.NumAckPending == 0
	}, "the fraud consumer did not drain")
}

func TestClearedCheckoutIsStored(t *testing.T) {
	h := start(t)
	h.env.Publish(t, events.Must("co_clean", events.CartValidated, testQuote()))

	out := h.watch.Wait(t, "co_clean", wait, events.FraudCleared, events.FraudFailed)
	if out.Type != events.FraudCleared {
		t.Fatalf("got %s: %s", out.Type, out.Payload)
	}
	var got events.RiskAssessment
	if err := out.DecodePayload(&got); err != nil {
		t.Fatal(err)
	}
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
	h.env.Publish(t, events.Must("co_risky", events.CartValidated, q))

	out := h.watch.Wait(t, "co_risky", wait, events.FraudCleared, events.FraudFailed)
	var f events.StepFailure
	if err := json.Unmarshal(out.Payload, &f); err != nil || out.Type != events.FraudFailed {
		t.Fatalf("got %s %s (%v), want %s", out.Type, out.Payload, err, events.FraudFailed)
	}
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
	data, err := in.Encode()
	if err != nil {
		t.Fatal(err)
	}
	h.env.PublishRaw(t, string(in.Type), data, "first")
	h.watch.Wait(t, "co_dup", wait, events.FraudCleared)
	first, _, err := h.svc.Assessment("co_dup")
	if err != nil {
		t.Fatal(err)
	}

	// The same event again under another Nats-Msg-Id, then a different event of the same
	// checkout whose quote would now be rejected: the stored answer stands.
	h.env.PublishRaw(t, string(in.Type), data, "second")
	risky := testQuote()
	risky.CustomerEmail = "mallory@fraud.test"
	replay := events.Must("co_dup", events.CartValidated, risky)
	replay.ID += ":replayed"
	h.env.Publish(t, replay)
	h.idle(t)

	if n := h.watch.Count("co_dup", events.FraudFailed); n != 0 {
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
	h.env.Publish(t, events.Must("co_nolines", events.CartValidated, noLines))
	bad := events.Must("co_unknown", events.CartValidated, testQuote())
	bad.Payload = json.RawMessage(`{"cart_id":"c","surprise":true}`)
	h.env.Publish(t, bad)

	for _, id := range []string{"co_nolines", "co_unknown"} {
		out := h.watch.Wait(t, id, wait, events.Rejected, events.FraudCleared, events.FraudFailed)
		if out.Type != events.Rejected {
			t.Fatalf("%s: got %s, want %s", id, out.Type, events.Rejected)
		}
		if _, found, _ := h.svc.Assessment(id); found {
			t.Errorf("%s: a malformed quote was assessed", id)
		}
	}
}
