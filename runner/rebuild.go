package runner

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/jsread"
	"github.com/nats-io/nats.go/jetstream"
	bolt "go.etcd.io/bbolt"
)

// A view is lost when the runner starts on a new bbolt file (its buckets did not exist)
// while its durable consumer has had messages delivered: the data directory was deleted, or
// the machine is gone. The consumer carries on after what it was acked for, so without a
// rebuild everything the view held before is silently missing.
//
// With Config.Rebuild (a service whose view is a pure function of the events it consumes)
// the runner first replays, in stream order, every message of its subjects up to the last
// one the consumer delivered, through the same decoding and signature check and the routes'
// handlers, committing the view and the handled-event records as live handling does, and
// publishing nothing: the outputs are in the stream already. It replays up to the last
// delivered message, not only to the ack floor, because with Concurrency above 1 messages
// above the floor may be acked already and never come back; those that do come back
// (unacked ones) find their record and republish its outputs, as after a crash.
//
// What live handling decided from outside the event is taken from the stream: a step
// trigger that the runner gave up on or refused as expired (its failure, caused by the
// trigger, with a code only the runner gives, is in the stream) gets that failure recorded
// again, and the handler does not run. Each output is looked up in the stream by its ID
// (from the input on, on its subject): it takes the stream's time, so the record is the one
// live handling wrote, and an output that is missing or differs is logged as an error
// (determinism: the handler or its configuration changed, or it reads a clock).
//
// A route whose answer does not follow from the input and the view (Route.Outcomes and
// Replay: an outside call, or the last unit of stock going to whichever checkout committed
// first) is not run: its outputs in the stream are its outcome, applied to the view by its
// Replay and recorded as the input's outputs, with the timers Route.Scheduled says the
// handler set alongside (the stream holds those where a rebuild cannot look them up). One whose outcome is not in the stream is left
// to the live consumer when the input is above the ack floor (its delivery comes back).

// rebuildingBucket marks a rebuild under way: a runner stopped in the middle (or killed)
// finds it and replays again, the messages replayed already being no-ops.
var rebuildingBucket = []byte("runner.rebuilding")

// recoverView rebuilds or reports a lost view; it runs before the consumer is read.
func (r *Runner) recoverView(ctx context.Context, cons jetstream.Consumer) error {
	if !r.fresh || r.cfg.DB == nil {
		return nil
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("runner %s: consumer info: %w", r.cfg.Name, err)
	}
	floor, last := info.AckFloor.Stream, info.Delivered.Stream
	switch {
	case last == 0:
		return r.endRecovery() // a new consumer: nothing was handled, nothing is lost
	case !r.cfg.Rebuild:
		r.log.Error("VIEW LOST: this service's data file is new but its consumer has handled messages before; "+
			"its view cannot be rebuilt from the stream (it records calls to the outside world, or requests), "+
			"so what it held is gone and it goes on from the consumer's position", "ack_floor", floor, "delivered", last)
		return r.endRecovery()
	}
	r.log.Warn("view lost: rebuilding it from the stream before consuming", "ack_floor", floor, "delivered", last)
	start := time.Now()
	from, err := r.rebuildFrom(ctx, last)
	if err != nil {
		return fmt.Errorf("runner %s: start the rebuild: %w", r.cfg.Name, err)
	}
	n, err := r.Rebuild(ctx, from, floor, last)
	if err != nil {
		return fmt.Errorf("runner %s: rebuild the view: %w", r.cfg.Name, err)
	}
	if err := r.endRecovery(); err != nil {
		return err
	}
	r.log.Warn("view rebuilt from the stream", "messages", n, "from_seq", from, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// endRecovery removes the mark New left on a new file, once its view is rebuilt or known to
// need none.
func (r *Runner) endRecovery() error {
	err := r.cfg.DB.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(rebuildingBucket) == nil {
			return nil
		}
		return tx.DeleteBucket(rebuildingBucket)
	})
	if err != nil {
		return fmt.Errorf("runner %s: end the view's recovery: %w", r.cfg.Name, err)
	}
	r.fresh = false
	return nil
}

