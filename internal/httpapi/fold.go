package httpapi

import (
	"encoding/json"
	"slices"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/shopspring/decimal"
)

// Event is one event of a checkout as the read model keeps it: the envelope and where it
// sits in the CHECKOUT stream.
type Event struct {
	Seq         uint64          `json:"seq"`
	ID          string          `json:"id"`
	Type        events.Subject  `json:"type"`
	CausationID string          `json:"causation_id,omitempty"`
	Time        time.Time       `json:"time"`
	Payload     json.RawMessage `json:"payload"`
}

// Checkout statuses, as the API reports them.
const (
	StatusAccepted  = "accepted"  // published, not seen in the stream yet
	StatusRunning   = "running"   // steps are running
	StatusWaiting   = "waiting"   // a step waits for a person (fraud review, 3-D Secure)
	StatusFailing   = "failing"   // a step failed; the succeeded ones are being undone
	StatusCompleted = "completed" // terminal
	StatusFailed    = "failed"    // terminal
)

// Statuses lists every status, for filters.
var Statuses = []string{StatusAccepted, StatusRunning, StatusWaiting, StatusFailing, StatusCompleted, StatusFailed}

// Step states.
const (
	StepPending      = "pending"
	StepRunning      = "running"
	StepWaiting      = "waiting"
	StepDone         = "done"
	StepFailed       = "failed"
	StepCompensating = "compensating"
	StepCompensated  = "compensated"
	// StepNotRun is a step that was still pending when its checkout ended: it never ran.
	StepNotRun = "not_run"
)

// Checkout is the read model of one checkout, folded from its events.
type Checkout struct {
	ID            string  `json:"checkout_id"`
	Status        string  `json:"status"`
	CartID        string  `json:"cart_id,omitempty"`
	CustomerID    string  `json:"customer_id,omitempty"`
	CustomerEmail string  `json:"customer_email,omitempty"`
	Currency      string  `json:"currency,omitempty"`
	Totals        *Totals `json:"totals,omitempty"`
	// Fraud is the fraud check's assessment: the risk, and each rule's outcome and part.
	Fraud           *events.RiskAssessment `json:"fraud,omitempty"`
	PaymentIntentID string                 `json:"payment_intent_id,omitempty"`
	OrderID         string                 `json:"order_id,omitempty"`
	OrderNumber     string                 `json:"order_number,omitempty"`
	Failure         *events.StepFailure    `json:"failure,omitempty"`
	Compensated     []events.StepName      `json:"compensated,omitempty"`
	Warnings        []events.StepFailure   `json:"warnings,omitempty"`
	NeedsAttention  bool                   `json:"needs_attention,omitempty"`
	// Redrives counts the re-drives of the checkout's failed steps after its order.
	Redrives int `json:"redrives,omitempty"`
	// RetriedAs is the new checkout that tries this failed one again (its re-drive).
	RetriedAs string `json:"retried_as,omitempty"`
	// DeadLetters are the checkout's inputs a service rejected (checkout.rejected), kept in
	// DEADLETTER until re-driven.
	DeadLetters []DeadLetterView `json:"dead_letters,omitempty"`
	Steps       []StepView       `json:"steps"`
	CreatedAt   time.Time        `json:"created_at"`
	UpdatedAt   time.Time        `json:"updated_at"`
	EndedAt     time.Time        `json:"ended_at,omitzero"`
	Events      int              `json:"event_count"`
}

// Totals are the priced cart, from the validated quote.
type Totals struct {
	Subtotal decimal.Decimal `json:"subtotal"`
	// Discounts are the shop's promotions and the coupon taken off the subtotal, before tax
	// and shipping, in the order they applied.
	Discounts []events.Discount `json:"discounts,omitempty"`
	Tax       decimal.Decimal   `json:"tax"`
	// TaxIncluded: the tax is part of the prices (VAT), not added to them.
	TaxIncluded bool            `json:"tax_included,omitempty"`
	Shipping    decimal.Decimal `json:"shipping"`
	Total       decimal.Decimal `json:"total"`
}

