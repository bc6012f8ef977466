package coordinator

import (
	"errors"
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
	StepRunning     StepStatus = "running" // triggered, no answer yet
	StepWaiting     StepStatus = "waiting" // waiting for a person (a fraud review, 3-D Secure)
	StepDone        StepStatus = "done"
	StepFailed      StepStatus = "failed"
	StepCompensated StepStatus = "compensated"
)

// StepState records a step's progress.
type StepState struct {
	Status    StepStatus          `json:"status"`
	StartedAt time.Time           `json:"started_at"`         // when its trigger was published
	Deadline  time.Time           `json:"deadline,omitzero"`  // when the coordinator gives up on it
	EndedAt   time.Time           `json:"ended_at,omitzero"`  // when it answered
	EventID   string              `json:"event_id,omitempty"` // its latest event
	Failure   *events.StepFailure `json:"failure,omitempty"`
	Late      bool                `json:"late,omitempty"` // succeeded after it was given up on
}

func (st *StepState) active() bool {
	return st != nil && (st.Status == StepRunning || st.Status == StepWaiting)
}

// decision is something the coordinator publishes: a step's trigger, a compensation, a
// deadline (Step and At set), or a terminal event.
type decision struct {
	Type events.Subject  `json:"type"`
	Step events.StepName `json:"step,omitempty"`
	At   time.Time       `json:"at,omitzero"`
	// Attempt is the re-drive the decision belongs to (0: none).
	Attempt int `json:"attempt,omitempty"`
}

func (d decision) key() string {
	key := string(d.Type)
	if !d.At.IsZero() {
		key = fmt.Sprintf("%s/%s/%d", d.Type, d.Step, d.At.UnixMilli())
	}
	if d.Attempt > 0 {
		key += fmt.Sprintf("/redrive-%d", d.Attempt)
	}
	return key
}

// applied records an event the state has absorbed: the stream sequence it came with and
// the decisions it caused, so a redelivery of that message republishes exactly those.
type applied struct {
	Seq       uint64     `json:"seq"`
	Decisions []decision `json:"decisions,omitempty"`
}

// State is a checkout as the coordinator sees it: the value of its KV key.
type State struct {
	CheckoutID    string                         `json:"checkout_id"`
	Status        Status                         `json:"status"`
	Steps         map[events.StepName]*StepState `json:"steps"`
	CartID        string                         `json:"cart_id,omitempty"`
	RequestDigest string                         `json:"request_digest,omitempty"` // what was asked: a reuse of the ID for other content is refused
	CustomerEmail string                         `json:"customer_email,omitempty"`
	// Renewal: the checkout renews a subscription (its request's), which its failure names.
	Renewal         *events.Renewal      `json:"renewal,omitempty"`
	Quote           *events.Quote        `json:"quote,omitempty"`
	PaymentIntentID string               `json:"payment_intent_id,omitempty"`
	OrderID         string               `json:"order_id,omitempty"`
	OrderNumber     string               `json:"order_number,omitempty"`
	Order           *events.Order        `json:"order,omitempty"`    // what the steps after it need
	Failure         *events.StepFailure  `json:"failure,omitempty"`  // what fails the checkout
	Warnings        []events.StepFailure `json:"warnings,omitempty"` // failures that do not
	NeedsAttention  bool                 `json:"needs_attention,omitempty"`
	Compensated     []events.StepName    `json:"compensated,omitempty"`
	// Redrives counts the checkout's re-drives; RedriveSteps are the failed steps the latest
	// one runs again.
	Redrives     int               `json:"redrives,omitempty"`
	RedriveSteps []events.StepName `json:"redrive_steps,omitempty"`
	// RetriedAs is the new checkout that tries this failed one again.
	RetriedAs string   `json:"retried_as,omitempty"`
	Decided   []string `json:"decided,omitempty"` // keys of every decision published
	// Timers are the deadline schedules the server holds for the checkout, by when they fire:
	// normally one, at the earliest deadline of its running steps when it was scheduled.
	Timers    []time.Time        `json:"timers,omitempty"`
	Applied   map[string]applied `json:"applied"`
	StartedAt time.Time          `json:"started_at"`
	UpdatedAt time.Time          `json:"updated_at"`
	EndedAt   time.Time          `json:"ended_at,omitzero"`
}

