package events

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"regexp"
	"slices"
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
	// CouponCode, when set, asks for the shop's promotion of that code (case-insensitive):
	// a code that does not apply fails the checkout with the reason, never a silent full price.
	CouponCode string `json:"coupon_code,omitempty"`
	// Renewal marks the checkout of one period of a subscription, paid off-session with the
	// payment method the customer saved; only the subscriptions service publishes it (the
	// HTTP API refuses it, and the catalog checks it against the checkout ID).
	Renewal *Renewal `json:"renewal,omitempty"`
}

// Renewal is the period of a subscription a checkout pays for, and the Stripe customer
// whose saved payment method pays it without the customer present (off_session).
type Renewal struct {
	SubscriptionID string `json:"subscription_id"`
	Period         int    `json:"period"`
	StripeCustomer string `json:"stripe_customer"`
	// Attempt counts the period's payment attempts (absent: the first). A period whose
	// payment was declined is tried again on the subscriptions' retry schedule (dunning).
	Attempt int `json:"attempt,omitempty"`
	// RetryIn is how long after a declined payment of this attempt the next one comes;
	// absent on the last attempt, after which the subscription ends as FinalAction says
	// ("cancelled" or "paused"). The failure notice tells the customer either.
	RetryIn     *Duration `json:"retry_in,omitempty"`
	FinalAction string    `json:"final_action,omitempty"`
}

// Validate: a renewal names its subscription, a period from 1, and a Stripe customer.
func (r Renewal) Validate() error {
	switch {
	case !ValidSubscriptionID(r.SubscriptionID):
		return fmt.Errorf("renewal.subscription_id must be sub_ and 1 to 40 letters, digits or '_', got %q", r.SubscriptionID)
	case r.Period < 1:
		return fmt.Errorf("renewal.period must be at least 1, got %d", r.Period)
	case !strings.HasPrefix(r.StripeCustomer, "cus_"):
		return fmt.Errorf("renewal.stripe_customer must be a Stripe customer ID (cus_...), got %q", r.StripeCustomer)
	case r.Attempt < 0:
		return fmt.Errorf("renewal.attempt must not be negative, got %d", r.Attempt)
	case r.RetryIn != nil && r.RetryIn.Duration <= 0:
		return fmt.Errorf("renewal.retry_in must be positive, got %v", r.RetryIn.Duration)
	case r.FinalAction != "" && r.FinalAction != SubscriptionCancelled && r.FinalAction != SubscriptionPaused:
		return fmt.Errorf("renewal.final_action must be %s or %s, got %q", SubscriptionCancelled, SubscriptionPaused, r.FinalAction)
	}
	return nil
}

// CheckoutID is the checkout of the renewal's attempt: the period and the attempt are the
// idempotency key of its checkout, and so of its Stripe payment.
func (r Renewal) CheckoutID() string {
	return RenewalCheckoutID(r.SubscriptionID, r.Period, max(r.Attempt, 1))
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
	if err := r.BillingAddress.validate("billing_address"); err != nil {
		return err
	}
	if r.ReturnURL != "" {
		if _, err := parseWebURL("return_url", r.ReturnURL); err != nil {
			return err
		}
	}
	if r.CouponCode != "" && !ValidCouponCode(r.CouponCode) {
		return fmt.Errorf("coupon_code must be 1 to 32 letters, digits, '-' or '_', got %q", r.CouponCode)
	}
	if _, _, _, renewal := ParseRenewalCheckoutID(r.CheckoutID); renewal && r.Renewal == nil {
		return fmt.Errorf("checkout_id %q is shaped like a subscription's renewal (sub_<id>-<n>): those are the subscriptions' own, choose another", r.CheckoutID)
	}
	if r.Renewal != nil {
		if err := r.Renewal.Validate(); err != nil {
			return err
		}
		if r.CheckoutID != r.Renewal.CheckoutID() {
			return fmt.Errorf("a renewal's checkout_id must be %q, its period's, got %q", r.Renewal.CheckoutID(), r.CheckoutID)
		}
	}
	return nil
}

var couponCodePattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

// ValidCouponCode reports whether code can name a coupon.
func ValidCouponCode(code string) bool { return couponCodePattern.MatchString(code) }

// maxURLLength is the longest return_url accepted: browsers and Stripe handle 2,000.
const maxURLLength = 2000

// parseWebURL parses an absolute http or https URL with a host and no credentials. Its
// error does not quote the value: it may be anybody's text.
func parseWebURL(field, raw string) (*url.URL, error) {
	if len(raw) > maxURLLength {
		return nil, fmt.Errorf("%s must be at most %d characters", field, maxURLLength)
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil || !u.IsAbs() || (u.Scheme != "https" && u.Scheme != "http"):
		return nil, fmt.Errorf("%s must be an absolute https URL like https://shop.example/checkout/done", field)
	case u.Host == "" || u.Opaque != "":
		return nil, fmt.Errorf("%s must name a host, like https://shop.example/checkout/done", field)
	case u.User != nil:
		return nil, fmt.Errorf("%s must not carry a user name or password", field)
	case slices.Contains(strings.Split(u.Path, "/"), ".."):
		return nil, fmt.Errorf("%s must not climb out of its path with \"..\"", field)
	}
	return u, nil
}