// StepView is one step of the DAG and how far it got.
type StepView struct {
	Name    events.StepName   `json:"name"`
	Service string            `json:"service"`
	After   []events.StepName `json:"after,omitempty"`
	State   string            `json:"state"`
	// Attempts counts the step's triggers in the stream: more than one when it was asked
	// again (a re-published trigger the step deduplicates). Redeliveries of one trigger
	// are the runner's business and not in the stream.
	Attempts  int                 `json:"attempts"`
	StartedAt time.Time           `json:"started_at,omitzero"`
	EndedAt   time.Time           `json:"ended_at,omitzero"`
	Error     *events.StepFailure `json:"error,omitempty"`
	Waiting   *events.Waiting     `json:"waiting,omitempty"`
	// Compensation: when the undo was asked for and when it was confirmed.
	CompensationStartedAt time.Time `json:"compensation_started_at,omitzero"`
	CompensationEndedAt   time.Time `json:"compensation_ended_at,omitzero"`
}

// DeadLetterView is an input of the checkout that a service rejected, and its re-drive.
type DeadLetterView struct {
	Service        string    `json:"service"`
	Subject        string    `json:"subject"`
	StreamSequence uint64    `json:"stream_sequence"`
	Reason         string    `json:"reason"`
	RejectedAt     time.Time `json:"rejected_at,omitzero"`
	RedrivenBy     string    `json:"redriven_by,omitempty"`
	RedrivenAt     time.Time `json:"redriven_at,omitzero"`
}

// Terminal reports whether the checkout has ended.
func (c Checkout) Terminal() bool { return c.Status == StatusCompleted || c.Status == StatusFailed }

// Fold computes a checkout from its events in stream order; acc is what the API knew when
// it accepted the request (the zero value when it did not).
func Fold(id string, acc Accepted, evs []Event) Checkout {
	c := Checkout{ID: id, Status: StatusAccepted, CartID: acc.CartID, CustomerID: acc.CustomerID,
		CustomerEmail: acc.CustomerEmail, CreatedAt: acc.At, UpdatedAt: acc.At, Events: len(evs)}
	steps := map[events.StepName]*StepView{}
	for _, s := range events.Checkout.Steps {
		steps[s.Name] = &StepView{Name: s.Name, Service: s.Service, After: s.After, State: StepPending}
	}
	terminal := false
	for _, e := range evs {
		if c.CreatedAt.IsZero() || e.Time.Before(c.CreatedAt) {
			c.CreatedAt = e.Time
		}
		c.UpdatedAt = later(c.UpdatedAt, e.Time)
		if c.Status == StatusAccepted {
			c.Status = StatusRunning
		}
		c.apply(e, steps, &terminal)
	}
	for _, s := range events.Checkout.Steps {
		st := *steps[s.Name]
		if terminal && st.State == StepPending {
			st.State = StepNotRun // nothing will start it now
		}
		c.Steps = append(c.Steps, st)
	}
	if !terminal && c.Status != StatusAccepted {
		c.Status = liveStatus(c.Steps)
	}
	return c
}

// deadLetterRedriven marks the checkout's dead letter rd re-drove.
func (c *Checkout) deadLetterRedriven(rd events.DeadLetterRedrive, at time.Time) {
	i := slices.IndexFunc(c.DeadLetters, func(d DeadLetterView) bool {
		return d.Service == rd.Service && d.StreamSequence == rd.StreamSequence
	})
	if i < 0 { // its rejection is not in the stream any more
		c.DeadLetters = append(c.DeadLetters, DeadLetterView{Service: rd.Service, Subject: rd.Subject, StreamSequence: rd.StreamSequence, Reason: rd.LetterReason})
		i = len(c.DeadLetters) - 1
	}
	c.DeadLetters[i].RedrivenBy, c.DeadLetters[i].RedrivenAt = rd.By, at
}

