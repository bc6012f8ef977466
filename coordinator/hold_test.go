package coordinator

import (
	"context"
	"log/slog"
	"slices"
	"testing"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
)

// TestRedeliveryAcrossTheHoldLiftRepublishesTheSameGoAheads: a coordinator held at version 1
// applies a checkout's order.created, saves its state and publishes version 1's go-aheads
// (checkout.confirmation.requested, checkout.shipping.requested), then dies before its ack,
// as an instance restarted to lift the hold does. The redelivery, handled by a coordinator
// no longer held, must publish the same events again (same Nats-Msg-Id: the stream drops
// them), not a third go-ahead with another ID that notifications and shipping take as new
// work. And what the held coordinator recorded must be republishable by a release v0.1.0
// coordinator beside it: only subjects version 1 has (v0.1.0's build answers "no payload
// for decision checkout.fulfilment.requested" and retries forever).
func TestRedeliveryAcrossTheHoldLiftRepublishesTheSameGoAheads(t *testing.T) {
	t.Cleanup(func() { _ = events.HoldWriteVersion(0) })
	env := natstest.Start(t)
	ctx := context.Background()
	coordinator := func() *Coordinator {
		c, err := New(ctx, env.JS, slog.New(slog.DiscardHandler), Config{})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	id := "co_lift"
	if err := events.HoldWriteVersion(1); err != nil {
		t.Fatal(err)
	}
	held := coordinator()
	if _, err := held.Commit(ctx, events.RequestEnvelope(requestOf(id), events.Origin{}), 1); err != nil {
		t.Fatal(err)
	}
	var seq uint64 = 1
	for _, typ := range []events.Subject{events.CartValidated, events.InventoryReserved, events.FraudCleared, events.PaymentCaptured} {
		seq++
		if _, err := held.Commit(ctx, forCheckout(t, id, typ), seq); err != nil {
			t.Fatal(err)
		}
	}
	seq++
	orderCreated := forCheckout(t, id, events.OrderCreated)
	first, err := held.Commit(ctx, orderCreated, seq)
	if err != nil {
		t.Fatal(err)
	}
	goAheads := func(outs []events.Envelope) []string {
		var ids []string
		for _, e := range outs {
			if e.Type != events.Deadline {
				ids = append(ids, e.ID)
			}
		}
		slices.Sort(ids)
		return ids
	}
	st, _, err := held.State(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range st.Applied[orderCreated.ID].Decisions {
		if !events.ExistsAt(d.Type, 1) {
			t.Errorf("a coordinator held at version 1 recorded the decision %s, which a v0.1.0 coordinator cannot publish on a redelivery", d.Type)
		}
	}

	if err := events.HoldWriteVersion(0); err != nil {
		t.Fatal(err)
	}
	again, err := coordinator().Commit(ctx, orderCreated, seq) // the redelivery
	if err != nil {
		t.Fatal(err)
	}
	if a, b := goAheads(first), goAheads(again); !slices.Equal(a, b) {
		t.Errorf("the held coordinator published %v; the redelivery after the lift publishes %v: not deduplicated, a second go-ahead", a, b)
	}
}
