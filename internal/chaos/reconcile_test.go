package chaos

import (
	"fmt"
	"strings"
	"testing"

	"github.com/jetcheckout/jetcheckout/coordinator"
	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/services/inventory"
	"github.com/jetcheckout/jetcheckout/services/orders"
	"github.com/shopspring/decimal"
	"github.com/stripe/stripe-go/v76"
)

// TestReconcileFindsBrokenPromises feeds reconciliation a state with one broken promise of
// each kind, next to a checkout that kept them all, and expects each to be reported.
func TestReconcileFindsBrokenPromises(t *testing.T) {
	good := planned{ID: "co-good", Kind: kindGood, Email: "good@example.com"}
	plans := []planned{
		good,
		{ID: "co-twice", Kind: kindGood, Email: "twice@example.com"},
		{ID: "co-kept", Kind: kindDeclined, Email: "kept@example.com"},
		{ID: "co-lost", Kind: kindGood, Email: "lost@example.com"},
		{ID: "co-declined-won", Kind: kindDeclined, Email: "won@example.com"},
	}
	completed := func(id string, total string) events.Envelope {
		return events.Must(id, events.Completed, events.CheckoutCompleted{OrderID: "ord-" + id, Total: decimal.RequireFromString(total), Currency: "USD"})
	}
	failed := events.Must("co-kept", events.Failed, events.CheckoutFailed{Step: events.StepProcessPayment, Code: "card_declined", CustomerEmail: "kept@example.com"})
	order := func(id, total string, n int) events.Order {
		return events.Order{ID: "ord-" + id, CheckoutID: id, Status: orders.StatusConfirmed,
			Quote: events.Quote{Currency: "USD", Total: decimal.RequireFromString(total), Lines: []events.Line{{ProductID: "tee", Quantity: n}}}}
	}
	paid := func(id string, amount int64) *stripe.PaymentIntent {
		return &stripe.PaymentIntent{ID: "pi_" + id, Status: stripe.PaymentIntentStatusSucceeded, AmountReceived: amount}
	}
	s := &state{
		terminals: map[string][]events.Envelope{
			"co-good":         {completed("co-good", "10.00")},
			"co-twice":        {completed("co-twice", "10.00"), completed("co-twice", "10.00")},
			"co-kept":         {failed},
			"co-declined-won": {completed("co-declined-won", "10.00")},
			"co-stranger":     {failed},
		},
		picks: map[string][]events.Envelope{
			"co-good": {pick("co-good")}, "co-twice": {pick("co-twice"), pick("co-twice")},
			"co-kept": {pick("co-kept")}, "co-declined-won": {pick("co-declined-won")},
		},
		coordinator: map[string]coordinator.Status{
			"co-good": coordinator.StatusCompleted, "co-twice": coordinator.StatusCompleted,
			"co-kept": coordinator.StatusFailed, "co-declined-won": coordinator.StatusFailing,
		},
		orders: map[string][]events.Order{
			"co-good": {order("co-good", "10.00", 1)}, "co-twice": {order("co-twice", "10.00", 1)},
			"co-declined-won": {order("co-declined-won", "10.00", 1)},
		},
		stock: map[string]events.Stock{"tee": {ProductID: "tee", Available: 5, Reserved: 1, Sold: 3}},
		reservations: map[string]inventory.Reservation{
			"co-kept": {CheckoutID: "co-kept", Status: inventory.Reserved, Items: []events.ReservedItem{{ProductID: "tee", Quantity: 1}}},
		},
		intents: map[string][]*stripe.PaymentIntent{
			"co-good": {paid("co-good", 1000)}, "co-twice": {paid("co-twice", 1000), paid("co-twice2", 1000)},
			"co-kept": {paid("co-kept", 500)}, "co-declined-won": {paid("co-declined-won", 1000)},
		},
		refunded: map[string]int64{},
		mails: []receivedMail{
			{MessageID: "<co-good.confirmation@x>", To: "good@example.com"},
			{MessageID: "<co-good.confirmation@x>", To: "good@example.com"},
			{MessageID: "<co-twice.confirmation@x>", To: "someone-else@example.com"},
			{MessageID: "<co-kept.failure@x>", To: "kept@example.com"},
		},
	}
	var res Result
	reconcile(&res, plans, nil, map[string]int{"tee": 10}, s)

	want := []string{
		"co-twice (good): 2 terminal events",
		"co-twice (good): 2 PaymentIntents",
		"co-twice: completed for 1000 minor units, but 2000 captured",
		"co-twice: email to someone-else@example.com",
		"co-kept (declined): failed, but 500 minor units captured and 0 refunded",
		"co-kept: ended, but its reservation",
		"co-kept: failed, but the warehouse was asked to pick it",
		"co-declined-won: ended with checkout.completed, the coordinator's state says \"failing\"",
		"co-lost (good): no terminal event",
		"co-declined-won: a declined checkout completed",
		"co-declined-won: completed, no confirmation email",
		"co-stranger: terminal events",
		"stock tee: 5 available + 1 reserved + 3 sold != 10 initial",
	}
	for _, w := range want {
		if !found(res.Violations, w) {
			t.Errorf("no violation %q", w)
		}
	}
	for _, v := range res.Violations {
		if strings.HasPrefix(v, "co-good") {
			t.Errorf("the checkout that kept its promises was reported: %s", v)
		}
	}
	if res.Completed != 3 || res.Failed != 1 || res.Emails != 4 || res.DuplicateEmails != 1 || res.DuplicatePicks != 1 {
		t.Errorf("completed %d failed %d emails %d duplicate emails %d duplicate picks %d",
			res.Completed, res.Failed, res.Emails, res.DuplicateEmails, res.DuplicatePicks)
	}
}

