package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/jetcheckout/jetcheckout/internal/store"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	bolt "go.etcd.io/bbolt"
)

// The test step consumes input and emits output; any subjects under checkout.> would do.
const (
	consumer = "runner-test"
	input    = events.PaymentRequested
	output   = events.PaymentCaptured
	wait     = 10 * time.Second
	// retryBase keeps the retry tests quick.
	retryBase = 10 * time.Millisecond
)

func TestHandlesAnEventOnce(t *testing.T) {
	h := newHarness(t, &step{}, nil)
	h.run(t)
	in, _ := h.publish(t, "co-1", "")
	h.settle(t)

	h.wantState(t, "co-1", 1, 1)
	out := h.watch.Wait(t, "co-1", wait, output)
	if out.ID != events.ID("co-1", output) || out.CausationID != in.ID || out.Time.IsZero() {
		t.Errorf("output %+v: want ID %s caused by %s, stamped with a time", out, events.ID("co-1", output), in.ID)
	}
}

// The stream only drops a copy carrying the same Nats-Msg-Id; a copy published under
// another one reaches the consumer and must be dropped by the event ID.
func TestDropsALaterCopyOfAnEvent(t *testing.T) {
	s := &step{}
	h := newHarness(t, s, nil)
	h.run(t)
	h.publish(t, "co-1", "copy-1")
	h.publish(t, "co-1", "copy-2")
	h.settle(t)

	h.wantState(t, "co-1", 1, 1)
	s.wantCalls(t, 1)
}

// A service that committed and died before publishing gets the same message (same
// stream sequence) again: the stored outputs go out, the handler does not run again.
func TestRepublishesOutputsOfACommittedRedelivery(t *testing.T) {
	s := &step{}
	h := newHarness(t, s, nil)
	in, seq := h.publish(t, "co-1", "")
	// The first life of the service: handled and committed, then crashed before publishing.
	if _, _, err := h.runner.commit(context.Background(), in, seq, h.runner.routes[string(input)].Handle); err != nil {
		t.Fatal(err)
	}
	if n := h.outputsInStream(t); n != 0 {
		t.Fatalf("%d outputs in the stream before the restart", n)
	}
	h.run(t)
	h.settle(t)

	h.wantState(t, "co-1", 1, 1)
	s.wantCalls(t, 1)
	if out := h.watch.Wait(t, "co-1", wait, output); out.CausationID != in.ID {
		t.Errorf("republished output caused by %q, want %q", out.CausationID, in.ID)
	}
}