// rules are what the state machine needs besides the state: the DAG and the timing.
type rules struct {
	flow      events.Flow
	grace     time.Duration                     // after a step's own deadline, before the coordinator gives up
	deadlines map[events.StepName]time.Duration // overrides of the flow's
}

func (r rules) deadline(step events.Step) time.Duration {
	if d, ok := r.deadlines[step.Name]; ok && d > 0 {
		return d
	}
	return step.DeadlineOf()
}

func newState(checkoutID string) *State {
	return &State{CheckoutID: checkoutID, Status: StatusRunning, Steps: map[events.StepName]*StepState{}, Applied: map[string]applied{}}
}

func (s *State) terminal() bool { return s.Status == StatusCompleted || s.Status == StatusFailed }

// start marks a step running from its trigger's time, with its deadline.
func (s *State) start(r rules, step events.Step, at time.Time) {
	if s.Steps[step.Name] != nil {
		return
	}
	s.Steps[step.Name] = &StepState{Status: StepRunning, StartedAt: at, Deadline: at.Add(r.deadline(step) + r.grace)}
}

// apply absorbs one event. It changes only facts; decide draws the consequences.
func (s *State) apply(r rules, in events.Envelope) error {
	if s.StartedAt.IsZero() || (!in.Time.IsZero() && in.Time.Before(s.StartedAt)) {
		s.StartedAt = in.Time
	}
	s.UpdatedAt = in.Time
	switch in.Type {
	case events.Requested:
		if req, err := events.ParseRequest(in); err == nil {
			s.CartID, s.CustomerEmail, s.Renewal = req.CartID, req.CustomerEmail, req.Renewal
		}
		s.RequestDigest = requestDigest(in)
		s.start(r, r.flow.Steps[0], in.Time)
		return nil
	case events.Deadline:
		return s.applyDeadline(r, in)
	case events.InventoryExpired:
		return s.applyExpiry(in)
	case events.RedriveRequested:
		return s.applyRedrive(r, in)
	}
	if step, ok := r.flow.Compensation(in.Type); ok {
		return s.applyCompensated(step, in)
	}
	if step, ok := r.flow.Waits(in.Type); ok {
		return s.applyWaiting(r, step, in)
	}
	step, ok, found := r.flow.Outcome(in.Type)
	switch {
	case !found:
		return fmt.Errorf("%w: the coordinator does not consume %s", events.ErrMalformed, in.Type)
	case ok:
		return s.applyDone(r, step, in)
	default:
		var f events.StepFailure
		if err := in.DecodePayload(&f); err != nil {
			return err
		}
		f.Step = step.Name
		return s.fail(step, in.ID, in.Time, f)
	}
}

func (s *State) applyDone(r rules, step events.Step, in events.Envelope) error {
	st := s.Steps[step.Name]
	switch {
	case st == nil || st.active():
	case st.Status == StepFailed && st.Failure != nil && st.Failure.Uncertain:
		// Given up on, and it succeeded after all: it is undone like any succeeded step.
	case st.Status == StepDone && events.RedriveSuffix(in.ID) != "":
		return nil // a re-drive ran the step again, and it had succeeded: nothing changes
	default:
		return fmt.Errorf("%w: step %s already reported %s (event %s)", events.ErrMalformed, step.Name, st.Status, st.EventID)
	}
	if err := s.absorbResult(in); err != nil {
		return err
	}
	late := st != nil && st.Status == StepFailed
	started := in.Time
	if st != nil {
		started = st.StartedAt
	}
	s.Steps[step.Name] = &StepState{Status: StepDone, StartedAt: started, EndedAt: in.Time, EventID: in.ID, Late: late}
	// Steps triggered by this success run now, whatever the coordinator thinks of the
	// checkout: their services consume the event directly.
	for _, d := range r.flow.Dependents(step.Name) {
		if d.Trigger == step.Done {
			s.start(r, d, in.Time)
		}
	}
	return nil
}

