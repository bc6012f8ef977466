package events

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"regexp"
	"strings"
	"time"
)

// CheckoutRequest is the public input on checkout.requested: the seed's CheckoutArgs and an
// optional client-chosen checkout_id.
type CheckoutRequest struct {
	CheckoutID      string  `json:"checkout_id,omitempty"`
	CartID          string  `json:"cart_id"`
	CustomerID      string  `json:"customer_id"`
	CustomerEmail   string  `json:"customer_email"`
	PaymentMethodID string  `json:"payment_method_id"`
	ShippingAddress Address `json:"shipping_address"`
	BillingAddress  Address `json:"billing_address"`
	ReturnURL       string  `json:"return_url,omitempty"`
}

// checkoutIDPattern keeps IDs safe as KV keys, subject tokens and file names.
var checkoutIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// ValidCheckoutID reports whether id can name a checkout.
func ValidCheckoutID(id string) bool { return checkoutIDPattern.MatchString(id) }

// Validate explains the first thing wrong with a request.
func (r CheckoutRequest) Validate() error {
	if r.CheckoutID != "" && !checkoutIDPattern.MatchString(r.CheckoutID) {
		return fmt.Errorf("checkout_id must be 1 to 64 letters, digits, '-' or '_', got %q", r.CheckoutID)
	}
	if strings.TrimSpace(r.CartID) == "" {
		return errors.New("cart_id is required")
	}
	if strings.TrimSpace(r.CustomerID) == "" {
		return errors.New("customer_id is required")
	}
	if addr, err := mail.ParseAddress(r.CustomerEmail); err != nil || addr.Address != r.CustomerEmail {
		return fmt.Errorf("customer_email must be a plain email address like ada@example.com, got %q", r.CustomerEmail)
	}
	// Card data never reaches our services: only a payment method created by Stripe.js.
	if !strings.HasPrefix(r.PaymentMethodID, "pm_") {
		return fmt.Errorf("payment_method_id must be a Stripe payment method ID (pm_...), got %q", r.PaymentMethodID)
	}
	if err := r.ShippingAddress.validate("shipping_address"); err != nil {
		return err
	}
	return r.BillingAddress.validate("billing_address")
}

// Origin identifies one published message: the Nats-Msg-Id its publisher gave it, else its
// place in the stream. Every redelivery of a message has the same origin.
type Origin struct {
	MsgID     string
	StreamSeq uint64
	Stored    time.Time
}

func (o Origin) key() string {
	if o.MsgID != "" {
		return "msg-id:" + o.MsgID
	}
	return fmt.Sprintf("stream:%d@%d", o.StreamSeq, o.Stored.UnixNano())
}

// RequestEnvelope wraps a raw checkout.requested message in an envelope so that it flows
// through the runner like any event, whatever it holds: a malformed request still gets a
// checkout ID and fails with a reason instead of vanishing. The ID is the client's
// checkout_id when it gave a valid one, otherwise derived from the message's origin: a
// redelivery never starts a second checkout, and a publisher that sets Nats-Msg-Id can retry
// safely; publishing the same JSON again without either is a new checkout attempt.
func RequestEnvelope(data []byte, from Origin) Envelope {
	id := requestedCheckoutID(data)
	if id == "" {
		sum := sha256.Sum256([]byte(from.key()))
		id = "co_" + hex.EncodeToString(sum[:12])
	}
	payload := json.RawMessage(data)
	if !json.Valid(data) {
		// Keep the bytes as a JSON string, so the envelope stays valid JSON and
		// ParseRequest can report the syntax error.
		payload, _ = json.Marshal(string(data))
	}
	return Envelope{ID: ID(id, Requested), Type: Requested, CheckoutID: id, Time: from.Stored, SchemaVersion: SchemaVersion, Payload: payload}
}

func requestedCheckoutID(data []byte) string {
	var probe struct {
		CheckoutID any `json:"checkout_id"`
	}
	if json.Unmarshal(data, &probe) != nil {
		return ""
	}
	if s, ok := probe.CheckoutID.(string); ok && checkoutIDPattern.MatchString(s) {
		return s
	}
	return ""
}

// ParseRequest decodes and validates the payload of a request envelope. Its error says
// what is wrong in words a client can act on.
func ParseRequest(e Envelope) (CheckoutRequest, error) {
	var raw string
	if json.Unmarshal(e.Payload, &raw) == nil {
		var v any
		err := json.Unmarshal([]byte(raw), &v)
		if err == nil {
			err = errors.New("not a JSON object")
		}
		return CheckoutRequest{}, fmt.Errorf("%w: checkout.requested must be a JSON object: %v", ErrMalformed, err)
	}
	var r CheckoutRequest
	if err := e.DecodePayload(&r); err != nil {
		return CheckoutRequest{}, err
	}
	return r, nil
}
