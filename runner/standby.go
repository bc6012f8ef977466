package runner

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jetcheckout/jetcheckout/internal/jsread"
	"github.com/jetcheckout/jetcheckout/internal/store"
	"github.com/jetcheckout/jetcheckout/internal/topology"
	"github.com/nats-io/nats.go/jetstream"
	bolt "go.etcd.io/bbolt"
)

// Instances of a rebuildable service (Config.PinnedTTL) share its durable consumer, each
// with its own file: the consumer has one priority group with the pinned-client policy, so
// the server gives messages to one instance at a time (the pinned one) and the others' pulls
// wait. An instance that stops pulling (dead, frozen, cut off) loses the pin after
// PinnedTTL, and the server pins the next instance whose pull is waiting. Every message
// carries the pin's ID (Nats-Pin-Id), and a pull with an ID that is no longer the pin's is
// refused (423), so an old holder that comes back gets nothing more: it is a standby.
//
// Each view keeps the stream sequence up to which it has applied every message
// (store.AppliedIn). An instance that sees a new pin ID on a message brings its view up to
// date before handling it: with no message being handled (every lane slot taken), it replays
// its subjects from its mark up to the last message the consumer delivered, through Rebuild
// (what the view recorded already is a no-op), as a lost view is rebuilt. A standby keeps its
// view warm meanwhile: every WarmEvery it replays up to the consumer's ack floor (every
// message at or below it has its outputs in the stream), so a takeover replays seconds. The
// holder moves its mark to the ack floor instead: every message above its catch-up was given
// to it alone while its pin held, and acked after its commit. What its catch-up delivered
// above the ack floor is replayed once more when the floor passes it: a route with Replay
// whose outcome was not in the stream yet was left to live handling, and the old holder may
// have finished it (so the mark goes only to the ack floor at a catch-up).
//
// A message the old holder was handling when it lost the pin may still be committed to its
// own view and its outputs published and acked: the outputs carry the same Nats-Msg-Id as
// the new holder's, so the stream drops the second copy, and consumers dedupe by event ID.

// defaultWarmEvery is how often a standby replays its view up to the ack floor.
const defaultWarmEvery = 2 * time.Second

// pinHeader carries the pin's ID on every message of a pinned-client consumer.
const pinHeader = "Nats-Pin-Id"

// consumerConfig is the consumer the runner binds to.
func (r *Runner) consumerConfig() jetstream.ConsumerConfig {
	cfg := topology.StepConsumer(r.cfg.Name, r.Subjects(), r.cfg.AckWait)
	if r.pinned() {
		cfg = topology.Pinned(cfg, r.cfg.PinnedTTL)
	}
	return cfg
}

func (r *Runner) pinned() bool { return r.cfg.PinnedTTL > 0 }

// pullOptions are the consumer's pull settings. A pinned instance keeps its pin by pulling
// again within PinnedTTL, also when idle: its pulls expire in half of it.
func (r *Runner) pullOptions() []jetstream.PullMessagesOpt {
	// A small prefetch (twice the lanes): a message buffered in the client library is not
	// held yet and gets no heartbeats; it waits there only while every lane slot is taken.
	// Heartbeats every 2s: a consumer that disappears is noticed within seconds.
	opts := []jetstream.PullMessagesOpt{jetstream.PullMaxMessages(max(prefetch, 2*r.cfg.Concurrency))}
	if !r.pinned() {
		return append(opts, jetstream.PullExpiry(10*time.Second), jetstream.PullHeartbeat(2*time.Second))
	}
	expiry := max(r.cfg.PinnedTTL/2, time.Second)
	return append(opts, jetstream.PullPriorityGroup(topology.PriorityGroup), jetstream.PullExpiry(expiry), jetstream.PullHeartbeat(min(expiry/2, 2*time.Second)))
}

// pin is the ID of the pin this instance caught its view up for ("": none yet), and the
// consumer's delivered sequence it caught up to.
type pin struct {
	mu       sync.Mutex
	id       string
	caughtUp uint64
}

func (p *pin) get() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.id
}

func (p *pin) caughtUpTo() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.caughtUp
}

