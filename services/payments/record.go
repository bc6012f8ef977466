package payments

import (
	"net/url"
	"strconv"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/store"
	"github.com/jetcheckout/jetcheckout/runner"
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

// Record is a checkout's payment. It holds only what the events of its checkout record
// (its input's quote, and each outcome: what Stripe answered), so that a lost view is
// rebuilt from them (replay.go).
type Record struct {
	CheckoutID      string          `json:"checkout_id"`
	Status          string          `json:"status"`
	PaymentIntentID string          `json:"payment_intent_id,omitempty"`
	Amount          decimal.Decimal `json:"amount"`   // the quote's total
	Currency        string          `json:"currency"` // the quote's, upper-case
	Quote           events.Quote    `json:"quote"`    // what the payment is for
	FailureCode     string          `json:"failure_code,omitempty"`
	FailureMessage  string          `json:"failure_message,omitempty"`
	// While AwaitingAction: where the customer authenticates (without the query, which
	// carries the client secret: nothing here needs it, and events never hold it), until
	// when, and how many looks at the intent have been scheduled (each has its own event ID).
	NextAction     string          `json:"next_action,omitempty"`
	AuthUntil      time.Time       `json:"auth_until,omitzero"`
	Rechecks       int             `json:"rechecks,omitempty"`
	RefundID       string          `json:"refund_id,omitempty"`
	RefundedAmount decimal.Decimal `json:"refunded_amount"`
	// Swept is what the compensation did to each intent Stripe held for the checkout,
	// when it had to look them up (Voided).
	Swept []SweptIntent `json:"swept,omitempty"`
	// UpdatedAt is when the event that last changed the record happened.
	UpdatedAt time.Time `json:"updated_at"`
}

// SweptIntent is what the compensation did to one PaymentIntent of the checkout: its
// Action is Refunded, Canceled or Untouched.
type SweptIntent = events.SweptIntent

// Actions of a sweep.
const (
	Canceled  = "canceled"  // it could still have been paid; now it cannot
	Untouched = "untouched" // already canceled: nothing to undo
)

func (r *Record) fail(code, message string) {
	r.Status, r.FailureCode, r.FailureMessage = Failed, code, message
}

// awaitAction records the bank's request for 3-D Secure: the customer authenticates on
// page (kept without its query) until until.
func (r *Record) awaitAction(intentID, page string, until time.Time) {
	r.Status, r.PaymentIntentID, r.NextAction, r.AuthUntil = AwaitingAction, intentID, withoutQuery(page), until
}

// voided records a sweep (swept, in currency): the payment is void, whatever Stripe held
// for the checkout refunded or cancelled. Everything it records follows from swept, so a
// rebuilt view finds the same in the refund's event.
func (r *Record) voided(swept []SweptIntent, currency string) {
	refunded, received := decimal.Zero, decimal.Zero
	for _, s := range swept {
		if s.Action != Refunded {
			continue
		}
		refunded, received = refunded.Add(s.Refunded), received.Add(s.Received)
		if r.RefundID == "" {
			r.PaymentIntentID, r.RefundID = s.PaymentIntentID, s.RefundID
		}
	}
	if r.PaymentIntentID == "" && len(swept) == 1 {
		r.PaymentIntentID = swept[0].PaymentIntentID
	}
	r.Currency, r.Swept, r.RefundedAmount = currency, swept, refunded
	if r.Amount.IsZero() {
		r.Amount = received
	}
	r.Status, r.FailureCode, r.FailureMessage = Voided, events.CodeCheckoutCancelled, "The checkout was cancelled before its payment completed."
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
			Step: events.StepProcessPayment, Code: r.FailureCode, Message: r.FailureMessage, Reference: r.PaymentIntentID,
		})
	}
}

// withoutQuery keeps the authentication page's address but not its query, which carries
// the PaymentIntent's client secret: that goes to the customer's browser, never into the
// event log, nor into the payments record.
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

// recheck is the next scheduled look at the intent, due at at, after the look numbered
// after (0: the payment itself).
func (r *Record) recheck(at time.Time, after int) events.Envelope {
	r.scheduled(after)
	e := events.Must(r.CheckoutID, events.PaymentRecheck, events.Recheck{PaymentIntentID: r.PaymentIntentID, Until: r.AuthUntil, Number: r.Rechecks})
	e.ID += ":" + strconv.Itoa(r.Rechecks)
	e.Schedule = &events.Schedule{At: at, Key: recheckKey}
	return e
}

// scheduled counts the look scheduled after the look numbered after. It numbers it from
// the look that schedules it, not only from the count: a rebuilt view that missed a look
// (acknowledged with no outcome in the stream, so not replayed) still names the next one
// anew.
func (r *Record) scheduled(after int) {
	r.Rechecks = max(r.Rechecks, after) + 1
}

// refund is the event that confirms the compensation.
func (r Record) refund() events.Envelope {
	return events.Must(r.CheckoutID, events.PaymentRefunded, events.Refund{
		PaymentIntentID: r.PaymentIntentID, RefundID: r.RefundID, Amount: r.RefundedAmount, Currency: r.Currency,
		Swept: r.Swept,
	})
}

func loadRecord(tx *bolt.Tx, checkoutID string) (Record, bool, error) {
	var r Record
	found, err := store.Get(tx.Bucket(bucketPayments), checkoutID, &r)
	return r, found, err
}

// saveRecord stores r as changed by the event in.
func saveRecord(tx *bolt.Tx, r Record, in events.Envelope) error {
	r.UpdatedAt = runner.EventTime(in)
	return store.Put(tx.Bucket(bucketPayments), r.CheckoutID, r)
}
