package runner

import (
	"context"
	"fmt"
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
func (r *Runner) retry(ctx context.Context, d *delivery, err error) {
	spanFailed(ctx, err)
	if d.attempt%r.cfg.MaxDeliver == 0 {
		r.announceStuck(ctx, d, err)
	}
	delay := r.cfg.RetryBase << min(d.attempt-1, 16)
	r.nak(d, min(delay, r.cfg.RetryMax), err)
}

func (r *Runner) nak(d *delivery, delay time.Duration, err error) {
	log := r.logOf(d)
	log.Warn("will retry", "attempt", d.meta.NumDelivered, "delay", delay, "err", err)
	r.markRetried(d.seq())
	if err := d.msg.NakWithDelay(delay); err != nil {
		log.Warn("nak", "err", err)
	}
}

// announceStuck publishes checkout.stuck for work that keeps failing.
func (r *Runner) announceStuck(ctx context.Context, d *delivery, err error) {
	log := r.logOf(d)
	log.Error("still failing", "attempts", d.attempt, "err", err)
	r.meters.of(d.msg.Subject()).stuck.Inc()
	stuck := events.Must(d.in.CheckoutID, events.Stuck, events.StuckWork{
		Subject: d.msg.Subject(), Consumer: r.cfg.Name, Attempts: d.attempt, Error: err.Error(),
	})
	stuck.ID = fmt.Sprintf("%s:%s:%d:%d", stuck.ID, r.cfg.Name, d.seq(), d.attempt)
	stuck.CausationID, stuck.Time = d.in.ID, time.Now().UTC()
	if err := r.publish(ctx, []events.Envelope{stuck}, nil); err != nil {
		log.Error("announce stuck work", "err", err)
	}
}

// giveUp ends a step that cannot finish: its input goes to DEADLETTER with the reason, and
// the step's failure, marked uncertain (an attempt may have had its effect), becomes its
// outcome, so the coordinator undoes it and the checkout ends. The failure is left in d's
// outputs.
func (r *Runner) giveUp(ctx context.Context, d *delivery, step stepRoute, code, reason string) error {
	r.log.Error("giving up", "checkout_id", d.in.CheckoutID, "event_id", d.in.ID, "step", step.Name, "attempts", d.meta.NumDelivered, "reason", reason)
	if err := r.deadLetter(ctx, d, reason, step.Name); err != nil {
		return err
	}
	r.meters.gaveUp(step.Name, code)
	spanFailed(ctx, fmt.Errorf("gave up %s (%s): %s", step.Name, code, reason))
	var err error
	d.outs, d.data, err = r.recordFailure(d.in, d.seq(), step.failure(code, reason, true))
	return err
}

// reject terminates a message that can never be handled: a copy goes to DEADLETTER and
// checkout.rejected says why.
func (r *Runner) reject(ctx context.Context, d *delivery, cause error) {
	msg, meta, checkoutID := d.msg, d.meta, d.in.CheckoutID
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
	if err := r.deadLetter(ctx, d, reason, ""); err != nil {
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
func (r *Runner) deadLetter(ctx context.Context, d *delivery, reason string, givenUp events.StepName) error {
	msg, meta := d.msg, d.meta
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
