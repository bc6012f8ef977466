package runner

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/jetcheckout/jetcheckout/internal/store"
	bolt "go.etcd.io/bbolt"
)

// A service that calls the outside world records what no event holds unless the route
// says which events record its outcome: without them its view cannot be rebuilt from the
// stream, and asking for it is a configuration error.
func TestRebuildRefusesCallRoutesWithoutReplay(t *testing.T) {
	env := natstest.Start(t)
	cfg := Config{Name: "payments", JS: env.JS, DB: newStepDB(t), Rebuild: true, Routes: []Route{{Subject: events.PaymentRequested,
		Call: func(context.Context, events.Envelope) (Handler, error) { return nil, nil }}}}
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "cannot be rebuilt") {
		t.Fatalf("New = %v, want a refusal of Rebuild with a Call route", err)
	}
	cfg.Routes[0].Outcomes = []events.Subject{events.PaymentCaptured}
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "go together") {
		t.Fatalf("New = %v, want a refusal of Outcomes without Replay", err)
	}
}

// replayedCaller is a caller whose route takes its outcome from the stream in a rebuild.
func replayedCaller(c *caller) func(*Config) {
	return func(cfg *Config) {
		cfg.Rebuild = true
		cfg.Routes = []Route{{Subject: input, Call: c.call, Outcomes: []events.Subject{output}, Replay: c.replay}}
	}
}

// replay applies the recorded outcome as the step's handler did, without the call; no
// outcome means the handler did nothing.
func (c *caller) replay(_ context.Context, tx *bolt.Tx, in events.Envelope, recorded []events.Envelope) error {
	if len(recorded) == 0 {
		return nil
	}
	if len(recorded) != 1 || recorded[0].CausationID != in.ID {
		return fmt.Errorf("replay of %s got %d recorded outcomes, want its one output", in.ID, len(recorded))
	}
	b := tx.Bucket(effectsBucket)
	var n int
	if _, err := store.Get(b, in.CheckoutID, &n); err != nil {
		return err
	}
	return store.Put(b, in.CheckoutID, n+1)
}

// A view whose handler calls the outside world is rebuilt from the outcomes the stream
// recorded: no call is made again, every checkout's effect is in the view once, and
// nothing is published again.
func TestRebuildTakesAnOutsideCallsOutcomeFromTheStream(t *testing.T) {
	c := &caller{step: &step{}}
	checkouts := []string{"co-1", "co-2", "co-3"}
	h, cfg := handledThenLost(t, c.step, checkouts, replayedCaller(c))
	var err error
	if h.runner, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	h.run(t)
	wantRebuilt(t, h, checkouts)
	c.wantCalls(t, len(checkouts))
}

// A replayed outcome is recorded with the timers its handler set alongside it, timed as the
// outcome was (one Stamp gave all of an event's outputs the same time), the outcome as the
// stream holds it.
func TestReplayRecordsTheTimersSetWithTheOutcome(t *testing.T) {
	at := time.Date(2026, 12, 7, 5, 0, 0, 0, time.UTC)
	outcome := events.Must("co-1", output, events.Reservation{ReservationID: "res_co-1"})
	outcome.Time = at
	timer := events.Must("co-1", events.InventoryExpire, events.Expiry{ReservationID: "res_co-1"})
	timer.Schedule = &events.Schedule{At: at.Add(time.Hour), Key: "inventory.expire"}
	recorded := []events.Envelope{outcome}
	outs := withScheduled(recorded, []events.Envelope{timer})
	if len(outs) != 2 || outs[0].ID != outcome.ID || outs[1].ID != timer.ID || !outs[1].Time.Equal(at) || outs[1].Schedule == nil {
		t.Fatalf("recorded outputs %+v, want the outcome then the timer at the outcome's time", outs)
	}
	if len(recorded) != 1 {
		t.Errorf("the recorded outcomes were changed: %+v", recorded)
	}
	cfg := Config{Name: "payments", JS: natstest.Start(t).JS, DB: newStepDB(t), Routes: []Route{{Subject: input, Handle: (&step{}).handle,
		Scheduled: func(events.Envelope, []events.Envelope) []events.Envelope { return nil }}}}
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "go together") {
		t.Errorf("New = %v, want Scheduled refused without Replay", err)
	}
}

// An input whose outcome is not in the stream, above the ack floor (the process died after
// deciding and before publishing), is not guessed in the rebuild: it is left to its
// delivery, which decides it again, once.
func TestRebuildLeavesAnUnrecordedOutcomeToLiveHandling(t *testing.T) {
	c := &caller{step: &step{}}
	crash := errors.New("killed after the commit")
	h := newHarness(t, c.step, func(cfg *Config) {
		replayedCaller(c)(cfg)
		cfg.AckWait = time.Second
		cfg.Hooks.AfterCommit = func(in events.Envelope) error {
			if in.CheckoutID == "co-2" {
				return crash
			}
			return nil
		}
	})
	h.publish(t, "co-1", "")
	h.publish(t, "co-2", "")
	h.runUntilCrash(t, crash)

	h.restartOnLostView(t)
	wantRebuilt(t, h, []string{"co-1", "co-2"})
	c.wantCalls(t, 3) // co-1 once; co-2 before the crash and again
}