// fail records a step's failure and what it means for the checkout.
func (s *State) fail(step events.Step, eventID string, at time.Time, f events.StepFailure) error {
	st := s.Steps[step.Name]
	switch {
	case st != nil && st.Status == StepDone && events.RedriveSuffix(eventID) != "":
		return nil // a re-drive ran the step again, and it had succeeded: it stands
	case st != nil && st.Status == StepDone:
		return fmt.Errorf("%w: step %s already succeeded (event %s)", events.ErrMalformed, step.Name, st.EventID)
	case st != nil && !st.active():
		// It answers after it was given up on (its deadline) or undone: nothing changes.
		return nil
	}
	started := at
	if st != nil {
		started = st.StartedAt
	}
	s.Steps[step.Name] = &StepState{Status: StepFailed, StartedAt: started, EndedAt: at, EventID: eventID, Failure: &f}
	switch step.OnFailure {
	case events.CompleteWithWarning:
		s.Warnings = append(s.Warnings, f)
	case events.NeedsAttention:
		s.Warnings = append(s.Warnings, f)
		s.NeedsAttention = true
	default:
		if s.Failure == nil && s.Status == StatusRunning {
			s.Failure = &f
			s.Status = StatusFailing
		}
	}
	return nil
}

func (s *State) applyWaiting(r rules, step events.Step, in events.Envelope) error {
	var w events.Waiting
	if err := in.DecodePayload(&w); err != nil {
		return err
	}
	st := s.Steps[step.Name]
	if !st.active() {
		return nil // it answered already; the wait is over
	}
	st.Status, st.EventID = StepWaiting, in.ID
	st.Deadline = w.Until.Add(r.grace)
	return nil
}

// errStrayTimer: a deadline timer the checkout never set (stray or forged), or one this
// read of the bucket does not show set yet. Nothing fails by it.
var errStrayTimer = errors.New("a timer the checkout never set")

// applyDeadline: the checkout's timer fired. Every step still running or waiting whose
// deadline has come by the timer's time fails (effect unknown, so it is undone); decide then
// sets the next timer if steps still run. Nothing is recorded for a timer that finds the
// checkout ended: most timers end so, and a write is an fsync.
func (s *State) applyDeadline(r rules, in events.Envelope) error {
	var d events.DeadlineReached
	if err := in.DecodePayload(&d); err != nil {
		return err
	}
	if _, ok := r.flow.Step(d.Step); !ok {
		return fmt.Errorf("%w: deadline of unknown step %q", events.ErrMalformed, d.Step)
	}
	if s.terminal() && !s.redriving() {
		return nil // ended: nothing fails by it
	}
	if !s.setTimer(d.Deadline) {
		return errStrayTimer
	}
	s.Timers = slices.DeleteFunc(s.Timers, func(t time.Time) bool { return t.Equal(d.Deadline) })
	for _, step := range r.flow.Steps {
		st := s.Steps[step.Name]
		if !st.active() || st.Deadline.After(d.Deadline) {
			continue // answered, or its deadline is later (it moved, or it started later)
		}
		if err := s.fail(step, in.ID, in.Time, events.StepFailure{
			Step: step.Name, Code: events.CodeDeadlineExceeded, Uncertain: true,
			Message: fmt.Sprintf("%s did not finish by %s", step.Name, st.Deadline.Format(time.RFC3339)),
		}); err != nil {
			return err
		}
	}
	return nil
}

// applyRedrive: an operator runs again the steps that failed after the order stood. Their
// warnings go until they fail again; their go-ahead is published again (decide).
func (s *State) applyRedrive(r rules, in events.Envelope) error {
	var rd events.Redrive
	if err := in.DecodePayload(&rd); err != nil {
		return err
	}
	if rd.NewCheckoutID != "" {
		return s.applyRetry(rd)
	}
	if s.Status != StatusCompleted || rd.Attempt != s.Redrives+1 || s.redriving() {
		return fmt.Errorf("%w: re-drive %d of checkout %s, which is %s after %d re-drives", events.ErrMalformed, rd.Attempt, s.CheckoutID, s.Status, s.Redrives)
	}
	for _, name := range rd.Steps {
		if step, ok := r.flow.Step(name); !ok || !redrivable(step, s.Steps[name]) {
			return fmt.Errorf("%w: step %s of checkout %s cannot be re-driven", events.ErrMalformed, name, s.CheckoutID)
		}
	}
	s.Redrives, s.RedriveSteps = rd.Attempt, rd.Steps
	s.Warnings = slices.DeleteFunc(s.Warnings, func(w events.StepFailure) bool { return slices.Contains(rd.Steps, w.Step) })
	for _, name := range rd.Steps {
		step, _ := r.flow.Step(name)
		s.Steps[name] = &StepState{Status: StepRunning, StartedAt: in.Time, Deadline: in.Time.Add(r.deadline(step) + r.grace), EventID: in.ID}
	}
	return nil
}