// ReturnURLRule says where a checkout may send its customer back to after 3-D Secure (its
// return_url): the zero rule accepts any https URL; with an allow-list, only URLs under one
// of its entries, http ones included (a local demo on http://localhost, say). It is applied
// before anything is reserved: by the catalog's validate_cart and by the HTTP API.
type ReturnURLRule struct {
	allow []*url.URL
}

// ParseReturnURLAllow reads an allow-list (RETURN_URL_ALLOW): comma-separated origins
// (https://shop.example, http://localhost:8080), each allowing every path of its origin,
// or prefixes ending in "/" (https://shop.example/checkout/). Empty gives the zero rule.
func ParseReturnURLAllow(list string) (ReturnURLRule, error) {
	var r ReturnURLRule
	for entry := range strings.SplitSeq(list, ",") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		u, err := parseWebURL("RETURN_URL_ALLOW entry", entry)
		if err != nil {
			return ReturnURLRule{}, fmt.Errorf("%w (got %q)", err, entry)
		}
		if u.RawQuery != "" || u.Fragment != "" || (u.Path != "" && !strings.HasSuffix(u.Path, "/")) {
			return ReturnURLRule{}, fmt.Errorf("RETURN_URL_ALLOW entry %q: want an origin like https://shop.example or a prefix ending in \"/\"", entry)
		}
		if u.Path == "/" {
			u.Path = "" // the whole origin
		}
		r.allow = append(r.allow, u)
	}
	return r, nil
}

// Check explains why raw is not an acceptable return_url; none ("") is acceptable.
func (r ReturnURLRule) Check(raw string) error {
	if raw == "" {
		return nil
	}
	u, err := parseWebURL("return_url", raw)
	if err != nil {
		return err
	}
	if len(r.allow) == 0 {
		if u.Scheme != "https" {
			return errors.New("return_url must be an https URL")
		}
		return nil
	}
	for _, a := range r.allow {
		if strings.EqualFold(u.Scheme, a.Scheme) && strings.EqualFold(u.Host, a.Host) && strings.HasPrefix(u.Path, a.Path) {
			return nil
		}
	}
	return errors.New("return_url is not on this shop's list of allowed return addresses (RETURN_URL_ALLOW)")
}

// String lists the allowed prefixes, for the start-up log.
func (r ReturnURLRule) String() string {
	if len(r.allow) == 0 {
		return "any https URL"
	}
	s := make([]string, len(r.allow))
	for i, a := range r.allow {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
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
		return CheckoutRequest{}, payloadError(e.Type, fmt.Errorf("%w: it must be a JSON object: %v", ErrMalformed, err))
	}
	r, err := DecodeRequest(e.Payload)
	if err == nil {
		if err = r.Validate(); err != nil {
			err = fmt.Errorf("%w: %w", ErrMalformed, err)
		}
	}
	if err != nil {
		return CheckoutRequest{}, payloadError(e.Type, err)
	}
	return r, nil
}

// DecodeRequest decodes a checkout request strictly, as checkout.requested's payload is
// decoded, without validating it. Unknown fields of its addresses are an
// *UnknownFieldsError naming each with its path (shipping_address.county); errors wrap
// ErrMalformed.
func DecodeRequest(data []byte) (CheckoutRequest, error) {
	var r CheckoutRequest
	err := strictUnmarshal(data, &r)
	if unknown := (*UnknownFieldsError)(nil); errors.As(err, &unknown) {
		var top map[string]json.RawMessage
		_ = json.Unmarshal(data, &top) // it decoded as far as an address: it is an object
		var paths []string
		for key, addr := range top {
			if strings.EqualFold(key, "shipping_address") || strings.EqualFold(key, "billing_address") {
				for _, f := range unknownKeys(addr, addressFields) {
					paths = append(paths, strings.ToLower(key)+"."+f)
				}
			}
		}
		slices.Sort(paths)
		return CheckoutRequest{}, fmt.Errorf("%w: %w", ErrMalformed, &UnknownFieldsError{Fields: paths})
	}
	return r, err
}

// Mailbox makes the spellings of one mailbox one key, "" for what is no address:
// ADA+1@Example.com is ada@example.com. What counts per customer (holds, the rate of
// checkouts) counts per mailbox, so a +tag is not a new customer.
func Mailbox(email string) string {
	local, domain, ok := strings.Cut(strings.ToLower(strings.TrimSpace(email)), "@")
	if !ok {
		return ""
	}
	local, _, _ = strings.Cut(local, "+")
	return local + "@" + domain
}
