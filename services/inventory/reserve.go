package inventory

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/store"
	"github.com/jetcheckout/jetcheckout/runner"
	bolt "go.etcd.io/bbolt"
)

// reserve is reserve_inventory: it holds every line of the quote, or none.
func (s *Service) reserve(_ context.Context, tx *bolt.Tx, in events.Envelope) ([]events.Envelope, error) {
	var quote events.Quote
	if err := in.DecodePayload(&quote); err != nil {
		return nil, err
	}
	log := s.log.With("checkout_id", in.CheckoutID, "event_id", in.ID)
	res, found, err := loadReservation(tx, in.CheckoutID)
	if err != nil {
		return nil, err
	}
	if found {
		// Not a copy of this event (the runner drops those) but another event for the same
		// checkout: one reservation per checkout, whatever arrives.
		log.Info("checkout already has a reservation, answering as before", "status", res.Status)
		return []events.Envelope{reserveOutcome(res)}, nil
	}

	if res, err = hold(tx, in.CheckoutID, quote, s.cfg.MaxHoldPerCustomer); err != nil {
		return nil, err
	}
	if err := saveReservation(tx, res); err != nil {
		return nil, err
	}
	if res.Status == Refused {
		log.Info("reservation refused", "reason", res.Reason)
		return []events.Envelope{reserveOutcome(res)}, nil
	}
	expire := s.expiry(res, runner.EventTime(in))
	log.Info("stock reserved", "reservation_id", res.ID, "items", res.Items, "expires_at", expire.Schedule.At)
	return []events.Envelope{reserveOutcome(res), expire}, nil
}

// hold reserves the lines' quantities, added up per product, in one change: when any
// product is short, or would take the customer over max units of it in unfinished
// checkouts, nothing is held and the reservation is Refused, naming each.
func hold(tx *bolt.Tx, checkoutID string, quote events.Quote, max int) (Reservation, error) {
	items, names := perProduct(quote.Lines)
	hs := holdersOf(quote)
	refused := Reservation{CheckoutID: checkoutID, Items: items, Status: Refused}
	over, products, err := overLimit(tx, hs, items, names, max)
	if err != nil {
		return Reservation{}, err
	}
	if over != "" {
		refused.Code, refused.Reason, refused.Products = events.CodeHoldLimitExceeded, over, products
		return refused, nil
	}
	var short []string
	for _, it := range items {
		var st events.Stock // a product never stocked has none available
		if _, err := store.Get(tx.Bucket(bucketStock), it.ProductID, &st); err != nil {
			return Reservation{}, runner.Permanent(err)
		}
		if st.Available < it.Quantity {
			short = append(short, fmt.Sprintf("%s: %d wanted, %d available", names[it.ProductID], it.Quantity, st.Available))
			refused.Products = append(refused.Products, names[it.ProductID])
		}
	}
	if len(short) > 0 {
		refused.Code, refused.Reason = events.CodeInsufficientStock, "not enough stock of "+strings.Join(short, "; ")
		return refused, nil
	}
	if err := moveStock(tx, items, reserveUnits); err != nil {
		return Reservation{}, err
	}
	res := Reservation{ID: "res_" + checkoutID, CheckoutID: checkoutID, Items: items, Status: Reserved}
	for _, h := range hs {
		res.Holders = append(res.Holders, h.key)
	}
	return res, countHolds(tx, res, +1)
}

// perProduct adds up the lines' quantities per product, ordered by product ID, with each
// product's name for people ("Sticker Pack (stickers)").
func perProduct(lines []events.Line) ([]events.ReservedItem, map[string]string) {
	qty := map[string]int{}
	names := map[string]string{}
	for _, l := range lines {
		qty[l.ProductID] += l.Quantity
		names[l.ProductID] = l.ProductID
		if l.Name != "" {
			names[l.ProductID] = fmt.Sprintf("%s (%s)", l.Name, l.ProductID)
		}
	}
	items := make([]events.ReservedItem, 0, len(qty))
	for id, q := range qty {
		items = append(items, events.ReservedItem{ProductID: id, Quantity: q})
	}
	slices.SortFunc(items, func(a, b events.ReservedItem) int { return strings.Compare(a.ProductID, b.ProductID) })
	return items, names
}

// reserveOutcome is the event a reservation answers a checkout.cart.validated with; the
// same reservation always gives the same event.
func reserveOutcome(res Reservation) events.Envelope {
	switch {
	case res.Status == Refused:
		code := res.Code
		if code == "" { // refused before codes were recorded: stock was short
			code = events.CodeInsufficientStock
		}
		return events.Must(res.CheckoutID, events.InventoryFailed, events.StepFailure{
			Step: events.StepReserveInventory, Code: code, Message: res.Reason, Products: res.Products})
	case res.ID == "":
		// The release came before the reservation: the checkout is already being undone.
		return events.Must(res.CheckoutID, events.InventoryFailed, events.StepFailure{
			Step: events.StepReserveInventory, Code: events.CodeCheckoutCancelled,
			Message: "the checkout was cancelled before its stock was reserved"})
	default:
		return events.Must(res.CheckoutID, events.InventoryReserved, events.Reservation{ReservationID: res.ID, Items: res.Items})
	}
}
