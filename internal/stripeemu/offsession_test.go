package stripeemu_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stripe/stripe-go/v76"
)

func (h *harness) customer(t *testing.T) string {
	t.Helper()
	c, err := h.stripe.Customers.New(&stripe.CustomerParams{Email: stripe.String("ada@example.com")})
	if err != nil {
		t.Fatal(err)
	}
	return c.ID
}

// saved attaches the test token to the customer and returns the saved PaymentMethod's ID.
func (h *harness) saved(t *testing.T, token, customerID string) string {
	t.Helper()
	pm, err := h.stripe.PaymentMethods.Attach(token, &stripe.PaymentMethodAttachParams{Customer: stripe.String(customerID)})
	if err != nil {
		t.Fatalf("attach %s: %v", token, err)
	}
	return pm.ID
}

// offSession is a renewal's payment: confirmed with a saved card, without the customer.
func offSession(pm, customerID string, amount int64) *stripe.PaymentIntentParams {
	p := card(pm, amount)
	p.Customer, p.OffSession = stripe.String(customerID), stripe.Bool(true)
	return p
}

func TestCustomers(t *testing.T) {
	h := start(t)
	created, err := h.stripe.Customers.New(&stripe.CustomerParams{
		Email: stripe.String("ada@example.com"), Name: stripe.String("Ada Lovelace"),
		Description: stripe.String("subscriber"), Params: stripe.Params{Metadata: map[string]string{"subscription_id": "sub_1"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(created.ID, "cus_") || created.Created == 0 {
		t.Fatalf("created %+v", created)
	}
	got, err := h.stripe.Customers.Get(created.ID, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != created.ID || got.Email != "ada@example.com" || got.Name != "Ada Lovelace" ||
		got.Description != "subscriber" || got.Metadata["subscription_id"] != "sub_1" {
		t.Fatalf("read back %+v", got)
	}

	_, err = h.stripe.Customers.Get("cus_nope", nil)
	if se := stripeError(t, err); se.HTTPStatusCode != 404 || se.Code != stripe.ErrorCodeResourceMissing || se.Msg != "No such customer: 'cus_nope'" {
		t.Fatalf("unknown customer: %d %s %q", se.HTTPStatusCode, se.Code, se.Msg)
	}
	_, err = h.stripe.Customers.New(&stripe.CustomerParams{Email: stripe.String("not an address")})
	if se := stripeError(t, err); se.HTTPStatusCode != 400 || se.Code != stripe.ErrorCodeEmailInvalid || se.Param != "email" {
		t.Fatalf("bad email: %d %s %s", se.HTTPStatusCode, se.Code, se.Param)
	}
	if status, body := raw(t, "POST", h.url+"/v1/customers", testKey, "email=ada@example.com&colour=blue"); status != 400 || !strings.Contains(body, "Received unknown parameter: colour") {
		t.Fatalf("unknown parameter: %d %s", status, body)
	}
}

func TestAttachPaymentMethod(t *testing.T) {
	h := start(t)
	ada, bob := h.customer(t), h.customer(t)
	attached, err := h.stripe.PaymentMethods.Attach("pm_card_visa", &stripe.PaymentMethodAttachParams{Customer: stripe.String(ada)})
	if err != nil {
		t.Fatal(err)
	}
	// A new PaymentMethod with the token's card, not the token itself.
	if !strings.HasPrefix(attached.ID, "pm_") || attached.ID == "pm_card_visa" || attached.Customer == nil ||
		attached.Customer.ID != ada || attached.Card.Last4 != "4242" {
		t.Fatalf("attached %+v", attached)
	}
	got, err := h.stripe.PaymentMethods.Get(attached.ID, nil)
	if err != nil || got.Customer == nil || got.Customer.ID != ada || got.Card.Brand != "visa" {
		t.Fatalf("read back: %v %+v", err, got)
	}
	if token, err := h.stripe.PaymentMethods.Get("pm_card_visa", nil); err != nil || token.Customer != nil {
		t.Fatalf("the token stays saved to nobody: %v %+v", err, token)
	}
	again, err := h.stripe.PaymentMethods.Attach(attached.ID, &stripe.PaymentMethodAttachParams{Customer: stripe.String(ada)})
	if err != nil || again.ID != attached.ID {
		t.Fatalf("attaching to its own customer again: %v", err)
	}

	refusals := []struct {
		name, pm, customer string
		status             int
		code               stripe.ErrorCode
		message            string
	}{
		{"to another customer", attached.ID, bob, 400, "", "The payment method you provided has already been attached to a customer."},
		{"to an unknown customer", "pm_card_visa", "cus_nope", 400, stripe.ErrorCodeResourceMissing, "No such customer: 'cus_nope'"},
		{"an unknown payment method", "pm_nope", ada, 404, stripe.ErrorCodeResourceMissing, "No such PaymentMethod: 'pm_nope'"},
		{"without a customer", "pm_card_visa", "", 400, stripe.ErrorCodeParameterMissing, "Missing required param: customer."},
		{"a card whose check declines", "pm_card_chargeDeclined", ada, 402, stripe.ErrorCodeCardDeclined, "Your card was declined."},
	}
	for _, c := range refusals {
		t.Run(c.name, func(t *testing.T) {
			p := &stripe.PaymentMethodAttachParams{}
			if c.customer != "" {
				p.Customer = stripe.String(c.customer)
			}
			_, err := h.stripe.PaymentMethods.Attach(c.pm, p)
			if se := stripeError(t, err); se.HTTPStatusCode != c.status || se.Code != c.code || se.Msg != c.message {
				t.Fatalf("got %d %s %q", se.HTTPStatusCode, se.Code, se.Msg)
			}
		})
	}
	if _, err := h.stripe.PaymentMethods.Attach("pm_card_chargeCustomerFail", &stripe.PaymentMethodAttachParams{Customer: stripe.String(ada)}); err != nil {
		t.Fatalf("pm_card_chargeCustomerFail attaches: %v", err)
	}
}

func TestOffSessionPayments(t *testing.T) {
	h := start(t)
	cus := h.customer(t)
	cases := []struct {
		name, pm string
		save     bool
		// want "" for success, else the error and decline codes of a 402
		code, decline string
	}{
		{"saved card", "pm_card_visa", true, "", ""},
		{"test token with a customer", "pm_card_visa", false, "", ""},
		{"saved card that always authenticates", "pm_card_authenticationRequired", true, "authentication_required", "authentication_required"},
		{"saved 3DS2 card", "pm_card_threeDSecure2Required", true, "authentication_required", "authentication_required"},
		{"3DS2 token", "pm_card_threeDSecure2Required", false, "authentication_required", "authentication_required"},
		{"card set up for off-session", "pm_card_authenticationRequiredOnSetup", true, "", ""},
		{"the same card never set up", "pm_card_authenticationRequiredOnSetup", false, "authentication_required", "authentication_required"},
		{"saved card that fails its charges", "pm_card_chargeCustomerFail", true, "card_declined", "generic_decline"},
		{"declining token", "pm_card_chargeDeclinedInsufficientFunds", false, "card_declined", "insufficient_funds"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pm := c.pm
			if c.save {
				pm = h.saved(t, c.pm, cus)
			}
			pi, err := h.stripe.PaymentIntents.New(offSession(pm, cus, 2500))
			if c.code == "" {
				if err != nil || pi.Status != stripe.PaymentIntentStatusSucceeded || pi.AmountReceived != 2500 || pi.Customer == nil || pi.Customer.ID != cus {
					t.Fatalf("want a charge: %v %+v", err, pi)
				}
				view, _ := h.emu.PaymentIntent(pi.ID)
				if view.Customer != cus || !view.OffSession || view.PaymentMethod != pm {
					t.Fatalf("view %+v", view)
				}
				return
			}
			se := stripeError(t, err)
			if se.HTTPStatusCode != http.StatusPaymentRequired || se.Type != stripe.ErrorTypeCard ||
				string(se.Code) != c.code || string(se.DeclineCode) != c.decline || se.PaymentIntent == nil {
				t.Fatalf("got %d %s %s/%s %+v", se.HTTPStatusCode, se.Type, se.Code, se.DeclineCode, se.PaymentIntent)
			}
			if c.code == "authentication_required" && se.Msg != "Your card was declined. This transaction requires authentication." {
				t.Fatalf("message %q", se.Msg)
			}
			get := &stripe.PaymentIntentParams{}
			get.AddExpand("latest_charge")
			stored, err := h.stripe.PaymentIntents.Get(se.PaymentIntent.ID, get)
			if err != nil {
				t.Fatal(err)
			}
			if stored.Status != stripe.PaymentIntentStatusRequiresPaymentMethod || stored.NextAction != nil || stored.AmountReceived != 0 ||
				stored.LastPaymentError == nil || string(stored.LastPaymentError.Code) != c.code ||
				stored.LatestCharge.Status != stripe.ChargeStatusFailed || stored.LatestCharge.Paid {
				t.Fatalf("stored intent: %s next %+v received %d error %+v charge %+v", stored.Status, stored.NextAction,
					stored.AmountReceived, stored.LastPaymentError, stored.LatestCharge)
			}
		})
	}
}

// On-session, a card that needs authentication still asks for it, saved or not.
func TestOnSessionSavedCardAuthenticates(t *testing.T) {
	h := start(t)
	cus := h.customer(t)
	p := card(h.saved(t, "pm_card_authenticationRequiredOnSetup", cus), 900)
	p.Customer = stripe.String(cus)
	pi, err := h.stripe.PaymentIntents.New(p)
	if err != nil || pi.Status != stripe.PaymentIntentStatusRequiresAction {
		t.Fatalf("want requires_action: %v %+v", err, pi)
	}
}

func TestOffSessionRules(t *testing.T) {
	h := start(t)
	ada, bob := h.customer(t), h.customer(t)
	adas := h.saved(t, "pm_card_visa", ada)
	cases := []struct {
		name    string
		params  *stripe.PaymentIntentParams
		param   string
		message string
	}{
		{"off_session without confirm", func() *stripe.PaymentIntentParams {
			p := offSession("pm_card_visa", ada, 900)
			p.Confirm = nil
			return p
		}(), "off_session", "You can only pass in `off_session` when `confirm` is `true`."},
		{"a saved card without its customer", card(adas, 900), "payment_method",
			"The `payment_method` parameter supplied " + adas + " belongs to the Customer " + ada + ". Please include the Customer in the `customer` parameter on the PaymentIntent."},
		{"a saved card with another customer", offSession(adas, bob, 900), "payment_method",
			"The customer does not have a payment method with the ID " + adas + ". The payment method must be attached to the customer."},
		{"an unknown customer", offSession("pm_card_visa", "cus_nope", 900), "customer", "No such customer: 'cus_nope'"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := h.stripe.PaymentIntents.New(c.params)
			if se := stripeError(t, err); se.HTTPStatusCode != 400 || se.Type != stripe.ErrorTypeInvalidRequest || se.Param != c.param || se.Msg != c.message {
				t.Fatalf("got %d %s %s %q", se.HTTPStatusCode, se.Type, se.Param, se.Msg)
			}
		})
	}
	status, body := raw(t, "POST", h.url+"/v1/payment_intents", testKey,
		"amount=900&currency=usd&confirm=true&payment_method=pm_card_visa&payment_method_types[]=card&off_session=maybe")
	if status != 400 || !strings.Contains(body, `"code": "parameter_invalid_boolean"`) {
		t.Fatalf("off_session=maybe: %d %s", status, body)
	}
	if n := len(h.emu.PaymentIntents()); n != 0 {
		t.Fatalf("refused requests created %d intents", n)
	}

	// The confirm endpoint takes off_session too, and checks the card's owner.
	p := offSession(h.saved(t, "pm_card_authenticationRequired", ada), ada, 900)
	p.Confirm, p.OffSession = nil, nil
	pi, err := h.stripe.PaymentIntents.New(p)
	if err != nil || pi.Status != stripe.PaymentIntentStatusRequiresConfirmation {
		t.Fatalf("create: %v", err)
	}
	_, err = h.stripe.PaymentIntents.Confirm(pi.ID, &stripe.PaymentIntentConfirmParams{PaymentMethod: stripe.String(h.saved(t, "pm_card_visa", bob))})
	if se := stripeError(t, err); se.HTTPStatusCode != 400 || se.Param != "payment_method" {
		t.Fatalf("confirm with bob's card: %d %q", se.HTTPStatusCode, se.Msg)
	}
	_, err = h.stripe.PaymentIntents.Confirm(pi.ID, &stripe.PaymentIntentConfirmParams{OffSession: stripe.Bool(true)})
	if se := stripeError(t, err); se.HTTPStatusCode != 402 || se.Code != stripe.ErrorCodeAuthenticationRequired {
		t.Fatalf("confirm off-session: %d %s", se.HTTPStatusCode, se.Code)
	}
}

// setup_future_usage saves the card to the customer once the payment is made, after any
// authentication: then it pays off-session.
func TestSetupFutureUsageSavesTheCard(t *testing.T) {
	h := start(t)
	cus := h.customer(t)
	p := card("pm_card_authenticationRequiredOnSetup", 1200)
	p.Customer, p.SetupFutureUsage = stripe.String(cus), stripe.String("off_session")
	pi, err := h.stripe.PaymentIntents.New(p)
	if err != nil || pi.Status != stripe.PaymentIntentStatusRequiresAction || pi.SetupFutureUsage != "off_session" {
		t.Fatalf("want requires_action: %v %+v", err, pi)
	}
	if err := h.emu.CompleteAuthentication(pi.ID, true); err != nil {
		t.Fatal(err)
	}
	paid, err := h.stripe.PaymentIntents.Get(pi.ID, nil)
	if err != nil || paid.Status != stripe.PaymentIntentStatusSucceeded || paid.PaymentMethod == nil {
		t.Fatalf("after authentication: %v %+v", err, paid)
	}
	saved, err := h.stripe.PaymentMethods.Get(paid.PaymentMethod.ID, nil)
	if err != nil || saved.ID == "pm_card_authenticationRequiredOnSetup" || saved.Customer == nil || saved.Customer.ID != cus {
		t.Fatalf("the card is not saved to the customer: %v %+v", err, saved)
	}
	renewal, err := h.stripe.PaymentIntents.New(offSession(saved.ID, cus, 1200))
	if err != nil || renewal.Status != stripe.PaymentIntentStatusSucceeded {
		t.Fatalf("off-session with the saved card: %v", err)
	}
}