// applyRetry: a failed checkout is tried again as a new one; nothing of it runs again.
func (s *State) applyRetry(rd events.Redrive) error {
	if s.Status != StatusFailed || rd.Attempt != s.Redrives+1 || s.RetriedAs != "" {
		return fmt.Errorf("%w: retry %d of checkout %s, which is %s and retried as %q", events.ErrMalformed, rd.Attempt, s.CheckoutID, s.Status, s.RetriedAs)
	}
	s.Redrives, s.RetriedAs = rd.Attempt, rd.NewCheckoutID
	return nil
}

// Redrivable are a completed checkout's steps a re-drive runs again: those that failed
// without failing the checkout (after its order).
func (s *State) Redrivable(flow events.Flow) []events.StepName {
	var out []events.StepName
	for _, step := range flow.Steps {
		if redrivable(step, s.Steps[step.Name]) {
			out = append(out, step.Name)
		}
	}
	return out
}

func redrivable(step events.Step, st *StepState) bool {
	return step.OnFailure != events.FailCheckout && st != nil && st.Status == StepFailed
}

// redriving reports a completed checkout whose re-driven steps have not all answered.
func (s *State) redriving() bool {
	if s.Status != StatusCompleted {
		return false
	}
	for _, st := range s.Steps {
		if st.active() {
			return true
		}
	}
	return false
}

// redriveDecisions: the go-ahead of the latest re-drive's steps (for a step a service
// triggers itself, its first coordinated ancestor's: the label's for the warehouse notice),
// then, once they all answered, the re-drive's outcome.
func (s *State) redriveDecisions(flow events.Flow) []decision {
	if s.Redrives == 0 {
		return nil
	}
	var due []decision
	coordinated := flow.Coordinated()
	for _, name := range s.RedriveSteps {
		step, _ := flow.Step(name)
		for !slices.ContainsFunc(coordinated, func(c events.Step) bool { return c.Name == step.Name }) && len(step.After) > 0 {
			step, _ = flow.Step(step.After[0])
		}
		due = append(due, decision{Type: step.Trigger, Attempt: s.Redrives})
	}
	if !s.redriving() {
		due = append(due, decision{Type: events.RedriveSettled, Attempt: s.Redrives})
	}
	return due
}

// attention reports a warning an operator must act on: a step flagged so failed, or the
// reservation lapsed before the sale.
func attention(flow events.Flow, w events.StepFailure) bool {
	step, _ := flow.Step(w.Step)
	return step.OnFailure == events.NeedsAttention || w.Code == events.CodeReservationExpired
}

// applyExpiry: the reservation lapsed. A checkout still in progress cannot go on without it.
func (s *State) applyExpiry(in events.Envelope) error {
	st := s.Steps[events.StepReserveInventory]
	if s.terminal() || st == nil || st.Status != StepDone {
		return nil
	}
	st.Status, st.EventID = StepCompensated, in.ID
	s.Compensated = append(s.Compensated, events.StepReserveInventory)
	if order := s.Steps[events.StepCreateOrder]; order != nil && (order.active() || order.Status == StepDone) {
		// Paid and ordered (or about to be): the sale goes on from available stock, and an
		// operator checks it.
		s.Warnings = append(s.Warnings, events.StepFailure{Step: events.StepReserveInventory, Code: events.CodeReservationExpired,
			Message: "the reservation expired before the checkout completed; the units are sold from available stock"})
		s.NeedsAttention = true
		return nil
	}
	if s.Failure == nil {
		s.Failure = &events.StepFailure{Step: events.StepReserveInventory, Code: events.CodeReservationExpired,
			Message: "the stock held for this checkout was released because the checkout took too long"}
		s.Status = StatusFailing
	}
	return nil
}

