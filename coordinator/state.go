package coordinator

import (
	"fmt"
	"slices"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
)

// Status of a checkout.
type Status string

const (
	StatusRunning   Status = "running"
	StatusFailing   Status = "failing" // a step failed; waiting for running steps and compensations
	StatusCompleted Status = "completed"
	StatusFailed    Status = "failed"
)

// StepStatus is what the coordinator knows of a step.
type StepStatus string

const (
	StepDone        StepStatus = "done"
	StepFailed      StepStatus = "failed"
	StepCompensated StepStatus = "compensated"
)

// StepState records a step's outcome.
type StepState struct {
	Status  StepStatus `json:"status"`
	EventID string     `json:"event_id"`
	At      time.Time  `json:"at"`
}

// applied records an event the state has absorbed: the stream sequence it came with and
// the decisions it caused, so a redelivery of that message republishes exactly those.
type applied struct {
	Seq       uint64           `json:"seq"`
	Decisions []events.Subject `json:"decisions,omitempty"`
}

// State is a checkout as the coordinator sees it: the value of its KV key.
type State struct {
	CheckoutID      string                         `json:"checkout_id"`
	Status          Status                         `json:"status"`
	Steps           map[events.StepName]*StepState `json:"steps"`
	Quote           *events.Quote                  `json:"quote,omitempty"`
	PaymentIntentID string                         `json:"payment_intent_id,omitempty"`
	OrderID         string                         `json:"order_id,omitempty"`
	OrderNumber     string                         `json:"order_number,omitempty"`
	Failure         *events.StepFailure            `json:"failure,omitempty"`
	Compensated     []events.StepName              `json:"compensated,omitempty"`
	Decided         []events.Subject               `json:"decided,omitempty"` // every decision published
	Applied         map[string]applied             `json:"applied"`
	StartedAt       time.Time                      `json:"started_at"`
	UpdatedAt       time.Time                      `json:"updated_at"`
}

func newState(checkoutID string) *State {
	return &State{CheckoutID: checkoutID, Status: StatusRunning, Steps: map[events.StepName]*StepState{}, Applied: map[string]applied{}}
}

// apply absorbs a step outcome or a compensation confirmation. It changes only facts;
// decide draws the consequences.
func (s *State) apply(flow events.Flow, in events.Envelope) error {
	if s.StartedAt.IsZero() {
		s.StartedAt = in.Time
	}
	s.UpdatedAt = in.Time
	if step, ok := flow.Compensation(in.Type); ok {
		st := s.Steps[step.Name]
		if st == nil || st.Status != StepDone {
			return fmt.Errorf("%w: %s for step %s, which has not succeeded", events.ErrMalformed, in.Type, step.Name)
		}
		*st = StepState{Status: StepCompensated, EventID: in.ID, At: in.Time}
		s.Compensated = append(s.Compensated, step.Name)
		return nil
	}
	step, ok, found := flow.Outcome(in.Type)
	if !found {
		return fmt.Errorf("%w: the coordinator does not consume %s", events.ErrMalformed, in.Type)
	}
	if prev := s.Steps[step.Name]; prev != nil {
		return fmt.Errorf("%w: step %s already reported %s (event %s)", events.ErrMalformed, step.Name, prev.Status, prev.EventID)
	}
	if !ok {
		var f events.StepFailure
		if err := in.DecodePayload(&f); err != nil {
			return err
		}
		f.Step = step.Name
		s.Steps[step.Name] = &StepState{Status: StepFailed, EventID: in.ID, At: in.Time}
		if s.Failure == nil && s.Status != StatusCompleted {
			s.Failure = &f
			if s.Status == StatusRunning {
				s.Status = StatusFailing
			}
		}
		return nil
	}
	if err := s.absorbResult(in); err != nil {
		return err
	}
	s.Steps[step.Name] = &StepState{Status: StepDone, EventID: in.ID, At: in.Time}
	return nil
}

// absorbResult keeps what later decisions need from a step's success event.
func (s *State) absorbResult(in events.Envelope) error {
	switch in.Type {
	case events.CartValidated:
		var q events.Quote
		if err := in.DecodePayload(&q); err != nil {
			return err
		}
		s.Quote = &q
	case events.PaymentCaptured:
		var p events.Payment
		if err := in.DecodePayload(&p); err != nil {
			return err
		}
		s.PaymentIntentID = p.PaymentIntentID
	case events.OrderCreated:
		var o events.Order
		if err := in.DecodePayload(&o); err != nil {
			return err
		}
		s.OrderID, s.OrderNumber = o.ID, o.Number
	}
	return nil
}

// decide returns the decisions the state now calls for that were not made before, and
// records them.
func (s *State) decide(flow events.Flow) []events.Subject {
	var due []events.Subject
	switch {
	case s.Status == StatusCompleted:
		// Terminal. A late failure cannot undo a completed checkout: it is recorded, and
		// nothing more is decided.
	case s.Failure == nil:
		for _, j := range flow.Joins() {
			if s.allDone(j.After) {
				due = append(due, j.Trigger)
			}
		}
		// Every step, not only the sinks: a sink's event can overtake create_order's
		// (a retried KV write, another coordinator), and completion must name the order.
		if s.allDone(stepNames(flow.Steps)) {
			due = append(due, events.Completed)
		}
	case !s.anyRunning(flow):
		// Compensations go on after checkout.failed too: a step that answers late (after a
		// deadline, in a later issue) is still undone.
		if next, ok := s.nextCompensation(flow); ok {
			due = append(due, next.Compensate)
		} else {
			due = append(due, events.Failed)
		}
	}
	var fresh []events.Subject
	for _, d := range due {
		if !slices.Contains(s.Decided, d) {
			s.Decided = append(s.Decided, d)
			fresh = append(fresh, d)
		}
	}
	switch {
	case slices.Contains(fresh, events.Completed):
		s.Status = StatusCompleted
	case slices.Contains(fresh, events.Failed):
		s.Status = StatusFailed
	}
	return fresh
}

func (s *State) allDone(names []events.StepName) bool {
	for _, n := range names {
		if st := s.Steps[n]; st == nil || st.Status == StepFailed {
			return false
		}
	}
	return true
}

// anyRunning reports a step that was triggered and has not reported yet: after a failure
// the coordinator waits for it, so a reservation that succeeds late is still released.
func (s *State) anyRunning(flow events.Flow) bool {
	for _, step := range flow.Steps {
		if s.Steps[step.Name] != nil {
			continue
		}
		if s.triggered(step) {
			return true
		}
	}
	return false
}

// triggered reports whether a step's trigger has been published: the request for the first
// step, the dependency's success for a step with one, the coordinator's join for several.
func (s *State) triggered(step events.Step) bool {
	switch len(step.After) {
	case 0:
		return true
	case 1:
		return s.allDone(step.After)
	default:
		return slices.Contains(s.Decided, step.Trigger)
	}
}

// nextCompensation is the latest succeeded step with an undo that is not undone yet, or
// false when none is left. Compensations run one at a time, latest step first.
func (s *State) nextCompensation(flow events.Flow) (events.Step, bool) {
	for i := len(flow.Steps) - 1; i >= 0; i-- {
		step := flow.Steps[i]
		if st := s.Steps[step.Name]; st != nil && st.Status == StepDone && step.Compensate != "" {
			return step, true
		}
	}
	return events.Step{}, false
}

func stepNames(steps []events.Step) []events.StepName {
	out := make([]events.StepName, len(steps))
	for i, s := range steps {
		out[i] = s.Name
	}
	return out
}
