package coordinator

import (
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/shopspring/decimal"
)

var testRules = rules{flow: events.Checkout, grace: 5 * time.Second}

func quote() events.Quote {
	return events.Quote{
		CartID: "cart_1", CustomerID: "cus_1", CustomerEmail: "ada@example.com", PaymentMethodID: "pm_card_visa",
		Currency: "USD", Total: decimal.RequireFromString("10.00"), Subtotal: decimal.RequireFromString("10.00"),
		Lines: []events.Line{{ProductID: "p1", Name: "P1", Quantity: 1, UnitPrice: decimal.RequireFromString("10.00"), Total: decimal.RequireFromString("10.00")}},
	}
}

// uncertain marks a failure event as a give-up whose effect is unknown.
const uncertain = "+uncertain"

// outcome builds the event a step reports (a failure when typ is a Failed subject; with
// uncertain appended, a failure of unknown effect).
func outcome(t *testing.T, typ events.Subject) events.Envelope {
	t.Helper()
	giveUp := false
	if s := string(typ); len(s) > len(uncertain) && s[len(s)-len(uncertain):] == uncertain {
		typ, giveUp = events.Subject(s[:len(s)-len(uncertain)]), true
	}
	var payload any = struct{}{}
	if step, ok, found := events.Checkout.Outcome(typ); found && !ok {
		payload = events.StepFailure{Step: step.Name, Code: "x", Message: "it failed", Uncertain: giveUp}
	}
	switch typ {
	case events.CartValidated:
		payload = quote()
	case events.PaymentCaptured:
		payload = events.Payment{PaymentIntentID: "pi_1", Amount: quote().Total, Currency: "USD", Quote: quote()}
	case events.OrderCreated:
		payload = events.Order{ID: "ord_1", Number: "JC-000001", Quote: quote()}
	case events.InventoryReserved:
		payload = events.Reservation{ReservationID: "res_1", Items: []events.ReservedItem{{ProductID: "tee", Quantity: 1}}}
	case events.InventoryReleased:
		payload = events.Release{}
	case events.PaymentRefunded:
		payload = events.Refund{}
	case events.OrderCancelled:
		payload = events.Cancellation{OrderID: "ord_1"}
	}
	e := events.Must("co_1", typ, payload)
	e.Time = time.Now()
	return e
}

// run applies events in turn and returns every decision made, in order.
func run(t *testing.T, st *State, evs ...events.Envelope) []decision {
	t.Helper()
	var got []decision
	for _, e := range evs {
		if err := st.apply(testRules, e); err != nil {
			t.Fatalf("apply %s: %v", e.Type, err)
		}
		got = append(got, st.decide(testRules, e.Time)...)
	}
	return got
}

// types are the decisions' types, deadlines left out.
func types(ds []decision) []events.Subject {
	var out []events.Subject
	for _, d := range ds {
		if d.Type != events.Deadline {
			out = append(out, d.Type)
		}
	}
	return out
}