func (p *pin) set(id string, caughtUp uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.id, p.caughtUp = id, caughtUp
}

// holdsPin reports whether info says this instance holds the pin it caught up for.
func (r *Runner) holdsPin(info *jetstream.ConsumerInfo) bool {
	id := r.pin.get()
	if id == "" {
		return false
	}
	for _, g := range info.PriorityGroups {
		if g.Group == topology.PriorityGroup && g.PinnedClientID == id {
			return true
		}
	}
	return false
}

// recoverPinnedView is recoverView for an instance that shares its consumer: a view that
// does not say what it applied (a new file, or one from before instances had their own) is
// rebuilt like a lost one, and its mark set to the ack floor read before the rebuild, which
// replays at least that far. A file from before views (store.Synced) is trusted instead: it
// may hold what the stream no longer does; its mark starts at 0, so its first catch-up
// replays the stream, what it handled being no-ops.
func (r *Runner) recoverPinnedView(ctx context.Context, cons jetstream.Consumer) error {
	mark, ok, err := r.applied()
	if err != nil {
		return err
	}
	switch {
	case ok && !r.fresh:
		return nil
	case !r.fresh && store.Synced(r.cfg.DB):
		return r.advanceApplied(0)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("runner %s: consumer info: %w", r.cfg.Name, err)
	}
	r.fresh = true
	if err := r.recoverView(ctx, cons); err != nil {
		return err
	}
	return r.advanceApplied(max(mark, info.AckFloor.Stream))
}

// takeover returns what must run before msg is handled: the catch-up of the view when msg
// is the first this instance gets under a new pin, nil otherwise.
func (r *Runner) takeover(ctx context.Context, cons jetstream.Consumer, msg jetstream.Msg) func() error {
	id := msg.Headers().Get(pinHeader)
	if !r.pinned() || id == "" || id == r.pin.get() {
		return nil
	}
	// A warm replay under way (slow when the stream is) would hold the catch-up back while
	// the pin, unrenewed, runs out: it stops, and the catch-up replays from the mark.
	r.warming.interrupt()
	return func() error {
		start := time.Now()
		info, err := cons.Info(ctx)
		if err != nil {
			return fmt.Errorf("consumer info: %w", err)
		}
		// The mark goes to the ack floor only: a message above it may have been left to live
		// handling (a route with Replay whose outcome is not in the stream yet).
		n, err := r.replayTo(ctx, info.AckFloor.Stream, info.Delivered.Stream, info.AckFloor.Stream)
		if err != nil {
			return err
		}
		r.pin.set(id, info.Delivered.Stream)
		r.log.Info(topology.LogHoldingPin, "replayed", n,
			"delivered", info.Delivered.Stream, "took", time.Since(start).Round(time.Millisecond))
		return nil
	}
}

// warmLoop keeps the view warm every WarmEvery until ctx ends.
func (r *Runner) warmLoop(ctx context.Context, cons jetstream.Consumer, l *lanes) {
	repeat(ctx, r.cfg.WarmEvery, func() {
		wctx := r.warming.start(ctx)
		defer r.warming.done()
		if err := r.warm(wctx, cons, l); err != nil && wctx.Err() == nil {
			r.log.Warn("keeping the view warm failed; a takeover would replay more", "err", err)
		}
	})
}

// interruptible is the warm replay under way, which a takeover stops.
type interruptible struct {
	mu     sync.Mutex
	cancel context.CancelFunc
}

func (w *interruptible) start(ctx context.Context) context.Context {
	w.mu.Lock()
	defer w.mu.Unlock()
	ctx, w.cancel = context.WithCancel(ctx)
	return ctx
}

func (w *interruptible) done() { w.interrupt() }

func (w *interruptible) interrupt() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.cancel != nil {
		w.cancel()
		w.cancel = nil
	}
}

// repeat calls fn every interval until ctx ends.
func repeat(ctx context.Context, every time.Duration, fn func()) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fn()
	}
}

