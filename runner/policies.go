package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/nats-io/nats.go/jetstream"
)

// The runner's cross-cutting behaviour is a stack of policies, each middleware in the
// watermill sense around the handling of one delivery: it may act before passing the
// delivery on, answer it itself instead, or turn what the inner ones returned into an answer.
// Every delivery goes through, outermost first:
//
//	metered    times the delivery and counts it by its answer (metrics.go)
//	traced     its span, under the span that published it, ended with its answer (tracing.go)
//	bounded    HandlerTimeout
//	decoded    routed, signed by its producer, readable: rejects what never will be, and
//	           stops the runner at an event of a newer schema; then the route's own policies
//
// and then, by what its route is (routePolicies):
//
//	acknowledged   publishes the outputs, then acks; an error left is retried after a delay
//	               that grows with the attempts, and announced as stuck every MaxDeliver
//	crashLoops     one delivered MaxDeliver times without this process asking for it again
//	               died with its process each time: announced as stuck (not a step's trigger)
//	rejected       an error retrying cannot fix (Permanent, malformed): DEADLETTER and
//	               checkout.rejected
//	undoneForever  (an undo) never given up nor rejected: retried at RetryMax, announced
//	abandoned      (a step's trigger) failing for good or for the MaxDeliver-th time: the
//	               step's failure becomes its outcome, its input kept in DEADLETTER
//	poisoned       (a step's trigger) delivered past MaxDeliver: given up without running
//	deadlined      (a step's trigger) out of time: its failure without running it; else the
//	               handler's context ends at the step's deadline
//	unchanged      (not with a CommitFunc) Unchanged is acked with nothing recorded; a
//	               step's trigger must answer with its outcome
//
// and at the core, handled: the call and the handler in its transaction (commit.go, where
// recovering turns a panic into an error), or the CommitFunc.
//
// An error a policy returns is the inner ones' failure, for the policies outside it to
// answer; a stop error passes every policy untouched and stops the runner.

// delivery is one message on its way through the policies, and what they learnt of it.
type delivery struct {
	msg     *heldMsg
	meta    *jetstream.MsgMetadata // set by decoded, as all below
	route   Route
	in      events.Envelope
	decoded bool
	attempt int               // NumDelivered: 1 the first time
	outs    []events.Envelope // to publish once the delivery is handled
	data    []json.RawMessage // outs' wire form, when encoded already
}

// seq is the delivery's stream sequence.
func (d *delivery) seq() uint64 { return d.meta.Sequence.Stream }

// deliveryHandler handles a delivery. Unless it returns an error it has answered the
// message, or left outputs for acknowledged to publish before it acks.
type deliveryHandler func(ctx context.Context, d *delivery) error

// policy is middleware around the handling of a delivery.
type policy func(next deliveryHandler) deliveryHandler

// chain wraps h in ps, ps[0] outermost.
func chain(h deliveryHandler, ps ...policy) deliveryHandler {
	for i := len(ps) - 1; i >= 0; i-- {
		h = ps[i](h)
	}
	return h
}

// stop is an error that stops the runner with the message left as it is: a hook's simulated
// crash (unanswered), or an event of a newer schema (given back).
type stop struct{ err error }

func (s *stop) Error() string { return s.err.Error() }
func (s *stop) Unwrap() error { return s.err }

// failed reports an error of the handling, for a policy to answer: not a stop.
func failed(err error) bool {
	var s *stop
	return err != nil && !errors.As(err, &s)
}

// logOf is the delivery's logger, made only when something is logged: With formats its
// attributes at once, and most deliveries log nothing.
func (r *Runner) logOf(d *delivery) *slog.Logger {
	return r.log.With("checkout_id", d.in.CheckoutID, "event_id", d.in.ID, "subject", d.msg.Subject())
}

// deliveries is the handling of every delivery: the runner's policies around the route's.
func (r *Runner) deliveries() deliveryHandler {
	routes := make(map[string]deliveryHandler, len(r.routes))
	for subject := range r.routes {
		routes[subject] = chain(r.handled, r.routePolicies(subject)...)
	}
	dispatch := func(ctx context.Context, d *delivery) error { return routes[d.msg.Subject()](ctx, d) }
	return chain(dispatch, r.metered, r.traced, r.bounded, r.decoded)
}

