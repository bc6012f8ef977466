package httpapi

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/jetcheckout/jetcheckout/events"
)

// FuzzBodies: whatever a client POSTs to /checkout/process, /carts or a review, reading it
// ends in a decoded body or a problem (400, or 413 past the size cap) that says what is
// wrong, never a panic or a 500; a checkout request that decodes is then valid or a 422
// with the reason, as processCheckout answers it before anything is published.
func FuzzBodies(f *testing.F) {
	f.Add([]byte(`{"cart_id":"cart_1","customer_id":"cus_ada","customer_email":"ada@example.com","payment_method_id":"pm_card_visa",` +
		`"shipping_address":{"line1":"1 Market St","city":"San Francisco","region":"CA","postal_code":"94105","country":"US"},` +
		`"billing_address":{"line1":"1 Market St","city":"San Francisco","region":"CA","postal_code":"94105","country":"US"}}`))
	f.Add([]byte(`{"cart_id":"cart_1","customer_email":"not an email","payment_method_id":"4242424242424242"}`))
	f.Add([]byte(`{"customer_id":"cus_1","currency":"USD","items":[{"product_id":"tee-jetstream","quantity":2}]}`))
	f.Add([]byte(`{"decision":"approve","reviewer":"ops"}`))
	f.Add([]byte(`{"cart_id":1e999}`))
	f.Add([]byte(`{"cart_id":"a"} trailing`))
	f.Add([]byte("\xff\xfe{"))
	f.Add([]byte(``))
	f.Add(bytes.Repeat([]byte(`{"a":`), 20000))
	f.Fuzz(func(t *testing.T, body []byte) {
		var req events.CheckoutRequest
		if read(t, body, &req) {
			var p *problemError
			if err := (&Server{}).checkRequest(req); err != nil && (!errors.As(err, &p) || p.Status != http.StatusUnprocessableEntity || p.Detail == "") {
				t.Fatalf("a decoded checkout request refused as %#v, want a 422 with the reason", err)
			}
		}
		read(t, body, &events.CreateCart{})
		read(t, body, &events.ReviewDecision{})
	})
}

// read decodes body into v as the handlers do and reports whether it decoded; a refusal
// must be a 400 or 413 problem with a detail, or a 422 naming an unknown address field.
func read(t *testing.T, body []byte, v any) bool {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/checkout/process", bytes.NewReader(body))
	_, err := readJSON(httptest.NewRecorder(), r, v)
	if err == nil {
		return true
	}
	var p *problemError
	if !errors.As(err, &p) {
		t.Fatalf("body %q refused as %#v, want a problem", body, err)
	}
	unknownField := p.Status == http.StatusUnprocessableEntity && strings.Contains(p.Detail, "unknown address field")
	if (p.Status != http.StatusBadRequest && p.Status != http.StatusRequestEntityTooLarge && !unknownField) || p.Detail == "" {
		t.Fatalf("body %q refused as %#v, want a 400 or 413 problem with a detail, or a 422 naming an unknown address field", body, err)
	}
	return false
}