// warm replays a standby's view up to the ack floor. The holder's view has everything above
// what its catch-up delivered (given to it alone while its pin held, acked after its commit):
// it replays up to the floor only what the catch-up delivered, then moves its mark.
func (r *Runner) warm(ctx context.Context, cons jetstream.Consumer, l *lanes) error {
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("consumer info: %w", err)
	}
	floor, upTo := info.AckFloor.Stream, info.AckFloor.Stream
	if r.holdsPin(info) {
		mark, _, err := r.applied()
		if err != nil || mark >= min(floor, r.pin.caughtUpTo()) {
			return errors.Join(err, r.advanceApplied(floor))
		}
		upTo = min(floor, r.pin.caughtUpTo())
	}
	return l.exclusive(func() error {
		_, err := r.replayTo(ctx, floor, upTo, floor)
		return err
	})
}

// replayTo replays the view's subjects from after its mark up to upTo, then moves the mark
// to markTo (everything up to it is then applied, or has no message on the subjects). It
// must run while no message is being handled (lanes.exclusive).
func (r *Runner) replayTo(ctx context.Context, floor, upTo, markTo uint64) (int, error) {
	mark, _, err := r.applied()
	if err != nil {
		return 0, err
	}
	// Rebuild waits for a message up to its last sequence (a replica behind): the consumer's
	// sequences may point past the last message on its subjects.
	last, err := r.lastOnSubjects(ctx)
	if err != nil {
		return 0, err
	}
	if upTo = min(upTo, last); upTo <= mark {
		return 0, r.advanceApplied(markTo)
	}
	n, err := r.Rebuild(ctx, mark+1, floor, upTo)
	if err != nil {
		return n, fmt.Errorf("replay %d to %d: %w", mark+1, upTo, err)
	}
	return n, r.advanceApplied(markTo)
}

// lastOnSubjects is the stream sequence of the newest message on the runner's subjects, as
// the stream's leader has it (a replica behind would make the replay stop short, and mark as
// applied what it did not replay).
func (r *Runner) lastOnSubjects(ctx context.Context) (uint64, error) {
	read := jsread.NewLeader(r.cfg.JS, r.cfg.Stream)
	var last uint64
	for _, subject := range r.Subjects() {
		m, err := read.Last(ctx, subject)
		if err != nil {
			return 0, fmt.Errorf("last message on %s: %w", subject, err)
		}
		if m != nil {
			last = max(last, m.Sequence)
		}
	}
	return last, nil
}

// applied is the view's mark, and whether it has one.
func (r *Runner) applied() (seq uint64, ok bool, err error) {
	err = r.cfg.DB.View(func(tx *bolt.Tx) error {
		seq, ok = store.AppliedIn(tx)
		return nil
	})
	return seq, ok, err
}

// advanceApplied moves the view's mark up to seq (never down).
func (r *Runner) advanceApplied(seq uint64) error {
	return r.cfg.DB.Update(func(tx *bolt.Tx) error { return store.AdvanceApplied(tx, seq) })
}

// stopPinned runs when the runner was asked to stop, its messages answered: the holder gives
// the pin up, so another instance takes over now rather than after PinnedTTL, and the view is
// brought up to the ack floor once more (a clean stop leaves a view that has applied
// everything acknowledged). A simulated crash does neither.
func (r *Runner) stopPinned(ctx context.Context, cons jetstream.Consumer, l *lanes) {
	if ctx.Err() == nil || l.err() != nil {
		return
	}
	stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if info, err := cons.Info(stopCtx); err == nil && r.holdsPin(info) {
		if err := r.unpin(stopCtx); err != nil {
			r.log.Warn("giving the pin up at stop failed: another instance takes over after PinnedTTL", "err", err)
		} else {
			r.log.Info("gave the consumer's pin up")
		}
	}
	if err := r.warm(stopCtx, cons, l); err != nil {
		r.log.Warn("bringing the view up to the ack floor at stop failed; the next start replays it", "err", err)
	}
}

func (r *Runner) unpin(ctx context.Context) error {
	stream, err := r.cfg.JS.Stream(ctx, r.cfg.Stream)
	if err != nil {
		return err
	}
	r.pin.set("", 0)
	return stream.UnpinConsumer(ctx, r.cfg.Name, topology.PriorityGroup)
}
