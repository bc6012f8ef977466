package chaos

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/nats-io/nats.go/jetstream"
)

// terminalSubjects are the events that end a checkout.
var terminalSubjects = []string{string(events.Completed), string(events.Failed)}

// terminals follows the terminal events in the stream, so that workers know when their
// checkout ended. An ordered consumer starts again where it was after a server restart.
// (Reconciliation reads the stream again from the start rather than trust this view.)
type terminals struct {
	consume jetstream.ConsumeContext

	mu      sync.Mutex
	seen    map[string]events.Envelope // the first terminal event of each checkout
	waiters map[string]chan struct{}
}

func watchTerminals(ctx context.Context, js jetstream.JetStream) (*terminals, error) {
	t := &terminals{seen: map[string]events.Envelope{}, waiters: map[string]chan struct{}{}}
	cons, err := js.OrderedConsumer(ctx, events.StreamCheckout, jetstream.OrderedConsumerConfig{FilterSubjects: terminalSubjects})
	if err != nil {
		return nil, err
	}
	t.consume, err = cons.Consume(func(m jetstream.Msg) {
		if e, err := events.Decode(m.Subject(), m.Data()); err == nil {
			t.record(e)
		}
	})
	return t, err
}

func (t *terminals) stop() { t.consume.Stop() }

func (t *terminals) record(e events.Envelope) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, seen := t.seen[e.CheckoutID]; !seen {
		t.seen[e.CheckoutID] = e
		if ch, ok := t.waiters[e.CheckoutID]; ok {
			close(ch)
		}
	}
}

// terminal is the checkout's terminal event, once ended is closed.
func (t *terminals) terminal(id string) events.Envelope {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.seen[id]
}

// ended is closed once the checkout has a terminal event.
func (t *terminals) ended(id string) <-chan struct{} {
	t.mu.Lock()
	defer t.mu.Unlock()
	ch, ok := t.waiters[id]
	if !ok {
		ch = make(chan struct{})
		t.waiters[id] = ch
		if _, seen := t.seen[id]; seen {
			close(ch)
		}
	}
	return ch
}

// waitAll waits until every planned checkout ended, or limit.
func (t *terminals) waitAll(ctx context.Context, plans []planned, limit time.Duration) {
	deadline := time.After(limit)
	for _, p := range plans {
		select {
		case <-t.ended(p.ID):
		case <-deadline:
			return
		case <-ctx.Done():
			return
		}
	}
}

// readStream reads every event on subjects in a stream, from the start, by checkout. A
// re-driven dead letter's copy (events.HeaderRedriveOf) is its original event again: read once.
func readStream(ctx context.Context, js jetstream.JetStream, stream string, subjects ...string) (map[string][]events.Envelope, error) {
	out := map[string][]events.Envelope{}
	err := eachInStream(ctx, js, stream, subjects, func(m jetstream.Msg) error {
		if m.Headers().Get(events.HeaderRedriveOf) != "" {
			return nil
		}
		e, err := events.Decode(m.Subject(), m.Data())
		if err != nil {
			return err
		}
		out[e.CheckoutID] = append(out[e.CheckoutID], e)
		return nil
	})
	return out, err
}

// eachInStream calls f with every message on subjects in a stream, from the start, in order.
func eachInStream(ctx context.Context, js jetstream.JetStream, stream string, subjects []string, f func(jetstream.Msg) error) error {
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: subjects})
	if err != nil {
		return err
	}
	for {
		batch, err := cons.Fetch(500, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			return err
		}
		n := 0
		var last jetstream.Msg
		for m := range batch.Messages() {
			n++
			last = m
			if err := f(m); err != nil {
				return err
			}
		}
		if err := batch.Error(); err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if md, err := last.Metadata(); err == nil && md.NumPending == 0 {
			return nil
		}
	}
}

// readQueue reads every message of a work-queue stream (which takes no ordered consumer)
// one by one, by checkout, leaving them in the queue.
func readQueue(ctx context.Context, js jetstream.JetStream, name string) (map[string][]events.Envelope, error) {
	out := map[string][]events.Envelope{}
	err := eachStored(ctx, js, name, func(m *jetstream.RawStreamMsg) error {
		e, err := events.Decode(m.Subject, m.Data)
		if err != nil {
			return err
		}
		out[e.CheckoutID] = append(out[e.CheckoutID], e)
		return nil
	})
	return out, err
}

// eachStored calls f with every message a stream holds, one by one by sequence, leaving
// them there: for any stream, a work queue too.
func eachStored(ctx context.Context, js jetstream.JetStream, name string, f func(*jetstream.RawStreamMsg) error) error {
	stream, err := js.Stream(ctx, name)
	if err != nil {
		return err
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return err
	}
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return err
		}
		if err := f(m); err != nil {
			return err
		}
	}
	return nil
}