// apply folds one event into the checkout and its steps.
func (c *Checkout) apply(e Event, steps map[events.StepName]*StepView, terminal *bool) {
	for _, s := range events.Checkout.Steps {
		if s.Trigger == e.Type || s.LegacyTrigger != "" && s.LegacyTrigger == e.Type {
			st := steps[s.Name]
			st.Attempts++
			if st.State == StepPending {
				st.State, st.StartedAt = StepRunning, e.Time
			}
		}
	}
	switch e.Type {
	case events.Requested:
		var r events.CheckoutRequest
		if json.Unmarshal(e.Payload, &r) == nil {
			c.CartID, c.CustomerID, c.CustomerEmail = or(c.CartID, r.CartID), or(c.CustomerID, r.CustomerID), or(c.CustomerEmail, r.CustomerEmail)
		}
	case events.CartValidated:
		var q events.Quote
		if json.Unmarshal(e.Payload, &q) == nil {
			c.Currency = q.Currency
			c.Totals = &Totals{Subtotal: q.Subtotal, Discounts: q.Discounts, Tax: q.Tax, TaxIncluded: q.TaxIncluded, Shipping: q.Shipping, Total: q.Total}
		}
	case events.FraudCleared:
		var a events.RiskAssessment
		if json.Unmarshal(e.Payload, &a) == nil {
			c.Fraud = &a
		}
	case events.FraudFailed:
		var f events.StepFailure
		if json.Unmarshal(e.Payload, &f) == nil && f.Assessment != nil {
			c.Fraud = f.Assessment
		}
	case events.FraudReviewPending:
		var w events.Waiting
		if json.Unmarshal(e.Payload, &w) == nil && w.Assessment != nil {
			c.Fraud = w.Assessment
		}
	case events.PaymentCaptured:
		var p events.Payment
		if json.Unmarshal(e.Payload, &p) == nil {
			c.PaymentIntentID = p.PaymentIntentID
		}
	case events.OrderCreated:
		var o events.Order
		if json.Unmarshal(e.Payload, &o) == nil {
			c.OrderID, c.OrderNumber = o.ID, o.Number
		}
	case events.InventoryExpired:
		st := steps[events.StepReserveInventory]
		st.State, st.CompensationEndedAt = StepCompensated, e.Time
	case events.Completed:
		var done events.CheckoutCompleted
		if json.Unmarshal(e.Payload, &done) == nil {
			c.OrderID, c.OrderNumber, c.PaymentIntentID = or(c.OrderID, done.OrderID), or(c.OrderNumber, done.OrderNumber), or(c.PaymentIntentID, done.PaymentIntentID)
			c.Warnings, c.NeedsAttention = done.Warnings, done.NeedsAttention
			for _, w := range done.Warnings {
				failUnanswered(steps[w.Step], w, e.Time)
			}
		}
		c.Status, c.EndedAt, *terminal = StatusCompleted, e.Time, true
	case events.RedriveRequested:
		var rd events.Redrive
		if json.Unmarshal(e.Payload, &rd) == nil {
			c.Redrives, c.RetriedAs = rd.Attempt, or(c.RetriedAs, rd.NewCheckoutID)
			for _, name := range rd.Steps {
				if st := steps[name]; st != nil {
					st.State, st.Error, st.StartedAt, st.EndedAt = StepRunning, nil, e.Time, time.Time{}
				}
			}
		}
	case events.Rejected:
		var in events.RejectedInput
		if json.Unmarshal(e.Payload, &in) == nil {
			c.DeadLetters = append(c.DeadLetters, DeadLetterView{Service: in.Consumer, Subject: in.Subject,
				StreamSequence: in.StreamSequence, Reason: in.Reason, RejectedAt: e.Time})
		}
	case events.DeadLetterRedriven:
		var rd events.DeadLetterRedrive
		if json.Unmarshal(e.Payload, &rd) == nil {
			c.deadLetterRedriven(rd, e.Time)
		}
	case events.RedriveSettled:
		var out events.RedriveOutcome
		if json.Unmarshal(e.Payload, &out) == nil {
			c.Warnings, c.NeedsAttention = out.Warnings, out.NeedsAttention
		}
	case events.Failed:
		var f events.CheckoutFailed
		if json.Unmarshal(e.Payload, &f) == nil {
			c.Failure = &events.StepFailure{Step: f.Step, Code: f.Code, Message: f.Message}
			failUnanswered(steps[f.Step], *c.Failure, e.Time)
			for _, also := range f.AlsoFailed {
				failUnanswered(steps[also.Step], also, e.Time)
			}
			// What still runs or waits (a fraud review nobody needs now) ends with the checkout.
			for name, st := range steps {
				failUnanswered(st, events.StepFailure{Step: name, Code: events.CodeCheckoutCancelled,
					Message: "the checkout ended before this step answered"}, e.Time)
			}
			c.Compensated = f.Compensated
			c.CartID, c.CustomerEmail = or(c.CartID, f.CartID), or(c.CustomerEmail, f.CustomerEmail)
		}
		c.Status, c.EndedAt, *terminal = StatusFailed, e.Time, true
	}
	applyStep(e, steps)
}

