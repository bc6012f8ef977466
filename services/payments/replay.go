package payments

import (
	"context"

	"github.com/jetcheckout/jetcheckout/events"
	bolt "go.etcd.io/bbolt"
)

// A lost payments.db is rebuilt from the stream without calling Stripe: each route's
// outcome event records what Stripe answered (runner.Route.Outcomes), and its Replayer
// below changes the record as the route's handler did when it got that answer. Each
// mirrors its handler's choice from the record as it was, which the replay rebuilds in the
// same order.
//
// What a replay does not see: the look at the intent that a payment or a look schedules
// (in TIMERS_PAYMENTS, not CHECKOUT). It needs no replay: it waits in its timer stream, or
// has fired into CHECKOUT and is replayed there as an input, whose number names the next.
// Only a payment's first look is recorded again (firstLook), for a payment that comes back
// after the rebuild: it may have been stored with its wait, or not.

// Each route's outcomes, the events that record Stripe's answer to it.
var (
	paymentOutcomes = []events.Subject{events.PaymentCaptured, events.PaymentActionPending, events.PaymentFailed}
	recheckOutcomes = []events.Subject{events.PaymentCaptured, events.PaymentFailed}
	refundOutcomes  = []events.Subject{events.PaymentRefunded}
)

// replayPayment records a payment as processPayment did: a checkout's first payment only.
func replayPayment(_ context.Context, tx *bolt.Tx, in events.Envelope, recorded []events.Envelope) error {
	if len(recorded) == 0 {
		return nil // none, or reported again for a record there already
	}
	out := recorded[0]
	if _, found, err := loadRecord(tx, in.CheckoutID); err != nil || found {
		return err
	}
	var quote events.Quote
	if err := in.DecodePayload(&quote); err != nil {
		return err
	}
	rec := Record{CheckoutID: in.CheckoutID, Amount: quote.Total, Currency: quote.Currency, Quote: quote}
	switch out.Type {
	case events.PaymentCaptured:
		var p events.Payment
		if err := out.DecodePayload(&p); err != nil {
			return err
		}
		rec.Status, rec.PaymentIntentID = Captured, p.PaymentIntentID
	case events.PaymentActionPending:
		var w events.Waiting
		if err := out.DecodePayload(&w); err != nil {
			return err
		}
		rec.awaitAction(w.Reference, w.NextAction, w.Until)
		rec.scheduled(0)
	default:
		// Not requested: refused, nothing saved. Cancelled: a refund voided the checkout's
		// payment first (live handling took the payment after it, its retry delayed), and
		// replaying the refund records that.
		f, err := failure(out)
		if err != nil || f.Code == events.CodeNotRequested || f.Code == events.CodeCheckoutCancelled {
			return err
		}
		rec.PaymentIntentID = f.Reference
		rec.fail(f.Code, f.Message)
	}
	return saveRecord(tx, rec, in)
}

// firstLook is the look at the intent that a payment waiting for 3-D Secure schedules with
// its wait (outs, the payment's outcome), due RecheckEvery after the wait's time and timed
// as it is: processPayment emits it, and a rebuild records it again (runner.Route.Scheduled).
func (s *Service) firstLook(in events.Envelope, outs []events.Envelope) []events.Envelope {
	var w events.Waiting
	if len(outs) == 0 || outs[0].Type != events.PaymentActionPending || outs[0].DecodePayload(&w) != nil {
		return nil
	}
	rec := Record{CheckoutID: in.CheckoutID, PaymentIntentID: w.Reference, AuthUntil: w.Until}
	look := rec.recheck(s.nextRecheck(rec, outs[0].Time), 0)
	look.Time = outs[0].Time
	return []events.Envelope{look}
}

// replayRecheck records a look at an intent waiting for 3-D Secure as recheckPayment did:
// settled by its outcome, or, with none, the next look scheduled.
func replayRecheck(_ context.Context, tx *bolt.Tx, in events.Envelope, recorded []events.Envelope) error {
	var check events.Recheck
	if err := in.DecodePayload(&check); err != nil {
		return err
	}
	rec, found, err := loadRecord(tx, in.CheckoutID)
	if err != nil || !found || rec.Status != AwaitingAction || rec.PaymentIntentID != check.PaymentIntentID {
		return err // it no longer waited: the look changed nothing
	}
	switch {
	case len(recorded) == 0:
		rec.scheduled(check.Number)
	case recorded[0].Type == events.PaymentCaptured:
		rec.Status = Captured
	default:
		f, err := failure(recorded[0])
		if err != nil {
			return err
		}
		rec.fail(f.Code, f.Message)
	}
	return saveRecord(tx, rec, in)
}

// replayRefund records the compensation as refundPayment did: a captured payment refunded,
// or, with no capture, the sweep of the checkout's intents that the event lists.
func replayRefund(_ context.Context, tx *bolt.Tx, in events.Envelope, recorded []events.Envelope) error {
	if len(recorded) == 0 {
		return nil // none, or reported again for a record there already
	}
	out := recorded[0]
	var refund events.Refund
	if err := out.DecodePayload(&refund); err != nil {
		return err
	}
	rec, found, err := loadRecord(tx, in.CheckoutID)
	switch {
	case err != nil:
		return err
	case found && rec.Status == Captured:
		rec.Status, rec.RefundID, rec.RefundedAmount = Refunded, refund.RefundID, refund.Amount
	case found && rec.Status == AwaitingAction:
		rec.voided(refund.Swept, refund.Currency)
	case !found:
		rec = Record{CheckoutID: in.CheckoutID}
		rec.voided(refund.Swept, refund.Currency)
	default:
		return nil // settled already: nothing was refunded
	}
	return saveRecord(tx, rec, in)
}

func failure(e events.Envelope) (events.StepFailure, error) {
	var f events.StepFailure
	err := e.DecodePayload(&f)
	return f, err
}
