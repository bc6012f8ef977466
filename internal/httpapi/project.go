package httpapi

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/topology"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// ConsumerName is the API's durable consumer on the CHECKOUT stream.
const ConsumerName = "api"

// batchSize bounds how many events go into one bbolt commit.
const batchSize = 256

// Projector keeps the Store in step with the CHECKOUT stream: one durable consumer, each
// fetched batch committed in one transaction, then acked. A crash before the ack
// redelivers the batch, and the store skips what it has.
type Projector struct {
	JS    jetstream.JetStream
	Store *Store
	Log   *slog.Logger
	Hub   *Hub
	Keys  *events.Keys // nil: events are not checked
}

// ConsumerConfig is the read model's durable consumer: every checkout event, acked in
// batches (the setup role creates it: topology.Consumers).
func ConsumerConfig() jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        ConsumerName,
		Description:    "the HTTP API's read model of every checkout",
		FilterSubjects: []string{events.CheckoutSubjects},
		AckPolicy:      jetstream.AckAllPolicy,
		AckWait:        30 * time.Second,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		MaxAckPending:  4 * batchSize,
	}
}

// Run consumes until ctx is cancelled.
func (p *Projector) Run(ctx context.Context) error {
	cons, err := topology.Bind(ctx, p.JS, events.StreamCheckout, ConsumerConfig())
	if ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return fmt.Errorf("api consumer: %w", err)
	}
	if err := p.recover(ctx, cons); err != nil {
		return err
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(batchSize))
	if err != nil {
		return fmt.Errorf("api consumer: %w", err)
	}
	defer it.Stop()
	for {
		batch, err := next(ctx, it)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("api consumer: %w", err)
		}
		if err := p.apply(ctx, batch); err != nil {
			p.Log.Error("read model: apply batch", "events", len(batch), "err", err)
			// Not acked: redelivered after AckWait. Wait a little instead of spinning.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
		}
	}
}

// next waits for one message, then takes whatever else has arrived already.
func next(ctx context.Context, it jetstream.MessagesContext) ([]jetstream.Msg, error) {
	first, err := it.Next(jetstream.NextContext(ctx))
	if err != nil {
		return nil, err
	}
	batch := []jetstream.Msg{first}
	for len(batch) < batchSize {
		m, err := it.Next(jetstream.NextMaxWait(5 * time.Millisecond))
		if err != nil {
			break
		}
		batch = append(batch, m)
	}
	return batch, nil
}

// apply commits a batch and acks its last message (AckAll acks everything before it).
func (p *Projector) apply(ctx context.Context, batch []jetstream.Msg) error {
	var evs []StreamEvent
	for _, m := range batch {
		sm, err := delivered(m)
		if err != nil {
			continue
		}
		if e, ok := p.decode(sm); ok {
			evs = append(evs, e)
		}
	}
	changed, err := p.Store.Append(evs)
	if err != nil {
		return err
	}
	if err := batch[len(batch)-1].DoubleAck(ctx); err != nil {
		p.Log.Warn("read model: ack", "err", err) // redelivered and skipped
	}
	for _, id := range changed {
		p.Hub.Notify(id)
	}
	return nil
}

// stored is a message of the stream as the read model needs it, whether a consumer delivered
// it or a rebuild read it.
type stored struct {
	subject string
	header  nats.Header
	data    []byte
	seq     uint64
	at      time.Time
}

func delivered(m jetstream.Msg) (stored, error) {
	meta, err := m.Metadata()
	if err != nil {
		return stored{}, err
	}
	return stored{subject: m.Subject(), header: m.Headers(), data: m.Data(), seq: meta.Sequence.Stream, at: meta.Timestamp}, nil
}

// decode turns a stream message into an event of a checkout. What is not an event of a
// checkout (a schedule a migrated stream kept from before the timer streams, a malformed
// message, one not from its producer) is skipped: the services report those on checkout.rejected.
func (p *Projector) decode(m stored) (StreamEvent, bool) {
	if strings.HasPrefix(m.subject, string(events.LegacySchedules)+".") {
		return StreamEvent{}, false
	}
	if err := p.verify(m); err != nil {
		p.Log.Warn("read model: skip", "subject", m.subject, "seq", m.seq, "err", err)
		return StreamEvent{}, false
	}
	var env events.Envelope
	var err error
	if m.subject == string(events.Requested) {
		env = events.RequestEnvelope(m.data, events.Origin{MsgID: m.header.Get(jetstream.MsgIDHeader), StreamSeq: m.seq, Stored: m.at})
	} else if env, err = events.Decode(m.subject, m.data); err != nil {
		p.Log.Debug("read model: skip", "subject", m.subject, "seq", m.seq, "err", err)
		return StreamEvent{}, false
	}
	at := env.Time
	if at.IsZero() || env.Schedule != nil {
		// A scheduled event's Time is when it was scheduled; it happened when the server
		// fired it, which is when CHECKOUT stored it (sourced from its timer stream).
		at = m.at
	}
	return StreamEvent{CheckoutID: env.CheckoutID, Event: Event{Seq: m.seq, ID: env.ID, Type: env.Type,
		CausationID: env.CausationID, Time: at.UTC(), Payload: env.Payload}}, true
}

// verify refuses a message not from its producer (events.Keys.Verify, events.CheckScheduler).
func (p *Projector) verify(m stored) error {
	if p.Keys != nil {
		if err := p.Keys.Verify(events.Subject(m.subject), m.header.Get(events.SignerHeader), m.header.Get(events.SignatureHeader), m.data); err != nil {
			return err
		}
	}
	if m.header.Get(events.SchedulerHeader) == "" {
		return nil
	}
	env, err := events.Decode(m.subject, m.data)
	if err != nil {
		return err
	}
	return events.CheckScheduler(env, m.header.Get(events.SchedulerHeader))
}

// Hub tells the live streams of a checkout that it changed.
type Hub struct {
	mu   sync.Mutex
	subs map[string]map[chan struct{}]bool
}

// Subscribe returns a channel that receives (coalesced) a value when checkout id changes,
// and the function that ends the subscription.
func (h *Hub) Subscribe(id string) (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.subs == nil {
		h.subs = map[string]map[chan struct{}]bool{}
	}
	if h.subs[id] == nil {
		h.subs[id] = map[chan struct{}]bool{}
	}
	h.subs[id][ch] = true
	return ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		delete(h.subs[id], ch)
		if len(h.subs[id]) == 0 {
			delete(h.subs, id)
		}
	}
}

// Notify wakes the subscribers of checkout id without blocking.
func (h *Hub) Notify(id string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs[id] {
		select {
		case ch <- struct{}{}:
		default: // one pending wake-up is enough
		}
	}
}
