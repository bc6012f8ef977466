package runner

import (
	"context"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// holder keeps alive the messages the runner holds: taken from the consumer and not yet
// answered (acked, nakked or terminated), whether waiting in a lane or being handled. The
// consumer's AckWait is short, so that the messages of a process that died come back to
// another within seconds; a message held longer than a tick gets an InProgress every tick,
// which resets its AckWait on the server without counting as a delivery. A crash (a hook's
// error) stops the heartbeats, as a dead process's stop.
type holder struct {
	every time.Duration // a quarter of AckWait: a message's first heartbeat comes within half of it

	mu      sync.Mutex
	msgs    map[*heldMsg]bool // true once held for a whole tick
	stopped bool
	done    chan struct{}
}

func newHolder(ackWait time.Duration) *holder {
	h := &holder{every: ackWait / 4, msgs: map[*heldMsg]bool{}, done: make(chan struct{})}
	go h.beat()
	return h
}

// hold registers msg and returns it wrapped: its acks release it.
func (h *holder) hold(msg jetstream.Msg) *heldMsg {
	m := &heldMsg{Msg: msg, h: h}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.stopped {
		h.msgs[m] = false
	}
	return m
}

// release stops the heartbeats of m. Taking the lock orders it after a heartbeat being
// sent: the answer that follows reaches the server after it.
func (h *holder) release(m *heldMsg) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.msgs, m)
}

// count is how many messages are held.
func (h *holder) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.msgs)
}

// stop ends every heartbeat: the messages still held are left to be redelivered after
// AckWait. It may be called more than once.
func (h *holder) stop() {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.stopped {
		h.stopped = true
		clear(h.msgs)
		close(h.done)
	}
}

// beat sends InProgress, every tick, for the messages held since the tick before: most
// messages are answered within milliseconds and never need one.
func (h *holder) beat() {
	t := time.NewTicker(h.every)
	defer t.Stop()
	for {
		select {
		case <-h.done:
			return
		case <-t.C:
		}
		h.mu.Lock()
		for m, old := range h.msgs {
			if old {
				_ = m.Msg.InProgress() // a lost one is covered by the next: AckWait is four ticks
			}
			h.msgs[m] = true
		}
		h.mu.Unlock()
	}
}

// heldMsg is a message the holder keeps alive until it is answered.
type heldMsg struct {
	jetstream.Msg
	h      *holder
	answer answer // set by the lane that answers it, read by that lane after (metrics.go)
}

func (m *heldMsg) Ack() error {
	m.h.release(m)
	m.answer = answerAck
	return m.Msg.Ack()
}

func (m *heldMsg) DoubleAck(ctx context.Context) error {
	m.h.release(m)
	m.answer = answerAck
	return m.Msg.DoubleAck(ctx)
}

func (m *heldMsg) Nak() error {
	m.h.release(m)
	m.answer = answerNak
	return m.Msg.Nak()
}

func (m *heldMsg) NakWithDelay(delay time.Duration) error {
	m.h.release(m)
	m.answer = answerNak
	return m.Msg.NakWithDelay(delay)
}

func (m *heldMsg) Term() error {
	m.h.release(m)
	m.answer = answerTerm
	return m.Msg.Term()
}

func (m *heldMsg) TermWithReason(reason string) error {
	m.h.release(m)
	m.answer = answerTerm
	return m.Msg.TermWithReason(reason)
}
