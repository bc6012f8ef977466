package stripeemu_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/internal/stripeemu"
	"github.com/stripe/stripe-go/v76"
)

// control calls the emulator's control surface with a JSON body.
func control(t *testing.T, method, url, key, body string) (int, string) {
	t.Helper()
	return send(t, method, url, key, "application/json", body)
}

// addFault switches a fault on over HTTP and returns its id.
func (h *harness) addFault(t *testing.T, body string) string {
	t.Helper()
	status, out := control(t, "POST", h.url+"/_emulator/faults", testKey, body)
	var rule struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(out), &rule); status != http.StatusCreated || err != nil || rule.ID == "" {
		t.Fatalf("add fault %s: %d %s", body, status, out)
	}
	return rule.ID
}

func TestControlNeedsTheAPIKey(t *testing.T) {
	h := start(t, stripeemu.WithAPIKey(testKey))
	for _, key := range []string{"", "sk_test_other", "pk_test_123"} {
		if status, _ := control(t, "DELETE", h.url+"/_emulator/faults", key, ""); status != http.StatusUnauthorized {
			t.Errorf("key %q: %d", key, status)
		}
		if status, _ := control(t, "POST", h.url+"/_emulator/faults", key, `{"kind":"timeout"}`); status != http.StatusUnauthorized {
			t.Errorf("key %q: %d", key, status)
		}
	}
	if n := len(h.emu.FaultRules()); n != 0 {
		t.Fatalf("an unauthenticated request added %d faults", n)
	}
}

// A charge_then_timeout on one payment method, for the first request only: the card is
// charged and the client never hears it; the retry with the same key replays the charge.
func TestChargeThenTimeoutOverHTTP(t *testing.T) {
	h := start(t)
	h.addFault(t, `{"match": {"method": "POST", "path": "/v1/payment_intents", "payment_method": "pm_card_mastercard"},
		"kind": "charge_then_timeout", "count": 1}`)
	impatient := newClient(h.url, testKey, 300*time.Millisecond)

	// Another payment method is not faulted.
	if _, err := impatient.PaymentIntents.New(card("pm_card_visa", 1000)); err != nil {
		t.Fatalf("pm_card_visa: %v", err)
	}
	if _, err := impatient.PaymentIntents.New(withKey(card("pm_card_mastercard", 2000), "k-mc")); err == nil {
		t.Fatal("want the answer lost")
	}
	charged := h.emu.PaymentIntents()
	if len(charged) != 2 || charged[1].Status != "succeeded" || charged[1].PaymentMethod != "pm_card_mastercard" {
		t.Fatalf("the faulted request must have charged: %+v", charged)
	}
	pi, err := impatient.PaymentIntents.New(withKey(card("pm_card_mastercard", 2000), "k-mc"))
	if err != nil || pi.ID != charged[1].ID || pi.LastResponse.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("the retry must replay the charge (the rule is spent): %v", err)
	}
	if status, body := control(t, "GET", h.url+"/_emulator/faults", testKey, ""); status != 200 || strings.Contains(body, "flt_") {
		t.Fatalf("a spent rule is still listed: %d %s", status, body)
	}
}

