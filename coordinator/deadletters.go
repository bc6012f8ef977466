package coordinator

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/jsread"
	"github.com/jetcheckout/jetcheckout/internal/microx"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// redriveDeadLetter publishes a dead letter again as it came (data and signature), on the
// subject it came on, once its cause is fixed (a signing key deployed, a release that
// handles it), and takes it out of DEADLETTER.
//
// Only an input the service rejected is published again: it kept no record of it, so it
// handles the copy as it would have handled the original, and every other consumer of the
// subject, which handled the original, knows the copy by its event ID and drops it (or, for
// one that changed nothing, runs it again to the same nothing). What a copy cannot do right
// is refused with the reason (redrivable).
func (c *Coordinator) redriveDeadLetter(keys *events.Keys, data []byte) (any, error) {
	var req events.DeadLetterRedriveRequest
	if err := microx.Decode(events.DeadLettersRedrive, data, &req); err != nil {
		return nil, err
	}
	switch {
	case !slices.Contains(events.Services, req.Service) || req.StreamSequence == 0:
		return nil, microx.BadRequest("%s request: service (one of %s) and stream_sequence (the letter's %s header) are required",
			events.DeadLettersRedrive, strings.Join(events.Services, ", "), events.HeaderDeadSequence)
	case strings.TrimSpace(req.By) == "" || strings.TrimSpace(req.Reason) == "":
		return nil, microx.BadRequest("%s request: by and reason are required (who re-drives, and why)", events.DeadLettersRedrive)
	case !events.ExistsAt(events.DeadLetterRedriven, events.WriteVersion()):
		return nil, microx.Conflict("this coordinator writes schema version %d (SCHEMA_WRITE_VERSION) during an upgrade: re-drive once every instance runs this release", events.WriteVersion())
	}
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	letter, err := findDeadLetter(ctx, c.js, req.Service, req.StreamSequence)
	if err != nil {
		return nil, err
	}
	subject := letter.Header.Get(events.HeaderDeadSubject)
	checkoutID := events.ProbeCheckoutID(letter.Data)
	if err := c.redrivable(ctx, req, letter, subject, checkoutID); err != nil {
		return nil, err
	}
	key := req.Service + ":" + strconv.FormatUint(req.StreamSequence, 10)
	copied := nats.NewMsg(subject)
	copied.Data = letter.Data
	for _, h := range []string{events.SignerHeader, events.SignatureHeader} {
		if v := letter.Header.Get(h); v != "" {
			copied.Header.Set(h, v)
		}
	}
	copied.Header.Set(events.HeaderRedriveOf, key)
	ack, err := c.js.PublishMsg(ctx, copied, jetstream.WithMsgID("redrive:"+key))
	if err != nil {
		return nil, fmt.Errorf("publish the copy on %s: %w", subject, err)
	}
	// The record after the copy: shown, it says the copy is out. A copy out already (a
	// second request, or a first one that failed after it) still gets its record, and the
	// letter still goes.
	record := events.Must(checkoutID, events.DeadLetterRedriven, events.DeadLetterRedrive{
		By: req.By, Reason: req.Reason, Service: req.Service, Subject: subject, StreamSequence: req.StreamSequence,
		LetterReason: letter.Header.Get(events.HeaderDeadReason),
	})
	record.ID, record.Time = record.ID+":"+key, time.Now().UTC()
	if _, err := microx.Publish(ctx, c.js, keys, events.ServiceCoordinator, record); err != nil {
		return nil, fmt.Errorf("the copy is out (sequence %d), but publish %s: %w", ack.Sequence, record.Type, err)
	}
	if err := deleteDeadLetter(ctx, c.js, letter.Sequence); err != nil {
		// The copy is out: a second re-drive of the letter is one (the same message ID
		// within the duplicate window; a copy its handlers drop after).
		c.log.Warn("dead letter re-driven but still in "+events.StreamDeadLetter, "sequence", letter.Sequence, "err", err)
	}
	if ack.Duplicate {
		return nil, microx.Conflict("the dead letter of %s for stream sequence %d was re-driven already", req.Service, req.StreamSequence)
	}
	c.log.Info("dead letter re-driven", "checkout_id", checkoutID, "service", req.Service, "subject", subject,
		"stream_seq", req.StreamSequence, "copy_seq", ack.Sequence, "by", req.By, "reason", req.Reason)
	return events.DeadLetterRedriveReply{CheckoutID: checkoutID, Subject: subject, Sequence: ack.Sequence}, nil
}

