package inventory

import (
	"context"
	"fmt"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/runner"
	bolt "go.etcd.io/bbolt"
)

// expiryKey names the slot of a checkout's scheduled expiry.
const expiryKey = "inventory.expire"

// expiry is the checkout.inventory.expire that the server delivers back to the inventory
// ReservationTTL after from, the time of the event the reservation answers (not the clock:
// a rebuild schedules the same one, with the same ID). Schedules have a precision of one
// second, so the time is rounded up: a reservation never expires early.
func (s *Service) expiry(res Reservation, from time.Time) events.Envelope {
	at := from.Add(s.cfg.ReservationTTL).Truncate(time.Second).Add(time.Second)
	e := events.Must(res.CheckoutID, events.InventoryExpire, events.Expiry{ReservationID: res.ID})
	e.ID = fmt.Sprintf("%s:%d", e.ID, at.UnixMilli())
	e.Schedule = &events.Schedule{At: at, Key: expiryKey}
	return e
}

// expiryCancelled removes a settled reservation's pending expiry from inventory's timer
// stream: it would only fire, be found settled and do nothing, and the server would hold it,
// and its share of memory, for the rest of ReservationTTL. (After a crash of the inventory
// between its reservation's commit and publish, the republished hour-long expiry can come
// back after the cancel: it then fires, to no effect, in an hour.)
func expiryCancelled(checkoutID string) events.Envelope {
	return events.CancelSchedule(checkoutID, events.InventoryExpire, expiryKey)
}

// expire releases a reservation that is still held when its time is up, and says so;
// one that was committed or released meanwhile is left alone, silently, and without a
// commit: a settled reservation's expiry is cancelled (expiryCancelled), so this is rare.
func (s *Service) expire(_ context.Context, tx *bolt.Tx, in events.Envelope) ([]events.Envelope, error) {
	var exp events.Expiry
	if err := in.DecodePayload(&exp); err != nil {
		return nil, err
	}
	log := s.log.With("checkout_id", in.CheckoutID, "event_id", in.ID, "reservation_id", exp.ReservationID)
	res, found, err := loadReservation(tx, in.CheckoutID)
	if err != nil {
		return nil, err
	}
	switch {
	case !found || res.ID != exp.ReservationID:
		log.Warn("expiry of an unknown reservation: nothing to do")
		return nil, runner.Unchanged
	case res.Status != Reserved:
		log.Debug("reservation settled before its expiry", "status", res.Status)
		return nil, runner.Unchanged
	}
	if err := settle(tx, &res, releaseUnits, Expired); err != nil {
		return nil, err
	}
	log.Info("reservation expired, stock released", "items", res.Items)
	return []events.Envelope{events.Must(in.CheckoutID, events.InventoryExpired,
		events.Release{ReservationID: res.ID, Items: res.Items})}, nil
}
