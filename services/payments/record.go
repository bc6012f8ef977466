package payments

import (
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/store"
	"github.com/shopspring/decimal"
	bolt "go.etcd.io/bbolt"
)

var bucketPayments = []byte("payments") // checkout ID → Record

// Record statuses. Every one of them is final for the process_payment step.
const (
	Captured = "captured" // the intent succeeded
	Failed   = "failed"   // declined or refused: nothing was charged
	Refunded = "refunded" // captured, then refunded by the compensation
	// Voided: the compensation came before any payment, so none will be made.
	Voided = "voided"
)

// Record is a checkout's payment.
type Record struct {
	CheckoutID      string          `json:"checkout_id"`
	Status          string          `json:"status"`
	PaymentIntentID string          `json:"payment_intent_id,omitempty"`
	IntentStatus    string          `json:"intent_status,omitempty"` // Stripe's, when last seen
	Amount          decimal.Decimal `json:"amount"`                  // the quote's total
	Currency        string          `json:"currency"`                // the quote's, upper-case
	FailureCode     string          `json:"failure_code,omitempty"`
	FailureMessage  string          `json:"failure_message,omitempty"`
	RefundID        string          `json:"refund_id,omitempty"`
	RefundedAmount  decimal.Decimal `json:"refunded_amount"`
	UpdatedAt       time.Time       `json:"updated_at"`
}

func (r *Record) fail(code, message string) {
	r.Status, r.FailureCode, r.FailureMessage = Failed, code, message
}

// outcome is the event that reports the record's payment: the same one every time.
func (r Record) outcome(quote events.Quote) events.Envelope {
	switch r.Status {
	case Captured, Refunded:
		return events.Must(r.CheckoutID, events.PaymentCaptured, events.Payment{
			PaymentIntentID: r.PaymentIntentID, Amount: r.Amount, Currency: r.Currency, Quote: quote,
		})
	default:
		return events.Must(r.CheckoutID, events.PaymentFailed, events.StepFailure{
			Step: events.StepProcessPayment, Code: r.FailureCode, Message: r.FailureMessage,
		})
	}
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
