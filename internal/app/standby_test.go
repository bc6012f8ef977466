package app

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
)

// TestReplicasTakeTurns runs two replicas of inventory on one data directory, as the
// compose cluster does on a shared volume: the second stands by (healthy, saying so) while
// the first sells a keyboard; when the first stops, the second takes over the same store
// and the same durable consumer, sells the next one, and the stock counts both.
func TestReplicasTakeTurns(t *testing.T) {
	env := natstest.Start(t)
	emu := startEmulator(t)
	log := testLogger()
	cfg := testConfig(t.TempDir())
	cfg.NATSURL, cfg.StripeBase, cfg.StripeKey = env.URL, emu.URL, "sk_test_replicas"
	rest := cfg
	rest.DataDir = t.TempDir()
	others, err := Start(context.Background(), rest, log, without(Services, events.ServiceInventory)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(others.Stop)

	// startReplica waits for its turn, then runs inventory; the returned stop ends both.
	startReplica := func(h *health) (*System, func()) {
		release, err := awaitTurn(context.Background(), cfg.DataDir, log, h, []string{events.ServiceInventory})
		if err != nil {
			t.Error(err)
			return nil, func() {}
		}
		sys, err := Start(context.Background(), cfg, log, events.ServiceInventory)
		if err != nil {
			release()
			t.Error(err)
			return nil, func() {}
		}
		return sys, func() { sys.Stop(); release() }
	}
	first, stopFirst := startReplica(&health{})
	t.Cleanup(stopFirst)
	second := make(chan *System, 1)
	secondHealth := &health{}
	go func() {
		sys, stop := startReplica(secondHealth)
		t.Cleanup(stop)
		second <- sys
	}()
	waitHealth(t, secondHealth, http.StatusOK, "standby")

	w := env.Watch(t, "checkout.>")
	buy := func(id string) {
		t.Helper()
		cart := createCart(t, others, "USD", events.CartItem{ProductID: "keyboard-bbolt", Quantity: 1})
		publishCheckout(t, others, checkoutRequest(id, cart.ID, "pm_card_visa", california))
		if end := w.Wait(t, id, wait, events.Completed, events.Failed); end.Type != events.Completed {
			t.Fatalf("%s ended in %s: %s", id, end.Type, end.Payload)
		}
	}
	before := stock(t, first, "keyboard-bbolt")
	buy("co-first-replica")
	select {
	case <-second:
		t.Fatal("the standby replica started while the first one ran")
	default:
	}

	stopFirst()
	next := <-second
	if next == nil {
		t.Fatal("the standby replica did not take over")
	}
	buy("co-second-replica")
	// The sale is recorded when inventory sees checkout.completed, just after the watcher.
	natstest.Eventually(t, wait, func() bool {
		after := stock(t, next, "keyboard-bbolt")
		return after.Sold == before.Sold+2 && after.Available == before.Available-2 && after.Reserved == before.Reserved
	}, "stock before %+v, after two sales by two replicas %+v", before, stock(t, next, "keyboard-bbolt"))
}

func without(names []string, drop string) []string {
	var out []string
	for _, n := range names {
		if n != drop {
			out = append(out, n)
		}
	}
	return out
}

// waitHealth polls h until it answers code with a body containing want.
func waitHealth(t *testing.T, h *health, code int, want string) {
	t.Helper()
	var body string
	for range 100 {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", HealthPath, nil))
		if body = rec.Body.String(); rec.Code == code && strings.Contains(body, want) {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("health never answered %d %q; last: %q", code, want, body)
}