func TestStatusAndLatencyFaultsOverHTTP(t *testing.T) {
	h := start(t)
	pi, err := h.stripe.PaymentIntents.New(card("pm_card_visa", 1000))
	if err != nil {
		t.Fatal(err)
	}
	// Every GET of an intent paid with pm_card_visa fails; the rule matches by the
	// intent's payment method, as the request itself names none.
	id := h.addFault(t, `{"match": {"method": "GET", "path": "/v1/payment_intents/*", "payment_method": "pm_card_visa"},
		"kind": "status", "status": 503}`)
	for range 2 {
		_, err := h.stripe.PaymentIntents.Get(pi.ID, nil)
		if se := stripeError(t, err); se.HTTPStatusCode != 503 || se.Type != stripe.ErrorTypeAPI {
			t.Fatalf("got %d %s", se.HTTPStatusCode, se.Type)
		}
	}
	if _, err := h.stripe.PaymentIntents.Cancel(pi.ID, nil); stripeError(t, err).HTTPStatusCode != 400 {
		t.Fatalf("a POST is not matched, and Stripe refuses to cancel a succeeded intent: %v", err)
	}
	status, body := control(t, "GET", h.url+"/_emulator/faults", testKey, "")
	if status != 200 || !strings.Contains(body, `"id": "`+id+`"`) || !strings.Contains(body, `"kind": "status"`) {
		t.Fatalf("listed: %d %s", status, body)
	}
	if status, body := control(t, "DELETE", h.url+"/_emulator/faults/"+id, testKey, ""); status != 200 {
		t.Fatalf("delete: %d %s", status, body)
	}
	if _, err := h.stripe.PaymentIntents.Get(pi.ID, nil); err != nil {
		t.Fatalf("after the delete: %v", err)
	}
	if status, _ := control(t, "DELETE", h.url+"/_emulator/faults/"+id, testKey, ""); status != 404 {
		t.Fatalf("delete again: %d", status)
	}

	// Latency, then clear everything.
	h.addFault(t, `{"kind": "latency", "delay": "300ms"}`)
	h.addFault(t, `{"match": {"path": "/v1/refunds"}, "kind": "status", "status": 500, "after_run": true}`)
	began := time.Now()
	if _, err := h.stripe.PaymentIntents.Get(pi.ID, nil); err != nil || time.Since(began) < 300*time.Millisecond {
		t.Fatalf("latency: %v after %s", err, time.Since(began))
	}
	if status, body := control(t, "DELETE", h.url+"/_emulator/faults", testKey, ""); status != 200 || !strings.Contains(body, `"deleted": 2`) {
		t.Fatalf("clear: %d %s", status, body)
	}
	began = time.Now()
	if _, err := h.stripe.Refunds.New(&stripe.RefundParams{PaymentIntent: stripe.String(pi.ID)}); err != nil || time.Since(began) > 250*time.Millisecond {
		t.Fatalf("after clearing: %v after %s", err, time.Since(began))
	}
}

func TestProbabilityFault(t *testing.T) {
	h := start(t)
	h.addFault(t, `{"match": {"path": "/v1/payment_intents"}, "kind": "status", "status": 500, "probability": 0.5}`)
	faulted := 0
	for range 200 {
		if status, _ := raw(t, "GET", h.url+"/v1/payment_intents", testKey, ""); status == 500 {
			faulted++
		}
	}
	// Binomial(200, 0.5): outside 60..140 is a 1-in-10^8 event.
	if faulted < 60 || faulted > 140 {
		t.Fatalf("%d of 200 faulted at probability 0.5", faulted)
	}
}

func TestInvalidFaultsAreRefused(t *testing.T) {
	h := start(t)
	for _, body := range []string{
		``,
		`{"kind": "meteor"}`,
		`{"kind": "latency"}`,
		`{"kind": "latency", "delay": "soon"}`,
		`{"kind": "status"}`,
		`{"kind": "status", "status": 200}`,
		`{"kind": "timeout", "after_run": true}`,
		`{"kind": "timeout", "probability": 1.5}`,
		`{"kind": "timeout", "count": -1}`,
		`{"kind": "timeout", "match": {"path": "v1/refunds"}}`,
		`{"kind": "timeout", "colour": "red"}`,
	} {
		if status, out := control(t, "POST", h.url+"/_emulator/faults", testKey, body); status != 400 || !strings.Contains(out, "invalid_request_error") {
			t.Errorf("%s: %d %s", body, status, out)
		}
	}
	if n := len(h.emu.FaultRules()); n != 0 {
		t.Fatalf("%d invalid rules were added", n)
	}
	if status, _ := control(t, "PUT", h.url+"/_emulator/faults", testKey, ""); status != 404 {
		t.Errorf("PUT: %d", status)
	}
}

