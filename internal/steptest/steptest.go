// Package steptest runs one step service the way production does, for its tests: a real
// bbolt file in t.TempDir(), the real runner on an embedded JetStream (natstest), and a
// watcher of every checkout event. It lives apart from natstest because it imports
// runner, whose own tests import natstest.
package steptest

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/jetcheckout/jetcheckout/internal/store"
	"github.com/jetcheckout/jetcheckout/runner"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	bolt "go.etcd.io/bbolt"
)

// Timeout bounds every wait of a step test.
const Timeout = 10 * time.Second

// Service is what a step service gives the runner.
type Service interface {
	Routes() []runner.Route
}

// Harness is a step service behind the real runner on an embedded JetStream.
type Harness struct {
	Env   *natstest.Env
	DB    *bolt.DB
	Watch *natstest.Watcher // every checkout event and every timer set since Start
	cfg   runner.Config
	log   *slog.Logger
	logs  *natstest.LogBuffer
	stops []func()
}

// Start opens <cfg.Name>.db, builds the service on it with build, and runs the service's
// routes behind a runner whose durable consumer is cfg.Name until the test ends. cfg's JS,
// DB, Log and Routes are filled in; its other fields (retry delays...) are used as given.
func Start[S Service](t testing.TB, cfg runner.Config, build func(db *bolt.DB, log *slog.Logger) (S, error)) (*Harness, S) {
	t.Helper()
	return StartOn(t, natstest.Start(t), cfg, build)
}

// StartOn is Start on a server the test started already: build may use its buckets.
func StartOn[S Service](t testing.TB, env *natstest.Env, cfg runner.Config, build func(db *bolt.DB, log *slog.Logger) (S, error)) (*Harness, S) {
	t.Helper()
	h := &Harness{Env: env, DB: DB(t, cfg.Name), logs: &natstest.LogBuffer{}}
	h.log = newLogger(io.MultiWriter(t.Output(), h.logs))
	svc, err := build(h.DB, h.log)
	if err != nil {
		t.Fatal(err)
	}
	cfg.JS, cfg.DB, cfg.Log, cfg.Routes = h.Env.JS, h.DB, h.log, svc.Routes()
	h.cfg = cfg
	h.Watch = h.Env.Watch(t, events.CheckoutSubjects, events.TimerSubjects("*"))
	h.AddRunner(t)
	return h, svc
}

// AddRunner runs one more instance of the runner on the same durable consumer, so that
// messages are handled concurrently.
func (h *Harness) AddRunner(t testing.TB) {
	t.Helper()
	r, err := runner.New(h.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	stop := sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runner stopped with %v", err)
		}
	})
	h.stops = append(h.stops, stop)
	t.Cleanup(stop)
}

// LoseView stops the service's runners and starts it again, built by build, on a new bbolt
// file, as when its data directory is deleted: its runner (with cfg.Rebuild) rebuilds the
// view from the stream before it consumes. The lost file stays open, to compare (DumpDB).
func LoseView[S Service](t testing.TB, h *Harness, build func(db *bolt.DB, log *slog.Logger) (S, error)) S {
	t.Helper()
	for _, stop := range h.stops {
		stop()
	}
	h.stops = nil
	h.DB = DB(t, h.cfg.Name)
	svc, err := build(h.DB, h.log)
	if err != nil {
		t.Fatal(err)
	}
	h.cfg.DB, h.cfg.Routes = h.DB, svc.Routes()
	h.AddRunner(t)
	return svc
}

// Serve starts the service's request-reply endpoints with serve and stops them when the
// test ends.
func (h *Harness) Serve(t testing.TB, serve func(nc *nats.Conn) (micro.Service, error)) {
	t.Helper()
	ms, err := serve(h.Env.NC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := ms.Stop(); err != nil {
			t.Errorf("stop service: %v", err)
		}
	})
}

// DB opens (creating) <name>.db in t.TempDir(), closed when the test ends.
func DB(t testing.TB, name string) *bolt.DB {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), name+".db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// Logger logs at debug level to the test's output.
func Logger(t testing.TB) *slog.Logger { return newLogger(t.Output()) }

func newLogger(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Logs is everything the service and its runner have logged.
func (h *Harness) Logs() string { return h.logs.String() }

// PublishCopy publishes e under Nats-Msg-Id msgID instead of its own ID: a copy the stream
// does not drop as a duplicate, so the runner's own dedupe is what is tested.
func (h *Harness) PublishCopy(t testing.TB, e events.Envelope, msgID string) {
	t.Helper()
	data, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	h.Env.PublishRaw(t, string(e.Type), data, msgID)
}

// Wait returns the first event of one of the types for the checkout.
func (h *Harness) Wait(t testing.TB, checkoutID string, types ...events.Subject) events.Envelope {
	t.Helper()
	return h.Watch.Wait(t, checkoutID, Timeout, types...)
}

// Expect waits for the checkout's event of type want or of any of rivals (the step's other
// outcomes, so that a wrong answer fails at once rather than at the timeout), fails the
// test unless it is want, and decodes its payload strictly into v when v is not nil.
func (h *Harness) Expect(t testing.TB, checkoutID string, want events.Subject, v any, rivals ...events.Subject) events.Envelope {
	t.Helper()
	out := h.Wait(t, checkoutID, append([]events.Subject{want}, rivals...)...)
	if out.Type != want {
		t.Fatalf("checkout %s: got %s %s, want %s", checkoutID, out.Type, out.Payload, want)
	}
	if v != nil {
		if err := out.DecodePayload(v); err != nil {
			t.Fatalf("checkout %s: %v", checkoutID, err)
		}
	}
	return out
}

// Rejection expects the checkout's checkout.rejected (see Expect) and returns its payload.
func (h *Harness) Rejection(t testing.TB, checkoutID string, rivals ...events.Subject) events.RejectedInput {
	t.Helper()
	var why events.RejectedInput
	h.Expect(t, checkoutID, events.Rejected, &why, rivals...)
	return why
}

// Refusal expects the checkout's step failure on failed, reporting an input the step
// refused for good (code step_failed), with a copy of the input kept in DEADLETTER, and
// returns the failure.
func (h *Harness) Refusal(t testing.TB, checkoutID string, failed events.Subject, rivals ...events.Subject) events.StepFailure {
	t.Helper()
	var f events.StepFailure
	h.Expect(t, checkoutID, failed, &f, rivals...)
	if f.Code != events.CodeStepFailed || f.Message == "" {
		t.Errorf("checkout %s: %+v, want code %s with the reason", checkoutID, f, events.CodeStepFailed)
	}
	ctx := context.Background()
	dead, err := h.Env.JS.Stream(ctx, events.StreamDeadLetter)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dead.GetLastMsgForSubject(ctx, events.DeadLetterSubject(h.cfg.Name)); err != nil {
		t.Errorf("checkout %s: no copy of the refused input in %s: %v", checkoutID, events.StreamDeadLetter, err)
	}
	return f
}

// WaitCount waits until the checkout has seen n events of type typ.
func (h *Harness) WaitCount(t testing.TB, checkoutID string, typ events.Subject, n int) {
	t.Helper()
	natstest.Eventually(t, Timeout, func() bool { return h.Watch.Count(checkoutID, typ) == n },
		"checkout %s never saw %d %s events", checkoutID, n, typ)
}

// Idle waits until the runner has handled and acked every message published so far.
func (h *Harness) Idle(t testing.TB) {
	t.Helper()
	h.Env.WaitIdle(t, h.cfg.Name)
}
