package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/store"
	bolt "go.etcd.io/bbolt"
)

// record is what the runner keeps per handled event ID. Outputs are the events' wire form
// (the JSON of their envelopes), encoded once for the record and for the publish.
type record struct {
	Seq     uint64            `json:"seq"`
	Outputs []json.RawMessage `json:"outputs,omitempty"`
}

// encode is the record's JSON as json.Marshal writes it. The outputs are compact JSON
// already (from json.Marshal), so they are copied rather than compacted again, which scans
// every byte of them.
func (rec record) encode() []byte {
	n := len(`{"seq":,"outputs":[]}`) + 20
	for _, d := range rec.Outputs {
		n += len(d) + 1
	}
	b := append(make([]byte, 0, n), `{"seq":`...)
	b = strconv.AppendUint(b, rec.Seq, 10)
	if len(rec.Outputs) > 0 {
		b = append(b, `,"outputs":[`...)
		for i, d := range rec.Outputs {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(b, d...)
		}
		b = append(b, ']')
	}
	return append(b, '}')
}

// wire encodes outs for the record and the publish.
func wire(outs []events.Envelope) ([]json.RawMessage, error) {
	if len(outs) == 0 {
		return nil, nil
	}
	data := make([]json.RawMessage, len(outs))
	for i, e := range outs {
		var err error
		if data[i], err = e.Encode(); err != nil {
			return nil, err
		}
	}
	return data, nil
}

// unwire decodes a record's outputs, to publish them again.
func unwire(data []json.RawMessage) ([]events.Envelope, error) {
	outs := make([]events.Envelope, len(data))
	for i, d := range data {
		if err := json.Unmarshal(d, &outs[i]); err != nil {
			return nil, fmt.Errorf("recorded output %d: %w", i, err)
		}
	}
	return outs, nil
}

type attemptKey struct{}

type sequenceKey struct{}

// withSequence is the context of a handler of the message at stream sequence seq.
func withSequence(ctx context.Context, seq uint64) context.Context {
	return context.WithValue(ctx, sequenceKey{}, seq)
}

// Sequence is the stream sequence of the message a handler runs for (0 outside a runner):
// the same at every delivery and in a replay, so a handler may derive numbers from it.
func Sequence(ctx context.Context) uint64 {
	n, _ := ctx.Value(sequenceKey{}).(uint64)
	return n
}

// WithAttempt is the context the runner gives a handler or CommitFunc on its message's n-th
// delivery (see Attempt); tests of handlers use it to stand for the runner.
func WithAttempt(ctx context.Context, n int) context.Context {
	return context.WithValue(ctx, attemptKey{}, n)
}

// Attempt is which delivery of its message a handler or CommitFunc is running for: 1 the
// first time. A handler waiting for an event that should come first uses it to tell "not
// yet" from "never".
func Attempt(ctx context.Context) int {
	n, _ := ctx.Value(attemptKey{}).(int)
	return n
}

// apply hands the event to the service's store of state: the consumer's own CommitFunc, or
// the route's handler in a bbolt transaction. It returns the outputs and, when it has
// encoded them, their wire form (nil otherwise), or Unchanged when nothing was committed.
func (r *Runner) apply(ctx context.Context, route Route, in events.Envelope, seq uint64) ([]events.Envelope, []json.RawMessage, error) {
	if r.cfg.Commit != nil {
		outs, err := r.cfg.Commit(ctx, in, seq)
		return outs, nil, err
	}
	handle := route.Handle
	if route.Call != nil {
		var err error
		if handle, err = r.call(ctx, route, in); err != nil {
			return nil, nil, err
		}
	}
	return r.commit(ctx, in, seq, handle)
}

// call makes a Call route's calls, with no transaction open, and returns the handler that
// records them. An event handled already makes no call: commit finds its record and does
// what it does for any handled event.
func (r *Runner) call(ctx context.Context, route Route, in events.Envelope) (handle Handler, err error) {
	if handled, err := Handled(r.cfg.DB, in.ID); err != nil || handled {
		return notAgain, err
	}
	defer recovered(&err, "call")
	if handle, err = route.Call(ctx, in); err != nil {
		return nil, err
	}
	return r.wrap(route.Subject, handle), nil
}

// notAgain stands for the handler of an event handled already, which commit never runs.
func notAgain(context.Context, *bolt.Tx, events.Envelope) ([]events.Envelope, error) {
	return nil, errors.New("the event's record went while it was handled again; retrying")
}

