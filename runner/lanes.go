package runner

import (
	"bytes"
	"context"
	"hash/fnv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/nats-io/nats.go/jetstream"
)

// lanes handle messages concurrently, each checkout's in one lane, in stream order: events
// of different checkouts overlap their commits and publish acks, while one checkout's
// events are handled one after the other, as with a single lane. A message waiting in a
// lane is not acked yet: the holder keeps it alive with heartbeats, and if the process dies
// it is redelivered like any other.
type lanes struct {
	r      *Runner
	ctx    context.Context
	stop   func() // stops the consumer's iterator: no more messages come
	held   *holder
	queues []chan *heldMsg
	// slots bounds the messages held at once across the lanes. While they are all taken the
	// runner takes no more, and the rest stay in the consumer for other instances.
	slots chan struct{}
	excl  sync.Mutex // one exclusive at a time: two taking slots at once would wait on each other

	busy    atomic.Int32 // lanes handling a message now
	wg      sync.WaitGroup
	closed  sync.Once
	mu      sync.Mutex
	crashed error // the first simulated crash (a hook's error): nothing more is handled
}

// laneQueue is how many messages may wait per lane, on average: a lane busy with a slow
// checkout may take more, as long as the others leave room.
const laneQueue = 4

func (r *Runner) startLanes(ctx context.Context, stop func()) *lanes {
	n := max(r.cfg.Concurrency, 1)
	l := &lanes{r: r, ctx: ctx, stop: stop, held: newHolder(r.cfg.AckWait), slots: make(chan struct{}, n*(laneQueue+1))}
	l.queues = make([]chan *heldMsg, n)
	for i := range l.queues {
		q := make(chan *heldMsg, cap(l.slots)) // never full: the slots run out first
		l.queues[i] = q
		l.wg.Go(func() {
			for msg := range q {
				if l.err() == nil {
					l.handle(msg)
				} // else the process is "dead": leave it unacked, to be redelivered
				<-l.slots
			}
		})
	}
	r.meters.lanes.track(l, r.cfg.Name)
	return l
}

// sendAfter hands a message to its checkout's lane, once a slot is free, after before (when
// set) ran with no message being handled. It returns the simulated crash that stopped the
// runner, if one did. A message whose before failed is handed back to be delivered again.
func (l *lanes) sendAfter(msg jetstream.Msg, before func() error) error {
	if err := l.err(); err != nil {
		return err
	}
	held := l.held.hold(msg) // kept alive from now on, also while waiting for a slot
	if before != nil {
		if err := l.exclusive(before); err != nil {
			l.r.log.Warn("not handled: what must come first failed; delivered again in a second", "subject", msg.Subject(), "err", err)
			_ = held.NakWithDelay(time.Second)
			return nil
		}
	}
	l.slots <- struct{}{}
	l.queues[laneOf(l.r.checkoutKey(msg), len(l.queues))] <- held
	return nil
}

// checkoutKey is what a message's lane is chosen by: its checkout ID. An envelope names it;
// a message with a decoder of its own (the public request) is decoded for it, as its
// checkout ID may be derived from the message, and its checkout's next events must follow
// it in the same lane. Undecodable input goes to the lane of its bytes: it has no checkout.
func (r *Runner) checkoutKey(msg jetstream.Msg) []byte {
	if !r.ownDecoder[msg.Subject()] {
		if id := envelopeCheckoutID(msg.Data()); id != nil {
			return id
		}
		return msg.Data()
	}
	meta, err := msg.Metadata()
	if err != nil {
		return msg.Data()
	}
	from := events.Origin{MsgID: msg.Headers().Get(jetstream.MsgIDHeader), StreamSeq: meta.Sequence.Stream, Stored: meta.Timestamp}
	in, err := r.routes[msg.Subject()].Decode(msg.Subject(), msg.Data(), from)
	if err != nil || in.CheckoutID == "" {
		return msg.Data()
	}
	return []byte(in.CheckoutID)
}

func (l *lanes) handle(msg *heldMsg) {
	l.busy.Add(1)
	defer l.busy.Add(-1)
	if err := l.r.process(l.ctx, msg); err != nil {
		l.held.stop() // a dead process sends no heartbeats
		l.mu.Lock()
		if l.crashed == nil {
			l.crashed = err
		}
		l.mu.Unlock()
		l.stop()
	}
}

// close waits for the messages already in the lanes, and returns the crash if one happened.
// It may be called more than once.
func (l *lanes) close() error {
	l.closed.Do(func() {
		for _, q := range l.queues {
			close(q)
		}
		l.wg.Wait()
		l.held.stop()
		l.r.meters.lanes.untrack(l)
	})
	return l.err()
}

// exclusive runs fn while no message is being handled or waits in a lane: it takes every
// slot, as the lanes free them, and gives them back after.
func (l *lanes) exclusive(fn func() error) error {
	l.excl.Lock()
	defer l.excl.Unlock()
	for range cap(l.slots) {
		l.slots <- struct{}{}
	}
	defer func() {
		for range cap(l.slots) {
			<-l.slots
		}
	}()
	return fn()
}

func (l *lanes) err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.crashed
}

// laneOf picks the lane of a checkout key.
func laneOf(key []byte, n int) int {
	h := fnv.New32a()
	_, _ = h.Write(key)
	return int(h.Sum32() % uint32(n))
}

// envelopeCheckoutID reads an envelope's checkout_id without decoding it all: the field
// comes before the payload in every envelope the runners write. Nil when absent.
func envelopeCheckoutID(data []byte) []byte {
	const field = `"checkout_id":"`
	i := bytes.Index(data, []byte(field))
	if i < 0 {
		return nil
	}
	rest := data[i+len(field):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return nil
	}
	return rest[:j]
}
