package coordinator

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/jetcheckout/jetcheckout/internal/steptest"
	"github.com/jetcheckout/jetcheckout/internal/topology"
	"github.com/jetcheckout/jetcheckout/runner"
	bolt "go.etcd.io/bbolt"
)

// apply_loyalty_points is a step declared here and nowhere else: undoable, run by its own
// service beside the reservation and the fraud check, and joined before the payment.
const (
	stepLoyalty     events.StepName = "apply_loyalty_points"
	loyaltyApplied  events.Subject  = "checkout.loyalty.applied"
	loyaltyFailed   events.Subject  = "checkout.loyalty.failed"
	loyaltyRevert   events.Subject  = "checkout.loyalty.revert"
	loyaltyReverted events.Subject  = "checkout.loyalty.reverted"
)

// withLoyalty is the checkout's flow with apply_loyalty_points declared before the payment,
// which now waits for it too.
func withLoyalty() events.Flow {
	loyalty := events.Step{Name: stepLoyalty, Service: "loyalty", After: []events.StepName{events.StepValidateCart}, Trigger: events.CartValidated,
		Done: loyaltyApplied, Failed: loyaltyFailed, Compensate: loyaltyRevert, Compensated: loyaltyReverted}
	var steps []events.Step
	for _, s := range events.Checkout.Steps {
		if s.Name == events.StepProcessPayment {
			s.After = append(slices.Clone(s.After), stepLoyalty)
			steps = append(steps, loyalty)
		}
		steps = append(steps, s)
	}
	return events.Flow{Steps: steps}
}

// points is the loyalty service: it applies a checkout's points (none for a customer whose
// checkout ID says "no-points"; for one that says "flaky" it cannot reach its ledger) and
// gives them back when asked.
type points struct{}

type pointsApplied struct {
	Points int `json:"points"`
}

func (points) Routes() []runner.Route {
	return []runner.Route{
		{Subject: events.CartValidated, Handle: func(_ context.Context, _ *bolt.Tx, in events.Envelope) ([]events.Envelope, error) {
			if strings.Contains(in.CheckoutID, "flaky") {
				return nil, errors.New("the points ledger does not answer")
			}
			if strings.Contains(in.CheckoutID, "no-points") {
				return []events.Envelope{events.Must(in.CheckoutID, loyaltyFailed,
					events.StepFailure{Step: stepLoyalty, Code: "points_unavailable", Message: "the customer has no points"})}, nil
			}
			return []events.Envelope{events.Must(in.CheckoutID, loyaltyApplied, pointsApplied{Points: 10})}, nil
		}},
		{Subject: loyaltyRevert, Handle: func(_ context.Context, _ *bolt.Tx, in events.Envelope) ([]events.Envelope, error) {
			return []events.Envelope{events.Must(in.CheckoutID, loyaltyReverted, pointsApplied{Points: 10})}, nil
		}},
	}
}