// An input whose outcome was stored but not what its handler scheduled with it (the
// process died between the two publishes, and its view was lost): the rebuild records the
// outcome with what Scheduled gives again, and the input's delivery, which comes back,
// publishes the schedule, without deciding again.
func TestRebuildRecordsWhatTheOutcomeScheduled(t *testing.T) {
	c := &caller{step: &step{}}
	crash := errors.New("killed after the outcome was stored")
	h := newHarness(t, c.step, func(cfg *Config) {
		replayedCaller(c)(cfg)
		cfg.AckWait = time.Second
		cfg.Routes[0].Scheduled = func(in events.Envelope, _ []events.Envelope) []events.Envelope {
			look := events.Must(in.CheckoutID, events.PaymentRecheck, events.Recheck{PaymentIntentID: "pi_1"})
			look.Schedule = &events.Schedule{At: time.Now().Add(time.Hour), Key: "payment.recheck"}
			return []events.Envelope{look}
		}
		cfg.Hooks.AfterCommit = func(events.Envelope) error { return crash }
	})
	timers := h.env.Watch(t, events.TimerSubjects("*"))
	in, _ := h.publish(t, "co-1", "")
	h.runUntilCrash(t, crash)
	outcome := []events.Envelope{events.Must("co-1", output, map[string]string{"note": "handled"})}
	Stamp(outcome, in)
	h.env.Publish(t, outcome[0])

	h.restartOnLostView(t)
	timers.Wait(t, "co-1", wait, events.PaymentRecheck)
	h.settle(t)
	wantEffects(t, h, "co-1", 1)
	c.wantCalls(t, 1)
}

// restartOnLostView runs the harness's runner again, without its hooks, on a new file: a
// process that died and lost its view.
func (h *harness) restartOnLostView(t *testing.T) {
	t.Helper()
	h.db = newStepDB(t)
	cfg := h.runner.cfg
	cfg.DB, cfg.Hooks = h.db, Hooks{}
	var err error
	if h.runner, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	h.run(t)
}

// A rebuild stopped half-way (the process stopped or killed) is finished by the next start:
// what was replayed already is not applied twice, nothing is published, and the view ends
// as the lost one was.
func TestRebuildStoppedHalfwayFinishesOnRestart(t *testing.T) {
	s := &step{}
	checkouts := []string{"co-1", "co-2", "co-3", "co-4", "co-5"}
	h, cfg := handledThenLost(t, s, checkouts, nil)
	// The new file's rebuild is stopped at its third message.
	calls := runStoppedAt(t, cfg, 3)
	if calls >= len(checkouts) {
		t.Fatalf("the rebuild was not stopped half-way (%d calls)", calls)
	}

	var err error
	if h.runner, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	h.run(t)
	natstest.Eventually(t, wait, func() bool {
		handled, _ := Handled(h.db, events.ID("co-5", input))
		return handled
	}, "the rebuild was not finished")
	h.settle(t)
	for _, id := range checkouts {
		var n int
		if err := h.db.View(func(tx *bolt.Tx) error { _, err := store.Get(tx.Bucket(effectsBucket), id, &n); return err }); err != nil || n != 1 {
			t.Errorf("checkout %s applied %d times in the rebuilt store (%v), want 1", id, n, err)
		}
		if n := h.watch.Count(id, output); n != 1 {
			t.Errorf("checkout %s: %s published %d times, want 1", id, output, n)
		}
	}
	err = h.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(rebuildingBucket) != nil {
			return errors.New("the rebuild is still marked as under way")
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

// A process that made the new file's buckets and stopped before it looked at its consumer
// (a failed start, a signal) must not leave the next start thinking the view is there: the
// mark is made with the buckets, and the next start rebuilds.
func TestAViewLostBeforeItsRebuildStartedIsRebuiltNextTime(t *testing.T) {
	s := &step{}
	checkouts := []string{"co-1", "co-2", "co-3"}
	h, cfg := handledThenLost(t, s, checkouts, nil)
	if _, err := New(cfg); err != nil { // and the process stops here
		t.Fatal(err)
	}
	var err error
	if h.runner, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	h.run(t)
	natstest.Eventually(t, wait, func() bool {
		handled, _ := Handled(h.db, events.ID("co-3", input))
		return handled
	}, "the view lost before its rebuild started was never rebuilt")
	for _, id := range checkouts {
		var n int
		if err := h.db.View(func(tx *bolt.Tx) error { _, err := store.Get(tx.Bucket(effectsBucket), id, &n); return err }); err != nil || n != 1 {
			t.Errorf("checkout %s applied %d times in the rebuilt store (%v), want 1", id, n, err)
		}
	}
}

// handledThenLost runs a rebuilding runner of s (its config changed by tweak) over checkouts until it has handled them,
// stops it, and gives the harness a new, empty file: the lost view. cfg is the runner's
// configuration on that file.
func handledThenLost(t *testing.T, s *step, checkouts []string, tweak func(*Config)) (*harness, Config) {
	t.Helper()
	h := newHarness(t, s, func(c *Config) {
		c.Rebuild = true
		if tweak != nil {
			tweak(c)
		}
	})
	ctx, stop := context.WithCancel(context.Background())
	done := h.runUntil(ctx)
	for _, id := range checkouts {
		h.publish(t, id, "")
	}
	h.settle(t)
	stop()
	wantStopped(t, done)
	h.db = newStepDB(t)
	cfg := h.runner.cfg
	cfg.DB = h.db
	return h, cfg
}

// runStoppedAt runs a runner on cfg, stopping it as its handlers take their nth message (a
// rebuild stopped half-way), and returns how many they took.
func runStoppedAt(t *testing.T, cfg Config, n int) int {
	t.Helper()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	calls := 0
	cfg.Middleware = []Middleware{func(_ events.Subject, next Handler) Handler {
		return func(hctx context.Context, tx *bolt.Tx, in events.Envelope) ([]events.Envelope, error) {
			if calls++; calls == n {
				stop()
			}
			return next(hctx, tx, in)
		}
	}}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Run(ctx); err != nil {
		t.Fatalf("a rebuild stopped half-way: Run = %v, want nil", err)
	}
	return calls
}

func newStepDB(t *testing.T) *bolt.DB {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "step.db"), effectsBucket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}
