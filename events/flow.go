package events

import (
	"fmt"
	"slices"
	"time"
)

// StepName names a step of the checkout DAG (the seed's task names).
type StepName string

const (
	StepValidateCart     StepName = "validate_cart_items"
	StepReserveInventory StepName = "reserve_inventory"
	StepCheckFraud       StepName = "check_fraud"
	StepProcessPayment   StepName = "process_payment"
	StepCreateOrder      StepName = "create_order"
	StepSendConfirmation StepName = "send_order_confirmation"
	StepCreateLabel      StepName = "create_shipping_label"
	StepNotifyWarehouse  StepName = "notify_warehouse"
)

// Step is one node of the DAG.
type Step struct {
	Name    StepName
	Service string     // the service that runs it
	After   []StepName // steps that must succeed first
	// Trigger is the subject the step consumes. With no dependency it is Requested, with one
	// it is that step's Done, and with several it is a join the coordinator publishes.
	Trigger Subject
	// LegacyTrigger, when set, is the step's own trigger at schema version 1, before steps
	// shared the coordinator's go-ahead: the step consumes it too, and a coordinator held at
	// version 1 publishes it instead of Trigger (TriggersAt).
	LegacyTrigger Subject
	Done          Subject
	Failed        Subject
	// Compensate is the command that undoes the step once it succeeded, or may have ("" when
	// there is nothing to undo); Compensated confirms it.
	Compensate  Subject
	Compensated Subject
	// Waiting, when set, is the subject on which the step says it waits for a person, and
	// until when; its deadline moves to then.
	Waiting Subject
	// Deadline bounds the step from its trigger: the step's service refuses a trigger older
	// than this, and the coordinator fails the step a grace period later.
	Deadline time.Duration
	// OnFailure says what the step's failure does to the checkout.
	OnFailure FailurePolicy
}

// FailurePolicy is what a step's failure does to its checkout.
type FailurePolicy int

const (
	// FailCheckout: undo the steps that succeeded (or may have), then checkout.failed.
	FailCheckout FailurePolicy = iota
	// CompleteWithWarning: the order stands; the checkout completes with a warning.
	CompleteWithWarning
	// NeedsAttention: the order stands, paid; the checkout completes flagged for an operator.
	// Nothing is refunded silently.
	NeedsAttention
)

// DefaultDeadline bounds a step that declares none.
const DefaultDeadline = 30 * time.Second

// Flow is a DAG of steps, listed in an order where every step follows its dependencies.
type Flow struct {
	Steps []Step
}

// Checkout is the checkout DAG:
//
//	validate_cart_items → [reserve_inventory ‖ check_fraud] → process_payment → create_order →
//	  [send_order_confirmation ‖ (create_shipping_label → notify_warehouse)] → completed
//
// The coordinator publishes the triggers of process_payment (a join), of create_order (no
// order is created for a checkout that is failing) and of the steps after it, one go-ahead
// for both (nothing is shipped or confirmed for an order that was cancelled: an order created
// after its checkout gave up on it is cancelled, the payment refunded). Once the order stands
// the checkout can no longer fail: later steps complete it with a warning or flag it.
var Checkout = Flow{Steps: []Step{
	{Name: StepValidateCart, Service: ServiceCatalog, Trigger: Requested,
		Done: CartValidated, Failed: CartFailed},
	{Name: StepReserveInventory, Service: ServiceInventory, After: []StepName{StepValidateCart}, Trigger: CartValidated,
		Done: InventoryReserved, Failed: InventoryFailed, Compensate: InventoryRelease, Compensated: InventoryReleased},
	{Name: StepCheckFraud, Service: ServiceFraud, After: []StepName{StepValidateCart}, Trigger: CartValidated,
		Done: FraudCleared, Failed: FraudFailed, Waiting: FraudReviewPending},
	{Name: StepProcessPayment, Service: ServicePayments, After: []StepName{StepReserveInventory, StepCheckFraud}, Trigger: PaymentRequested,
		Done: PaymentCaptured, Failed: PaymentFailed, Compensate: PaymentRefund, Compensated: PaymentRefunded,
		Waiting: PaymentActionPending},
	{Name: StepCreateOrder, Service: ServiceOrders, After: []StepName{StepProcessPayment}, Trigger: OrderRequested,
		Done: OrderCreated, Failed: OrderFailed, Compensate: OrderCancel, Compensated: OrderCancelled},
	{Name: StepSendConfirmation, Service: ServiceNotifications, After: []StepName{StepCreateOrder}, Trigger: FulfilmentRequested, LegacyTrigger: ConfirmationRequested,
		Done: ConfirmationSent, Failed: ConfirmationFailed, OnFailure: CompleteWithWarning, Deadline: 2 * time.Minute},
	{Name: StepCreateLabel, Service: ServiceShipping, After: []StepName{StepCreateOrder}, Trigger: FulfilmentRequested, LegacyTrigger: LabelRequested,
		Done: LabelCreated, Failed: LabelFailed, OnFailure: NeedsAttention, Deadline: 2 * time.Minute},
	{Name: StepNotifyWarehouse, Service: ServiceShipping, After: []StepName{StepCreateLabel}, Trigger: LabelCreated,
		Done: WarehouseNotified, Failed: WarehouseFailed, OnFailure: NeedsAttention, Deadline: 2 * time.Minute},
}}