// TestAStepDeclaredOnlyInTheFlow: a flow with one step more, declared in this file only,
// runs through the real coordinator and the new step's service behind the real runner (the
// other steps' outcomes are published by the test). The payment waits for the new step;
// when it fails the checkout fails at it and what succeeded is undone; when a later step
// fails the new step is undone too, in the reverse order of the flow. The step's runner gives
// up on it as the flow says (its failure published on the step's own subject).
func TestAStepDeclaredOnlyInTheFlow(t *testing.T) {
	env := natstest.Start(t)
	w := env.Watch(t, "checkout.>")
	flow := withLoyalty()
	c, err := New(context.Background(), env.JS, slog.New(slog.DiscardHandler), Config{Flow: flow})
	if err != nil {
		t.Fatal(err)
	}
	// The setup role makes the consumers from the flow (topology.Ensure makes the default's).
	for name, subjects := range map[string][]events.Subject{events.ServiceCoordinator: c.Subjects(), "loyalty": {events.CartValidated, loyaltyRevert}} {
		var filter []string
		for _, s := range subjects {
			filter = append(filter, string(s))
		}
		if _, err := env.JS.CreateOrUpdateConsumer(context.Background(), events.StreamCheckout, topology.StepConsumer(name, filter, topology.DefaultAckWait)); err != nil {
			t.Fatal(err)
		}
	}
	r, err := c.Runner(env.JS)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Run(t, r)
	publish := func(id string, types ...events.Subject) {
		t.Helper()
		for _, typ := range types {
			if typ == events.Requested {
				env.PublishRaw(t, string(events.Requested), requestOf(id), "")
				continue
			}
			env.Publish(t, forCheckout(t, id, typ))
		}
	}
	failed := func(id string) events.CheckoutFailed {
		t.Helper()
		end := w.Wait(t, id, 10*time.Second, events.Completed, events.Failed)
		var f events.CheckoutFailed
		if end.Type != events.Failed {
			t.Fatalf("%s %s, want it failed", id, end.Type)
		}
		if err := end.DecodePayload(&f); err != nil {
			t.Fatal(err)
		}
		return f
	}

	// The reservation and the fraud check are done, the points not yet: no payment.
	publish("co-points", events.Requested, events.CartValidated, events.InventoryReserved, events.FraudCleared)
	env.WaitIdle(t, events.ServiceCoordinator)
	time.Sleep(200 * time.Millisecond) // what it published before it acked has reached the watcher
	if n := w.Count("co-points", events.PaymentRequested); n != 0 {
		t.Fatalf("%d payment requests before the points were applied, want none", n)
	}
	steptest.StartOn(t, env, runner.Config{Name: "loyalty", Flow: flow, RetryBase: 10 * time.Millisecond, MaxDeliver: 2},
		func(*bolt.DB, *slog.Logger) (points, error) { return points{}, nil })
	w.Wait(t, "co-points", 10*time.Second, events.PaymentRequested)
	publish("co-points", events.PaymentCaptured)
	w.Wait(t, "co-points", 10*time.Second, events.OrderRequested)
	publish("co-points", events.OrderCreated)
	w.Wait(t, "co-points", 10*time.Second, events.FulfilmentRequested)
	publish("co-points", events.ConfirmationSent, events.LabelCreated, events.WarehouseNotified)
	if end := w.Wait(t, "co-points", 10*time.Second, events.Completed, events.Failed); end.Type != events.Completed {
		t.Fatalf("co-points ended %s: %s", end.Type, end.Payload)
	}

	// The new step fails: the checkout fails at it, the reservation is released, no payment.
	publish("co-no-points", events.Requested, events.CartValidated, events.InventoryReserved, events.FraudCleared)
	w.Wait(t, "co-no-points", 10*time.Second, events.InventoryRelease)
	publish("co-no-points", events.InventoryReleased)
	if f := failed("co-no-points"); f.Step != stepLoyalty || f.Code != "points_unavailable" || !slices.Equal(f.Compensated, []events.StepName{events.StepReserveInventory}) {
		t.Errorf("co-no-points failed at %s (%s), undoing %v; want %s, undoing the reservation", f.Step, f.Code, f.Compensated, stepLoyalty)
	}

	// A later step fails: the points are given back, then the reservation released (the
	// flow's reverse order), one at a time.
	publish("co-declined", events.Requested, events.CartValidated)
	w.Wait(t, "co-declined", 10*time.Second, loyaltyApplied)
	publish("co-declined", events.InventoryReserved, events.FraudCleared)
	w.Wait(t, "co-declined", 10*time.Second, events.PaymentRequested)
	publish("co-declined", events.PaymentFailed)
	w.Wait(t, "co-declined", 10*time.Second, events.InventoryRelease)
	publish("co-declined", events.InventoryReleased)
	f := failed("co-declined")
	if f.Step != events.StepProcessPayment || !slices.Equal(f.Compensated, []events.StepName{stepLoyalty, events.StepReserveInventory}) {
		t.Errorf("co-declined failed at %s, undoing %v; want %s, undoing the points then the reservation", f.Step, f.Compensated, events.StepProcessPayment)
	}
	var undos []events.Subject
	for _, e := range w.All("co-declined") {
		if e.Type == loyaltyRevert || e.Type == loyaltyReverted || e.Type == events.InventoryRelease {
			undos = append(undos, e.Type)
		}
	}
	if want := []events.Subject{loyaltyRevert, loyaltyReverted, events.InventoryRelease}; !slices.Equal(undos, want) {
		t.Errorf("undone in the order %v, want %v", undos, want)
	}

	// The step's runner gives up (its ledger never answers): the failure it publishes is the
	// new step's, of unknown effect, so the points are given back too.
	publish("co-flaky", events.Requested, events.CartValidated, events.InventoryReserved, events.FraudCleared)
	w.Wait(t, "co-flaky", 10*time.Second, events.InventoryRelease)
	publish("co-flaky", events.InventoryReleased)
	if f := failed("co-flaky"); f.Step != stepLoyalty || f.Code != events.CodeRetriesExhausted ||
		!slices.Equal(f.Compensated, []events.StepName{stepLoyalty, events.StepReserveInventory}) {
		t.Errorf("co-flaky failed at %s (%s), undoing %v; want %s given up, undoing it and the reservation", f.Step, f.Code, f.Compensated, stepLoyalty)
	}
	if n := w.Count("co-flaky", loyaltyFailed); n != 1 {
		t.Errorf("co-flaky: %d %s, want the runner's one", n, loyaltyFailed)
	}

	for _, id := range []string{"co-points", "co-no-points", "co-declined", "co-flaky"} {
		if n := w.Count(id, events.Completed) + w.Count(id, events.Failed); n != 1 {
			t.Errorf("%s: %d terminal events, want 1", id, n)
		}
	}
	if n := w.Count("co-no-points", events.PaymentRequested) + w.Count("co-no-points", loyaltyRevert); n != 0 {
		t.Errorf("co-no-points: asked for a payment or to give back points that were never applied (%d)", n)
	}
}