// TestDecide walks event sequences through the state machine and checks every decision,
// in order, that each sequence leads to (deadlines are tested apart).
func TestDecide(t *testing.T) {
	happy := []events.Subject{events.CartValidated, events.InventoryReserved, events.FraudCleared, events.PaymentCaptured,
		events.OrderCreated, events.ConfirmationSent, events.LabelCreated, events.WarehouseNotified}
	paid := happy[:5]
	tests := []struct {
		name   string
		events []events.Subject
		want   []events.Subject
		status Status
	}{
		{"happy path", happy, []events.Subject{events.PaymentRequested, events.OrderRequested, events.FulfilmentRequested, events.Completed}, StatusCompleted},
		{"fraud before inventory", []events.Subject{events.CartValidated, events.FraudCleared, events.InventoryReserved},
			[]events.Subject{events.PaymentRequested}, StatusRunning},
		{"one branch is not enough", []events.Subject{events.CartValidated, events.InventoryReserved},
			nil, StatusRunning},
		{"confirmation alone does not complete", append(slices.Clone(paid), events.ConfirmationSent, events.LabelCreated),
			[]events.Subject{events.PaymentRequested, events.OrderRequested, events.FulfilmentRequested}, StatusRunning},
		{"an order created after the checkout gave up on it is cancelled, then refund, then release",
			append(slices.Clone(paid[:4]), events.OrderFailed+uncertain, events.OrderCreated, events.OrderCancelled,
				events.PaymentRefunded, events.InventoryReleased),
			[]events.Subject{events.PaymentRequested, events.OrderRequested, events.OrderCancel, events.PaymentRefund,
				events.InventoryRelease, events.Failed}, StatusFailed},
		{"invalid cart fails at once", []events.Subject{events.CartFailed}, []events.Subject{events.Failed}, StatusFailed},
		{"no stock: failed at once, the fraud check is not waited for", []events.Subject{events.CartValidated, events.InventoryFailed},
			[]events.Subject{events.Failed}, StatusFailed},
		{"no stock, then fraud: failed, nothing to undo", []events.Subject{events.CartValidated, events.InventoryFailed, events.FraudCleared},
			[]events.Subject{events.Failed}, StatusFailed},
		{"fraud rejects after reservation", []events.Subject{events.CartValidated, events.InventoryReserved, events.FraudFailed},
			[]events.Subject{events.InventoryRelease}, StatusFailing},
		{"fraud rejects before reservation: wait, then release", []events.Subject{events.CartValidated, events.FraudFailed, events.InventoryReserved},
			[]events.Subject{events.InventoryRelease}, StatusFailing},
		{"release confirmed: failed", []events.Subject{events.CartValidated, events.InventoryReserved, events.FraudFailed, events.InventoryReleased},
			[]events.Subject{events.InventoryRelease, events.Failed}, StatusFailed},
		{"declined card: release then fail", []events.Subject{events.CartValidated, events.InventoryReserved, events.FraudCleared,
			events.PaymentFailed, events.InventoryReleased},
			[]events.Subject{events.PaymentRequested, events.InventoryRelease, events.Failed}, StatusFailed},
		{"payment gave up, charge unknown: refund, release, fail", []events.Subject{events.CartValidated, events.InventoryReserved, events.FraudCleared,
			events.PaymentFailed + uncertain, events.PaymentRefunded, events.InventoryReleased},
			[]events.Subject{events.PaymentRequested, events.PaymentRefund, events.InventoryRelease, events.Failed}, StatusFailed},
		{"order fails: refund first, then release", append(slices.Clone(paid[:4]), events.OrderFailed, events.PaymentRefunded, events.InventoryReleased),
			[]events.Subject{events.PaymentRequested, events.OrderRequested, events.PaymentRefund, events.InventoryRelease, events.Failed}, StatusFailed},
		{"confirmation fails: completed with a warning", append(slices.Clone(paid), events.ConfirmationFailed, events.LabelCreated, events.WarehouseNotified),
			[]events.Subject{events.PaymentRequested, events.OrderRequested, events.FulfilmentRequested, events.Completed}, StatusCompleted},
		{"label fails: completed, flagged, warehouse never asked", append(slices.Clone(paid), events.ConfirmationSent, events.LabelFailed),
			[]events.Subject{events.PaymentRequested, events.OrderRequested, events.FulfilmentRequested, events.Completed}, StatusCompleted},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newState("co_1")
			var evs []events.Envelope
			for _, typ := range tt.events {
				evs = append(evs, outcome(t, typ))
			}
			if got := types(run(t, st, evs...)); !slices.Equal(got, tt.want) {
				t.Errorf("decisions = %v, want %v", got, tt.want)
			}
			if st.Status != tt.status {
				t.Errorf("status = %s, want %s", st.Status, tt.status)
			}
		})
	}
}

func TestCompletionCarriesWarnings(t *testing.T) {
	st := newState("co_1")
	var evs []events.Envelope
	for _, typ := range []events.Subject{events.CartValidated, events.InventoryReserved, events.FraudCleared, events.PaymentCaptured,
		events.OrderCreated, events.ConfirmationFailed, events.LabelFailed} {
		evs = append(evs, outcome(t, typ))
	}
	run(t, st, evs...)
	if st.Status != StatusCompleted || len(st.Warnings) != 2 || !st.NeedsAttention {
		t.Errorf("status %s, warnings %v, attention %v: want completed, two warnings, attention", st.Status, st.Warnings, st.NeedsAttention)
	}
	if len(st.Compensated) != 0 {
		t.Errorf("compensated %v after the order: nothing may be undone", st.Compensated)
	}
}