// routePolicies are the policies of the route on subject, by what it is.
func (r *Runner) routePolicies(subject string) []policy {
	step, isStep := r.steps[subject]
	ps := []policy{r.acknowledged, r.crashLoops(!isStep), r.rejected}
	if r.undos[subject] {
		ps = append(ps, r.undoneForever)
	}
	if isStep {
		ps = append(ps, r.abandoned(step), r.poisoned(step), r.deadlined(step))
	}
	if r.cfg.Commit == nil {
		ps = append(ps, unchanged(step, isStep))
	}
	return ps
}

// bounded ends the handling of one delivery after HandlerTimeout.
func (r *Runner) bounded(next deliveryHandler) deliveryHandler {
	return func(ctx context.Context, d *delivery) error {
		ctx, cancel := context.WithTimeout(ctx, r.cfg.HandlerTimeout)
		defer cancel()
		return next(ctx, d)
	}
}

// decoded believes a message only from its producer (signed by it, fired from its own
// schedule), on a subject the runner routes, and reads it.
func (r *Runner) decoded(next deliveryHandler) deliveryHandler {
	return func(ctx context.Context, d *delivery) error {
		msg := d.msg
		meta, err := msg.Metadata()
		if err != nil {
			r.log.Error("message without metadata", "subject", msg.Subject(), "err", err)
			_ = msg.Term()
			return nil
		}
		d.meta, d.attempt = meta, int(meta.NumDelivered)
		route, ok := r.routes[msg.Subject()]
		if !ok && events.NewerSchema(msg.Data()) {
			return r.tooOld(d, fmt.Errorf("%s: %w that this release has no handler for", msg.Subject(), events.ErrNewerSchema))
		}
		if !ok {
			r.reject(ctx, d, fmt.Errorf("%s: no handler for this subject", msg.Subject()))
			return nil
		}
		in, err := r.decode(msg, meta, route)
		if errors.Is(err, events.ErrNewerSchema) {
			return r.tooOld(d, err)
		}
		if err != nil {
			r.reject(ctx, d, err)
			return nil
		}
		d.route, d.in, d.decoded = route, in, true
		return next(ctx, d)
	}
}

// acknowledged publishes what the delivery caused and then acks it, unless an inner policy
// answered it already; what failed is retried later.
func (r *Runner) acknowledged(next deliveryHandler) deliveryHandler {
	return func(ctx context.Context, d *delivery) error {
		err := next(ctx, d)
		switch {
		case failed(err):
			r.retry(ctx, d, err)
			return nil
		case err != nil:
			return err
		case d.msg.answer != answerNone:
			return nil
		}
		if hook := r.cfg.Hooks.AfterCommit; hook != nil {
			if err := hook(d.in); err != nil {
				return &stop{err}
			}
		}
		if err := r.publish(ctx, d.outs, d.data); err != nil {
			r.retry(ctx, d, fmt.Errorf("publish outputs: %w", err))
			return nil
		}
		if hook := r.cfg.Hooks.AfterPublish; hook != nil {
			if err := hook(d.in); err != nil {
				return &stop{err}
			}
		}
		if err := d.msg.Ack(); err != nil {
			r.logOf(d).Warn("ack", "err", err)
		}
		if r.log.Enabled(ctx, slog.LevelDebug) {
			r.logOf(d).Debug("handled", "outputs", len(d.outs))
		}
		return nil
	}
}

// crashLoops announces a message delivered again and again without this process having
// asked for it: the process handling it dies on it. A step's trigger is poisoned instead
// (announce false), but its mark is taken all the same: a mark is for the delivery that
// follows it only.
func (r *Runner) crashLoops(announce bool) policy {
	return func(next deliveryHandler) deliveryHandler {
		return func(ctx context.Context, d *delivery) error {
			if retried := r.takeRetried(d.seq()); announce && d.attempt%r.cfg.MaxDeliver == 0 && !retried {
				r.announceStuck(ctx, d, fmt.Errorf("delivered %d times: the process handling it died each time", d.attempt))
			}
			return next(ctx, d)
		}
	}
}

// rejected terminates a message whose handling failed for good (Permanent, or malformed):
// kept in DEADLETTER and announced on checkout.rejected.
func (r *Runner) rejected(next deliveryHandler) deliveryHandler {
	return func(ctx context.Context, d *delivery) error {
		err := next(ctx, d)
		if failed(err) && isPermanent(err) {
			r.reject(ctx, d, err)
			return nil
		}
		return err
	}
}

