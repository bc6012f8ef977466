package httpapi

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
)

// The deadline cases do not happen in a quick end-to-end run: a step that never answers
// fails by what the terminal event says of it (the checkout's timer does not say which
// steps were late); a step's own answer, or its wait for a person, stands whatever timer
// fires.
func TestFoldDeadlines(t *testing.T) {
	t0, ev, start := foldFixture()
	deadline := ev(4, 40*time.Second, events.Deadline, events.DeadlineReached{Step: events.StepCheckFraud, Deadline: t0.Add(31 * time.Second)})
	cases := []struct {
		name       string
		evs        []Event
		wantState  string
		wantStatus string
	}{
		{"no answer by the deadline", append(append([]Event{}, start...), deadline,
			ev(5, 41*time.Second, events.Failed, events.CheckoutFailed{Step: events.StepCheckFraud, Code: events.CodeDeadlineExceeded, Message: "check_fraud did not finish"})),
			StepFailed, StatusFailed},
		{"no answer, and the order stands", append(append([]Event{}, start...), deadline,
			ev(5, 41*time.Second, events.Completed, events.CheckoutCompleted{Warnings: []events.StepFailure{{Step: events.StepCheckFraud, Code: events.CodeDeadlineExceeded}}})),
			StepFailed, StatusCompleted},
		{"waiting moved the deadline", append(append([]Event{}, start...),
			ev(3, 2*time.Second, events.FraudReviewPending, events.Waiting{Reason: "review", Until: t0.Add(10 * time.Minute)}), deadline),
			StepWaiting, StatusWaiting},
		{"answered before the deadline", append(append([]Event{}, start...),
			ev(3, 2*time.Second, events.FraudCleared, events.RiskAssessment{}), deadline),
			StepDone, StatusRunning},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := Fold("co", Accepted{}, c.evs)
			var fraud StepView
			for _, s := range got.Steps {
				if s.Name == events.StepCheckFraud {
					fraud = s
				}
			}
			if fraud.State != c.wantState || got.Status != c.wantStatus {
				t.Fatalf("check_fraud %s, checkout %s; want %s, %s", fraud.State, got.Status, c.wantState, c.wantStatus)
			}
			if c.wantState == StepFailed && (fraud.Error == nil || fraud.Error.Code != events.CodeDeadlineExceeded || !fraud.Error.Uncertain) {
				t.Errorf("error %+v, want an uncertain deadline_exceeded", fraud.Error)
			}
			if got.CartID != "cart_1" || !got.CreatedAt.Equal(t0) {
				t.Errorf("cart %q created %s", got.CartID, got.CreatedAt)
			}
		})
	}
}

// TestFoldStepsLeftAtTheEnd: when a checkout fails, the steps the failure carries as also
// failed show their own failure, and a step still waiting (a fraud review nobody needs any
// more) ends with the checkout instead of waiting for ever in the view.
func TestFoldStepsLeftAtTheEnd(t *testing.T) {
	t0, ev, start := foldFixture()
	stepOf := func(c Checkout, name events.StepName) StepView {
		for _, s := range c.Steps {
			if s.Name == name {
				return s
			}
		}
		return StepView{}
	}

	late := Fold("co", Accepted{}, append(append([]Event{}, start...),
		ev(3, 61*time.Second, events.Failed, events.CheckoutFailed{Step: events.StepReserveInventory, Code: events.CodeDeadlineExceeded,
			AlsoFailed: []events.StepFailure{{Step: events.StepCheckFraud, Code: events.CodeDeadlineExceeded, Message: "check_fraud did not finish"}}})))
	if f := stepOf(late, events.StepCheckFraud); f.State != StepFailed || f.Error == nil || f.Error.Code != events.CodeDeadlineExceeded || !f.Error.Uncertain {
		t.Errorf("fraud given up alongside inventory: %s %+v", f.State, f.Error)
	}

	sold := Fold("co", Accepted{}, append(append([]Event{}, start...),
		ev(3, 2*time.Second, events.FraudReviewPending, events.Waiting{Reason: "review", Until: t0.Add(time.Hour)}),
		ev(4, 3*time.Second, events.InventoryFailed, events.StepFailure{Code: events.CodeInsufficientStock, Message: "sold out"}),
		ev(5, 4*time.Second, events.Failed, events.CheckoutFailed{Step: events.StepReserveInventory, Code: events.CodeInsufficientStock, Message: "sold out"})))
	if f := stepOf(sold, events.StepCheckFraud); f.State != StepFailed || f.Error == nil || f.Error.Code != events.CodeCheckoutCancelled {
		t.Errorf("a review left waiting when the checkout failed: %s %+v", f.State, f.Error)
	}
	if sold.Status != StatusFailed {
		t.Errorf("status %s", sold.Status)
	}
}

// foldFixture: a checkout's clock, a maker of its events, and its first two (requested at
// t0, the cart validated a second later).
func foldFixture() (time.Time, func(seq uint64, at time.Duration, typ events.Subject, payload any) Event, []Event) {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	ev := func(seq uint64, at time.Duration, typ events.Subject, payload any) Event {
		raw, _ := json.Marshal(payload)
		return Event{Seq: seq, ID: events.ID("co", typ), Type: typ, Time: t0.Add(at), Payload: raw}
	}
	start := []Event{
		ev(1, 0, events.Requested, events.CheckoutRequest{CartID: "cart_1", CustomerID: "cus_1"}),
		ev(2, time.Second, events.CartValidated, events.Quote{Currency: "USD"}),
	}
	return t0, ev, start
}

// TestFoldReadsBothVersionsOfTheGoAhead: the steps after the order start on the one go-ahead
// of schema version 2 and on version 1's go-ahead per step alike.
func TestFoldReadsBothVersionsOfTheGoAhead(t *testing.T) {
	_, ev, start := foldFixture()
	order := events.Order{ID: "ord_co", Number: "JC-1"}
	for name, goAheads := range map[string][]events.Subject{
		"version 2": {events.FulfilmentRequested},
		"version 1": {events.ConfirmationRequested, events.LabelRequested},
	} {
		evs := append([]Event{}, start...)
		for i, typ := range goAheads {
			evs = append(evs, ev(uint64(3+i), time.Duration(2+i)*time.Second, typ, order))
		}
		got := Fold("co", Accepted{}, evs)
		for _, s := range got.Steps {
			if (s.Name == events.StepSendConfirmation || s.Name == events.StepCreateLabel) && s.State != StepRunning {
				t.Errorf("%s: %s is %s after its go-ahead, want %s", name, s.Name, s.State, StepRunning)
			}
		}
	}
}