// failUnanswered marks a step that never answered as failed by what the terminal event
// says of it: the coordinator gave up on it at a deadline (checkout.deadline is the
// checkout's timer and does not say which steps were late when it fired).
func failUnanswered(st *StepView, f events.StepFailure, at time.Time) {
	if st == nil || (st.State != StepRunning && st.State != StepWaiting) {
		return
	}
	f.Uncertain = f.Uncertain || f.Code == events.CodeDeadlineExceeded
	st.State, st.EndedAt, st.Waiting, st.Error = StepFailed, at, nil, &f
}

// applyStep moves a step by one of its own subjects: outcome, waiting, compensation.
func applyStep(e Event, steps map[events.StepName]*StepView) {
	if s, ok, found := events.Checkout.Outcome(e.Type); found {
		st := steps[s.Name]
		if st.State == StepCompensating || st.State == StepCompensated {
			return // a late outcome does not un-undo it
		}
		st.EndedAt, st.Waiting = e.Time, nil
		if st.StartedAt.IsZero() {
			st.StartedAt = e.Time
		}
		if ok {
			st.State, st.Error = StepDone, nil
			return
		}
		st.State, st.Error = StepFailed, &events.StepFailure{}
		_ = json.Unmarshal(e.Payload, st.Error)
		return
	}
	if s, found := events.Checkout.Waits(e.Type); found {
		st := steps[s.Name]
		var w events.Waiting
		if st.State == StepRunning && json.Unmarshal(e.Payload, &w) == nil {
			st.State, st.Waiting = StepWaiting, &w
		}
		return
	}
	if s, found := events.Checkout.Compensation(e.Type); found {
		st := steps[s.Name]
		st.State, st.CompensationEndedAt = StepCompensated, e.Time
		return
	}
	for _, s := range events.Checkout.Steps {
		if s.Compensate != "" && s.Compensate == e.Type {
			st := steps[s.Name]
			if st.State != StepCompensated {
				st.State = StepCompensating
			}
			st.CompensationStartedAt = e.Time
		}
	}
}

// liveStatus is the status of a checkout that has not ended, from its steps.
func liveStatus(steps []StepView) string {
	if slices.ContainsFunc(steps, func(s StepView) bool {
		return s.State == StepFailed || s.State == StepCompensating || s.State == StepCompensated
	}) {
		return StatusFailing
	}
	if slices.ContainsFunc(steps, func(s StepView) bool { return s.State == StepWaiting }) {
		return StatusWaiting
	}
	return StatusRunning
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