// A handler that says its event changed nothing leaves nothing behind: what it wrote is
// rolled back, no record is kept (a copy runs it again, to the same nothing), nothing is
// published, and the message is acknowledged, not retried.
func TestAnUnchangedEventLeavesNoRecord(t *testing.T) {
	s := &step{fail: func(int) error { return Unchanged }}
	h := newHarness(t, s, nil)
	h.run(t)
	in, _ := h.publish(t, "co-1", "first")
	h.settle(t)
	h.wantState(t, "co-1", 0, 0)
	s.wantCalls(t, 1)
	err := h.db.View(func(tx *bolt.Tx) error {
		if found, err := store.Get(tx.Bucket(processedBucket), in.ID, &record{}); err != nil || found {
			return fmt.Errorf("record of %s kept: %v %v", in.ID, found, err)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}

	h.publish(t, "co-1", "copy")
	h.settle(t)
	s.wantCalls(t, 2)
	h.wantState(t, "co-1", 0, 0)
}

// The same crash seen from outside: the commit succeeds, the publish fails. The message
// must not be acked; its redelivery publishes the stored outputs without handling again.
func TestRetriesAFailedPublishWithoutHandlingAgain(t *testing.T) {
	s := &step{}
	var js *failingPublisher
	h := newHarness(t, s, func(c *Config) {
		js = &failingPublisher{JetStream: c.JS, failures: 1}
		c.JS = js
	})
	h.run(t)
	h.publish(t, "co-1", "")
	h.watch.Wait(t, "co-1", wait, output)
	h.settle(t)

	if js.failed() != 1 {
		t.Fatalf("%d publishes failed, want 1", js.failed())
	}
	h.wantState(t, "co-1", 1, 1)
	s.wantCalls(t, 1)
}

// Each failed attempt writes to the store before failing: the rollback must undo it.
func TestRetriesTransientErrorsWithGrowingDelay(t *testing.T) {
	s := &step{fail: func(call int) error {
		if call <= 2 {
			return errors.New("payment provider unavailable")
		}
		return nil
	}}
	h := newHarness(t, s, nil)
	h.run(t)
	h.publish(t, "co-1", "")
	h.watch.Wait(t, "co-1", wait, output)
	h.settle(t)

	h.wantState(t, "co-1", 1, 1)
	calls := s.callTimes()
	if len(calls) != 3 {
		t.Fatalf("handler called %d times, want 3", len(calls))
	}
	// NakWithDelay is a lower bound: the server never redelivers sooner.
	if first, second := calls[1].Sub(calls[0]), calls[2].Sub(calls[1]); first < retryBase || second < 2*retryBase {
		t.Errorf("redelivered after %v then %v, want at least %v then %v", first, second, retryBase, 2*retryBase)
	}
	if rejected := h.watch.Count("co-1", events.Rejected); rejected != 0 {
		t.Errorf("%d rejections of a message that succeeded", rejected)
	}
}

func TestRejectsAPermanentError(t *testing.T) {
	s := &step{fail: func(int) error { return Permanent(errors.New("card network says never")) }}
	h := newHarness(t, s, nil)
	h.run(t)
	_, seq := h.publish(t, "co-1", "")
	h.settle(t)

	rej := h.rejection(t, "co-1")
	if rej.Subject != string(input) || rej.Consumer != consumer || rej.StreamSequence != seq ||
		rej.Reason != string(input)+": card network says never" {
		t.Errorf("rejection %+v, want %s seq %d by %s for the handler's reason", rej, input, seq, consumer)
	}
	h.wantState(t, "co-1", 0, 0)
	s.wantCalls(t, 1)
}

func TestRejectsMalformedInputWithoutCallingTheHandler(t *testing.T) {
	s := &step{}
	h := newHarness(t, s, nil)
	h.run(t)
	notJSON := h.publishRaw(t, []byte(`{"id": "co-1:oops`), "")
	mislabelled := events.Must("co-2", events.OrderCreated, map[string]string{"note": "not a payment request"})
	data, err := mislabelled.Encode()
	if err != nil {
		t.Fatal(err)
	}
	onWrongSubject := h.publishRaw(t, data, "")
	h.settle(t)

	// Without a decodable envelope the rejection names no checkout.
	if rej := h.rejection(t, "unknown"); rej.StreamSequence != notJSON || !strings.HasPrefix(rej.Reason, string(input)+": "+events.ErrMalformed.Error()+": ") {
		t.Errorf("rejection of broken JSON %+v, want seq %d, malformed", rej, notJSON)
	}
	if rej := h.rejection(t, "co-2"); rej.StreamSequence != onWrongSubject || !strings.Contains(rej.Reason, "published on subject") {
		t.Errorf("rejection of a mislabelled envelope %+v, want seq %d, type differs from subject", rej, onWrongSubject)
	}
	s.wantCalls(t, 0)
	h.wantState(t, "co-2", 0, 0)
}

// Work that is not a step's trigger (a compensation, say) is never given up: every
// MaxDeliver attempts it is announced on checkout.stuck, and it goes on being retried.
func TestAnnouncesStuckWorkAndKeepsRetrying(t *testing.T) {
	s := &step{fail: func(call int) error {
		if call <= 4 {
			return errors.New("payment provider unavailable")
		}
		return nil
	}}
	h := newHarness(t, s, func(c *Config) { c.MaxDeliver = 2 })
	h.run(t)
	h.publish(t, "co-1", "")
	h.watch.Wait(t, "co-1", wait, output)
	h.settle(t)

	if n := h.watch.Count("co-1", events.Stuck); n != 2 {
		t.Errorf("%d stuck announcements after 4 failures with MaxDeliver 2, want 2", n)
	}
	var stuck events.StuckWork
	if err := h.watch.Wait(t, "co-1", wait, events.Stuck).DecodePayload(&stuck); err != nil || stuck.Consumer != consumer ||
		!strings.Contains(stuck.Error, "payment provider unavailable") {
		t.Errorf("stuck %+v (%v)", stuck, err)
	}
	s.wantCalls(t, 5)
	h.wantState(t, "co-1", 1, 1)
	if n := h.watch.Count("co-1", events.Rejected); n != 0 {
		t.Errorf("%d rejections: work that must be done was given up", n)
	}
}

// A step's trigger that keeps failing is given up after MaxDeliver attempts: a copy goes to
// DEADLETTER and the step's failure, marked uncertain, is its outcome, so the checkout is
// compensated and ends.
func TestGivesUpAStepAfterMaxDeliver(t *testing.T) {
	s := &step{fail: func(int) error { return errors.New("payment provider unavailable") }}
	h := newHarness(t, s, func(c *Config) { c.MaxDeliver, c.Name = 3, events.ServicePayments })
	h.run(t)
	in, seq := h.publish(t, "co-1", "")
	failed := h.watch.Wait(t, "co-1", wait, events.PaymentFailed)

	var f events.StepFailure
	if err := failed.DecodePayload(&f); err != nil {
		t.Fatal(err)
	}
	if f.Code != events.CodeRetriesExhausted || !f.Uncertain || f.Step != events.StepProcessPayment ||
		!strings.Contains(f.Message, "payment provider unavailable") {
		t.Errorf("failure %+v, want retries_exhausted, uncertain, with the last error", f)
	}
	s.wantCalls(t, 3)
	h.wantState(t, "co-1", 0, 0)
	dead := h.deadLetter(t, events.ServicePayments)
	if dead.Header.Get(events.HeaderDeadSequence) != fmt.Sprint(seq) || dead.Header.Get(events.HeaderDeadSubject) != string(input) ||
		!strings.Contains(dead.Header.Get(events.HeaderDeadReason), "payment provider unavailable") {
		t.Errorf("dead letter headers %v", dead.Header)
	}
	if raw, _ := in.Encode(); string(dead.Data) != string(raw) {
		t.Errorf("dead letter holds %s, want the input as it came", dead.Data)
	}
}

// A handler that panics does not take the process down: the message is retried.
func TestAPanicIsRetried(t *testing.T) {
	s := &step{fail: func(call int) error {
		if call == 1 {
			panic("nil map somewhere")
		}
		return nil
	}}
	h := newHarness(t, s, nil)
	h.run(t)
	h.publish(t, "co-1", "")
	h.watch.Wait(t, "co-1", wait, output)
	h.settle(t)
	s.wantCalls(t, 2)
	h.wantState(t, "co-1", 1, 1)
}

// An undo that fails for good (a Permanent error) is never given up: it is announced as
// stuck and retried, so the checkout it belongs to is not left waiting in silence.
func TestAnUndoIsNeverGivenUp(t *testing.T) {
	s := &step{fail: func(call int) error {
		if call <= 2 {
			return Permanent(errors.New("refund refused"))
		}
		return nil
	}}
	h := newHarness(t, s, func(c *Config) {
		c.Name, c.RetryMax = events.ServicePayments, 20*time.Millisecond
		c.Routes = []Route{{Subject: events.PaymentRefund, Handle: s.handle}}
	})
	h.run(t)
	refund := events.Must("co-1", events.PaymentRefund, events.Compensation{Reason: "test"})
	h.env.Publish(t, refund)
	h.watch.Wait(t, "co-1", wait, output)
	if n := h.watch.Count("co-1", events.Stuck); n < 1 {
		t.Error("the failing undo was not announced")
	}
	if n := h.watch.Count("co-1", events.Rejected); n != 0 {
		t.Error("an undo was rejected")
	}
	s.wantCalls(t, 3)
}

// An undo that fails for a moment (a refund waiting for Stripe) is not announced: only
// once its retries have gone on for StuckAfter, then every MaxDeliver attempts.
func TestAnUndoIsAnnouncedOnlyOnceItHasFailedForAWhile(t *testing.T) {
	s := &step{fail: func(call int) error {
		if call <= 5 {
			return errors.New("no charge found yet")
		}
		return nil
	}}
	h := newHarness(t, s, func(c *Config) {
		c.Name, c.RetryMax, c.StuckAfter = events.ServicePayments, 20*time.Millisecond, 50*time.Millisecond
		c.Routes = []Route{{Subject: events.PaymentRefund, Handle: s.handle}}
	})
	h.run(t)
	h.env.Publish(t, events.Must("co-1", events.PaymentRefund, events.Compensation{Reason: "test"}))
	h.watch.Wait(t, "co-1", wait, output)
	s.wantCalls(t, 6)
	if n := h.watch.Count("co-1", events.Stuck); n != 1 {
		t.Fatalf("%d stuck announcements, want 1", n)
	}
	var stuck events.StuckWork
	if err := h.watch.Wait(t, "co-1", wait, events.Stuck).DecodePayload(&stuck); err != nil || stuck.Attempts != 4 {
		t.Errorf("stuck %+v (%v): want it announced at attempt 4, the first 50ms after the first (retries 20ms apart)", stuck, err)
	}
}

// A step's trigger refused for good (a Permanent error) fails the step at once.
func TestAPermanentErrorFailsTheStep(t *testing.T) {
	h := wantStepFailed(t, Permanent(errors.New("order store refuses this payment")), "order store refuses")
	h.deadLetter(t, events.ServicePayments)
}

// wantStepFailed runs a step whose handler answers err once, and checks the step failed
// with step_failed and a message holding reason, the handler called once.
func wantStepFailed(t *testing.T, err error, reason string) *harness {
	t.Helper()
	s := &step{fail: func(int) error { return err }}
	h := newHarness(t, s, func(c *Config) { c.Name = events.ServicePayments })
	h.run(t)
	h.publish(t, "co-1", "")
	var f events.StepFailure
	if err := h.watch.Wait(t, "co-1", wait, events.PaymentFailed).DecodePayload(&f); err != nil {
		t.Fatal(err)
	}
	if f.Code != events.CodeStepFailed || !strings.Contains(f.Message, reason) {
		t.Errorf("failure %+v", f)
	}
	s.wantCalls(t, 1)
	return h
}

// Unchanged is no answer for a step's trigger: acked with no outcome, the step would wait
// out its deadline. It fails the step at once instead, with the reason.
func TestAStepTriggerAnsweredUnchangedFailsTheStep(t *testing.T) {
	wantStepFailed(t, Unchanged, "Unchanged")
}

// A trigger older than its step's deadline is refused without running the step: the
// coordinator may already have given up on it.
func TestRefusesAnExpiredTrigger(t *testing.T) {
	s := &step{}
	h := newHarness(t, s, func(c *Config) {
		c.Name, c.Deadlines = events.ServicePayments, map[events.StepName]time.Duration{events.StepProcessPayment: time.Minute}
	})
	h.run(t)
	old := events.Must("co-old", input, map[string]string{"note": "please handle"})
	old.Time = time.Now().Add(-2 * time.Minute)
	h.env.Publish(t, old)
	var f events.StepFailure
	if err := h.watch.Wait(t, "co-old", wait, events.PaymentFailed).DecodePayload(&f); err != nil {
		t.Fatal(err)
	}
	if f.Code != events.CodeDeadlineExceeded || f.Uncertain {
		t.Errorf("failure %+v, want deadline_exceeded, certain (first delivery: nothing ran)", f)
	}
	s.wantCalls(t, 0)
}

// A crash hook stops the runner where the process would have died; a new life republishes
// the committed outputs once and does not handle the event again.
func TestCrashBetweenCommitAndPublish(t *testing.T) {
	s := &step{}
	crash := errors.New("simulated crash")
	h := newHarness(t, s, func(c *Config) { c.Hooks.AfterCommit = func(events.Envelope) error { return crash } })
	h.publish(t, "co-1", "")
	h.runUntilCrash(t, crash)
	if n := h.outputsInStream(t); n != 0 {
		t.Fatalf("%d outputs published before the crash", n)
	}
	again, err := New(Config{Name: consumer, Routes: []Route{{Subject: input, Handle: s.handle}}, JS: h.env.JS, DB: h.db,
		Log: slog.New(slog.DiscardHandler), AckWait: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	natstest.Run(t, again)
	h.watch.Wait(t, "co-1", wait, output)
	h.settle(t)
	s.wantCalls(t, 1)
	h.wantState(t, "co-1", 1, 1)
}

// Scheduled outputs wait on their schedule subject and arrive on their own at their time.
func TestPublishesScheduledOutputsAtTheirTime(t *testing.T) {
	h := newHarness(t, &step{}, nil)
	h.run(t)
	at := time.Now().Add(time.Second).Truncate(time.Second)
	later := events.Must("co-1", events.Deadline, events.DeadlineReached{Step: events.StepProcessPayment, Deadline: at})
	later.Schedule = &events.Schedule{At: at, Key: "deadline.test"}
	if err := h.runner.publish(context.Background(), []events.Envelope{later}, nil); err != nil {
		t.Fatal(err)
	}
	// The server stores the due event in the stream itself (no core NATS publish to watch).
	stream, err := h.env.JS.Stream(context.Background(), events.StreamCheckout)
	if err != nil {
		t.Fatal(err)
	}
	var due *jetstream.RawStreamMsg
	natstest.Eventually(t, wait, func() bool {
		due, err = stream.GetLastMsgForSubject(context.Background(), string(events.Deadline))
		return err == nil
	}, "the scheduled event never arrived")
	if due.Time.Before(at.Add(-50 * time.Millisecond)) {
		t.Errorf("stored at %s, before its time %s", due.Time, at)
	}
	if e, err := events.Decode(string(events.Deadline), due.Data); err != nil || e.ID != later.ID {
		t.Errorf("arrived %s (%v), want the scheduled envelope", due.Data, err)
	}
}

func TestRunStopsWhenCancelledBeforeItStarts(t *testing.T) {
	h := newHarness(t, &step{}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	wantStopped(t, h.runUntil(ctx))
}

func TestRunStopsWhenCancelledWhileIdle(t *testing.T) {
	h := newHarness(t, &step{}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := h.runUntil(ctx)
	h.waitAcked(t) // the consumer exists: Run is past starting
	cancel()
	wantStopped(t, done)
}

// A consumer that disappears while nobody asked the runner to stop is an error, so the
// process fails loudly instead of staying up without consuming.
func TestRunFailsWhenItsConsumerIsDeleted(t *testing.T) {
	h := newHarness(t, &step{}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := h.runUntil(ctx)
	h.waitAcked(t) // the consumer exists
	if err := h.env.JS.DeleteConsumer(ctx, events.StreamCheckout, consumer); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Error("Run returned nil after its consumer was deleted")
		}
	case <-time.After(wait):
		t.Fatal("Run kept going after its consumer was deleted")
	}
}

// Shutdown stops fetching but finishes the message in hand: committed, published, acked.
func TestRunFinishesTheMessageInHandWhenCancelled(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	s := &step{fail: func(int) error {
		close(entered)
		<-release
		return nil
	}}
	h := newHarness(t, s, nil)
	t.Cleanup(sync.OnceFunc(func() { close(release) })) // before the store closes, if the test fails early
	ctx, cancel := context.WithCancel(context.Background())
	done := h.runUntil(ctx)
	h.publish(t, "co-1", "")
	select {
	case <-entered:
	case <-time.After(wait):
		t.Fatal("the handler was never called")
	}
	cancel()
	select {
	case err := <-done:
		t.Fatalf("Run returned %v with a message in hand", err)
	case <-time.After(50 * time.Millisecond):
	}
	handlerCtxErr := s.lastCtx().Err()
	release <- struct{}{}
	wantStopped(t, done)
	h.settle(t)

	if handlerCtxErr != nil {
		t.Errorf("the handler's context ended with the runner's: %v", handlerCtxErr)
	}
	h.wantState(t, "co-1", 1, 1)
}

// effectsBucket is the test step's own state: how many times each checkout was handled.
var effectsBucket = []byte("test.effects")

// step is the smallest handler with an effect: it counts the checkout in its bucket, then
// fails if fail says so (after writing, so a rollback is visible), else emits output.
type step struct {
	fail func(call int) error

	mu    sync.Mutex
	calls []time.Time
	ctx   context.Context
}

func (s *step) handle(ctx context.Context, tx *bolt.Tx, in events.Envelope) ([]events.Envelope, error) {
	s.mu.Lock()
	s.calls = append(s.calls, time.Now())
	s.ctx = ctx
	call := len(s.calls)
	s.mu.Unlock()

	b := tx.Bucket(effectsBucket)
	var n int
	if _, err := store.Get(b, in.CheckoutID, &n); err != nil {
		return nil, err
	}
	if err := store.Put(b, in.CheckoutID, n+1); err != nil {
		return nil, err
	}
	if s.fail != nil {
		if err := s.fail(call); err != nil {
			return nil, err
		}
	}
	return []events.Envelope{events.Must(in.CheckoutID, output, map[string]string{"note": "handled"})}, nil
}

func (s *step) callTimes() []time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Time(nil), s.calls...)
}

func (s *step) wantCalls(t *testing.T, want int) {
	t.Helper()
	if n := len(s.callTimes()); n != want {
		t.Errorf("handler called %d times, want %d", n, want)
	}
}

func (s *step) lastCtx() context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ctx
}

type harness struct {
	env      *natstest.Env
	db       *bolt.DB
	runner   *Runner
	watch    *natstest.Watcher
	barriers int
	lastSeq  uint64 // stream sequence of the last input published
}

// newHarness builds a runner for s on a fresh JetStream and bbolt file, not yet running.
func newHarness(t *testing.T, s *step, tweak func(*Config)) *harness {
	t.Helper()
	db, err := store.Open(filepath.Join(t.TempDir(), "step.db"), effectsBucket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	env := natstest.Start(t)
	cfg := Config{Name: consumer, Routes: []Route{{Subject: input, Handle: s.handle}}, JS: env.JS, DB: db,
		Log:       slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
		RetryBase: retryBase}
	if tweak != nil {
		tweak(&cfg)
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &harness{env: env, db: db, runner: r, watch: env.Watch(t, "checkout.>")}
}

func (h *harness) run(t *testing.T) { natstest.Run(t, h.runner) }

// runUntilCrash runs the runner until a hook stops it with the simulated crash.
func (h *harness) runUntilCrash(t *testing.T, crash error) {
	t.Helper()
	if err := h.runner.Run(context.Background()); !errors.Is(err, crash) {
		t.Fatalf("Run returned %v, want the simulated crash", err)
	}
}

// runUntil runs the runner until ctx ends, for the tests of stopping; done gets Run's result.
func (h *harness) runUntil(ctx context.Context) (done <-chan error) {
	ch := make(chan error, 1)
	go func() { ch <- h.runner.Run(ctx) }()
	return ch
}

// publish stores checkout's input event under msgID (its event ID when empty).
func (h *harness) publish(t *testing.T, checkoutID, msgID string) (events.Envelope, uint64) {
	t.Helper()
	in := events.Must(checkoutID, input, map[string]string{"note": "please handle"})
	data, err := in.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if msgID == "" {
		msgID = in.ID
	}
	return in, h.publishRaw(t, data, msgID)
}

// publishRaw stores data on the input subject and returns its stream sequence.
func (h *harness) publishRaw(t *testing.T, data []byte, msgID string) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var opts []jetstream.PublishOpt
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	ack, err := h.env.JS.Publish(ctx, string(input), data, opts...)
	if err != nil {
		t.Fatal(err)
	}
	h.lastSeq = max(h.lastSeq, ack.Sequence)
	return ack.Sequence
}

// settle waits until the consumer has acked or terminated every input published, then
// until the watcher has seen every event published so far: a barrier event published
// after them reaches the same subscription after them.
func (h *harness) settle(t *testing.T) {
	t.Helper()
	h.waitAcked(t)
	h.barriers++
	id := fmt.Sprintf("barrier-%d", h.barriers)
	h.env.Publish(t, events.Must(id, events.Completed, map[string]string{}))
	h.watch.Wait(t, id, wait, events.Completed)
}

// waitAcked is env.WaitIdle made safe right after a publish: the server counts a stored
// message into a consumer's pending asynchronously, so "nothing pending" alone can hold
// before the consumer has even seen the input. Its ack floor reaching the input cannot.
func (h *harness) waitAcked(t *testing.T) {
	t.Helper()
	natstest.Eventually(t, wait, func() bool {
		cons, err := h.env.JS.Consumer(context.Background(), events.StreamCheckout, consumer)
		if err != nil {
			return false
		}
		info, err := cons.Info(context.Background())
		return err == nil && info.AckFloor.Stream >= h.lastSeq && info.NumAckPending == 0 && info.NumPending == 0
	}, "consumer %s did not ack up to stream sequence %d", consumer, h.lastSeq)
}

// wantState checks how many times checkoutID was handled according to the store, and
// how many outputs it had both on the subscription (where a copy the stream dropped as a
// duplicate still shows) and in the stream.
func (h *harness) wantState(t *testing.T, checkoutID string, effects, outputs int) {
	t.Helper()
	var n int
	err := h.db.View(func(tx *bolt.Tx) error {
		_, err := store.Get(tx.Bucket(effectsBucket), checkoutID, &n)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if n != effects {
		t.Errorf("checkout %s handled %d times in the store, want %d", checkoutID, n, effects)
	}
	if n := h.watch.Count(checkoutID, output); n != outputs {
		t.Errorf("checkout %s: %s published %d times, want %d", checkoutID, output, n, outputs)
	}
	if n := h.outputsInStream(t); n != uint64(outputs) {
		t.Errorf("%d %s in the stream, want %d", n, output, outputs)
	}
}

func (h *harness) outputsInStream(t *testing.T) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	stream, err := h.env.JS.Stream(ctx, events.StreamCheckout)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(string(output)))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects[string(output)]
}

// rejection is the one checkout.rejected announced for checkoutID.
// deadLetter returns the last message the consumer gave up on.
func (h *harness) deadLetter(t *testing.T, consumer string) *jetstream.RawStreamMsg {
	t.Helper()
	stream, err := h.env.JS.Stream(context.Background(), events.StreamDeadLetter)
	if err != nil {
		t.Fatal(err)
	}
	m, err := stream.GetLastMsgForSubject(context.Background(), events.DeadLetterSubject(consumer))
	if err != nil {
		t.Fatalf("no dead letter for %s: %v", consumer, err)
	}
	return m
}

func (h *harness) rejection(t *testing.T, checkoutID string) events.RejectedInput {
	t.Helper()
	if n := h.watch.Count(checkoutID, events.Rejected); n != 1 {
		t.Fatalf("checkout %s rejected %d times, want once", checkoutID, n)
	}
	var rej events.RejectedInput
	if err := h.watch.Wait(t, checkoutID, wait, events.Rejected).DecodePayload(&rej); err != nil {
		t.Fatal(err)
	}
	return rej
}

// failingPublisher refuses the first failures output publishes, as a stream that is
// briefly unreachable would.
type failingPublisher struct {
	jetstream.JetStream

	mu       sync.Mutex
	failures int
	refused  int
}

func (f *failingPublisher) PublishMsgAsync(msg *nats.Msg, opts ...jetstream.PublishOpt) (jetstream.PubAckFuture, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refused < f.failures {
		f.refused++
		return nil, errors.New("stream unreachable")
	}
	return f.JetStream.PublishMsgAsync(msg, opts...)
}

func (f *failingPublisher) failed() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.refused
}

func wantStopped(t *testing.T, done <-chan error) {
	t.Helper()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run returned %v, want nil", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
}

// An event of a schema version newer than this release reads (an upgraded writer not held
// back), also one whose envelope has a field this release does not know, is neither handled
// nor rejected: it is given back for an upgraded instance, and the runner stops, saying so,
// instead of holding such events until the consumer stalls. Nothing is dead-lettered; an
// instance of the newer release then takes it.
func TestStopsOnAnEventOfANewerVersion(t *testing.T) {
	for name, data := range map[string]func(events.Envelope) []byte{
		"a newer payload": func(e events.Envelope) []byte { d, _ := e.Encode(); return d },
		"a newer envelope field": func(e events.Envelope) []byte {
			d, _ := e.Encode()
			return bytes.Replace(d, []byte(`"schema_version":`), []byte(`"tenant":"eu","schema_version":`), 1)
		},
	} {
		t.Run(name, func(t *testing.T) {
			s := &step{}
			h := newHarness(t, s, nil)
			newer := events.Must("co-1", input, map[string]string{"note": "from the next release"})
			newer.SchemaVersion = events.SchemaVersion + 1
			h.publishRaw(t, data(newer), newer.ID)
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			if err := <-h.runUntil(ctx); !errors.Is(err, events.ErrNewerSchema) {
				t.Fatalf("Run returned %v, want it to stop on ErrNewerSchema", err)
			}
			s.wantCalls(t, 0)
			if n := h.watch.Count("co-1", events.Rejected); n != 0 {
				t.Errorf("%d rejections of an event of a newer version", n)
			}
			cons, err := h.env.JS.Consumer(context.Background(), events.StreamCheckout, consumer)
			if err != nil {
				t.Fatal(err)
			}
			if info, err := cons.Info(context.Background()); err != nil || info.AckFloor.Stream >= h.lastSeq {
				t.Errorf("the newer event was acked: %+v (%v)", info.AckFloor, err)
			}
			stream, err := h.env.JS.Stream(context.Background(), events.StreamDeadLetter)
			if err != nil {
				t.Fatal(err)
			}
			if info, err := stream.Info(context.Background()); err != nil || info.State.Msgs != 0 {
				t.Errorf("dead letters: %+v (%v), want none", info.State, err)
			}
		})
	}
}
