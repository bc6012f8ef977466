package stripeemu

import "maps"

// PaymentIntent statuses.
const (
	statusRequiresPaymentMethod = "requires_payment_method"
	statusRequiresConfirmation  = "requires_confirmation"
	statusRequiresAction        = "requires_action"
	statusRequiresCapture       = "requires_capture"
	statusSucceeded             = "succeeded"
	statusCanceled              = "canceled"
)

// intent is a PaymentIntent as the emulator keeps it.
type intent struct {
	id, clientSecret string
	created          int64
	amount           int64
	currency         string
	status           string
	captureMethod    string
	// automatic is nil when the intent takes only its payment_method_types.
	automatic   *automaticMethods
	methodTypes []string
	method      *method // nil when it has none (a failed attempt detaches it)
	customer    string
	// offSession: the attempt is made without the customer, who cannot authenticate.
	offSession         bool
	setupFutureUsage   string // on_session, off_session or ""
	description        string
	metadata           map[string]string
	amountCapturable   int64
	amountReceived     int64
	latestCharge       *charge
	lastError          *apiError
	nextAction         *nextActionJSON
	canceledAt         int64
	cancellationReason string
}

// automaticMethods is an intent's automatic_payment_methods when enabled.
type automaticMethods struct {
	allowRedirects string // "always" or "never"
}

// charge is the attempt behind a confirmation: failed for a decline, or holding the money.
type charge struct {
	id             string
	created        int64
	intent         *intent
	paymentMethod  string
	amount         int64
	currency       string
	status         string // "succeeded" or "failed"
	captured       int64
	refunded       int64
	failureCode    string
	failureMessage string
}

func (c *charge) refundable() int64 { return c.captured - c.refunded }

// refund is a refund of (part of) a charge.
type refund struct {
	id       string
	created  int64
	charge   *charge
	amount   int64
	currency string
	reason   string
	metadata map[string]string
	status   string
}

// The JSON shapes below are Stripe's, with the fields stripe-go decodes.

type intentJSON struct {
	ID                      string            `json:"id"`
	Object                  string            `json:"object"`
	Amount                  int64             `json:"amount"`
	AmountCapturable        int64             `json:"amount_capturable"`
	AmountReceived          int64             `json:"amount_received"`
	AutomaticPaymentMethods *automaticJSON    `json:"automatic_payment_methods"`
	CanceledAt              *int64            `json:"canceled_at"`
	CancellationReason      *string           `json:"cancellation_reason"`
	CaptureMethod           string            `json:"capture_method"`
	ClientSecret            string            `json:"client_secret"`
	ConfirmationMethod      string            `json:"confirmation_method"`
	Created                 int64             `json:"created"`
	Currency                string            `json:"currency"`
	Customer                *string           `json:"customer"` // ID
	Description             *string           `json:"description"`
	LastPaymentError        *apiError         `json:"last_payment_error"`
	LatestCharge            any               `json:"latest_charge"` // ID, object when expanded, or null
	Livemode                bool              `json:"livemode"`
	Metadata                map[string]string `json:"metadata"`
	NextAction              *nextActionJSON   `json:"next_action"`
	PaymentMethod           any               `json:"payment_method"` // ID, object when expanded, or null
	PaymentMethodTypes      []string          `json:"payment_method_types"`
	SetupFutureUsage        *string           `json:"setup_future_usage"`
	Status                  string            `json:"status"`
}

type automaticJSON struct {
	AllowRedirects string `json:"allow_redirects"`
	Enabled        bool   `json:"enabled"`
}

type nextActionJSON struct {
	Type          string            `json:"type"`
	RedirectToURL *redirectJSON     `json:"redirect_to_url,omitempty"`
	UseStripeSDK  map[string]string `json:"use_stripe_sdk,omitempty"`
}

type redirectJSON struct {
	ReturnURL string `json:"return_url"`
	URL       string `json:"url"`
}

type chargeJSON struct {
	ID             string            `json:"id"`
	Object         string            `json:"object"`
	Amount         int64             `json:"amount"`
	AmountCaptured int64             `json:"amount_captured"`
	AmountRefunded int64             `json:"amount_refunded"`
	Captured       bool              `json:"captured"`
	Created        int64             `json:"created"`
	Currency       string            `json:"currency"`
	FailureCode    *string           `json:"failure_code"`
	FailureMessage *string           `json:"failure_message"`
	Livemode       bool              `json:"livemode"`
	Metadata       map[string]string `json:"metadata"`
	Paid           bool              `json:"paid"`
	PaymentIntent  string            `json:"payment_intent"`
	PaymentMethod  string            `json:"payment_method"`
	Refunded       bool              `json:"refunded"`
	Status         string            `json:"status"`
}

