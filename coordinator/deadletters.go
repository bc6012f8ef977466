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
// Only a rejected input is published again: the service that rejected it kept no record of
// it, so it handles the copy as it would have handled the original, and every other consumer
// of the subject, which handled the original, knows the copy by its event ID and drops it.
// The trigger of a step that was given up on is refused: the step's failure was recorded as
// its outcome and the checkout undone or flagged, so a copy would change nothing; the
// checkout is what is re-driven (checkouts.redrive).
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
	if step := letter.Header.Get(events.HeaderDeadGivenUp); step != "" {
		return nil, microx.Conflict("%s gave up on %s of checkout %s and recorded its failure as the step's outcome, so the checkout was undone or flagged and a copy would change nothing: re-drive the checkout (%s) if it completed with that step failed; a failed checkout takes a new checkout",
			req.Service, step, checkoutID, events.CheckoutsRedrive)
	}
	if age := time.Since(letter.Time); age > redriveWithin {
		return nil, microx.Conflict("the dead letter of %s for stream sequence %d is %s old: the other consumers of %s keep what they handled for %s, so they may not know a copy any more and could handle it twice; publish it again by hand if you must",
			req.Service, req.StreamSequence, age.Round(time.Hour), subject, events.CheckoutRetention)
	}
	if !republishable(subject) {
		return nil, microx.Conflict("%s is not an event of the checkout's flow: the operator publishes it again by hand if it must be (the letter's data and headers, as it came)", subject)
	}
	record := events.Must(checkoutID, events.DeadLetterRedriven, events.DeadLetterRedrive{
		By: req.By, Reason: req.Reason, Service: req.Service, Subject: subject, StreamSequence: req.StreamSequence,
		LetterReason: letter.Header.Get(events.HeaderDeadReason),
	})
	key := req.Service + ":" + strconv.FormatUint(req.StreamSequence, 10)
	record.ID, record.Time = record.ID+":"+key, time.Now().UTC()
	if _, err := microx.Publish(ctx, c.js, keys, events.ServiceCoordinator, record); err != nil {
		return nil, fmt.Errorf("publish %s: %w", record.Type, err)
	}
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
	if ack.Duplicate {
		return nil, microx.Conflict("the dead letter of %s for stream sequence %d was re-driven already", req.Service, req.StreamSequence)
	}
	if err := deleteDeadLetter(ctx, c.js, letter.Sequence); err != nil {
		// The copy is out: a second re-drive of the letter is one (the same message ID
		// within the duplicate window; a copy its handlers drop after).
		c.log.Warn("dead letter re-driven but still in "+events.StreamDeadLetter, "sequence", letter.Sequence, "err", err)
	}
	c.log.Info("dead letter re-driven", "checkout_id", checkoutID, "service", req.Service, "subject", subject,
		"stream_seq", req.StreamSequence, "copy_seq", ack.Sequence, "by", req.By, "reason", req.Reason)
	return events.DeadLetterRedriveReply{CheckoutID: checkoutID, Subject: subject, Sequence: ack.Sequence}, nil
}

// redriveWithin is how old a dead letter may be to be re-driven: a day less than the
// consumers keep their records of what they handled (runner.DefaultRetention), which is what
// makes them drop the copy of an event they handled.
var redriveWithin = events.CheckoutRetention - 24*time.Hour

// findDeadLetter is service's letter for the message at seq, read from the stream's leader.
func findDeadLetter(ctx context.Context, js jetstream.JetStream, service string, seq uint64) (*jetstream.RawStreamMsg, error) {
	read := jsread.NewLeader(js, events.StreamDeadLetter)
	want := strconv.FormatUint(seq, 10)
	for next := uint64(1); ; {
		m, err := read.Next(ctx, events.DeadLetterSubject(service), next)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", events.StreamDeadLetter, err)
		}
		if m == nil {
			return nil, microx.NotFound("%s holds no letter of %s for stream sequence %d (re-driven already, or never given up)", events.StreamDeadLetter, service, seq)
		}
		if m.Header.Get(events.HeaderDeadSequence) == want {
			return m, nil
		}
		next = m.Sequence + 1
	}
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

// republishable: an event of the flow that a service consumes.
func republishable(subject string) bool {
	return slices.ContainsFunc(events.Checkout.Catalog(), func(d events.EventDoc) bool {
		return string(d.Subject) == subject && len(d.Consumers) > 0
	})
}