// redriveWindow is how old a dead letter's original may be to be re-driven: less than the
// services keep their records of what they handled (a day less, or a tenth for a short
// retention), which is what makes them drop the copy of an event they handled.
func redriveWindow(handledRetention time.Duration) time.Duration {
	return handledRetention - min(24*time.Hour, handledRetention/10)
}

// redrivable refuses, with the reason, a letter whose copy would not do what a re-drive
// promises: one given up on (its failure is the step's outcome), one on a subject its service
// does not consume, the public request (unsigned: a copy is not believed for its signature),
// a step's trigger (past its deadline by now: recorded as late, changing nothing), and one
// whose original the other consumers may have forgotten (past their records' retention).
func (c *Coordinator) redrivable(ctx context.Context, req events.DeadLetterRedriveRequest, letter *jetstream.RawStreamMsg, subject, checkoutID string) error {
	if step := letter.Header.Get(events.HeaderDeadGivenUp); step != "" {
		return microx.Conflict("%s gave up on %s of checkout %s and recorded its failure as the step's outcome, so the checkout was undone or flagged and a copy would change nothing: re-drive the checkout (%s) if it completed with that step failed; a failed checkout is tried again as a new one",
			req.Service, step, checkoutID, events.CheckoutsRedrive)
	}
	if !slices.Contains(c.rules.flow.ConsumedBy(req.Service), subject) || subject == string(events.Requested) {
		return microx.Conflict("%s is not re-driven for %s: only an event of the flow that %s consumes is (checkout.requested is the sender's to send again); the operator may publish it again by hand",
			subject, req.Service, req.Service)
	}
	if step, ok := c.rules.flow.TriggeredBy(req.Service, events.Subject(subject)); ok {
		return microx.Conflict("%s is the trigger of %s, whose deadline has passed since: a copy would be recorded as late and change nothing; re-drive checkout %s (%s) instead",
			subject, step.Name, checkoutID, events.CheckoutsRedrive)
	}
	original, err := jsread.NewLeader(c.js, events.StreamCheckout).At(ctx, req.StreamSequence)
	switch {
	case err != nil:
		return fmt.Errorf("read the original at %d: %w", req.StreamSequence, err)
	case original == nil || original.Subject != subject:
		return microx.Conflict("the original of this letter (%s at %d) is no longer in %s: past the stream's retention, the other consumers may not know a copy any more", subject, req.StreamSequence, events.StreamCheckout)
	case time.Since(original.Time) > c.redriveWithin:
		return microx.Conflict("the original of this letter is %s old: the other consumers of %s keep what they handled for less than that (%s), so one could handle a copy twice; the operator may publish it again by hand",
			time.Since(original.Time).Round(time.Hour), subject, c.redriveWithin)
	}
	return nil
}

// findDeadLetter is service's letter for the message at seq, read from the stream's leader.
func findDeadLetter(ctx context.Context, js jetstream.JetStream, service string, seq uint64) (*jetstream.RawStreamMsg, error) {
	want := strconv.FormatUint(seq, 10)
	m, err := jsread.NewLeader(js, events.StreamDeadLetter).Find(ctx, events.DeadLetterSubject(service), func(m *jetstream.RawStreamMsg) bool {
		return m.Header.Get(events.HeaderDeadSequence) == want
	})
	switch {
	case err != nil:
		return nil, fmt.Errorf("read %s: %w", events.StreamDeadLetter, err)
	case m == nil:
		return nil, microx.NotFound("%s holds no letter of %s for stream sequence %d (re-driven already, or never given up)", events.StreamDeadLetter, service, seq)
	}
	return m, nil
}

func deleteDeadLetter(ctx context.Context, js jetstream.JetStream, seq uint64) error {
	stream, err := js.Stream(ctx, events.StreamDeadLetter)
	if err != nil {
		return err
	}
	if err := stream.DeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
		return err
	}
	return nil
}