// wrap applies the runner's middleware to a route's handler.
func (r *Runner) wrap(route events.Subject, handle Handler) Handler {
	for i := len(r.cfg.Middleware) - 1; i >= 0; i-- {
		handle = r.cfg.Middleware[i](route, handle)
	}
	return handle
}

// commit runs handle and records its outputs in one transaction, or returns what to
// publish for an event already handled, with the outputs' wire form.
func (r *Runner) commit(ctx context.Context, in events.Envelope, seq uint64, handle Handler) ([]events.Envelope, []json.RawMessage, error) {
	var outs []events.Envelope
	var data []json.RawMessage
	err := r.cfg.DB.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(processedBucket)
		var rec record
		found, err := store.Get(b, in.ID, &rec)
		if err != nil {
			return err
		}
		if found {
			if rec.Seq == seq {
				// redelivered: its outputs may not have reached the stream
				data = rec.Outputs
				outs, err = unwire(data)
				return err
			}
			r.log.Info("dropped a copy of an event already handled", "checkout_id", in.CheckoutID, "event_id", in.ID, "stream_seq", seq, "handled_seq", rec.Seq)
			return nil
		}
		outs, err = recovering(handle)(ctx, tx, in)
		if err != nil {
			return err
		}
		if hook := r.cfg.Hooks.BeforeCommit; hook != nil {
			if err := hook(in); err != nil {
				return &stop{err} // the process "dies" with the transaction rolled back
			}
		}
		Stamp(outs, in)
		if data, err = wire(outs); err != nil {
			return err
		}
		if err := index(tx, in.ID, time.Now()); err != nil {
			return err
		}
		return b.Put([]byte(in.ID), record{Seq: seq, Outputs: data}.encode())
	})
	return outs, data, err
}

// recovering is the innermost middleware of every handler the runner runs, live or in a
// replay: a panic becomes an error, so the message is retried (and, if it keeps failing,
// given up or announced) instead of crash-looping the process.
func recovering(handle Handler) Handler {
	return func(ctx context.Context, tx *bolt.Tx, in events.Envelope) (outs []events.Envelope, err error) {
		defer recovered(&err, "handler")
		return handle(ctx, tx, in)
	}
}

// recovered, deferred, turns a panic of what into *err.
func recovered(err *error, what string) {
	if p := recover(); p != nil {
		*err = fmt.Errorf("%s panicked: %v\n%s", what, p, debug.Stack())
	}
}

// recordFailure records, as the outcome of in, the failure of its step: the handler does
// not run. A redelivery publishes the same failure again.
func (r *Runner) recordFailure(in events.Envelope, seq uint64, f events.StepFailure) ([]events.Envelope, []json.RawMessage, error) {
	failed, _ := r.cfg.Flow.Step(f.Step)
	return r.commit(context.Background(), in, seq, func(context.Context, *bolt.Tx, events.Envelope) ([]events.Envelope, error) {
		return []events.Envelope{events.Must(in.CheckoutID, failed.Failed, f)}, nil
	})
}

// Stamp fills in what outputs inherit from the event that caused them (its ID as their
// causation, its re-drive in their IDs), and the time they are published at unless set
// already (a replay sets the time the stream has).
func Stamp(outs []events.Envelope, cause events.Envelope) {
	now := time.Now().UTC()
	redriven := events.RedriveSuffix(cause.ID) != ""
	for i := range outs {
		outs[i].CausationID = cause.ID
		if redriven && outs[i].Schedule == nil && strings.HasPrefix(string(outs[i].Type), "checkout.") {
			// A step run again by a re-drive answers with events of its own. Not the pick on
			// WAREHOUSE: the stream dedupes the one pick of an order by its ID.
			outs[i].ID = events.OutputID(outs[i].ID, cause.ID)
		}
		if outs[i].Time.IsZero() {
			outs[i].Time = now
		}
		if outs[i].CheckoutID == "" {
			outs[i].CheckoutID = cause.CheckoutID
		}
	}
}

// Handled reports whether the runner on db keeps a record of the event: it was handled
// and committed, and a copy of it will be dropped. An event that changed nothing
// (Unchanged) leaves none.
func Handled(db *bolt.DB, eventID string) (found bool, err error) {
	err = db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(processedBucket)
		found = b != nil && b.Get([]byte(eventID)) != nil
		return nil
	})
	return found, err
}

// EventTime is when in happened, for what a handler stores or emits: the event's own time,
// so a replay rebuilds the same view (the process clock only for an event without one).
func EventTime(in events.Envelope) time.Time {
	if in.Time.IsZero() {
		return time.Now().UTC()
	}
	return in.Time.UTC()
}
