package app

import (
	"testing"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
)

// TestOneServicePerProcess runs every service as its own System against one NATS server and
// one Stripe emulator, each with its own data directory, as `jetcheckout service NAME` does
// in separate processes: the checkout completes with nothing shared but NATS.
func TestOneServicePerProcess(t *testing.T) {
	env := natstest.Start(t)
	emu := startEmulator(t)
	log := testLogger()

	systems := map[string]*System{}
	for _, name := range Services {
		cfg := testConfig(t.TempDir())
		cfg.NATSURL, cfg.StripeBase, cfg.StripeKey = env.URL, emu.URL, "sk_test_per_process"
		sys := startProcess(t, cfg, log, name)
		if sys.Server != nil || sys.Emulator != nil {
			t.Fatalf("%s started its own NATS server or Stripe emulator", name)
		}
		systems[name] = sys
	}
	w := env.Watch(t, "checkout.>")
	cart := createCart(t, systems["catalog"], "USD", events.CartItem{ProductID: "keyboard-bbolt", Quantity: 1})
	publishCheckout(t, systems["catalog"], checkoutRequest("co-processes", cart.ID, "pm_card_visa", california))
	if end := w.Wait(t, "co-processes", wait, events.Completed, events.Failed); end.Type != events.Completed {
		t.Fatalf("ended in %s: %s", end.Type, end.Payload)
	}
	order, found, err := systems["orders"].Orders.OrderByCheckout("co-processes")
	if err != nil || !found {
		t.Fatalf("no order (%v)", err)
	}
	charged := intentsOf(emu.Emulator, "co-processes")
	if len(charged) != 1 || charged[0].ID != order.PaymentIntentID || charged[0].Status != "succeeded" {
		t.Errorf("payment intents %+v, order paid with %s", charged, order.PaymentIntentID)
	}
}
