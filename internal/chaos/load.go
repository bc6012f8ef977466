package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// kind is what a planned checkout tries.
type kind string

const (
	kindGood          kind = "good"            // in stock, a card that pays
	kindDuplicate     kind = "duplicate"       // good, and its checkout.requested is published twice, at once or after it ended
	kindLastUnits     kind = "last_units"      // competes for the few units of the scarce product
	kindOutOfStock    kind = "out_of_stock"    // one line of a product with no stock
	kindDeclined      kind = "declined"        // the card is declined
	kindReviewApprove kind = "review_approved" // held for a fraud review, approved by the operator
	kindReviewDeny    kind = "review_denied"   // held for a fraud review, denied
	kind3DSComplete   kind = "3ds_completed"   // 3-D Secure, the customer authenticates
	kind3DSAbandon    kind = "3ds_abandoned"   // 3-D Secure, the customer never comes back
	// The customer's mailbox refuses mail until the operator fixes it and re-drives: the
	// confirmation of a good checkout (it completes with a warning, then the checkout is
	// re-driven), the failure notice of a declined one (rejected to DEADLETTER, then the
	// dead letter is re-driven). Only where the run's mail server can refuse.
	kindMailDown    kind = "mail_down"
	kindMailboxFull kind = "mailbox_full"
	// A good checkout with a coupon for fewer checkouts than ask for it: it completes with the
	// discount or fails at validation, used up, and never more complete than it allows.
	kindCoupon kind = "coupon"
)

// mix is how often each kind is drawn, in parts.
var mix = []struct {
	kind  kind
	parts int
}{
	{kindGood, 35}, {kindDuplicate, 10}, {kindLastUnits, 10}, {kindOutOfStock, 8}, {kindDeclined, 10},
	{kindReviewApprove, 7}, {kindReviewDeny, 6}, {kind3DSComplete, 8}, {kind3DSAbandon, 6},
	{kindMailDown, 3}, {kindMailboxFull, 3}, {kindCoupon, 8},
}

// redriven reports whether a checkout of this kind waits for the operator's re-drive.
func (k kind) redriven() bool { return k == kindMailDown || k == kindMailboxFull }

// mustFail reports whether a checkout of this kind can never complete.
func (k kind) mustFail() bool {
	switch k {
	case kindOutOfStock, kindDeclined, kindReviewDeny, kind3DSAbandon, kindMailboxFull:
		return true
	}
	return false
}

// limitedCoupon is the demo coupon the load races for (deploy/demo/coupons.json).
const limitedCoupon = "LAUNCH15"

// Products of the demo catalog the load uses.
const (
	scarceProduct = "hoodie-saga"    // a few units, many checkouts after them
	soldOut       = "poster-route66" // no stock at all
	scarceUnits   = 5
)

var plentiful = []string{"tee-jetstream", "mug-nats", "stickers", "keyboard-bbolt"}

// initialStock is the run's stock: plenty of everything for n checkouts, a few units of
// the scarce product and none of the sold-out one.
func initialStock(n int) map[string]int {
	stock := map[string]int{scarceProduct: scarceUnits, soldOut: 0}
	for _, p := range plentiful {
		stock[p] = 10*n + 100
	}
	return stock
}

// planned is one checkout of the load.
type planned struct {
	ID       string
	Kind     kind
	Email    string
	PM       string
	Currency string
	Address  events.Address
	Items    []events.CartItem
	Coupon   string
	// Late: a duplicate's second checkout.requested comes after the checkout ended (a
	// customer's retry minutes later), not at once (a double click).
	Late bool

	cartID string // once created
}

var (
	california = events.Address{Name: "Ada Lovelace", Line1: "1 Market St", City: "San Francisco", State: "CA", PostalCode: "94105", Country: "US"}
	berlin     = events.Address{Name: "Grace Hopper", Line1: "Unter den Linden 1", City: "Berlin", PostalCode: "10117", Country: "DE"}
	tokyo      = events.Address{Name: "Ada", Line1: "1-1 Chiyoda", City: "Tokyo", PostalCode: "100-0001", Country: "JP"}
)

