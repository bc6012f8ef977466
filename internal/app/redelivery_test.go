package app

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/jetcheckout/jetcheckout/internal/stripeemu"
	"github.com/jetcheckout/jetcheckout/internal/topology"
	"github.com/jetcheckout/jetcheckout/runner"
)

// A payments process dies holding its trigger, unacked, after a Stripe call slower than
// AckWait (heartbeats kept the trigger meanwhile) and before committing what Stripe said.
// The next payments process gets the trigger back within AckWait, long before the payment
// step's deadline (the 30s default), asks Stripe again with the same idempotency key, and
// the checkout completes: charged once, one order. With the trigger back only after a 30s
// AckWait, the step was past its deadline and the checkout failed (issue 6).
func TestATriggerHeldByADeadProcessComesBackInTime(t *testing.T) {
	server := natstest.Start(t) // outlives the payments processes, as in a deployment
	dir := t.TempDir()
	var creates atomic.Int32
	emu, err := stripeemu.Start("127.0.0.1:0", stripeemu.New(stripeemu.WithFault(func(c stripeemu.Call) stripeemu.Fault {
		if c.Method == "POST" && c.Path == "/v1/payment_intents" && creates.Add(1) == 1 {
			return stripeemu.Fault{Delay: 2 * topology.DefaultAckWait}
		}
		return stripeemu.Fault{}
	})))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emu.Close() })
	config := func() Config {
		c := testConfig(dir)
		c.NATSURL, c.StripeBase, c.StripeKey = server.URL, emu.URL, "sk_test_redelivery"
		return c
	}
	start := func(cfg Config, names ...string) *System {
		t.Helper()
		sys, err := Start(context.Background(), cfg, testLogger(), names...)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(sys.Stop)
		return sys
	}
	rest := slices.DeleteFunc(slices.Clone(Services), func(n string) bool { return n == events.ServicePayments })
	sys := start(config(), rest...)

	crash := errors.New("payments died holding its trigger")
	var died atomic.Bool
	dying := config()
	dying.Hooks = map[string]runner.Hooks{events.ServicePayments: {BeforeCommit: func(in events.Envelope) error {
		if in.Type == events.PaymentRequested && died.CompareAndSwap(false, true) {
			return crash
		}
		return nil
	}}}
	first := start(dying, events.ServicePayments)
	watch := server.Watch(t, "checkout.>")
	cart := createCart(t, sys, "USD", events.CartItem{ProductID: "keyboard-bbolt", Quantity: 1})
	publishCheckout(t, sys, checkoutRequest("co-held", cart.ID, "pm_card_visa", california))
	select {
	case <-first.Failed():
		if !errors.Is(first.Err(), crash) {
			t.Fatalf("payments stopped with %v", first.Err())
		}
	case <-time.After(time.Minute):
		t.Fatal("the payments process never died")
	}
	first.Stop()
	start(config(), events.ServicePayments) // the next payments process

	end := watch.Wait(t, "co-held", time.Minute, events.Completed, events.Failed)
	if end.Type != events.Completed {
		var f events.CheckoutFailed
		_ = end.DecodePayload(&f)
		t.Fatalf("the checkout failed: %s at %s: %s", f.Code, f.Step, f.Message)
	}
	intents := intentsOf(emu.Emulator, "co-held")
	if len(intents) != 1 || intents[0].AmountReceived == 0 || intents[0].AmountRefunded != 0 {
		t.Errorf("payment intents %+v: want one, charged, not refunded", intents)
	}
	if n := creates.Load(); n < 2 {
		t.Errorf("Stripe was asked to charge %d times: the next process did not handle the trigger again", n)
	}
	orders, err := sys.Orders.Orders()
	if err != nil {
		t.Fatal(err)
	}
	if len(orders) != 1 {
		t.Errorf("%d orders, want 1", len(orders))
	}
}