// TestDeadlines: a checkout has one timer, at the earliest deadline of its running steps;
// when it fires, every step past its deadline fails (effect unknown, so it is undone) and
// the next timer is set; a firing of a timer the checkout does not hold changes nothing;
// waiting for a person moves a step's deadline.
func TestDeadlines(t *testing.T) {
	st := newState("co_1")
	t0 := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	req := events.Envelope{ID: "co_1:checkout.requested", Type: events.Requested, CheckoutID: "co_1", Time: t0, Payload: []byte(`{}`)}
	got := run(t, st, req)
	wantValidate := t0.Add(events.DefaultDeadline + testRules.grace)
	if len(got) != 1 || got[0].Type != events.Deadline || got[0].Step != events.StepValidateCart || !got[0].At.Equal(wantValidate) {
		t.Fatalf("after the request: %+v, want one timer at validate's deadline %s", got, wantValidate)
	}

	validated := outcome(t, events.CartValidated)
	validated.Time = t0.Add(time.Second)
	if got := run(t, st, validated); len(timerDecisions(got)) != 0 {
		t.Fatalf("after validation: %+v, want no second timer (the first fires before both branches' deadlines)", got)
	}

	// Fraud waits for a review: its deadline moves to the review's end.
	until := t0.Add(time.Hour)
	review := events.Must("co_1", events.FraudReviewPending, events.Waiting{Reason: "review", Until: until})
	review.Time = t0.Add(2 * time.Second)
	if got := run(t, st, review); len(got) != 0 || !st.Steps[events.StepCheckFraud].Deadline.Equal(until.Add(testRules.grace)) {
		t.Fatalf("after the review request: %+v, fraud's deadline %s", got, st.Steps[events.StepCheckFraud].Deadline)
	}

	// The first timer fires: nothing is late yet; the next timer is set at inventory's deadline.
	reserveBy := st.Steps[events.StepReserveInventory].Deadline
	got = run(t, st, deadline(events.StepValidateCart, wantValidate))
	if len(got) != 1 || got[0].Type != events.Deadline || got[0].Step != events.StepReserveInventory || !got[0].At.Equal(reserveBy) {
		t.Fatalf("after the first timer: %+v, want the next timer at %s", got, reserveBy)
	}
	if st.Status != StatusRunning || !slices.Equal(st.Timers, []time.Time{reserveBy}) {
		t.Fatalf("after the first timer: status %s, timers %v", st.Status, st.Timers)
	}
	// The same timer again (a copy), or one the checkout never set (stray, or forged far
	// in the future to fail every step): nothing changes.
	for _, stale := range []events.Envelope{deadline(events.StepValidateCart, wantValidate), deadline(events.StepCheckFraud, t0.Add(time.Second)),
		deadline(events.StepCheckFraud, t0.Add(10*time.Hour))} {
		err := st.apply(testRules, stale)
		if got := st.decide(testRules, stale.Time); (err != nil && !errors.Is(err, errStrayTimer)) || len(got) != 0 || st.Status != StatusRunning || len(st.Timers) != 1 {
			t.Fatalf("a timer the checkout does not hold changed it: %+v (%v), status %s, timers %v", got, err, st.Status, st.Timers)
		}
	}

	// Inventory never answers: its deadline fails it, and since it may have reserved, it is
	// released at once (the fraud review has nothing to undo and is not waited for, but it
	// still runs, so the next timer is set for it).
	got = run(t, st, deadline(events.StepReserveInventory, reserveBy))
	if st.Status != StatusFailing || !slices.Equal(types(got), []events.Subject{events.InventoryRelease}) {
		t.Fatalf("after inventory's deadline: status %s, decisions %v, want the release", st.Status, types(got))
	}
	if ts := timerDecisions(got); len(ts) != 1 || !ts[0].At.Equal(until.Add(testRules.grace)) {
		t.Fatalf("after inventory's deadline: timers %+v, want one at the review's end", ts)
	}
	// The reservation turns up late after all, then the release is confirmed.
	got = run(t, st, outcome(t, events.InventoryReserved), outcome(t, events.InventoryReleased))
	if !slices.Equal(types(got), []events.Subject{events.Failed}) || st.Failure.Code != events.CodeDeadlineExceeded {
		t.Fatalf("end: %v, failure %+v", types(got), st.Failure)
	}
	// The review's timer fires after the end: nothing more happens, nothing is recorded.
	before := len(st.Timers)
	if got := run(t, st, deadline(events.StepCheckFraud, until.Add(testRules.grace))); len(got) != 0 || len(st.Timers) != before {
		t.Errorf("after the end: %v, timers %v", got, st.Timers)
	}
}

