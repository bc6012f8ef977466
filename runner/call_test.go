package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	bolt "go.etcd.io/bbolt"
)

// caller is a Call route around the test step: each call runs during (the stand-in for a
// Stripe or SMTP call, outside any transaction), then hands over the step's handler.
type caller struct {
	step   *step
	during func(ctx context.Context, call int) error

	mu    sync.Mutex
	calls int
}

func (c *caller) call(ctx context.Context, in events.Envelope) (Handler, error) {
	c.mu.Lock()
	c.calls++
	n := c.calls
	c.mu.Unlock()
	if c.during != nil {
		if err := c.during(ctx, n); err != nil {
			return nil, err
		}
	}
	return c.step.handle, nil
}

func (c *caller) wantCalls(t *testing.T, want int) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.calls != want {
		t.Errorf("called %d times, want %d", c.calls, want)
	}
}

func callRoute(c *caller) func(*Config) {
	return func(cfg *Config) { cfg.Routes = []Route{{Subject: input, Call: c.call}} }
}

// The calls of different checkouts run at the same time: none holds the store's writer
// lock, so a slow Stripe does not queue every payment behind the one in hand. Each call
// here waits until all of them are under way; were they made in the transaction, the
// first would wait alone and fail, and every checkout would be called more than once.
func TestCallsOfDifferentCheckoutsOverlap(t *testing.T) {
	const lanes, checkouts = 4, 3
	ids := distinctLanes(checkouts, lanes)
	var mu sync.Mutex
	entered, all := 0, make(chan struct{})
	c := &caller{step: &step{}, during: func(ctx context.Context, _ int) error {
		mu.Lock()
		if entered++; entered == checkouts {
			close(all)
		}
		mu.Unlock()
		select {
		case <-all:
			return nil
		case <-time.After(wait / 2):
			return errors.New("the other checkouts' calls never came while this one was under way")
		}
	}}
	h := newHarness(t, c.step, func(cfg *Config) {
		callRoute(c)(cfg)
		cfg.Concurrency = lanes
	})
	for _, id := range ids {
		h.publish(t, id, "")
	}
	h.run(t)
	h.settle(t)

	c.wantCalls(t, checkouts)
	c.step.wantCalls(t, checkouts)
	for _, id := range ids {
		if n := h.watch.Count(id, output); n != 1 {
			t.Errorf("checkout %s: %d outputs, want 1", id, n)
		}
	}
	if n := h.outputsInStream(t); n != checkouts {
		t.Errorf("%d outputs in the stream, want %d", n, checkouts)
	}
}

// A call is made once per event: a later copy, and the redelivery of an event whose
// outcome was committed before the process died, find its record and call nothing.
func TestNoCallForAnEventHandledAlready(t *testing.T) {
	c := &caller{step: &step{}}
	crash := errors.New("simulated crash")
	h := newHarness(t, c.step, func(cfg *Config) {
		callRoute(c)(cfg)
		cfg.Hooks.AfterCommit = func(events.Envelope) error { return crash }
	})
	h.publish(t, "co-1", "")
	h.runUntilCrash(t, crash)
	c.wantCalls(t, 1)

	h.restart(t, c)
	h.publish(t, "co-1", "a-later-copy")
	h.settle(t)

	c.wantCalls(t, 1)
	c.step.wantCalls(t, 1)
	h.wantState(t, "co-1", 1, 1)
}

// A process that dies after the call and before the commit made the call and recorded
// nothing: the next one calls again (hence the idempotency keys) and records it once.
func TestACallIsMadeAgainAfterACrashBeforeTheCommit(t *testing.T) {
	c := &caller{step: &step{}}
	crash := errors.New("simulated crash")
	h := newHarness(t, c.step, func(cfg *Config) {
		callRoute(c)(cfg)
		cfg.Hooks.BeforeCommit = func(events.Envelope) error { return crash }
	})
	h.publish(t, "co-1", "")
	h.runUntilCrash(t, crash)
	h.wantState(t, "co-1", 0, 0)

	h.restart(t, c)
	h.settle(t)

	c.wantCalls(t, 2)
	h.wantState(t, "co-1", 1, 1)
}

// A call that fails or panics is retried like a handler; one that finds nothing to do
// (Unchanged) is acked with no record.
func TestAFailingCallIsRetried(t *testing.T) {
	c := &caller{step: &step{}, during: func(_ context.Context, call int) error {
		switch call {
		case 1:
			return errors.New("stripe unreachable")
		case 2:
			panic("a bug in the call")
		}
		return nil
	}}
	h := newHarness(t, c.step, callRoute(c))
	h.run(t)
	h.publish(t, "co-1", "")
	h.settle(t)

	c.wantCalls(t, 3)
	c.step.wantCalls(t, 1)
	h.wantState(t, "co-1", 1, 1)
}

func TestAnUnchangedCallLeavesNoRecord(t *testing.T) {
	c := &caller{step: &step{}, during: func(context.Context, int) error { return Unchanged }}
	h := newHarness(t, c.step, callRoute(c))
	h.run(t)
	h.publish(t, "co-1", "first")
	h.publish(t, "co-1", "copy")
	h.settle(t)

	c.wantCalls(t, 2) // no record of the first, so the copy is called too
	c.step.wantCalls(t, 0)
	h.wantState(t, "co-1", 0, 0)
}

// Middleware wraps the handler a call returns, as it wraps a route's Handle.
func TestMiddlewareWrapsTheHandlerACallReturns(t *testing.T) {
	c := &caller{step: &step{}}
	var mu sync.Mutex
	var wrapped []events.Subject
	h := newHarness(t, c.step, func(cfg *Config) {
		callRoute(c)(cfg)
		cfg.Middleware = []Middleware{func(route events.Subject, next Handler) Handler {
			return func(ctx context.Context, tx *bolt.Tx, in events.Envelope) ([]events.Envelope, error) {
				mu.Lock()
				wrapped = append(wrapped, route)
				mu.Unlock()
				return next(ctx, tx, in)
			}
		}}
	})
	h.run(t)
	h.publish(t, "co-1", "")
	h.settle(t)

	mu.Lock()
	defer mu.Unlock()
	if len(wrapped) != 1 || wrapped[0] != input {
		t.Errorf("middleware saw %v, want one %s", wrapped, input)
	}
	h.wantState(t, "co-1", 1, 1)
}

func TestARouteSetsHandleOrCall(t *testing.T) {
	c := &caller{step: &step{}}
	cfg := Config{Name: consumer, Routes: []Route{{Subject: input, Handle: c.step.handle, Call: c.call}}, JS: &failingPublisher{},
		DB: &bolt.DB{}, Log: slog.New(slog.DiscardHandler), AckWait: time.Second}
	if err := cfg.Validate(); err == nil {
		t.Error("a route with both Handle and Call was accepted")
	}
}

// distinctLanes returns n checkout IDs whose events go to n different lanes of lanes.
func distinctLanes(n, lanes int) []string {
	var ids []string
	taken := map[int]bool{}
	for i := 0; len(ids) < n; i++ {
		id := fmt.Sprintf("co-%d", i)
		if l := laneOf([]byte(id), lanes); !taken[l] {
			taken[l] = true
			ids = append(ids, id)
		}
	}
	return ids
}

// restart runs the next life of a runner that crashed, with c's route.
func (h *harness) restart(t *testing.T, c *caller) {
	t.Helper()
	again, err := New(Config{Name: consumer, Routes: []Route{{Subject: input, Call: c.call}}, JS: h.env.JS, DB: h.db,
		Log: slog.New(slog.DiscardHandler), AckWait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	natstest.Run(t, again)
}
