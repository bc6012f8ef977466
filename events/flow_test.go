package events

import (
	"slices"
	"testing"
)

func TestCheckoutFlow(t *testing.T) {
	if err := Checkout.Validate(); err != nil {
		t.Fatal(err)
	}
	names := func(steps []Step) []StepName {
		var out []StepName
		for _, s := range steps {
			out = append(out, s.Name)
		}
		return out
	}
	if got := names(Checkout.Coordinated()); !slices.Equal(got, []StepName{StepProcessPayment, StepCreateOrder, StepSendConfirmation, StepCreateLabel}) {
		t.Errorf("coordinated = %v", got)
	}
	if got := names(Checkout.Dependents(StepValidateCart)); !slices.Equal(got, []StepName{StepReserveInventory, StepCheckFraud}) {
		t.Errorf("after validation = %v", got)
	}
}

func TestFlowValidateCatchesMistakes(t *testing.T) {
	a := Step{Name: "a", Service: "s", Trigger: Requested, Done: "x.a.done", Failed: "x.a.failed"}
	b := Step{Name: "b", Service: "s", After: []StepName{"a"}, Trigger: "x.a.done", Done: "x.b.done", Failed: "x.b.failed"}
	tests := map[string]Flow{
		"dependency declared later": {Steps: []Step{b, a}},
		"wrong trigger":             {Steps: []Step{a, {Name: "b", Service: "s", After: []StepName{"a"}, Trigger: "x.a.failed", Done: "x.b.done", Failed: "x.b.failed"}}},
		"join reuses an outcome":    {Steps: []Step{a, b, {Name: "c", Service: "s", After: []StepName{"a", "b"}, Trigger: "x.b.done", Done: "x.c.done", Failed: "x.c.failed"}}},
		"undo and stand":            {Steps: []Step{{Name: "a", Service: "s", Trigger: Requested, Done: "d", Failed: "f", Compensate: "c", Compensated: "cd", OnFailure: NeedsAttention}}},
		"duplicate name":            {Steps: []Step{a, a}},
		"half a compensation":       {Steps: []Step{{Name: "a", Service: "s", Trigger: Requested, Done: "d", Failed: "f", Compensate: "c"}}},
	}
	for name, f := range tests {
		if err := f.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if err := (Flow{Steps: []Step{a, b}}).Validate(); err != nil {
		t.Errorf("a valid flow was refused: %v", err)
	}
}
