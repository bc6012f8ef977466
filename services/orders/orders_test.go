package orders

import (
	"testing"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/steptest"
	"github.com/jetcheckout/jetcheckout/runner"
	"github.com/shopspring/decimal"
)

type harness struct {
	*steptest.Harness
	svc *Service
}

// start runs the service behind the real runner on an embedded JetStream.
func start(t *testing.T) harness {
	t.Helper()
	h, svc := steptest.Start(t, runner.Config{Name: "orders"}, New)
	return harness{h, svc}
}

// created publishes a capture and returns the order the service announced.
func (h harness) created(t *testing.T, in events.Envelope) events.Order {
	t.Helper()
	h.Env.Publish(t, in)
	var o events.Order
	h.Expect(t, in.CheckoutID, events.OrderCreated, &o, events.Rejected)
	return o
}

func TestOrdersAreCreatedAndNumbered(t *testing.T) {
	h := start(t)
	first := h.created(t, captured("co_a", "pi_a"))
	second := h.created(t, captured("co_b", "pi_b"))

	// Numbered by their request's stream sequence: co_a's was the first message.
	if first.ID != "ord_co_a" || first.Number != "JC-000001" || len(second.Number) != len(first.Number) || second.Number <= first.Number {
		t.Errorf("orders %s %s and %s %s", first.ID, first.Number, second.ID, second.Number)
	}
	stored, found, err := h.svc.Order("ord_co_a")
	if err != nil || !found {
		t.Fatalf("Order: found=%v err=%v", found, err)
	}
	if stored.Status != StatusConfirmed || stored.PaymentIntentID != "pi_a" || stored.CheckoutID != "co_a" ||
		!stored.Total.Equal(dec("29.97")) || stored.CustomerEmail != "ada@example.com" || stored.CreatedAt.IsZero() {
		t.Errorf("stored order = %+v", stored)
	}
	if !stored.CreatedAt.Equal(first.CreatedAt) || stored.Number != first.Number {
		t.Errorf("event %+v differs from stored %+v", first, stored)
	}
	byCheckout, found, err := h.svc.OrderByCheckout("co_b")
	if err != nil || !found || byCheckout.ID != "ord_co_b" {
		t.Errorf("OrderByCheckout(co_b) = %s found=%v err=%v", byCheckout.ID, found, err)
	}
	if _, found, _ := h.svc.OrderByCheckout("co_none"); found {
		t.Error("OrderByCheckout found an order for an unknown checkout")
	}
	all, err := h.svc.Orders()
	if err != nil || len(all) != 2 || all[0].ID != "ord_co_a" || all[1].ID != "ord_co_b" {
		t.Fatalf("Orders() = %v, %v", all, err)
	}
}

func TestACheckoutGetsOneOrder(t *testing.T) {
	h := start(t)
	in := captured("co_dup", "pi_1")
	first := h.created(t, in)

	// The same event under another Nats-Msg-Id is dropped by the runner; a different event
	// of the same checkout reaches the handler, which announces the existing order again.
	h.PublishCopy(t, in, "another-msg-id")
	replay := captured("co_dup", "pi_2")
	replay.ID += ":replayed"
	h.Env.Publish(t, replay)
	h.WaitCount(t, "co_dup", events.OrderCreated, 2) // the replayed capture is answered

	for _, e := range h.Watch.All("co_dup") {
		var o events.Order
		if e.Type == events.OrderCreated && (e.DecodePayload(&o) != nil || o.Number != first.Number || o.PaymentIntentID != "pi_1") {
			t.Errorf("announced %s %s (%s), want the first order %s", o.ID, o.Number, o.PaymentIntentID, first.Number)
		}
	}
	all, err := h.svc.Orders()
	if err != nil || len(all) != 1 {
		t.Fatalf("Orders() = %d orders, %v; want 1", len(all), err)
	}
	// The next checkout's number comes after the first's.
	if next := h.created(t, captured("co_next", "pi_3")); len(next.Number) != len(first.Number) || next.Number <= first.Number {
		t.Errorf("next order number = %s, want one after %s", next.Number, first.Number)
	}
}

func TestMalformedCaptureIsRejected(t *testing.T) {
	h := start(t)
	wrongAmount := captured("co_bad", "pi_bad")
	var p events.Payment
	if err := wrongAmount.DecodePayload(&p); err != nil {
		t.Fatal(err)
	}
	p.Amount = dec("1.00")
	wrongAmount = events.Must("co_bad", events.OrderRequested, p)
	h.Env.Publish(t, wrongAmount)

	h.Refusal(t, "co_bad", events.OrderFailed, events.OrderCreated)
	if _, found, _ := h.svc.OrderByCheckout("co_bad"); found {
		t.Error("an order was created from a malformed capture")
	}
	if all, err := h.svc.Orders(); err != nil || len(all) != 0 {
		t.Errorf("Orders() = %v, %v; want none", all, err)
	}
	if o := h.created(t, captured("co_good", "pi_good")); o.ID != "ord_co_good" || o.Number == "" {
		t.Errorf("first valid order is %+v", o)
	}
}

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func captured(checkoutID, paymentIntent string) events.Envelope {
	home := events.Address{Name: "Ada Lovelace", Line1: "1 Main St", City: "Springfield", State: "IL", PostalCode: "62701", Country: "US"}
	q := events.Quote{
		CartID: "cart_" + checkoutID, CustomerID: "cus_1", CustomerEmail: "ada@example.com", PaymentMethodID: "pm_card_visa",
		ShippingAddress: home, BillingAddress: home, Currency: "USD",
		Lines:    []events.Line{{ProductID: "tea", Name: "Green tea", Quantity: 3, UnitPrice: dec("9.99"), Total: dec("29.97")}},
		Subtotal: dec("29.97"), Tax: dec("0"), Shipping: dec("0"), Total: dec("29.97"),
	}
	return events.Must(checkoutID, events.OrderRequested, events.Payment{
		PaymentIntentID: paymentIntent, Amount: q.Total, Currency: q.Currency, Quote: q,
	})
}