func (s *State) applyCompensated(step events.Step, in events.Envelope) error {
	st := s.Steps[step.Name]
	if st == nil || !undoable(st) {
		return fmt.Errorf("%w: %s for step %s, which was not to be undone", events.ErrMalformed, in.Type, step.Name)
	}
	st.Status, st.EventID = StepCompensated, in.ID
	s.Compensated = append(s.Compensated, step.Name)
	return nil
}

// undoable: a step that succeeded, or gave up not knowing whether its effect happened.
func undoable(st *StepState) bool {
	return st.Status == StepDone || (st.Status == StepFailed && st.Failure != nil && st.Failure.Uncertain)
}

// absorbResult keeps what later decisions need from a step's success event.
func (s *State) absorbResult(in events.Envelope) error {
	switch in.Type {
	case events.CartValidated:
		var q events.Quote
		if err := in.DecodePayload(&q); err != nil {
			return err
		}
		s.Quote, s.CartID, s.CustomerEmail = &q, q.CartID, q.CustomerEmail
	case events.InventoryReserved:
		if err := in.DecodePayload(&events.Reservation{}); err != nil {
			return err // nothing to keep, but a reservation must say what it holds
		}
	case events.PaymentCaptured:
		var p events.Payment
		if err := in.DecodePayload(&p); err != nil {
			return err
		}
		// Believed only from payments (its signature, checked before this), which publishes
		// a capture once its record is committed; and only for what was asked of it.
		if s.Quote == nil || !p.Amount.Equal(s.Quote.Total) || p.Currency != s.Quote.Currency {
			return fmt.Errorf("%w: captured %s %s, but the payment asked was for the quote's total", events.ErrMalformed, p.Amount, p.Currency)
		}
		s.PaymentIntentID = p.PaymentIntentID
	case events.OrderCreated:
		var o events.Order
		if err := in.DecodePayload(&o); err != nil {
			return err
		}
		s.OrderID, s.OrderNumber, s.Order = o.ID, o.Number, &o
	}
	return nil
}

// decide returns the decisions the state now calls for that were not made before, and
// records them. now is the time the decisions' events will carry.
func (s *State) decide(r rules, now time.Time) []decision {
	var due []decision
	switch {
	case s.Status == StatusCompleted:
		// Nothing undoes a completed checkout; a re-drive runs its failed steps again.
		due = append(due, s.redriveDecisions(r.flow)...)
	case s.Failure == nil:
		for _, step := range r.flow.Coordinated() {
			if s.Steps[step.Name] == nil && s.allDone(step.After) {
				due = append(due, decision{Type: step.Trigger})
				s.start(r, step, now)
			}
		}
		if s.settled(r.flow) {
			due = append(due, decision{Type: events.Completed})
		}
	case !s.awaiting(r.flow):
		// Compensations go on after checkout.failed too: a step that answers late is
		// still undone.
		if next, ok := s.nextCompensation(r.flow); ok {
			due = append(due, decision{Type: next.Compensate})
		} else {
			due = append(due, decision{Type: events.Failed})
		}
	}
	if !s.terminal() || s.redriving() {
		if timer, ok := s.timerDue(r.flow); ok {
			due = append(due, timer)
		}
	}
	var fresh []decision
	for _, d := range heldBack(r.flow, due) {
		if !slices.Contains(s.Decided, d.key()) {
			s.Decided = append(s.Decided, d.key())
			fresh = append(fresh, d)
		}
	}
	for _, d := range fresh {
		switch d.Type {
		case events.Deadline:
			s.Timers = append(s.Timers, d.At)
		case events.Completed:
			s.Status, s.EndedAt = StatusCompleted, now
		case events.Failed:
			s.Status, s.EndedAt = StatusFailed, now
		case events.RedriveSettled:
			s.NeedsAttention = slices.ContainsFunc(s.Warnings, func(w events.StepFailure) bool { return attention(r.flow, w) })
		}
	}
	return fresh
}

