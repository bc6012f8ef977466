package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// retry redelivers the message after a delay that grows with its attempts. Work that is
// never given up (compensations, settlements) is announced as stuck every MaxDeliver
// attempts, so it is visible, never silent.
func (r *Runner) retry(ctx context.Context, msg jetstream.Msg, meta *jetstream.MsgMetadata, in events.Envelope, log *slog.Logger, err error) {
	attempts := int(meta.NumDelivered)
	spanFailed(ctx, err)
	if attempts%r.cfg.MaxDeliver == 0 {
		r.announceStuck(ctx, msg, meta, in, log, err)
	}
	delay := r.cfg.RetryBase << min(attempts-1, 16)
	r.nak(msg, meta, log, min(delay, r.cfg.RetryMax), err)
}

func (r *Runner) nak(msg jetstream.Msg, meta *jetstream.MsgMetadata, log *slog.Logger, delay time.Duration, err error) {
	log.Warn("will retry", "attempt", meta.NumDelivered, "delay", delay, "err", err)
	r.markRetried(meta.Sequence.Stream)
	if err := msg.NakWithDelay(delay); err != nil {
		log.Warn("nak", "err", err)
	}
}

// announceStuck publishes checkout.stuck for work that keeps failing.
func (r *Runner) announceStuck(ctx context.Context, msg jetstream.Msg, meta *jetstream.MsgMetadata, in events.Envelope, log *slog.Logger, err error) {
	attempts := int(meta.NumDelivered)
	log.Error("still failing", "attempts", attempts, "err", err)
	r.meters.of(msg.Subject()).stuck.Inc()
	stuck := events.Must(in.CheckoutID, events.Stuck, events.StuckWork{
		Subject: msg.Subject(), Consumer: r.cfg.Name, Attempts: attempts, Error: err.Error(),
	})
	stuck.ID = fmt.Sprintf("%s:%s:%d:%d", stuck.ID, r.cfg.Name, meta.Sequence.Stream, attempts)
	stuck.CausationID, stuck.Time = in.ID, time.Now().UTC()
	if err := r.publish(ctx, []events.Envelope{stuck}, nil); err != nil {
		log.Error("announce stuck work", "err", err)
	}
}

// giveUp ends a step that cannot finish: its input goes to DEADLETTER with the reason, and
// the step's failure, marked uncertain (an attempt may have had its effect), becomes its
// outcome, so the coordinator undoes it and the checkout ends.
func (r *Runner) giveUp(ctx context.Context, msg jetstream.Msg, meta *jetstream.MsgMetadata, in events.Envelope, step stepRoute, code, reason string) ([]events.Envelope, []json.RawMessage, error) {
	r.log.Error("giving up", "checkout_id", in.CheckoutID, "event_id", in.ID, "step", step.Name, "attempts", meta.NumDelivered, "reason", reason)
	if err := r.deadLetter(ctx, msg, meta, reason, step.Name); err != nil {
		return nil, nil, err
	}
	r.meters.gaveUp(step.Name, code)
	spanFailed(ctx, fmt.Errorf("gave up %s (%s): %s", step.Name, code, reason))
	return r.recordFailure(in, meta.Sequence.Stream, step.failure(code, reason, true))
}

// reject terminates a message that can never be handled: a copy goes to DEADLETTER and
// checkout.rejected says why.
func (r *Runner) reject(ctx context.Context, msg jetstream.Msg, meta *jetstream.MsgMetadata, checkoutID string, cause error) {
	if checkoutID == "" {
		checkoutID = events.ProbeCheckoutID(msg.Data())
	}
	reason := cause.Error()
	if !strings.HasPrefix(reason, msg.Subject()) {
		// Every reason reads "<subject>: <sentinel>: <why>", whoever found what is wrong.
		reason = msg.Subject() + ": " + reason
	}
	r.log.Warn("rejected", "subject", msg.Subject(), "checkout_id", checkoutID, "stream_seq", meta.Sequence.Stream, "reason", reason)
	spanFailed(ctx, cause)
	if err := r.deadLetter(ctx, msg, meta, reason, ""); err != nil {
		r.log.Error("dead letter", "err", err)
	}
	e := events.Must(checkoutID, events.Rejected, events.RejectedInput{
		Subject: msg.Subject(), Consumer: r.cfg.Name, StreamSequence: meta.Sequence.Stream, Reason: reason,
	})
	e.ID += ":" + r.cfg.Name + ":" + strconv.FormatUint(meta.Sequence.Stream, 10)
	e.Time = time.Now().UTC()
	if err := r.publish(ctx, []events.Envelope{e}, nil); err != nil {
		r.log.Error("announce rejection", "err", err)
	}
	if err := msg.TermWithReason(truncate(reason, 200)); err != nil {
		r.log.Warn("term", "err", err)
	}
}

// deadLetter keeps a copy of the message, as it came, in DEADLETTER under
// deadletter.<consumer>, with where it came from and why it was given up; givenUp names the
// step whose trigger it was, if it was one (its failure is the step's outcome).
func (r *Runner) deadLetter(ctx context.Context, msg jetstream.Msg, meta *jetstream.MsgMetadata, reason string, givenUp events.StepName) error {
	seq := strconv.FormatUint(meta.Sequence.Stream, 10)
	dl := nats.NewMsg(events.DeadLetterSubject(r.cfg.Name))
	dl.Data = msg.Data()
	// As it came, signature too: re-driven, it is believed as the original was, or not.
	for _, h := range []string{events.SignerHeader, events.SignatureHeader} {
		if v := msg.Headers().Get(h); v != "" {
			dl.Header.Set(h, v)
		}
	}
	dl.Header.Set(events.HeaderDeadSubject, msg.Subject())
	dl.Header.Set(events.HeaderDeadSequence, seq)
	dl.Header.Set(events.HeaderDeadReason, truncate(reason, 1000))
	dl.Header.Set(events.HeaderDeadAttempts, strconv.FormatUint(meta.NumDelivered, 10))
	if givenUp != "" {
		dl.Header.Set(events.HeaderDeadGivenUp, string(givenUp))
	}
	if _, err := r.cfg.JS.PublishMsg(ctx, dl, jetstream.WithMsgID("dead:"+r.cfg.Name+":"+seq)); err != nil {
		return err
	}
	r.meters.of(msg.Subject()).deadLetters.Inc()
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