// undoneForever never gives an undo up: it is retried at the longest delay, and announced
// once it fails for good or has failed for StuckAfter, then every MaxDeliver. Malformed
// input is no undo: it is rejected.
func (r *Runner) undoneForever(next deliveryHandler) deliveryHandler {
	return func(ctx context.Context, d *delivery) error {
		err := next(ctx, d)
		if !failed(err) || errors.Is(err, events.ErrMalformed) {
			return err
		}
		if isPermanent(err) && d.attempt == 1 || d.attempt == r.stuckAttempt() || d.attempt%r.cfg.MaxDeliver == 0 {
			r.announceStuck(ctx, d, err)
		}
		spanFailed(ctx, err)
		r.nak(d, r.cfg.RetryMax, err)
		return nil
	}
}

// abandoned gives a step up when its trigger failed for good, or for the MaxDeliver-th time.
func (r *Runner) abandoned(step stepRoute) policy {
	return func(next deliveryHandler) deliveryHandler {
		return func(ctx context.Context, d *delivery) error {
			err := next(ctx, d)
			switch {
			case !failed(err):
				return err
			case isPermanent(err):
				return r.giveUp(ctx, d, step, events.CodeStepFailed, err.Error())
			case d.attempt >= r.cfg.MaxDeliver:
				return r.giveUp(ctx, d, step, events.CodeRetriesExhausted,
					fmt.Sprintf("%s failed %d times; last error: %v", step.Name, d.attempt, err))
			}
			return err
		}
	}
}

// poisoned gives up, without running its handler again, a step's trigger delivered again
// after its last attempt: the process died handling it each time.
func (r *Runner) poisoned(step stepRoute) policy {
	return func(next deliveryHandler) deliveryHandler {
		return func(ctx context.Context, d *delivery) error {
			if d.attempt > r.cfg.MaxDeliver {
				return r.giveUp(ctx, d, step, events.CodeRetriesExhausted,
					fmt.Sprintf("%s was tried %d times and never finished", step.Name, d.attempt-1))
			}
			return next(ctx, d)
		}
	}
}

// deadlined keeps a step within its deadline: a trigger out of time is not handled, and the
// handler's context ends when the step's time does.
func (r *Runner) deadlined(step stepRoute) policy {
	return func(next deliveryHandler) deliveryHandler {
		return func(ctx context.Context, d *delivery) error {
			switch {
			case step.expired(d.in, time.Now()) && d.attempt > 1:
				// Tried before, and out of time now: its effect is unknown, and its input is kept.
				return r.giveUp(ctx, d, step, events.CodeDeadlineExceeded,
					fmt.Sprintf("%s did not finish within %s of its trigger after %d attempts", step.Name, step.deadline, d.attempt-1))
			case step.expired(d.in, time.Now()):
				r.meters.gaveUp(step.Name, events.CodeDeadlineExceeded)
				var err error
				d.outs, d.data, err = r.recordFailure(d.in, d.seq(), step.failure(events.CodeDeadlineExceeded,
					fmt.Sprintf("%s started after its deadline (%s after its trigger)", step.Name, step.deadline), false))
				return err
			}
			if !d.in.Time.IsZero() {
				var cancel context.CancelFunc
				ctx, cancel = context.WithDeadline(ctx, d.in.Time.Add(step.deadline))
				defer cancel()
			}
			return next(ctx, d)
		}
	}
}

// unchanged acks an event that changed nothing (Unchanged) with no record and nothing to
// publish. A step's trigger acked so would leave the step without an outcome, to wait out
// its deadline and be undone: it fails for good.
func unchanged(step stepRoute, isStep bool) policy {
	return func(next deliveryHandler) deliveryHandler {
		return func(ctx context.Context, d *delivery) error {
			err := next(ctx, d)
			if !errors.Is(err, Unchanged) {
				return err
			}
			d.outs, d.data = nil, nil
			if isStep {
				return Permanent(fmt.Errorf("%s answered Unchanged: a step's trigger must answer with its outcome", step.Name))
			}
			return nil
		}
	}
}

// handled hands the event to the service's store of state (apply), leaving the outputs to
// publish.
func (r *Runner) handled(ctx context.Context, d *delivery) error {
	var err error
	d.outs, d.data, err = r.apply(withSequence(WithAttempt(ctx, d.attempt), d.seq()), d.route, d.in, d.seq())
	return err
}
