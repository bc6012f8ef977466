package metrics

import "testing"

// An operation label names the request without the object it is about: the label set
// stays bounded however many PaymentIntents there are.
func TestStripeOperation(t *testing.T) {
	for _, tt := range []struct{ method, path, want string }{
		{"POST", "/v1/payment_intents", "POST /v1/payment_intents"},
		{"GET", "/v1/payment_intents/pi_3QabcDEF123", "GET /v1/payment_intents/{id}"},
		{"POST", "/v1/payment_intents/pi_3QabcDEF123/cancel", "POST /v1/payment_intents/{id}/cancel"},
		{"GET", "/v1/payment_intents/search", "GET /v1/payment_intents/search"},
		{"POST", "/v1/refunds", "POST /v1/refunds"},
		{"GET", "/v1/refunds/", "GET /v1/refunds"},
		{"GET", "/v1/payment_intents/pi_1/cancel/pi_2", "GET other"},
		{"GET", "/v1/payment_intents/pi_1/Pi_2", "GET other"},
		{"GET", "/v1/Customers_9", "GET other"},
		{"GET", "/v2/payment_intents", "GET other"},
		{"GET", "/", "GET other"},
	} {
		if got := stripeOperation(tt.method, tt.path); got != tt.want {
			t.Errorf("%s %s: %q, want %q", tt.method, tt.path, got, tt.want)
		}
	}
}
