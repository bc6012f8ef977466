package stripeemu

import (
	"maps"
	"net/http"
	"time"
)

// PaymentIntentView is a PaymentIntent as tests read it from the Go side.
type PaymentIntentView struct {
	ID             string
	Status         string
	Amount         int64 // minor units
	AmountReceived int64
	AmountRefunded int64
	Currency       string
	PaymentMethod  string // the test payment method of the last attempt
	CaptureMethod  string
	Customer       string // the Customer's ID, "" when none
	// OffSession: the last confirmation was made without the customer present.
	OffSession       bool
	SetupFutureUsage string
	Description      string
	Metadata         map[string]string
	LatestCharge     string
	// LastErrorCode and LastDeclineCode describe the last failed attempt, if any.
	LastErrorCode   string
	LastDeclineCode string
	Created         time.Time
}

// RefundView is a Refund as tests read it from the Go side.
type RefundView struct {
	ID              string
	PaymentIntentID string
	ChargeID        string
	Amount          int64
	Currency        string
	Reason          string
	Status          string
	Metadata        map[string]string
	Created         time.Time
}

// PaymentIntents returns every PaymentIntent, oldest first.
func (e *Emulator) PaymentIntents() []PaymentIntentView {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]PaymentIntentView, 0, len(e.intentOrder))
	for _, pi := range e.intentOrder {
		out = append(out, pi.view())
	}
	return out
}

// PaymentIntent returns one PaymentIntent.
func (e *Emulator) PaymentIntent(id string) (PaymentIntentView, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	pi, found := e.intents[id]
	if !found {
		return PaymentIntentView{}, false
	}
	return pi.view(), true
}

// Refunds returns every Refund, oldest first.
func (e *Emulator) Refunds() []RefundView {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]RefundView, 0, len(e.refundOrder))
	for _, r := range e.refundOrder {
		out = append(out, RefundView{
			ID: r.id, PaymentIntentID: r.charge.intent.id, ChargeID: r.charge.id, Amount: r.amount,
			Currency: r.currency, Reason: r.reason, Status: r.status, Metadata: maps.Clone(r.metadata),
			Created: time.Unix(r.created, 0),
		})
	}
	return out
}

func (pi *intent) view() PaymentIntentView {
	v := PaymentIntentView{
		ID: pi.id, Status: pi.status, Amount: pi.amount, AmountReceived: pi.amountReceived, Currency: pi.currency,
		PaymentMethod: pi.methodID(), CaptureMethod: pi.captureMethod, Description: pi.description,
		Customer: pi.customer, OffSession: pi.offSession, SetupFutureUsage: pi.setupFutureUsage,
		Metadata: maps.Clone(pi.metadata), Created: time.Unix(pi.created, 0),
	}
	if c := pi.latestCharge; c != nil {
		v.LatestCharge, v.AmountRefunded = c.id, c.refunded
		if v.PaymentMethod == "" {
			v.PaymentMethod = c.paymentMethod
		}
	}
	if le := pi.lastError; le != nil {
		v.LastErrorCode, v.LastDeclineCode = le.Code, le.DeclineCode
	}
	return v
}

// CompleteAuthentication plays the customer on the 3D Secure page of an intent that
// requires action: approved charges the card; otherwise authentication fails and the
// intent goes back to requires_payment_method with Stripe's
// payment_intent_authentication_failure error. Over HTTP it is
// POST /_emulator/payment_intents/{id}/authenticate.
func (e *Emulator) CompleteAuthentication(id string, approved bool) error {
	_, err := e.authenticate3DS(id, "", approved)
	return err
}

func (e *Emulator) authenticate3DS(id, checkoutID string, approved bool) (*intentJSON, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	pi, found := e.intents[id]
	if !found || (checkoutID != "" && pi.metadata["checkout_id"] != checkoutID) {
		return nil, noSuch(http.StatusNotFound, "payment_intent", "intent", id)
	}
	if pi.status != statusRequiresAction {
		return nil, unexpectedState("PaymentIntent %s has status %s; only one that requires_action can be authenticated.", id, pi.status)
	}
	pi.nextAction = nil
	if approved {
		e.charge(pi)
		return pi.render(nil), nil
	}
	pi.lastError = &apiError{Type: typeInvalidRequest, Code: "payment_intent_authentication_failure",
		DocURL:        docURL("payment_intent_authentication_failure"),
		Message:       "The provided PaymentMethod has failed authentication. You can provide payment_method_data or a new PaymentMethod to attempt to fulfill this PaymentIntent again.",
		PaymentMethod: pi.method.render()}
	pi.method, pi.status = nil, statusRequiresPaymentMethod
	return pi.render(nil), nil
}