// Rebuild replays the runner's subjects from stream sequence from (1, or after a restored
// snapshot) up to last into its file (see recoverView) and returns how many messages it
// replayed. Outputs missing from the stream are errors for inputs at or below floor (acked: their outputs
// were stored), and expected above it. It publishes nothing.
func (r *Runner) Rebuild(ctx context.Context, from, floor, last uint64) (int, error) {
	js, err := r.cfg.JS.Stream(ctx, r.cfg.Stream)
	if err != nil {
		return 0, err
	}
	if first := js.CachedInfo().State.FirstSeq; first > from {
		r.log.Warn("the stream no longer holds its messages before this sequence: the rebuilt view lacks what they did", "first_seq", first)
	}
	read := jsread.NewLeader(r.cfg.JS, r.cfg.Stream)
	stream := newOutputIndex(read, r.genuine)
	// A merge of one cursor per subject, each read from the leader, its next message at a time.
	next := map[string]*jetstream.RawStreamMsg{}
	for _, subject := range slices.Sorted(maps.Keys(r.routes)) {
		if next[subject], err = read.Next(ctx, subject, from); err != nil {
			return 0, err
		}
	}
	n, done, behind := 0, from-1, 0
	for {
		var m *jetstream.RawStreamMsg
		for _, c := range next {
			if c != nil && (m == nil || c.Sequence < m.Sequence) {
				m = c
			}
		}
		if m == nil && done < last {
			// The consumer was given a message at last, which the leader has; a leader
			// elected since may not have it yet. Ask again, for a while.
			if behind++; behind > replicaWaits {
				r.log.Error("replay: the stream did not return the messages up to the last one the consumer was given; the rebuilt view may lack them",
					"replayed_to", done, "delivered", last)
				return n, nil
			}
			select {
			case <-ctx.Done():
				return n, ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
			for subject := range next {
				if next[subject], err = read.Next(ctx, subject, done+1); err != nil {
					return n, err
				}
			}
			continue
		}
		if m == nil || m.Sequence > last {
			return n, nil
		}
		if err := r.replay(ctx, stream, m, floor); err != nil {
			return n, err
		}
		n, done = n+1, m.Sequence
		if next[m.Subject], err = read.Next(ctx, m.Subject, m.Sequence+1); err != nil {
			return n, err
		}
	}
}

// replicaWaits is how many times (100 ms apart) the replay asks again for messages a new
// leader of the stream may not have yet.
const replicaWaits = 50

// genuine reports whether m was signed by its subject's producer (always, without Keys): a
// rebuild takes only such messages for an input's outputs.
func (r *Runner) genuine(m *jetstream.RawStreamMsg) bool {
	return r.cfg.Keys == nil || r.cfg.Keys.Verify(events.Subject(m.Subject), m.Header.Get(events.SignerHeader), m.Header.Get(events.SignatureHeader), m.Data) == nil
}

// replay applies one stored message as live handling did, publishing nothing. It returns
// an error only when the replay cannot go on (the file or the stream fails); a message the
// handler refuses now is logged and skipped, as live handling would have rejected it.
func (r *Runner) replay(ctx context.Context, stream *outputIndex, m *jetstream.RawStreamMsg, floor uint64) error {
	route := r.routes[m.Subject]
	in, err := r.decodeRaw(route, m.Subject, m.Header, m.Data, m.Sequence, m.Time)
	if errors.Is(err, events.ErrNewerSchema) {
		return fmt.Errorf("replay at stream sequence %d: %w", m.Sequence, err) // a view without it would be wrong
	}
	if err != nil {
		r.log.Info("replay: skipped a message live handling rejected", "subject", m.Subject, "stream_seq", m.Sequence, "err", err)
		return nil
	}
	handle, err := r.replayed(ctx, stream, route, in, m.Sequence, floor)
	if err != nil || handle == nil {
		return err
	}
	var lookupErr error
	checked := func(ctx context.Context, tx *bolt.Tx, in events.Envelope) ([]events.Envelope, error) {
		outs, err := handle(ctx, tx, in)
		if err == nil && route.Replay == nil {
			// A read of the stream that failed aborts the commit: the record would carry
			// outputs not matched with (nor timed from) their stored copies.
			lookupErr = r.checkOutputs(ctx, stream, in, m.Sequence, floor, outs)
			err = lookupErr
		}
		return outs, err
	}
	_, _, err = r.commit(withSequence(WithAttempt(ctx, 1), m.Sequence), in, m.Sequence, checked)
	switch {
	case lookupErr != nil:
		return lookupErr
	case err == nil || errors.Is(err, Unchanged):
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case isPermanent(err) || errors.Is(err, events.ErrMalformed):
		r.log.Info("replay: skipped a message the handler refuses for good, as live handling did", "checkout_id", in.CheckoutID,
			"event_id", in.ID, "subject", m.Subject, "stream_seq", m.Sequence, "err", err)
		return nil
	}
	r.log.Error("replay: the handler failed on a message live handling got past; skipped", "checkout_id", in.CheckoutID,
		"event_id", in.ID, "subject", m.Subject, "stream_seq", m.Sequence, "err", err)
	return nil
}

// replayed is what a replay runs for the message at seq: the route's handler; or the
// failure the runner recorded instead of running it; or, for a route with Replay, its
// recorded outcome applied. Nil when the message is left to live handling: a route with
// Replay whose outcome is not in the stream, above the ack floor (the handler may not have
// finished; its delivery will come back).
func (r *Runner) replayed(ctx context.Context, stream *outputIndex, route Route, in events.Envelope, seq, floor uint64) (Handler, error) {
	if step, ok := r.steps[string(route.Subject)]; ok {
		given, err := r.givenUp(ctx, stream, in, seq, step)
		if err != nil {
			return nil, err
		}
		if given != nil {
			return func(context.Context, *bolt.Tx, events.Envelope) ([]events.Envelope, error) {
				return []events.Envelope{*given}, nil
			}, nil
		}
	}
	if route.Replay == nil {
		return route.Handle, nil
	}
	recorded, err := r.recordedOutcomes(ctx, stream, route, in, seq)
	if err != nil {
		return nil, err
	}
	if len(recorded) == 0 && seq > floor {
		r.log.Info("replay: left to live handling: its outcome is not in the stream yet", "checkout_id", in.CheckoutID,
			"event_id", in.ID, "stream_seq", seq)
		return nil, nil
	}
	return func(ctx context.Context, tx *bolt.Tx, in events.Envelope) ([]events.Envelope, error) {
		if err := route.Replay(ctx, tx, in, recorded); err != nil || route.Scheduled == nil {
			return recorded, err
		}
		return withScheduled(recorded, route.Scheduled(in, recorded)), nil
	}, nil
}

// withScheduled appends the scheduled outputs to the recorded outcomes, with the time and
// version the outcomes have: one Stamp gave every output of an event the same, one writer
// wrote them.
func withScheduled(recorded, scheduled []events.Envelope) []events.Envelope {
	outs := slices.Clone(recorded)
	for _, e := range scheduled {
		if len(recorded) > 0 {
			e.SchemaVersion = recorded[0].SchemaVersion
		}
		if e.Time.IsZero() && len(recorded) > 0 {
			e.Time = recorded[0].Time
		}
		outs = append(outs, e)
	}
	return outs
}

// recordedOutcomes are the outputs of in, on route's Outcomes subjects, that the stream
// holds after seq: each as the stream stored it. A message with the ID of an output but
// caused by another input is not one: the stream keeps one copy of an ID, and two inputs
// may emit it (a payment's capture, by the payment or by a later look at its intent).
func (r *Runner) recordedOutcomes(ctx context.Context, stream *outputIndex, route Route, in events.Envelope, seq uint64) ([]events.Envelope, error) {
	var recorded []events.Envelope
	for _, subject := range route.Outcomes {
		m, err := r.streamCopy(ctx, stream, string(subject), events.OutputID(events.ID(in.CheckoutID, subject), in.ID), seq)
		if err != nil {
			return nil, err
		}
		if m == nil {
			continue
		}
		e, err := events.Decode(m.Subject, m.Data)
		if err != nil {
			return nil, fmt.Errorf("the stream's %s at %d, the outcome of %s: %w", m.Subject, m.Sequence, in.ID, err)
		}
		if e.CausationID != in.ID {
			continue
		}
		recorded = append(recorded, e)
	}
	return recorded, nil
}

// givenUp returns the failure the runner recorded for a step trigger instead of running
// its handler (given up, or expired), when the stream holds one; nil otherwise.
func (r *Runner) givenUp(ctx context.Context, stream *outputIndex, in events.Envelope, seq uint64, step stepRoute) (*events.Envelope, error) {
	m, err := r.streamCopy(ctx, stream, string(step.Failed), events.OutputID(events.ID(in.CheckoutID, step.Failed), in.ID), seq)
	if m == nil || err != nil {
		return nil, err
	}
	e, err := events.Decode(m.Subject, m.Data)
	if err != nil {
		return nil, nil
	}
	var f events.StepFailure
	if e.CausationID != in.ID || e.DecodePayload(&f) != nil {
		return nil, nil
	}
	switch f.Code {
	case events.CodeDeadlineExceeded, events.CodeRetriesExhausted, events.CodeStepFailed:
		return &e, nil
	}
	return nil, nil // the handler's own failure: it answers the same again
}

// checkOutputs looks each output up in the stream and gives it the stream's time (one
// Stamp gave every output of an event the same), so its record is the one live handling
// wrote; what is missing or differs is logged. Outputs kept elsewhere (the WAREHOUSE work
// queue) and scheduled ones (stored under their schedule's subject) are not looked up.
func (r *Runner) checkOutputs(ctx context.Context, stream *outputIndex, in events.Envelope, seq, floor uint64, outs []events.Envelope) error {
	var stamped time.Time
	version := in.SchemaVersion
	for i, out := range outs {
		if out.Schedule != nil || !strings.HasPrefix(string(out.Type), "checkout.") {
			continue
		}
		log := r.log.With("checkout_id", in.CheckoutID, "event_id", out.ID, "input_id", in.ID, "stream_seq", seq)
		m, err := r.streamCopy(ctx, stream, string(out.Type), events.OutputID(out.ID, in.ID), seq)
		if err != nil {
			return err
		}
		if m == nil {
			if seq <= floor {
				log.Error("replay: the rebuilt output is not in the stream (not deterministic?)")
			}
			continue
		}
		stored, err := events.Decode(m.Subject, m.Data)
		if err != nil {
			log.Error("replay: the stream's copy of the output does not decode", "err", err)
			continue
		}
		// As it was written: its time, and its version (before or after an upgrade).
		stamped, version = stored.Time, stored.SchemaVersion
		outs[i].Time, outs[i].SchemaVersion = stored.Time, stored.SchemaVersion
		rebuilt := []events.Envelope{outs[i]}
		Stamp(rebuilt, in)
		if data, err := rebuilt[0].Encode(); err != nil || !bytes.Equal(data, m.Data) {
			log.Error("replay: the rebuilt output differs from the stream's (not deterministic?)", "rebuilt", string(data), "stored", string(m.Data))
		}
	}
	for i := range outs {
		// The outputs not looked up (scheduled, cancelled, on another stream) were written
		// with the others, at the same time and version; with none found, at the version
		// in force when the input was written.
		outs[i].SchemaVersion = version
		if !stamped.IsZero() {
			outs[i].Time = stamped
		}
	}
	return nil
}

// streamCopy finds the message with Nats-Msg-Id id on subject after stream sequence from
// (the input that caused it); nil when there is none.
func (r *Runner) streamCopy(ctx context.Context, stream *outputIndex, subject, id string, from uint64) (*jetstream.RawStreamMsg, error) {
	return stream.find(ctx, subject, id, from)
}
