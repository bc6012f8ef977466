package coordinator

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/microx"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
)

// checkouts.step.active, what payments asks before it charges, answers from the bucket's
// leader: yes while the payment runs, even where the coordinator's replica does not show it
// started yet; no before, once the coordinator failed it at its deadline (even where the
// replica still shows it running), and for a checkout never requested; "400" for what is
// not a checkout ID or a step, rather than a wildcard's answer.
func TestStepActiveIsAskedOverNATS(t *testing.T) {
	env := natstest.Start(t)
	ctx := context.Background()
	writer := newCoordinator(t, env)
	answerer := newCoordinator(t, env) // another instance, behind on what the writer did
	svc, err := answerer.Serve(env.NC, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	ask := func(id string, step events.StepName) (bool, error) {
		t.Helper()
		askCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		var reply events.StepActiveReply
		err := microx.Request(askCtx, env.NC, events.CheckoutsStepActive, events.StepActiveRequest{CheckoutID: id, Step: step}, &reply)
		return reply.Active, err
	}
	paying := func(id string) bool {
		t.Helper()
		active, err := ask(id, events.StepProcessPayment)
		if err != nil {
			t.Fatal(err)
		}
		return active
	}

	id := "co_paying"
	if _, err := writer.Commit(ctx, events.RequestEnvelope(requestOf(id), events.Origin{StreamSeq: 1}), 1); err != nil {
		t.Fatal(err)
	}
	lagging(t, answerer, id) // its replica shows the checkout as just requested from now on
	for i, typ := range []events.Subject{events.CartValidated, events.InventoryReserved, events.FraudCleared} {
		if paying(id) {
			t.Fatalf("the payment runs before %s", typ)
		}
		if _, err := writer.Commit(ctx, forCheckout(t, id, typ), uint64(i+2)); err != nil {
			t.Fatal(err)
		}
	}
	if !paying(id) {
		t.Fatal("the payment does not run once both branches succeeded")
	}

	lagging(t, answerer, id) // its replica shows the payment running from now on
	st, _, err := writer.State(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	due := st.Steps[events.StepProcessPayment].Deadline
	deadline := events.Must(id, events.Deadline, events.DeadlineReached{Step: events.StepProcessPayment, Deadline: due})
	deadline.Time = due
	if _, err := writer.Commit(ctx, deadline, 5); err != nil {
		t.Fatal(err)
	}
	if st, _, _ := writer.State(ctx, id); st.Steps[events.StepProcessPayment].Status != StepFailed {
		t.Fatalf("the payment after its deadline: %+v; want it failed", st.Steps[events.StepProcessPayment])
	}
	if paying(id) {
		t.Error("the payment still runs after the coordinator failed it at its deadline")
	}

	if paying("co_never") {
		t.Error("a checkout never requested: its payment runs")
	}
	for _, bad := range []struct {
		id   string
		step events.StepName
	}{{"co_*", events.StepProcessPayment}, {id, "pay_twice"}} {
		var refused *microx.Error
		if active, err := ask(bad.id, bad.step); !errors.As(err, &refused) || refused.Code != "400" || active {
			t.Errorf("checkout %q, step %q: %v, %v; want a 400", bad.id, bad.step, active, err)
		}
	}
}
