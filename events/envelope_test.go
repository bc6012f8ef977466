package events

import (
	"errors"
	"strings"
	"testing"

	"github.com/shopspring/decimal"
)

// An event's ID is derived from its checkout and type; one naming anything else, another
// checkout's event above all, is malformed (it would make the real one look handled).
func TestDecodeChecksTheDerivedID(t *testing.T) {
	for _, tc := range []struct {
		id string
		ok bool
	}{
		{"co-1:checkout.payment.requested", true},
		{"co-1:checkout.payment.requested:retry-2", true},
		{"co-2:checkout.payment.requested", false},
		{"co-1:checkout.order.requested", false},
		{"co-1:checkout.payment.requested.late", false},
		{"forged:checkout.payment.requested", false},
		{"co-1:checkout.payment.requestedX", false},
	} {
		e := Must("co-1", PaymentRequested, map[string]string{})
		e.ID = tc.id
		raw, _ := e.Encode()
		_, err := Decode(string(PaymentRequested), raw)
		if ok := err == nil; ok != tc.ok {
			t.Errorf("id %q: err %v, want ok=%v", tc.id, err, tc.ok)
		}
		if err != nil && (!errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "co-1:checkout.payment.requested")) {
			t.Errorf("id %q: %v should be malformed and name the expected id", tc.id, err)
		}
	}
}

// Payloads that the services act on name what they act on: empty ones are malformed.
func TestEmptyPayloadsAreMalformed(t *testing.T) {
	for typ, v := range map[Subject]any{
		Completed:        &CheckoutCompleted{},
		Failed:           &CheckoutFailed{},
		InventoryRelease: &Compensation{},
		PaymentRecheck:   &Recheck{},
		InventoryExpire:  &Expiry{},
	} {
		e := Must("co-1", typ, map[string]any{})
		if err := e.DecodePayload(v); !errors.Is(err, ErrMalformed) {
			t.Errorf("empty %s payload: %v, want malformed", typ, err)
		}
	}
	done := Must("co-1", Completed, CheckoutCompleted{OrderID: "ord_1", Total: decimal.RequireFromString("10.00"), Currency: "USD"})
	if err := done.DecodePayload(&CheckoutCompleted{}); err != nil {
		t.Errorf("a complete checkout.completed: %v", err)
	}
}

// Every error about an event reads "<subject>[ payload]: malformed event[: not from its
// producer]: <why>", whatever found it, and errors.Is still tells the sentinel.
func TestErrorShape(t *testing.T) {
	good := Must("co_1", CartFailed, StepFailure{Step: StepValidateCart, Code: CodeCartEmpty, Message: "empty"})
	raw, _ := good.Encode()
	keys, _ := testKeys(t, ServiceCatalog)
	var q Quote
	cases := []struct {
		name, prefix string
		sentinel     error
		err          error
	}{
		{"envelope", "checkout.cart.validated: malformed event: type", ErrMalformed, func() error {
			_, err := Decode(string(CartValidated), raw)
			return err
		}()},
		{"payload decoding", "checkout.cart.failed payload: malformed event: unknown field", ErrMalformed,
			Envelope{Type: CartFailed, Payload: []byte(`{"stepp":1}`)}.DecodePayload(&StepFailure{})},
		{"payload validation", "checkout.cart.validated payload: malformed event: quote needs", ErrMalformed,
			Envelope{Type: CartValidated, Payload: []byte(`{}`)}.DecodePayload(&q)},
		{"request", "checkout.requested payload: malformed event: it must be a JSON object", ErrMalformed, func() error {
			_, err := ParseRequest(RequestEnvelope([]byte("hello"), Origin{}))
			return err
		}()},
		{"request validation", "checkout.requested payload: malformed event: cart_id", ErrMalformed, func() error {
			_, err := ParseRequest(RequestEnvelope([]byte(`{}`), Origin{}))
			return err
		}()},
		{"signature", "checkout.cart.failed: malformed event: not from its producer: not signed", ErrForged,
			keys.Verify(CartFailed, "", "", raw)},
	}
	for _, c := range cases {
		if c.err == nil || !errors.Is(c.err, c.sentinel) || !strings.HasPrefix(c.err.Error(), c.prefix) {
			t.Errorf("%s: %v, want it to start %q and wrap %v", c.name, c.err, c.prefix, c.sentinel)
		}
	}
}