func TestAuthenticateOverHTTP(t *testing.T) {
	h := start(t)
	threeDS := func() *stripe.PaymentIntent {
		pi, err := h.stripe.PaymentIntents.New(card("pm_card_authenticationRequired", 900))
		if err != nil || pi.Status != stripe.PaymentIntentStatusRequiresAction {
			t.Fatalf("3DS intent: %v", err)
		}
		return pi
	}
	authenticate := func(id, body string) (int, string) {
		return control(t, "POST", h.url+"/_emulator/payment_intents/"+id+"/authenticate", testKey, body)
	}

	ok := threeDS()
	if status, body := authenticate(ok.ID, `{"result": "complete"}`); status != 200 || !strings.Contains(body, `"status": "succeeded"`) {
		t.Fatalf("complete: %d %s", status, body)
	}
	if got, _ := h.stripe.PaymentIntents.Get(ok.ID, nil); got.Status != stripe.PaymentIntentStatusSucceeded || got.AmountReceived != 900 {
		t.Fatalf("after completing: %s received %d", got.Status, got.AmountReceived)
	}
	if status, _ := authenticate(ok.ID, `{"result": "complete"}`); status != 400 {
		t.Fatalf("an intent that no longer requires action: %d", status)
	}

	failed := threeDS()
	if status, body := authenticate(failed.ID, `{"result": "fail"}`); status != 200 || !strings.Contains(body, `"status": "requires_payment_method"`) {
		t.Fatalf("fail: %d %s", status, body)
	}
	if got, _ := h.stripe.PaymentIntents.Get(failed.ID, nil); got.LastPaymentError == nil ||
		got.LastPaymentError.Code != stripe.ErrorCodePaymentIntentAuthenticationFailure || got.AmountReceived != 0 {
		t.Fatalf("after failing: %s %+v", got.Status, got.LastPaymentError)
	}

	pending := threeDS()
	for _, body := range []string{``, `{"result": "maybe"}`, `{"result": "complete", "extra": 1}`} {
		if status, _ := authenticate(pending.ID, body); status != 400 {
			t.Errorf("%q: %d", body, status)
		}
	}
	if status, _ := authenticate("pi_missing", `{"result": "complete"}`); status != 404 {
		t.Errorf("unknown intent: %d", status)
	}
	if got, _ := h.emu.PaymentIntent(pending.ID); got.Status != "requires_action" {
		t.Fatalf("refused calls changed the intent: %s", got.Status)
	}
}

func TestFaultMatch(t *testing.T) {
	create := stripeemu.Call{Method: "POST", Path: "/v1/payment_intents", PaymentMethod: "pm_card_visa"}
	confirm := stripeemu.Call{Method: "POST", Path: "/v1/payment_intents/pi_1/confirm", PaymentMethod: "pm_card_amex"}
	cases := []struct {
		m    stripeemu.FaultMatch
		c    stripeemu.Call
		want bool
	}{
		{stripeemu.FaultMatch{}, create, true},
		{stripeemu.FaultMatch{Method: "post"}, create, true},
		{stripeemu.FaultMatch{Method: "GET"}, create, false},
		{stripeemu.FaultMatch{Path: "/v1/payment_intents"}, create, true},
		{stripeemu.FaultMatch{Path: "/v1/payment_intents"}, confirm, false},
		{stripeemu.FaultMatch{Path: "/v1/payment_intents/*/confirm"}, confirm, true},
		{stripeemu.FaultMatch{Path: "/v1/payment_intents/*"}, confirm, false},
		{stripeemu.FaultMatch{PaymentMethod: "pm_card_amex"}, confirm, true},
		{stripeemu.FaultMatch{PaymentMethod: "pm_card_amex", Method: "POST"}, create, false},
	}
	for _, c := range cases {
		if got := c.m.Matches(c.c); got != c.want {
			t.Errorf("%+v on %s %s (%s): %v, want %v", c.m, c.c.Method, c.c.Path, c.c.PaymentMethod, got, c.want)
		}
	}
}

// When, given to WithFault, faults by payment method from the start.
func TestWhenPaymentMethod(t *testing.T) {
	h := start(t, stripeemu.WithFault(stripeemu.When(stripeemu.FaultMatch{PaymentMethod: "pm_card_amex"}, stripeemu.Fault{Status: 502})))
	if _, err := h.stripe.PaymentIntents.New(card("pm_card_amex", 1000)); stripeError(t, err).HTTPStatusCode != 502 {
		t.Fatalf("amex: %v", err)
	}
	if _, err := h.stripe.PaymentIntents.New(card("pm_card_visa", 1000)); err != nil {
		t.Fatalf("visa: %v", err)
	}
	if n := len(h.emu.PaymentIntents()); n != 1 {
		t.Fatalf("a fault before the run created an intent: %d", n)
	}
}
