package app

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/jetcheckout/jetcheckout/services/orders"
	"github.com/nats-io/nats.go/jetstream"
)

// TestLateCopyAfterTheCheckoutIsRemoved: a completed checkout's key goes after its
// retention (short here); then copies of its successes arrive, as a service that republishes
// its outputs long after would make them. The coordinator has no state for the checkout,
// yet nothing is undone: no release, no refund, no cancellation, the stock and the order as
// they were, and nothing refused as malformed.
func TestLateCopyAfterTheCheckoutIsRemoved(t *testing.T) {
	const retention = 2 * time.Second
	r := startRig(t, t.TempDir(), nil, func(c *Config) { c.CheckoutRetention = retention })
	before := stock(t, r.System, "stickers")
	r.checkout(t, "co-late", "pm_card_visa", events.CartItem{ProductID: "stickers", Quantity: 2})
	r.completed(t, "co-late")
	r.env.WaitIdle(t, "inventory")
	after := stock(t, r.System, "stickers")
	if after.Sold != before.Sold+2 || after.Reserved != before.Reserved {
		t.Fatalf("stock after the checkout %+v, before %+v: want 2 sold", after, before)
	}
	charged, _, _ := r.money("co-late")

	kv, err := r.JS.KeyValue(context.Background(), events.BucketCheckouts)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, wait, func() bool {
		_, err := kv.Get(context.Background(), "co-late")
		return errors.Is(err, jetstream.ErrKeyNotFound)
	}, "the completed checkout's key is still there after its retention")

	for _, typ := range []events.Subject{events.InventoryReserved, events.PaymentCaptured, events.OrderCreated} {
		e := r.watch.Wait(t, "co-late", time.Second, typ)
		r.env.Republish(t, r.watch.Msg("co-late", typ), e.ID+"-late-copy")
	}
	r.env.WaitIdle(t, "coordinator")
	for _, service := range []string{"inventory", "payments", "orders"} {
		r.env.WaitIdle(t, service)
	}
	for _, undo := range []events.Subject{events.InventoryRelease, events.PaymentRefund, events.OrderCancel, events.Rejected} {
		if n := r.watch.Count("co-late", undo); n != 0 {
			t.Errorf("%d %s for the removed checkout, want none", n, undo)
		}
	}
	if c, refunded, _ := r.money("co-late"); c != charged || refunded != 0 {
		t.Errorf("charged %d refunded %d, want %d charged and nothing refunded", c, refunded, charged)
	}
	r.stockIs(t, after)
	if o, found, err := r.Orders.OrderByCheckout("co-late"); err != nil || !found || o.Status == orders.StatusCancelled {
		t.Errorf("order %+v (found %v, %v): want it kept", o, found, err)
	}
}