// heldBack turns decisions into what this process writes: at an older schema version (a
// rolling upgrade's hold), a go-ahead that version does not have becomes the ones it has
// (Flow.TriggersAt). They are recorded so, so that a redelivery publishes the same events,
// whichever release or hold handles it.
func heldBack(flow events.Flow, due []decision) []decision {
	v := events.WriteVersion()
	if v == events.SchemaVersion {
		return due
	}
	var out []decision
	for _, d := range due {
		if events.ExistsAt(d.Type, v) {
			out = append(out, d)
			continue
		}
		for _, typ := range flow.TriggersAt(d.Type, v) {
			out = append(out, decision{Type: typ, Step: d.Step, At: d.At, Attempt: d.Attempt})
		}
	}
	return out
}

// setTimer reports whether at is a timer the checkout set: one it holds, or a step's own
// deadline (the per-step timers of versions before one timer per checkout).
func (s *State) setTimer(at time.Time) bool {
	if slices.ContainsFunc(s.Timers, at.Equal) {
		return true
	}
	for _, st := range s.Steps {
		if st.active() && st.Deadline.Equal(at) {
			return true
		}
	}
	return false
}

// timerDue returns the timer to schedule: one at the earliest deadline of the running
// steps, unless a timer the server holds fires by then. One timer per checkout, not one per
// step: a checkout that ends before its first deadline costs one schedule and one firing.
func (s *State) timerDue(flow events.Flow) (decision, bool) {
	var next decision
	for _, step := range flow.Steps {
		if st := s.Steps[step.Name]; st.active() && (next.At.IsZero() || st.Deadline.Before(next.At)) {
			next = decision{Type: events.Deadline, Step: step.Name, At: st.Deadline}
		}
	}
	if next.At.IsZero() || slices.ContainsFunc(s.Timers, func(t time.Time) bool { return !t.After(next.At) }) {
		return decision{}, false
	}
	return next, true
}

// alsoFailed are the failures of the steps other than the one that failed the checkout.
func (s *State) alsoFailed(flow events.Flow) []events.StepFailure {
	var out []events.StepFailure
	for _, step := range flow.Steps {
		if st := s.Steps[step.Name]; st != nil && st.Status == StepFailed && st.Failure != nil && step.Name != s.Failure.Step {
			out = append(out, *st.Failure)
		}
	}
	return out
}

func (s *State) allDone(names []events.StepName) bool {
	for _, n := range names {
		if st := s.Steps[n]; st == nil || (st.Status != StepDone && st.Status != StepCompensated) {
			return false
		}
	}
	return true
}

// settled reports a checkout whose every step succeeded, or failed without failing the
// checkout, or can no longer run because such a failure came before it.
func (s *State) settled(flow events.Flow) bool {
	blocked := map[events.StepName]bool{}
	for _, step := range flow.Steps {
		st := s.Steps[step.Name]
		switch {
		case st != nil && st.Status == StepDone:
		case st != nil && st.Status == StepFailed && step.OnFailure != events.FailCheckout:
			blocked[step.Name] = true
		case st == nil && slices.ContainsFunc(step.After, func(n events.StepName) bool { return blocked[n] }):
			blocked[step.Name] = true
		default:
			return false
		}
	}
	return true
}

// awaiting reports a step still running or waiting whose effect would have to be undone:
// after a failure the coordinator waits for it (or its deadline), so a reservation that
// succeeds late is still released. A step with nothing to undo (a fraud review) is not
// waited for.
func (s *State) awaiting(flow events.Flow) bool {
	for _, step := range flow.Steps {
		if st := s.Steps[step.Name]; st.active() && step.Compensate != "" {
			return true
		}
	}
	return false
}

// nextCompensation is the latest step to undo that is not undone yet, or false when none
// is left. Compensations run one at a time, latest step first.
func (s *State) nextCompensation(flow events.Flow) (events.Step, bool) {
	for i := len(flow.Steps) - 1; i >= 0; i-- {
		step := flow.Steps[i]
		if st := s.Steps[step.Name]; st != nil && step.Compensate != "" && undoable(st) {
			return step, true
		}
	}
	return events.Step{}, false
}
