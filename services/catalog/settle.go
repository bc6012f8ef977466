package catalog

import (
	"context"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/store"
	"github.com/jetcheckout/jetcheckout/runner"
	bolt "go.etcd.io/bbolt"
)

// checkOutCart marks the cart of a completed checkout checked_out: it cannot be
// checked out again.
func (s *Service) checkOutCart(_ context.Context, tx *bolt.Tx, in events.Envelope) ([]events.Envelope, error) {
	var done events.CheckoutCompleted
	if err := in.DecodePayload(&done); err != nil {
		return nil, err
	}
	return nil, s.settleCart(tx, in, events.CartCheckedOut)
}

// reopenCart opens the cart of a failed checkout again, so that the customer can retry
// (with another card, say), and gives back its coupon's redemption.
func (s *Service) reopenCart(_ context.Context, tx *bolt.Tx, in events.Envelope) ([]events.Envelope, error) {
	var failed events.CheckoutFailed
	if err := in.DecodePayload(&failed); err != nil {
		return nil, err
	}
	if err := giveBack(tx, in.CheckoutID); err != nil {
		return nil, err
	}
	return nil, s.settleCart(tx, in, events.CartOpen)
}

// settleCart moves the cart held by the checkout to status. A checkout that never held
// a cart (it failed before) or no longer holds it changes nothing.
func (s *Service) settleCart(tx *bolt.Tx, in events.Envelope, status string) error {
	log := s.log.With("checkout_id", in.CheckoutID, "event_id", in.ID)
	cartID := tx.Bucket(bucketCheckouts).Get([]byte(in.CheckoutID))
	if cartID == nil {
		log.Debug("checkout held no cart")
		return nil
	}
	carts := tx.Bucket(bucketCarts)
	var cart cartState
	found, err := store.Get(carts, string(cartID), &cart)
	if err != nil {
		return runner.Permanent(err)
	}
	if !found || cart.CheckoutID != in.CheckoutID || cart.Status != events.CartCheckingOut {
		log.Info("cart not held by this checkout any more, left as it is", "cart_id", string(cartID), "status", cart.Status)
		return nil
	}
	cart.Status = status
	if status == events.CartOpen {
		cart.CheckoutID = ""
	}
	log.Info("cart settled", "cart_id", string(cartID), "status", status)
	return store.Put(carts, string(cartID), cart)
}
