package payments

import (
	"net/url"
	"strconv"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/store"
	"github.com/shopspring/decimal"
	bolt "go.etcd.io/bbolt"
)

var bucketPayments = []byte("payments") // checkout ID → Record

// Record statuses. All but AwaitingAction are final for the process_payment step.
const (
	Captured = "captured" // the intent succeeded
	Failed   = "failed"   // declined or refused: nothing was charged
	Refunded = "refunded" // captured, then refunded by the compensation
	// Voided: the compensation came before the payment was known to succeed (before any
	// payment, or after the step gave up not knowing); whatever Stripe held for the
	// checkout was refunded or cancelled (Swept), and no payment will be made.
	Voided = "voided"
	// AwaitingAction: the customer's bank asked for 3-D Secure; the service looks at the
	// intent again every RecheckEvery until AuthUntil.
	AwaitingAction = "requires_action"
)

// Record is a checkout's payment.
type Record struct {
	CheckoutID      string          `json:"checkout_id"`
	Status          string          `json:"status"`
	PaymentIntentID string          `json:"payment_intent_id,omitempty"`
	IntentStatus    string          `json:"intent_status,omitempty"` // Stripe's, when last seen
	Amount          decimal.Decimal `json:"amount"`                  // the quote's total
	Currency        string          `json:"currency"`                // the quote's, upper-case
	Quote           events.Quote    `json:"quote"`                   // what the payment is for
	FailureCode     string          `json:"failure_code,omitempty"`
	FailureMessage  string          `json:"failure_message,omitempty"`
	// While AwaitingAction: where the customer authenticates, until when, and how many
	// rechecks have been scheduled (each has its own event ID).
	NextAction     string          `json:"next_action,omitempty"`
	AuthUntil      time.Time       `json:"auth_until,omitzero"`
	Rechecks       int             `json:"rechecks,omitempty"`
	RefundID       string          `json:"refund_id,omitempty"`
	RefundedAmount decimal.Decimal `json:"refunded_amount"`
	// Swept is what the compensation did to each intent Stripe held for the checkout,
	// when it had to look them up (Voided).
	Swept     []SweptIntent `json:"swept,omitempty"`
	UpdatedAt time.Time     `json:"updated_at"`
}

// SweptIntent is what the compensation did to one PaymentIntent of the checkout.
type SweptIntent struct {
	PaymentIntentID string          `json:"payment_intent_id"`
	Found           string          `json:"found"`  // its status when found
	Action          string          `json:"action"` // Refunded, Canceled or Untouched
	RefundID        string          `json:"refund_id,omitempty"`
	Refunded        decimal.Decimal `json:"refunded"`
}

// Actions of a sweep.
const (
	Canceled  = "canceled"  // it could still have been paid; now it cannot
	Untouched = "untouched" // already canceled: nothing to undo
)

func (r *Record) fail(code, message string) {
	r.Status, r.FailureCode, r.FailureMessage = Failed, code, message
}

// outcome is the event that reports the record's payment: the same one every time.
func (r Record) outcome() events.Envelope {
	switch r.Status {
	case Captured, Refunded:
		return events.Must(r.CheckoutID, events.PaymentCaptured, events.Payment{
			PaymentIntentID: r.PaymentIntentID, Amount: r.Amount, Currency: r.Currency, Quote: r.Quote,
		})
	case AwaitingAction:
		return events.Must(r.CheckoutID, events.PaymentActionPending, events.Waiting{
			Reason:     "Your bank asks you to confirm this payment (3-D Secure).",
			Until:      r.AuthUntil,
			NextAction: withoutQuery(r.NextAction),
			Reference:  r.PaymentIntentID,
		})
	default:
		return events.Must(r.CheckoutID, events.PaymentFailed, events.StepFailure{
			Step: events.StepProcessPayment, Code: r.FailureCode, Message: r.FailureMessage,
		})
	}
}

// withoutQuery keeps the authentication page's address but not its query, which carries
// the PaymentIntent's client secret: that goes to the customer's browser, never into the
// event log. (The full URL stays in the payments record.)
func withoutQuery(page string) string {
	u, err := url.Parse(page)
	if err != nil {
		return ""
	}
	u.RawQuery, u.Fragment = "", ""
	return u.String()
}

// recheckKey is the schedule slot of a checkout's next look at its PaymentIntent.
const recheckKey = "payment.recheck"

// recheck is the next scheduled look at the intent, due at at.
func (r *Record) recheck(at time.Time) events.Envelope {
	r.Rechecks++
	e := events.Must(r.CheckoutID, events.PaymentRecheck, events.Recheck{PaymentIntentID: r.PaymentIntentID, Until: r.AuthUntil})
	e.ID += ":" + strconv.Itoa(r.Rechecks)
	e.Schedule = &events.Schedule{At: at, Key: recheckKey}
	return e
}

// refund is the event that confirms the compensation.
func (r Record) refund() events.Envelope {
	return events.Must(r.CheckoutID, events.PaymentRefunded, events.Refund{
		PaymentIntentID: r.PaymentIntentID, RefundID: r.RefundID, Amount: r.RefundedAmount, Currency: r.Currency,
	})
}

func loadRecord(tx *bolt.Tx, checkoutID string) (Record, bool, error) {
	var r Record
	found, err := store.Get(tx.Bucket(bucketPayments), checkoutID, &r)
	return r, found, err
}

func saveRecord(tx *bolt.Tx, r Record) error {
	r.UpdatedAt = time.Now().UTC()
	return store.Put(tx.Bucket(bucketPayments), r.CheckoutID, r)
}