// Coordinated are the steps whose trigger the coordinator publishes, once their
// dependencies succeeded: the joins, and gates like create_order.
func (f Flow) Coordinated() []Step {
	var out []Step
	for _, s := range f.Steps {
		if s.Trigger != Requested && !f.produced(s.Trigger) {
			out = append(out, s)
		}
	}
	return out
}

// produced reports whether a step publishes subject as its outcome.
func (f Flow) produced(subject Subject) bool {
	return slices.ContainsFunc(f.Steps, func(s Step) bool { return s.Done == subject || s.Failed == subject })
}

// Step returns the named step.
func (f Flow) Step(name StepName) (Step, bool) {
	i := slices.IndexFunc(f.Steps, func(s Step) bool { return s.Name == name })
	if i < 0 {
		return Step{}, false
	}
	return f.Steps[i], true
}

// TriggeredBy returns the step a service runs when subject arrives, if any: its trigger, or
// its legacy one.
func (f Flow) TriggeredBy(service string, subject Subject) (Step, bool) {
	for _, s := range f.Steps {
		if s.Service == service && (s.Trigger == subject || s.LegacyTrigger != "" && s.LegacyTrigger == subject) {
			return s, true
		}
	}
	return Step{}, false
}

// TriggersAt are the subjects a writer at schema version v publishes for the coordinator's
// go-ahead trigger: trigger itself from the version that shares it, before that each step's
// LegacyTrigger.
func (f Flow) TriggersAt(trigger Subject, v int) []Subject {
	if v >= subjectSince[trigger] {
		return []Subject{trigger}
	}
	var out []Subject
	for _, s := range f.Steps {
		if s.Trigger == trigger && s.LegacyTrigger != "" {
			out = append(out, s.LegacyTrigger)
		}
	}
	return out
}

// Waits maps a step's Waiting subject to the step.
func (f Flow) Waits(subject Subject) (Step, bool) {
	for _, s := range f.Steps {
		if s.Waiting != "" && s.Waiting == subject {
			return s, true
		}
	}
	return Step{}, false
}

// DeadlineOf is the step's deadline, DefaultDeadline when it declares none.
func (s Step) DeadlineOf() time.Duration {
	if s.Deadline > 0 {
		return s.Deadline
	}
	return DefaultDeadline
}

// Dependents are the steps that wait for the named one.
func (f Flow) Dependents(name StepName) []Step {
	var out []Step
	for _, s := range f.Steps {
		if slices.Contains(s.After, name) {
			out = append(out, s)
		}
	}
	return out
}

// Outcome maps a step's Done or Failed subject to the step and whether it succeeded.
func (f Flow) Outcome(subject Subject) (step Step, ok bool, found bool) {
	for _, s := range f.Steps {
		switch subject {
		case s.Done:
			return s, true, true
		case s.Failed:
			return s, false, true
		}
	}
	return Step{}, false, false
}

// Compensation maps a Compensated subject to the step it undid.
func (f Flow) Compensation(subject Subject) (Step, bool) {
	for _, s := range f.Steps {
		if s.Compensated != "" && s.Compensated == subject {
			return s, true
		}
	}
	return Step{}, false
}

// Validate checks the declaration: unique names, dependencies declared earlier, and each
// trigger the one its dependencies imply.
func (f Flow) Validate() error {
	seen := map[StepName]Step{}
	for _, s := range f.Steps {
		if _, dup := seen[s.Name]; dup {
			return fmt.Errorf("step %s declared twice", s.Name)
		}
		if s.Done == "" || s.Failed == "" || s.Service == "" {
			return fmt.Errorf("step %s needs Service, Done and Failed", s.Name)
		}
		if (s.Compensate == "") != (s.Compensated == "") {
			return fmt.Errorf("step %s: Compensate and Compensated go together", s.Name)
		}
		for _, d := range s.After {
			if _, ok := seen[d]; !ok {
				return fmt.Errorf("step %s depends on %s, which is not declared before it", s.Name, d)
			}
		}
		switch len(s.After) {
		case 0:
			if s.Trigger != Requested {
				return fmt.Errorf("step %s has no dependency, so its trigger must be %s", s.Name, Requested)
			}
		case 1:
			// The dependency's success, or a trigger of the step's own that the coordinator
			// publishes (a gate).
			if want := seen[s.After[0]].Done; s.Trigger != want && f.produced(s.Trigger) {
				return fmt.Errorf("step %s follows %s, so its trigger must be %s or its own", s.Name, s.After[0], want)
			}
		default:
			if f.produced(s.Trigger) {
				return fmt.Errorf("join step %s needs a trigger of its own, not %s", s.Name, s.Trigger)
			}
		}
		if s.OnFailure != FailCheckout && s.Compensate != "" {
			return fmt.Errorf("step %s cannot both be undone and leave the checkout standing when it fails", s.Name)
		}
		seen[s.Name] = s
	}
	return nil
}
