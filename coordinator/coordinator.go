package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/services/runner"
	"github.com/nats-io/nats.go/jetstream"
)

// maxConflicts bounds the re-read-and-retry loop on a contended key; past it the event is
// redelivered later rather than spinning.
const maxConflicts = 64

// Coordinator applies step events to the checkouts' KV state and publishes its decisions.
type Coordinator struct {
	flow events.Flow
	kv   jetstream.KeyValue
	log  *slog.Logger
}

// New opens the checkouts bucket (topology.Ensure creates it).
func New(ctx context.Context, js jetstream.JetStream, log *slog.Logger) (*Coordinator, error) {
	kv, err := js.KeyValue(ctx, events.BucketCheckouts)
	if err != nil {
		return nil, fmt.Errorf("coordinator: bucket %s: %w", events.BucketCheckouts, err)
	}
	return &Coordinator{flow: events.Checkout, kv: kv, log: log}, nil
}

// Subjects the coordinator consumes: every step outcome and compensation confirmation.
func (c *Coordinator) Subjects() []events.Subject {
	var out []events.Subject
	for _, s := range c.flow.Steps {
		out = append(out, s.Done, s.Failed)
		if s.Compensated != "" {
			out = append(out, s.Compensated)
		}
	}
	return out
}

// Runner builds the runner that feeds the coordinator.
func (c *Coordinator) Runner(js jetstream.JetStream) (*runner.Runner, error) {
	var routes []runner.Route
	for _, s := range c.Subjects() {
		routes = append(routes, runner.Route{Subject: s})
	}
	return runner.New(runner.Config{Name: events.ServiceCoordinator, Routes: routes, JS: js, Commit: c.Commit, Log: c.log})
}

// Commit applies one event to its checkout's state by compare-and-swap and returns the
// decisions to publish. It is a runner.CommitFunc.
func (c *Coordinator) Commit(ctx context.Context, in events.Envelope, seq uint64) ([]events.Envelope, error) {
	for range maxConflicts {
		st, rev, err := c.load(ctx, in.CheckoutID)
		if err != nil {
			return nil, err
		}
		if a, seen := st.Applied[in.ID]; seen {
			if a.Seq != seq {
				// A later copy: the first one's decisions were published before its ack.
				c.log.Info("dropped a copy of an event already applied", "checkout_id", in.CheckoutID, "event_id", in.ID, "stream_seq", seq, "applied_seq", a.Seq)
				return nil, nil
			}
			return c.build(st, a.Decisions, in) // redelivered: publish its decisions again
		}
		if err := st.apply(c.flow, in); err != nil {
			return nil, err
		}
		decisions := st.decide(c.flow)
		st.Applied[in.ID] = applied{Seq: seq, Decisions: decisions}
		outs, err := c.build(st, decisions, in)
		if err != nil {
			return nil, err
		}
		err = c.save(ctx, st, rev)
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			continue // someone else changed the checkout: re-read and apply again
		}
		if err != nil {
			return nil, err
		}
		if len(decisions) > 0 {
			c.log.Info("decided", "checkout_id", in.CheckoutID, "event_id", in.ID, "decisions", decisions, "status", st.Status)
		}
		return outs, nil
	}
	return nil, fmt.Errorf("checkout %s: %d conflicting updates in a row", in.CheckoutID, maxConflicts)
}

// State returns a checkout's state; found is false for an unknown checkout.
func (c *Coordinator) State(ctx context.Context, checkoutID string) (st *State, found bool, err error) {
	st, rev, err := c.load(ctx, checkoutID)
	return st, rev > 0, err
}

func (c *Coordinator) load(ctx context.Context, id string) (*State, uint64, error) {
	entry, err := c.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return newState(id), 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("load checkout %s: %w", id, err)
	}
	st := newState(id)
	if err := json.Unmarshal(entry.Value(), st); err != nil {
		return nil, 0, fmt.Errorf("decode checkout %s: %w", id, err)
	}
	return st, entry.Revision(), nil
}

func (c *Coordinator) save(ctx context.Context, st *State, rev uint64) error {
	raw, err := json.Marshal(st)
	if err != nil {
		return err
	}
	if rev == 0 {
		_, err = c.kv.Create(ctx, st.CheckoutID, raw)
	} else {
		_, err = c.kv.Update(ctx, st.CheckoutID, raw, rev)
	}
	return err
}

// build turns decisions into the events that carry them.
func (c *Coordinator) build(st *State, decisions []events.Subject, cause events.Envelope) ([]events.Envelope, error) {
	outs := make([]events.Envelope, 0, len(decisions))
	for _, d := range decisions {
		payload, err := c.payload(st, d)
		if err != nil {
			return nil, err
		}
		e, err := events.New(st.CheckoutID, d, payload)
		if err != nil {
			return nil, err
		}
		outs = append(outs, e)
	}
	runner.Stamp(outs, cause)
	return outs, nil
}

func (c *Coordinator) payload(st *State, d events.Subject) (any, error) {
	switch d {
	case events.Completed:
		done := events.CheckoutCompleted{OrderID: st.OrderID, OrderNumber: st.OrderNumber, PaymentIntentID: st.PaymentIntentID}
		if st.Quote != nil {
			done.Total, done.Currency = st.Quote.Total, st.Quote.Currency
		}
		return done, nil
	case events.Failed:
		f := st.Failure
		return events.CheckoutFailed{Step: f.Step, Code: f.Code, Message: f.Message, Compensated: st.Compensated}, nil
	}
	for _, j := range c.flow.Joins() {
		if d == j.Trigger {
			if st.Quote == nil {
				return nil, fmt.Errorf("checkout %s: join %s without a validated quote", st.CheckoutID, d)
			}
			return st.Quote, nil
		}
	}
	for _, s := range c.flow.Steps {
		if d == s.Compensate {
			return events.Compensation{Reason: fmt.Sprintf("checkout failed at %s: %s", st.Failure.Step, st.Failure.Message)}, nil
		}
	}
	return nil, fmt.Errorf("no payload for decision %s", d)
}