func pick(id string) events.Envelope {
	return events.Must(id, events.WarehousePick, events.PickRequest{OrderID: "ord-" + id})
}

func found(all []string, prefix string) bool {
	for _, v := range all {
		if strings.HasPrefix(v, prefix) {
			return true
		}
	}
	return false
}

// TestReconcileFindsCouponsBroken: more checkouts completed with a limited coupon than it
// allows, a completed order without the coupon its checkout asked for, and a discount nobody
// asked for, are each reported; a checkout with its coupon is not.
func TestReconcileFindsCouponsBroken(t *testing.T) {
	coupons, err := demoCoupons()
	if err != nil {
		t.Fatal(err)
	}
	limit := coupons[limitedCoupon].MaxRedemptions
	s := &state{terminals: map[string][]events.Envelope{}, orders: map[string][]events.Order{}}
	var plans []planned
	add := func(id, asked string, discounts ...string) {
		plans = append(plans, planned{ID: id, Kind: kindCoupon, Coupon: asked})
		s.terminals[id] = []events.Envelope{events.Must(id, events.Completed, events.CheckoutCompleted{OrderID: "ord-" + id})}
		o := events.Order{ID: "ord-" + id, CheckoutID: id, Status: orders.StatusConfirmed}
		for _, code := range discounts {
			o.Discounts = append(o.Discounts, events.Discount{Code: code, Amount: decimal.NewFromInt(1)})
		}
		s.orders[id] = []events.Order{o}
	}
	for i := range limit + 1 {
		add(fmt.Sprintf("co-coupon-%02d", i), limitedCoupon, limitedCoupon)
	}
	add("co-no-discount", limitedCoupon)
	add("co-unasked", "", limitedCoupon)
	var violations []string
	checkCoupons(plans, s, func(format string, args ...any) { violations = append(violations, fmt.Sprintf(format, args...)) })
	for _, w := range []string{
		fmt.Sprintf("coupon %s: %d checkouts completed with it, its limit is %d", limitedCoupon, limit+2, limit), // co-unasked's too
		"co-no-discount: completed with discounts [], asked for coupon \"" + limitedCoupon + "\"",
		"co-unasked: completed with discounts [" + limitedCoupon + "], asked for coupon \"\"",
	} {
		if !found(violations, w) {
			t.Errorf("no violation %q in %q", w, violations)
		}
	}
	if found(violations, "co-coupon-00") {
		t.Errorf("a checkout with its coupon was reported: %q", violations)
	}
}

