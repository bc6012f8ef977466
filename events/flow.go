package events

import (
	"fmt"
	"slices"
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
	Done    Subject
	Failed  Subject
	// Compensate is the command that undoes the step once it succeeded ("" when there is
	// nothing to undo); Compensated confirms it.
	Compensate  Subject
	Compensated Subject
}

// Flow is a DAG of steps, listed in an order where every step follows its dependencies.
type Flow struct {
	Steps []Step
}

// Checkout is the checkout DAG:
//
//	validate_cart_items → [reserve_inventory ‖ check_fraud] → process_payment → create_order →
//	  [send_order_confirmation ‖ (create_shipping_label → notify_warehouse)] → completed
var Checkout = Flow{Steps: []Step{
	{Name: StepValidateCart, Service: ServiceCatalog, Trigger: Requested,
		Done: CartValidated, Failed: CartFailed},
	{Name: StepReserveInventory, Service: ServiceInventory, After: []StepName{StepValidateCart}, Trigger: CartValidated,
		Done: InventoryReserved, Failed: InventoryFailed, Compensate: InventoryRelease, Compensated: InventoryReleased},
	{Name: StepCheckFraud, Service: ServiceFraud, After: []StepName{StepValidateCart}, Trigger: CartValidated,
		Done: FraudCleared, Failed: FraudFailed},
	{Name: StepProcessPayment, Service: ServicePayments, After: []StepName{StepReserveInventory, StepCheckFraud}, Trigger: PaymentRequested,
		Done: PaymentCaptured, Failed: PaymentFailed, Compensate: PaymentRefund, Compensated: PaymentRefunded},
	{Name: StepCreateOrder, Service: ServiceOrders, After: []StepName{StepProcessPayment}, Trigger: PaymentCaptured,
		Done: OrderCreated, Failed: OrderFailed},
	{Name: StepSendConfirmation, Service: ServiceNotifications, After: []StepName{StepCreateOrder}, Trigger: OrderCreated,
		Done: ConfirmationSent, Failed: ConfirmationFailed},
	{Name: StepCreateLabel, Service: ServiceShipping, After: []StepName{StepCreateOrder}, Trigger: OrderCreated,
		Done: LabelCreated, Failed: LabelFailed},
	{Name: StepNotifyWarehouse, Service: ServiceShipping, After: []StepName{StepCreateLabel}, Trigger: LabelCreated,
		Done: WarehouseNotified, Failed: WarehouseFailed},
}}

// Joins are the steps with several dependencies: the coordinator publishes their trigger.
func (f Flow) Joins() []Step {
	var out []Step
	for _, s := range f.Steps {
		if len(s.After) > 1 {
			out = append(out, s)
		}
	}
	return out
}

// Sinks are the steps nothing depends on: the checkout completes when all of them are done.
func (f Flow) Sinks() []Step {
	var out []Step
	for _, s := range f.Steps {
		if len(f.Dependents(s.Name)) == 0 {
			out = append(out, s)
		}
	}
	return out
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
			if want := seen[s.After[0]].Done; s.Trigger != want {
				return fmt.Errorf("step %s follows %s, so its trigger must be %s", s.Name, s.After[0], want)
			}
		default:
			for _, o := range seen {
				if s.Trigger == o.Done || s.Trigger == o.Failed {
					return fmt.Errorf("join step %s needs a trigger of its own, not %s", s.Name, s.Trigger)
				}
			}
		}
		seen[s.Name] = s
	}
	return nil
}
