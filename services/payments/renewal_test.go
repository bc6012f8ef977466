package payments_test

import (
	"testing"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/services/payments"
	"github.com/stripe/stripe-go/v76"
)

// subscriber makes a Stripe customer with the test card token saved to it, as the
// subscriptions service does when a subscription starts, and returns both IDs.
func (h *harness) subscriber(t *testing.T, token string) (customerID, paymentMethodID string) {
	t.Helper()
	cus, err := h.stripe.Customers.New(&stripe.CustomerParams{Email: stripe.String("ada@example.com")})
	if err != nil {
		t.Fatal(err)
	}
	pm, err := h.stripe.PaymentMethods.Attach(token, &stripe.PaymentMethodAttachParams{Customer: stripe.String(cus.ID)})
	if err != nil {
		t.Fatalf("save %s: %v", token, err)
	}
	return cus.ID, pm.ID
}

// renewal is the quote of a subscription's period, paid with the saved card.
func renewal(customerID, paymentMethodID string, period int) (string, events.Quote) {
	q := quote(paymentMethodID, "USD", "19.00")
	// A return URL left in the quote must not matter: nobody is there to come back to it.
	q.ReturnURL = "https://shop.example/checkout/return"
	q.Renewal = &events.Renewal{SubscriptionID: "sub_gold", Period: period, StripeCustomer: customerID}
	return q.Renewal.CheckoutID(), q
}

func TestRenewalIsChargedOffSession(t *testing.T) {
	h := start(t, options{})
	cus, pm := h.subscriber(t, "pm_card_visa")
	checkout, q := renewal(cus, pm, 2)
	h.Env.Publish(t, requested(checkout, q))
	p := h.captured(t, checkout, q, 1900)

	pi := h.intents(t, checkout)[0]
	if pi.Customer == nil || pi.Customer.ID != cus || pi.PaymentMethod == nil || pi.PaymentMethod.ID != pm {
		t.Fatalf("intent customer %+v payment method %+v, want %s and %s", pi.Customer, pi.PaymentMethod, cus, pm)
	}
	if pi.Metadata["subscription_id"] != "sub_gold" || pi.Metadata["period"] != "2" || pi.Metadata["checkout_id"] != checkout {
		t.Fatalf("metadata %v", pi.Metadata)
	}
	if pi.AutomaticPaymentMethods == nil || pi.AutomaticPaymentMethods.AllowRedirects != stripe.PaymentIntentAutomaticPaymentMethodsAllowRedirectsNever {
		t.Fatalf("a renewal must allow no redirect: %+v", pi.AutomaticPaymentMethods)
	}
	if view, _ := h.emu.PaymentIntent(p.PaymentIntentID); !view.OffSession || view.Customer != cus {
		t.Fatalf("want an off-session confirmation for %s, got %+v", cus, view)
	}
}

// The bank asks for authentication, which the absent customer cannot give: the payment
// fails at once and nothing is charged; nothing waits for 3-D Secure.
func TestRenewalThatNeedsAuthenticationFails(t *testing.T) {
	h := start(t, options{})
	cus, pm := h.subscriber(t, "pm_card_authenticationRequired")
	checkout, q := renewal(cus, pm, 3)
	h.Env.Publish(t, requested(checkout, q))

	var f events.StepFailure
	h.Expect(t, checkout, events.PaymentFailed, &f, events.PaymentCaptured, events.PaymentActionPending)
	if f.Step != events.StepProcessPayment || f.Code != events.CodeAuthenticationRequired || f.Message == "" || f.Uncertain {
		t.Fatalf("failure: %+v", f)
	}
	intents := h.intents(t, checkout)
	if len(intents) != 1 || f.Reference != intents[0].ID {
		t.Fatalf("want the failure to name the one intent, got %q and %d intents", f.Reference, len(intents))
	}
	if pi := intents[0]; pi.Status != stripe.PaymentIntentStatusRequiresPaymentMethod || pi.AmountReceived != 0 ||
		pi.LastPaymentError == nil || pi.LastPaymentError.Code != stripe.ErrorCodeAuthenticationRequired {
		t.Fatalf("intent %s received %d, last error %+v", pi.Status, pi.AmountReceived, pi.LastPaymentError)
	}
	if rec := h.record(t, checkout); rec.Status != payments.Failed || rec.FailureCode != events.CodeAuthenticationRequired {
		t.Fatalf("record: %+v", rec)
	}
	h.Idle(t)
	if n := h.Watch.Count(checkout, events.PaymentActionPending) + h.Watch.Count(checkout, events.PaymentRecheck); n != 0 {
		t.Fatalf("a renewal waited for authentication: %v", h.Watch.All(checkout))
	}
}