// TestReconcileFindsRenewalsBroken: a period charged twice over its attempts, a period marked
// paid whose attempts all failed, a renewal checkout that no record lists, and a subscription
// still running are each reported; a period paid once is not.
func TestReconcileFindsRenewalsBroken(t *testing.T) {
	subs := []plannedSub{{ID: "sub_ok", Email: "ok@example.com"}, {ID: "sub_bad", Email: "bad@example.com"}}
	completed := func(id string) []events.Envelope {
		return []events.Envelope{events.Must(id, events.Completed, events.CheckoutCompleted{OrderID: "ord-" + id})}
	}
	failed := func(id string) []events.Envelope {
		return []events.Envelope{events.Must(id, events.Failed, events.CheckoutFailed{Step: events.StepProcessPayment, Code: events.CodeCardDeclined, CustomerEmail: "bad@example.com"})}
	}
	order := func(id string) []events.Order {
		return []events.Order{{ID: "ord-" + id, CheckoutID: id, Status: orders.StatusConfirmed,
			Quote: events.Quote{Currency: "USD", Total: decimal.RequireFromString("10.00"), Lines: []events.Line{{ProductID: "mug", Quantity: 1}}}}}
	}
	paid := func(id string) *stripe.PaymentIntent {
		return &stripe.PaymentIntent{ID: "pi_" + id, Status: stripe.PaymentIntentStatusSucceeded, AmountReceived: 1000}
	}
	s := &state{
		subscriptions: map[string]events.Subscription{
			"sub_ok": {CreateSubscription: events.CreateSubscription{ID: "sub_ok"}, Status: events.SubscriptionCancelled,
				Periods: []events.Period{{N: 1, Attempts: 1, Outcome: events.PeriodPaid}}},
			"sub_bad": {CreateSubscription: events.CreateSubscription{ID: "sub_bad"}, Status: events.SubscriptionActive,
				Periods: []events.Period{{N: 1, Attempts: 2, Outcome: events.PeriodPaid}, {N: 2, Attempts: 1, Outcome: events.PeriodPaid}}},
		},
		terminals: map[string][]events.Envelope{
			"sub_ok-1": completed("sub_ok-1"), "sub_bad-1": completed("sub_bad-1"), "sub_bad-1-2": completed("sub_bad-1-2"),
			"sub_bad-2": failed("sub_bad-2"), "sub_bad-9": failed("sub_bad-9"),
		},
		orders: map[string][]events.Order{"sub_ok-1": order("sub_ok-1"), "sub_bad-1": order("sub_bad-1"), "sub_bad-1-2": order("sub_bad-1-2")},
		intents: map[string][]*stripe.PaymentIntent{
			"sub_ok-1": {paid("sub_ok-1")}, "sub_bad-1": {paid("sub_bad-1")}, "sub_bad-1-2": {paid("sub_bad-1-2")},
		},
		refunded: map[string]int64{},
		stock:    map[string]events.Stock{"mug": {ProductID: "mug", Available: 7, Sold: 3}},
		mails:    []receivedMail{{MessageID: "<sub_ok-1.confirmation@x>", To: "ok@example.com"}},
	}
	var res Result
	reconcile(&res, nil, subs, map[string]int{"mug": 10}, s)
	for _, w := range []string{
		"sub_bad: active after the run cancelled it",
		"sub_bad period 1: charged 2000 minor units, one period costs 1000",
		"sub_bad period 1: 2 attempts completed",
		"sub_bad period 2: outcome \"paid\", 0 attempts completed",
		"sub_bad-2: failed (card_declined), no failure notice",
		"sub_bad-9: terminal events",
	} {
		if !found(res.Violations, w) {
			t.Errorf("no violation %q in %q", w, res.Violations)
		}
	}
	for _, v := range res.Violations {
		if strings.HasPrefix(v, "sub_ok") || strings.HasPrefix(v, "stock") {
			t.Errorf("what kept its promises was reported: %s", v)
		}
	}
}