// plan draws n checkouts from r; with redrives, some wait for the operator's re-drive; with
// coupons, some race for a limited coupon.
func plan(r *rand.Rand, n int, redrives, coupons bool) []planned {
	parts := func(k kind, n int) int {
		if k.redriven() && !redrives || k == kindCoupon && !coupons {
			return 0
		}
		return n
	}
	total := 0
	for _, m := range mix {
		total += parts(m.kind, m.parts)
	}
	out := make([]planned, n)
	for i := range out {
		draw, k := r.IntN(total), kindGood
		for _, m := range mix {
			if draw < parts(m.kind, m.parts) {
				k = m.kind
				break
			}
			draw -= parts(m.kind, m.parts)
		}
		id := fmt.Sprintf("chaos-%05d", i)
		p := planned{ID: id, Kind: k, Email: id + "@example.com", PM: "pm_card_visa", Currency: "USD", Address: california}
		switch r.IntN(5) {
		case 0:
			p.Currency, p.Address = "EUR", berlin
		case 1:
			p.Currency, p.Address = "JPY", tokyo
		}
		// At most 2 × 2 units: under every currency's high-value threshold, so that the
		// fraud check clears it (or reviews it, for a review.test customer).
		for range 1 + r.IntN(2) {
			p.Items = append(p.Items, events.CartItem{ProductID: plentiful[r.IntN(len(plentiful))], Quantity: 1 + r.IntN(2)})
		}
		switch k {
		case kindLastUnits:
			p.Items = []events.CartItem{{ProductID: scarceProduct, Quantity: 1 + r.IntN(2)}}
		case kindOutOfStock:
			// The sold-out product is sold in dollars only.
			p.Currency, p.Address = "USD", california
			p.Items = append(p.Items, events.CartItem{ProductID: soldOut, Quantity: 1})
		case kindDuplicate:
			p.Late = r.IntN(2) == 0
		case kindDeclined:
			p.PM = []string{"pm_card_chargeDeclined", "pm_card_chargeDeclinedInsufficientFunds"}[r.IntN(2)]
		case kindMailboxFull:
			p.PM = "pm_card_chargeDeclined"
		case kindReviewApprove, kindReviewDeny:
			p.Email = id + "@review.test"
		case kind3DSComplete, kind3DSAbandon:
			p.PM = "pm_card_authenticationRequired"
		case kindCoupon:
			p.Coupon = limitedCoupon
		}
		out[i] = p
	}
	// A bounced confirmation is flagged only at its step's deadline (2 minutes): those
	// checkouts start first, so that the wait overlaps the load.
	slices.SortStableFunc(out, func(a, b planned) int {
		switch first := kindMailDown; {
		case a.Kind == first && b.Kind != first:
			return -1
		case b.Kind == first && a.Kind != first:
			return 1
		}
		return 0
	})
	return out
}

// driver starts the planned checkouts as a storefront would: a cart, then checkout.requested,
// each retried until it is acknowledged, through whatever the chaos does to NATS.
type driver struct {
	nc *nats.Conn
	js jetstream.JetStream
}

// start creates p's cart and requests its checkout (twice for a duplicate that is not late).
func (d driver) start(ctx context.Context, p *planned) error {
	var cart events.Cart
	if err := retry(ctx, func() error {
		return d.call(events.CartsCreate, events.CreateCart{CustomerID: "cus_" + p.ID, Currency: p.Currency, Items: p.Items}, &cart)
	}); err != nil {
		return fmt.Errorf("%s: create cart: %w", p.ID, err)
	}
	p.cartID = cart.ID
	times := 1
	if p.Kind == kindDuplicate && !p.Late {
		times = 2
	}
	for range times {
		if err := d.publish(ctx, *p); err != nil {
			return err
		}
	}
	return nil
}

// publish publishes p's checkout.requested, retried until the stream has it. There is no
// Nats-Msg-Id: the stream keeps every copy, as it would from a client that retried after
// losing the ack, and the checkout must still run once.
func (d driver) publish(ctx context.Context, p planned) error {
	body, err := json.Marshal(events.CheckoutRequest{
		CheckoutID: p.ID, CartID: p.cartID, CustomerID: "cus_" + p.ID, CustomerEmail: p.Email,
		PaymentMethodID: p.PM, ShippingAddress: p.Address, BillingAddress: p.Address, CouponCode: p.Coupon,
	})
	if err != nil {
		return err
	}
	if err := retry(ctx, func() error {
		pubCtx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		_, err := d.js.Publish(pubCtx, string(events.Requested), body)
		return err
	}); err != nil {
		return fmt.Errorf("%s: publish checkout.requested: %w", p.ID, err)
	}
	return nil
}

// call calls a micro endpoint and decodes its answer into out.
func (d driver) call(subject events.Subject, body, out any) error {
	raw, err := json.Marshal(body)
	if err != nil {
		return err
	}
	msg, err := d.nc.Request(string(subject), raw, 3*time.Second)
	if err != nil {
		return err
	}
	if code := msg.Header.Get("Nats-Service-Error-Code"); code != "" {
		return &serviceError{code: code, text: msg.Header.Get("Nats-Service-Error")}
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(msg.Data, out)
}

// serviceError is an endpoint's error reply: the request arrived and was refused.
type serviceError struct{ code, text string }

func (e *serviceError) Error() string { return e.code + " " + e.text }

// retry runs f until it succeeds, ctx ends, or it is refused as malformed (a 400: the
// harness's own bug, retrying will not help).
func retry(ctx context.Context, f func() error) error {
	for {
		err := f()
		var refused *serviceError
		if err == nil || (errors.As(err, &refused) && refused.code == "400") {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(200 * time.Millisecond):
		}
	}
}
