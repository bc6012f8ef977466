package inventory

import (
	"context"
	"fmt"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/runner"
	bolt "go.etcd.io/bbolt"
)

// release undoes reserve_inventory: the held units are available again. It always
// confirms, because the coordinator waits for the confirmation, also when nothing was
// held. A release that comes before the reservation is remembered, so that the late
// reservation holds nothing.
func (s *Service) release(_ context.Context, tx *bolt.Tx, in events.Envelope) ([]events.Envelope, error) {
	var cmd events.Compensation
	if err := in.DecodePayload(&cmd); err != nil {
		return nil, err
	}
	log := s.log.With("checkout_id", in.CheckoutID, "event_id", in.ID)
	res, found, err := loadReservation(tx, in.CheckoutID)
	if err != nil {
		return nil, err
	}
	var expired []events.Envelope // the held reservation's expiry, cancelled
	switch {
	case !found:
		log.Info("release before any reservation: nothing held", "reason", cmd.Reason)
		res = Reservation{CheckoutID: in.CheckoutID, Status: Released}
		if err := saveReservation(tx, res); err != nil {
			return nil, err
		}
	case res.Status == Reserved:
		if err := settle(tx, &res, releaseUnits, Released); err != nil {
			return nil, err
		}
		log.Info("stock released", "reservation_id", res.ID, "reason", cmd.Reason)
		expired = append(expired, expiryCancelled(res.CheckoutID))
	case res.Status == Committed:
		log.Error("release of a sold reservation refused", "reservation_id", res.ID, "reason", cmd.Reason)
		return nil, runner.Permanent(fmt.Errorf("checkout %s: reservation %s is already sold, it cannot be released", in.CheckoutID, res.ID))
	default: // already released, or refused: nothing is held
		log.Info("nothing to release", "status", res.Status)
	}
	released := events.Release{}
	if res.Status == Released {
		released = events.Release{ReservationID: res.ID, Items: res.Items}
	}
	return append([]events.Envelope{events.Must(in.CheckoutID, events.InventoryReleased, released)}, expired...), nil
}

// commit turns a completed checkout's reservation into a sale, and cancels its expiry
// (also when it fired already: the cancel then finds nothing, and a sale always comes with
// it, which a rebuild relies on: commitTimer).
func (s *Service) commit(_ context.Context, tx *bolt.Tx, in events.Envelope) ([]events.Envelope, error) {
	var done events.CheckoutCompleted
	if err := in.DecodePayload(&done); err != nil {
		return nil, err
	}
	log := s.log.With("checkout_id", in.CheckoutID, "event_id", in.ID, "order_id", done.OrderID)
	res, found, err := loadReservation(tx, in.CheckoutID)
	if err != nil {
		return nil, err
	}
	switch {
	case !found:
		log.Debug("completed checkout reserved nothing here")
		return nil, runner.Unchanged
	case res.Status == Reserved:
		if err := settle(tx, &res, sellUnits, Committed); err != nil {
			return nil, err
		}
		log.Info("reservation sold", "reservation_id", res.ID)
	case res.Status == Committed:
		log.Info("reservation already sold", "reservation_id", res.ID)
	case res.Status == Expired:
		// The completion and the expiry crossed: the order stands, so its units are sold
		// from what is available. When they are gone, an operator must look (rejected).
		if err := settle(tx, &res, sellAvailableUnits, Committed); err != nil {
			log.Error("completed checkout's reservation expired and its units are gone", "reservation_id", res.ID, "err", err)
			return nil, fmt.Errorf("checkout %s completed after its reservation expired: %w", in.CheckoutID, err)
		}
		log.Warn("completed checkout's reservation had expired: sold from available stock", "reservation_id", res.ID)
	default:
		log.Error("completed checkout holds no stock", "status", res.Status)
		return nil, nil
	}
	return append([]events.Envelope{events.Must(in.CheckoutID, events.InventoryCommitted, events.Sale{ReservationID: res.ID})}, expiryCancelled(in.CheckoutID)), nil
}

// settle ends a reservation: its units move out of reserved, and it takes status. One
// that was still held no longer counts against its customer's hold limit.
func settle(tx *bolt.Tx, res *Reservation, move func(st *events.Stock, n int), status string) error {
	if err := moveStock(tx, res.Items, move); err != nil {
		return err
	}
	if res.Status == Reserved {
		if err := countHolds(tx, *res, -1); err != nil {
			return err
		}
	}
	res.Status = status
	return saveReservation(tx, *res)
}
