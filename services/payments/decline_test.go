package payments

import (
	"errors"
	"net/url"
	"testing"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/stripe/stripe-go/v76"
)

func TestDeclineCodeAndMessage(t *testing.T) {
	cases := []struct {
		code        stripe.ErrorCode
		declineCode stripe.DeclineCode
		want        string
		message     string
	}{
		{"card_declined", "generic_decline", events.CodeCardDeclined, "Your card was declined."},
		{"card_declined", "", events.CodeCardDeclined, "Your card was declined."},
		{"card_declined", "insufficient_funds", events.CodeInsufficientFunds, "Your card was declined (insufficient funds)."},
		{"card_declined", "lost_card", events.CodeCardDeclined, "Your card was declined (lost card)."},
		{"expired_card", "", events.CodeCardDeclined, "Your card was declined (expired card)."},
		{"incorrect_cvc", "incorrect_cvc", events.CodeCardDeclined, "Your card was declined (incorrect cvc)."},
		{"authentication_required", "authentication_required", events.CodeAuthenticationRequired, authenticationRequiredMessage},
		{"card_declined", "authentication_required", events.CodeAuthenticationRequired, authenticationRequiredMessage},
	}
	for _, c := range cases {
		se := &stripe.Error{Type: stripe.ErrorTypeCard, Code: c.code, DeclineCode: c.declineCode}
		if got := declineCode(se); got != c.want {
			t.Errorf("%s/%s: code %s, want %s", c.code, c.declineCode, got, c.want)
		}
		if got := declineMessage(se); got != c.message {
			t.Errorf("%s/%s: message %q, want %q", c.code, c.declineCode, got, c.message)
		}
	}
}

func TestIsTransient(t *testing.T) {
	cases := []struct {
		err  error
		want bool
	}{
		{&url.Error{Op: "Post", URL: "http://x", Err: errors.New("connection refused")}, true},
		{&stripe.Error{HTTPStatusCode: 500, Type: stripe.ErrorTypeAPI}, true},
		{&stripe.Error{HTTPStatusCode: 503, Type: stripe.ErrorTypeAPI}, true},
		{&stripe.Error{HTTPStatusCode: 429, Type: stripe.ErrorTypeInvalidRequest, Code: "rate_limit"}, true},
		{&stripe.Error{HTTPStatusCode: 401, Type: stripe.ErrorTypeInvalidRequest}, true},
		{&stripe.Error{HTTPStatusCode: 402, Type: stripe.ErrorTypeCard}, false},
		{&stripe.Error{HTTPStatusCode: 400, Type: stripe.ErrorTypeInvalidRequest}, false},
		{&stripe.Error{HTTPStatusCode: 400, Type: stripe.ErrorTypeIdempotency}, false},
	}
	for _, c := range cases {
		if got := isTransient(c.err); got != c.want {
			t.Errorf("%v: transient %v, want %v", c.err, got, c.want)
		}
	}
}

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		cfg Config
		ok  bool
	}{
		{Config{SecretKey: "sk_test_123"}, true},
		{Config{SecretKey: "rk_live_123", BaseURL: "http://127.0.0.1:1"}, true},
		{Config{}, false},
		{Config{SecretKey: "pk_test_123"}, false},
		{Config{SecretKey: "sk_test_123", HTTPTimeout: -1}, false},
	}
	for _, c := range cases {
		if err := c.cfg.Validate(); (err == nil) != c.ok {
			t.Errorf("%+v: %v", c.cfg, err)
		}
	}
}