type methodJSON struct {
	ID       string            `json:"id"`
	Object   string            `json:"object"`
	Card     cardJSON          `json:"card"`
	Created  int64             `json:"created"`
	Customer *string           `json:"customer"` // ID
	Livemode bool              `json:"livemode"`
	Metadata map[string]string `json:"metadata"`
	Type     string            `json:"type"`
}

type cardJSON struct {
	Brand    string `json:"brand"`
	Country  string `json:"country"`
	ExpMonth int    `json:"exp_month"`
	ExpYear  int    `json:"exp_year"`
	Funding  string `json:"funding"`
	Last4    string `json:"last4"`
}

type refundJSON struct {
	ID            string            `json:"id"`
	Object        string            `json:"object"`
	Amount        int64             `json:"amount"`
	Charge        string            `json:"charge"`
	Created       int64             `json:"created"`
	Currency      string            `json:"currency"`
	Metadata      map[string]string `json:"metadata"`
	PaymentIntent string            `json:"payment_intent"`
	Reason        *string           `json:"reason"`
	Status        string            `json:"status"`
}

type listJSON struct {
	Object  string `json:"object"`
	Data    []any  `json:"data"`
	HasMore bool   `json:"has_more"`
	URL     string `json:"url"`
}

// expansions a PaymentIntent supports.
const (
	expandCharge = "latest_charge"
	expandMethod = "payment_method"
)

// render is the intent's JSON, a snapshot that later changes do not affect.
func (pi *intent) render(expand map[string]bool) *intentJSON {
	j := &intentJSON{
		ID: pi.id, Object: "payment_intent", Amount: pi.amount, AmountCapturable: pi.amountCapturable,
		AmountReceived: pi.amountReceived, CaptureMethod: pi.captureMethod, ClientSecret: pi.clientSecret,
		ConfirmationMethod: "automatic", Created: pi.created, Currency: pi.currency, Customer: optional(pi.customer),
		Description: optional(pi.description), SetupFutureUsage: optional(pi.setupFutureUsage), LastPaymentError: pi.lastError, Metadata: maps.Clone(pi.metadata),
		NextAction: pi.nextAction, PaymentMethodTypes: append([]string(nil), pi.methodTypes...), Status: pi.status,
	}
	if pi.automatic != nil {
		j.AutomaticPaymentMethods = &automaticJSON{AllowRedirects: pi.automatic.allowRedirects, Enabled: true}
	}
	if pi.canceledAt != 0 {
		j.CanceledAt = &pi.canceledAt
		j.CancellationReason = optional(pi.cancellationReason)
	}
	if c := pi.latestCharge; c != nil {
		j.LatestCharge = c.id
		if expand[expandCharge] {
			j.LatestCharge = c.render()
		}
	}
	if pi.method != nil {
		j.PaymentMethod = pi.method.id
		if expand[expandMethod] {
			j.PaymentMethod = pi.method.render()
		}
	}
	return j
}

func (c *charge) render() *chargeJSON {
	return &chargeJSON{
		ID: c.id, Object: "charge", Amount: c.amount, AmountCaptured: c.captured, AmountRefunded: c.refunded,
		Captured: c.captured > 0, Created: c.created, Currency: c.currency,
		FailureCode: optional(c.failureCode), FailureMessage: optional(c.failureMessage),
		Metadata: map[string]string{}, Paid: c.status == statusSucceeded, PaymentIntent: c.intent.id,
		PaymentMethod: c.paymentMethod, Refunded: c.captured > 0 && c.refunded == c.captured, Status: c.status,
	}
}

func (r *refund) render() *refundJSON {
	return &refundJSON{
		ID: r.id, Object: "refund", Amount: r.amount, Charge: r.charge.id, Created: r.created,
		Currency: r.currency, Metadata: maps.Clone(r.metadata), PaymentIntent: r.charge.intent.id,
		Reason: optional(r.reason), Status: r.status,
	}
}

// methodID is the ID of the intent's payment method, "" when it has none.
func (pi *intent) methodID() string {
	if pi.method == nil {
		return ""
	}
	return pi.method.id
}

// optional renders "" as null.
func optional(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
