package inventory

import (
	"context"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/runner"
	bolt "go.etcd.io/bbolt"
)

// A rebuild of the view (runner.Config.Rebuild) does not decide a reservation again: whether
// it got the last units, and whether the customer was within the hold limit, depended on
// the reservations that committed before it, in an order the stream does not keep. It
// takes the decision the stream recorded (checkout.inventory.reserved or .failed) and makes
// the changes the handler made then. The stock moves of recorded decisions add up to the
// same counts in any order, so the rebuilt stock equals the live one once every one is in.

// replayReserve applies the recorded answer to a checkout.cart.validated (runner.Replayer):
// the reservation, its stock and its holds, or the refusal. A checkout that has a
// reservation already keeps it, as the handler answers such a checkout as before.
func replayReserve(_ context.Context, tx *bolt.Tx, in events.Envelope, recorded []events.Envelope) error {
	if len(recorded) == 0 {
		return nil // acknowledged with no outcome: nothing was held
	}
	var quote events.Quote
	if err := in.DecodePayload(&quote); err != nil {
		return err
	}
	if _, found, err := loadReservation(tx, in.CheckoutID); err != nil || found {
		return err
	}
	res, known, err := recordedReservation(in.CheckoutID, quote, recorded[0])
	if err != nil || !known {
		return err
	}
	if res.Status == Reserved {
		if err := moveRecorded(tx, res.Items, reserveUnits); err != nil {
			return err
		}
		if err := countHolds(tx, res, +1); err != nil {
			return err
		}
	}
	return saveReservation(tx, res)
}

// recordedReservation is the reservation the handler saved when it answered quote with
// outcome; known is false for an outcome that saved none (a failure the runner recorded).
func recordedReservation(checkoutID string, quote events.Quote, outcome events.Envelope) (res Reservation, known bool, err error) {
	if outcome.Type == events.InventoryReserved {
		var r events.Reservation
		if err := outcome.DecodePayload(&r); err != nil {
			return Reservation{}, false, runner.Permanent(err)
		}
		res = Reservation{ID: r.ReservationID, CheckoutID: checkoutID, Items: r.Items, Status: Reserved}
		for _, h := range holdersOf(quote) {
			res.Holders = append(res.Holders, h.key)
		}
		return res, true, nil
	}
	var f events.StepFailure
	if err := outcome.DecodePayload(&f); err != nil {
		return Reservation{}, false, runner.Permanent(err)
	}
	switch f.Code {
	case events.CodeInsufficientStock, events.CodeHoldLimitExceeded:
		items, _ := perProduct(quote.Lines)
		return Reservation{CheckoutID: checkoutID, Items: items, Status: Refused, Code: f.Code, Reason: f.Message, Products: f.Products}, true, nil
	case events.CodeCheckoutCancelled: // the release came first and left its mark
		return Reservation{CheckoutID: checkoutID, Status: Released}, true, nil
	}
	return Reservation{}, false, nil
}

// reserveTimer is the expiry the handler scheduled with the recorded outcome: one for a
// reservation it made for this input, timed from the input (see expiry).
func (s *Service) reserveTimer(in events.Envelope, recorded []events.Envelope) []events.Envelope {
	if len(recorded) == 0 || recorded[0].Type != events.InventoryReserved || recorded[0].CausationID != in.ID {
		return nil
	}
	var r events.Reservation
	if recorded[0].DecodePayload(&r) != nil {
		return nil
	}
	return []events.Envelope{s.expiry(Reservation{ID: r.ReservationID, CheckoutID: in.CheckoutID}, runner.EventTime(in))}
}

// replayCommit applies a recorded sale: the reservation's units are sold, from what is
// available when it had expired (the live handler checked that they were there).
func replayCommit(_ context.Context, tx *bolt.Tx, in events.Envelope, recorded []events.Envelope) error {
	if len(recorded) == 0 {
		return nil
	}
	res, found, err := loadReservation(tx, in.CheckoutID)
	switch {
	case err != nil || !found:
		return err
	case res.Status == Reserved:
		return settle(tx, &res, sellUnits, Committed)
	case res.Status == Expired:
		if err := moveRecorded(tx, res.Items, sellAvailableUnits); err != nil {
			return err
		}
		res.Status = Committed
		return saveReservation(tx, res)
	}
	return nil
}

// commitTimer is what the handler emits with every sale: the cancel of the expiry.
func commitTimer(in events.Envelope, recorded []events.Envelope) []events.Envelope {
	if len(recorded) == 0 {
		return nil
	}
	return []events.Envelope{expiryCancelled(in.CheckoutID)}
}