// TestOneTimerPerCheckout: a checkout that ends before its first deadline schedules one
// timer in all, however many steps it runs.
func TestOneTimerPerCheckout(t *testing.T) {
	st := newState("co_1")
	t0 := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	req := events.Envelope{ID: "co_1:checkout.requested", Type: events.Requested, CheckoutID: "co_1", Time: t0, Payload: []byte(`{}`)}
	all := []events.Envelope{req}
	for _, s := range []events.Subject{events.CartValidated, events.InventoryReserved, events.FraudCleared, events.PaymentCaptured,
		events.OrderCreated, events.ConfirmationSent, events.LabelCreated, events.WarehouseNotified} {
		all = append(all, outcome(t, s))
	}
	got := run(t, st, all...)
	if st.Status != StatusCompleted || len(timerDecisions(got)) != 1 {
		t.Fatalf("status %s, timers %+v: want completed with one timer", st.Status, timerDecisions(got))
	}
}

func timerDecisions(ds []decision) []decision {
	return slices.DeleteFunc(slices.Clone(ds), func(d decision) bool { return d.Type != events.Deadline })
}

func deadline(step events.StepName, at time.Time) events.Envelope {
	e := events.Must("co_1", events.Deadline, events.DeadlineReached{Step: step, Deadline: at})
	e.ID += ":" + string(step) + at.String()
	e.Time = at
	return e
}

func TestApplyRejectsContradictions(t *testing.T) {
	st := newState("co_1")
	if err := st.apply(testRules, outcome(t, events.CartValidated)); err != nil {
		t.Fatal(err)
	}
	if err := st.apply(testRules, outcome(t, events.CartFailed)); err == nil {
		t.Error("a step reporting twice was accepted")
	}
	if err := st.apply(testRules, outcome(t, events.PaymentRefunded)); err == nil {
		t.Error("a refund of a payment that never happened was accepted")
	}
}

// A capture is believed only for what the coordinator asked payments to charge: the quote's
// total, in its currency (a capture for less, or in another currency, is a forgery or a bug).
func TestACaptureMustBeForTheQuote(t *testing.T) {
	for name, p := range map[string]events.Payment{
		"another amount":   {PaymentIntentID: "pi_1", Amount: decimal.RequireFromString("0.01"), Currency: "USD"},
		"another currency": {PaymentIntentID: "pi_1", Amount: decimal.RequireFromString("10.00"), Currency: "EUR"},
	} {
		t.Run(name, func(t *testing.T) {
			st := newState("co_1")
			run(t, st, outcome(t, events.CartValidated), outcome(t, events.InventoryReserved), outcome(t, events.FraudCleared))
			q := quote()
			q.Total, q.Currency, q.Lines[0].Total, q.Subtotal = p.Amount, p.Currency, p.Amount, p.Amount
			p.Quote = q // consistent in itself: only the coordinator's own quote tells
			e := events.Must("co_1", events.PaymentCaptured, p)
			if err := st.apply(testRules, e); !errors.Is(err, events.ErrMalformed) {
				t.Errorf("a capture of %s %s for a quote of 10.00 USD: %v, want it refused", p.Amount, p.Currency, err)
			}
		})
	}
}

// TestBranchesLateTogether: inventory and fraud start together, so they share a deadline;
// the one timer fails both, the reservation that may have happened is released, and the
// checkout's failure names the first and carries the other.
func TestBranchesLateTogether(t *testing.T) {
	st := newState("co_1")
	t0 := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	req := events.Envelope{ID: "co_1:checkout.requested", Type: events.Requested, CheckoutID: "co_1", Time: t0, Payload: []byte(`{}`)}
	validated := outcome(t, events.CartValidated)
	validated.Time = t0.Add(time.Second)
	run(t, st, req, validated)
	run(t, st, deadline(events.StepValidateCart, st.Timers[0])) // nothing late yet: the next timer
	if len(st.Timers) != 1 || !st.Timers[0].Equal(st.Steps[events.StepCheckFraud].Deadline) {
		t.Fatalf("timers %v, want one at the branches' deadline", st.Timers)
	}
	got := run(t, st, deadline(events.StepReserveInventory, st.Timers[0]))
	if !slices.Equal(types(got), []events.Subject{events.InventoryRelease}) {
		t.Fatalf("after the branches' deadline: %v, want the release", types(got))
	}
	got = run(t, st, outcome(t, events.InventoryReleased))
	if !slices.Equal(types(got), []events.Subject{events.Failed}) {
		t.Fatalf("end: %v", types(got))
	}
	also := st.alsoFailed(testRules.flow)
	if st.Failure.Step != events.StepReserveInventory || len(also) != 1 || also[0].Step != events.StepCheckFraud || also[0].Code != events.CodeDeadlineExceeded {
		t.Errorf("failure %+v, also failed %+v: want inventory, and fraud alongside", st.Failure, also)
	}
}
