package app

import (
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
)

// TestTheLastUnitsGoToExactlyThatManyCheckouts: 200 checkouts race for the last 5 units of
// one product. Exactly 5 complete and are charged; the other 195 fail cleanly at the
// reservation, charged nothing; the stock ends sold out, never below zero, nothing left
// reserved. (Issue 16's contended case, measured here on one inventory instance; the time
// until all are settled is logged, not asserted.)
func TestTheLastUnitsGoToExactlyThatManyCheckouts(t *testing.T) {
	const racers, left = 200, 5
	sys := startSystem(t, t.TempDir())
	env := &natstest.Env{NC: sys.NC, JS: sys.JS}
	w := env.Watch(t, "checkout.>")
	product := "keyboard-bbolt"
	initial := stock(t, sys, product)

	// Sell all but the last units first.
	first := createCart(t, sys, "USD", events.CartItem{ProductID: product, Quantity: initial.Available - left})
	publishCheckout(t, sys, checkoutRequestFor("co-race-first", first.ID, "pm_card_visa", "first@example.com"))
	if end := w.Wait(t, "co-race-first", wait, events.Completed, events.Failed); end.Type != events.Completed {
		t.Fatalf("the first checkout ended in %s: %s", end.Type, end.Payload)
	}

	ids := make([]string, racers)
	bodies := make([][]byte, racers)
	for i := range racers {
		ids[i] = fmt.Sprintf("co-race-%03d", i)
		cart := createCart(t, sys, "USD", events.CartItem{ProductID: product, Quantity: 1})
		bodies[i] = checkoutRequestFor(ids[i], cart.ID, "pm_card_visa", fmt.Sprintf("racer%d@example.com", i))
	}
	started := time.Now()
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() { publishCheckout(t, sys, bodies[i]) })
	}
	wg.Wait()
	completed, failed := 0, 0
	for _, id := range ids {
		switch end := w.Wait(t, id, 2*time.Minute, events.Completed, events.Failed); end.Type {
		case events.Completed:
			completed++
			if n := len(intents(sys, id)); n != 1 {
				t.Errorf("%s completed with %d payment intents", id, n)
			}
		default:
			failed++
			failedWith(t, w, id, events.CodeInsufficientStock, events.StepReserveInventory)
			if n := len(intents(sys, id)); n != 0 {
				t.Errorf("%s failed on stock but has %d payment intents", id, n)
			}
		}
	}
	t.Logf("%d checkouts raced for the last %d units: all settled %s after the first was published", racers, left, time.Since(started).Round(time.Millisecond))
	if completed != left || failed != racers-left {
		t.Errorf("%d completed and %d failed, want %d and %d", completed, failed, left, racers-left)
	}
	env.WaitIdle(t, events.ServiceInventory)
	if got := stock(t, sys, product); got.Available != 0 || got.Reserved != 0 || got.Sold != initial.Available+initial.Sold {
		t.Errorf("stock after the race: %+v, want 0 available, 0 reserved, %d sold", got, initial.Available+initial.Sold)
	}
}

// TestALimitedCouponGoesToExactlyThatManyCheckouts: 50 checkouts race for LAUNCH15, a coupon
// for 10 checkouts. Exactly 10 complete, each charged its discounted total once and ordered
// with the discount; the other 40 fail cleanly at validation (coupon_used_up), charged
// nothing; the coupon counts 10 uses.
func TestALimitedCouponGoesToExactlyThatManyCheckouts(t *testing.T) {
	const racers, limit = 50, 10
	sys := startSystem(t, t.TempDir())
	w := (&natstest.Env{NC: sys.NC, JS: sys.JS}).Watch(t, "checkout.>")
	ids := make([]string, racers)
	bodies := make([][]byte, racers)
	for i := range racers {
		ids[i] = fmt.Sprintf("co-coupon-%02d", i)
		customer := fmt.Sprintf("cus_coupon_%02d", i)
		cart := request[events.Cart](t, sys.NC, events.CartsCreate, events.CreateCart{CustomerID: customer, Currency: "USD",
			Items: []events.CartItem{{ProductID: "tee-jetstream", Quantity: 1}}})
		bodies[i], _ = json.Marshal(events.CheckoutRequest{CheckoutID: ids[i], CartID: cart.ID, CustomerID: customer,
			CustomerEmail: customer + "@example.com", PaymentMethodID: "pm_card_visa", ShippingAddress: california,
			BillingAddress: california, CouponCode: "LAUNCH15"})
	}
	var wg sync.WaitGroup
	for i := range racers {
		wg.Go(func() { publishCheckout(t, sys, bodies[i]) })
	}
	wg.Wait()
	completed := 0
	for _, id := range ids {
		switch end := w.Wait(t, id, wait, events.Completed, events.Failed); end.Type {
		case events.Completed:
			completed++
			// 25.00 less 15% (3.75) is 21.25; CA tax 7.25% of it 1.540625 → 1.54; shipping 6.00.
			if pi := intents(sys, id); len(pi) != 1 || pi[0].AmountReceived != 2879 {
				t.Errorf("%s completed with payments %+v, want one of 28.79", id, pi)
			}
			order, found, err := sys.Orders.OrderByCheckout(id)
			if err != nil || !found || len(order.Discounts) != 1 || order.Discounts[0].Code != "LAUNCH15" {
				t.Errorf("%s's order: %+v (%v, found %v), want it with LAUNCH15", id, order.Discounts, err, found)
			}
		default:
			failedWith(t, w, id, events.CodeCouponUsedUp, events.StepValidateCart)
			if n := len(intents(sys, id)); n != 0 {
				t.Errorf("%s failed on the coupon but has %d payment intents", id, n)
			}
		}
	}
	if completed != limit {
		t.Errorf("%d checkouts completed with the coupon, want %d", completed, limit)
	}
	if n, err := sys.Catalog.Redemptions("LAUNCH15"); err != nil || n != limit {
		t.Errorf("LAUNCH15 counts %d uses (%v), want %d", n, err, limit)
	}
}
