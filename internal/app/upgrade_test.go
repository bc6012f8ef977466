package app

import (
	"bytes"
	"log/slog"
	"maps"
	"slices"
	"testing"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/jetcheckout/jetcheckout/services/fraud"
)

// TestUpgradeFromThePreviousVersion runs every service as its own System writing the
// previous version of the event contract (held back, as during a rolling upgrade: byte for
// byte what that release wrote, events' TestHeldWritersWriteWhatTheOldReleaseWrote), leaves
// a fraud review and a 3-D Secure wait (its re-check scheduled) pending, then restarts every
// service on the current version. The waits written at the old version complete under the
// new one, new checkouts write the new version, and every rebuildable view rebuilt from the
// stream of both versions equals the live one, with nothing published again.
func TestUpgradeFromThePreviousVersion(t *testing.T) {
	t.Cleanup(func() { _ = events.HoldWriteVersion(0) })
	env := natstest.Start(t)
	emu := startEmulator(t)
	logs := newLogRecorder(testLogger().Handler())
	log := slog.New(logs)
	dirs := map[string]string{}
	writeVersion := events.OldestSchemaVersion
	start := func(name string) *System {
		t.Helper()
		cfg := testConfig(dirs[name])
		cfg.NATSURL, cfg.StripeBase, cfg.StripeKey = env.URL, emu.URL, "sk_test_upgrade"
		cfg.SchemaWriteVersion = writeVersion
		return startProcess(t, cfg, log, name)
	}
	systems := map[string]*System{}
	for _, name := range Services {
		dirs[name] = t.TempDir()
		systems[name] = start(name)
	}
	w, timers := env.Watch(t, "checkout.>"), env.Watch(t, events.TimerSubjects(events.ServicePayments))
	checkout := func(id, pm, email string) {
		cart := createCart(t, systems[events.ServiceCatalog], "USD", events.CartItem{ProductID: "mug-nats", Quantity: 1})
		publishCheckout(t, systems[events.ServiceCatalog], checkoutRequestFor(id, cart.ID, pm, email))
	}

	// The previous version: one checkout of each end, and two left waiting for people.
	checkout("co-up-happy", "pm_card_visa", "ada@example.com")
	checkout("co-up-declined", "pm_card_chargeDeclined", "ada@example.com")
	checkout("co-up-review", "pm_card_visa", "ada@review.test")
	checkout("co-up-3ds", "pm_card_authenticationRequired", "ada@example.com")
	w.Wait(t, "co-up-happy", wait, events.Completed)
	w.Wait(t, "co-up-declined", wait, events.Failed)
	w.Wait(t, "co-up-review", wait, events.FraudReviewPending)
	w.Wait(t, "co-up-3ds", wait, events.PaymentActionPending)
	natstest.Eventually(t, wait, func() bool { return timers.Count("co-up-3ds", events.PaymentRecheck) >= 1 }, "no re-check scheduled")
	for _, name := range Services {
		(&natstest.Env{JS: env.JS}).WaitIdle(t, name)
	}
	before := len(w.All(""))
	writtenAt(t, w.All(""), events.OldestSchemaVersion)
	writtenAt(t, timers.All(""), events.OldestSchemaVersion)
	if w.Count("co-up-happy", events.ConfirmationRequested) != 1 || w.Count("co-up-happy", events.LabelRequested) != 1 || w.Count("co-up-happy", events.FulfilmentRequested) != 0 {
		t.Errorf("a coordinator held at version 1 wrote %v after the order, want a go-ahead per step", w.All("co-up-happy"))
	}
	for _, m := range w.Msgs("co-up-happy") {
		if bytes.Contains(m.Data, []byte(`"tax_rate"`)) {
			t.Fatalf("a writer held at version %d wrote a later field: %s", events.OldestSchemaVersion, m.Data)
		}
	}

	// The upgrade: every service restarted on the current version.
	writeVersion = 0
	for _, name := range Services {
		systems[name].Stop()
		systems[name] = start(name)
	}
	for _, pi := range intentsOf(emu.Emulator, "co-up-3ds") {
		if err := emu.Emulator.CompleteAuthentication(pi.ID, true); err != nil {
			t.Fatal(err)
		}
	}
	request[fraud.ReviewReply](t, systems[events.ServiceFraud].NC, events.FraudReview,
		fraud.ReviewRequest{CheckoutID: "co-up-review", ReviewDecision: events.ReviewDecision{Decision: events.ReviewApprove, Reviewer: "alice"}})
	checkout("co-up-after", "pm_card_visa", "ada@example.com")
	for _, id := range []string{"co-up-review", "co-up-3ds", "co-up-after"} {
		if end := w.Wait(t, id, wait, events.Completed, events.Failed); end.Type != events.Completed {
			t.Fatalf("%s ended in %s: %s", id, end.Type, end.Payload)
		}
		for _, typ := range []events.Subject{events.OrderCreated, events.PaymentCaptured, events.ConfirmationSent, events.WarehouseNotified} {
			if n := w.Count(id, typ); n != 1 {
				t.Errorf("%s: %d %s, want 1", id, n, typ)
			}
		}
		if n := len(intentsOf(emu.Emulator, id)); n != 1 {
			t.Errorf("%s: %d payment intents", id, n)
		}
	}
	for _, name := range Services {
		(&natstest.Env{JS: env.JS}).WaitIdle(t, name)
	}
	writtenAt(t, w.All("")[before:], events.SchemaVersion)
	if w.Count("co-up-after", events.FulfilmentRequested) != 1 || w.Count("co-up-after", events.ConfirmationRequested)+w.Count("co-up-after", events.LabelRequested) != 0 {
		t.Errorf("version %d wrote %v after the order, want one go-ahead for both steps", events.SchemaVersion, w.All("co-up-after"))
	}
	var quote events.Quote
	if e := w.Wait(t, "co-up-after", wait, events.CartValidated); e.DecodePayload(&quote) != nil || quote.TaxRate == nil || !quote.TaxRate.Equal(dec("0.0725")) {
		t.Errorf("the quote written after the upgrade: tax_rate %v, want California's 0.0725", quote.TaxRate)
	}
	for id, status := range map[string]string{"co-up-happy": "confirmed", "co-up-review": "confirmed", "co-up-3ds": "confirmed", "co-up-after": "confirmed"} {
		if o, found, err := systems[events.ServiceOrders].Orders.OrderByCheckout(id); err != nil || !found || o.Status != status {
			t.Errorf("%s: order %+v found=%v err=%v, want %s", id, o, found, err, status)
		}
	}

	// Every view rebuilt from the stream of both versions is the live one.
	published := len(w.All(""))
	for _, name := range slices.Sorted(maps.Keys(events.Rebuildable)) {
		rebuildView(t, name, dirs[name], systems, start, logs)
	}
	if n := len(w.All("")); n != published {
		t.Errorf("%d events published while the views were rebuilt: %v", n-published, w.All("")[published:])
	}
}

// writtenAt fails the test for each event not written at version v.
func writtenAt(t *testing.T, all []events.Envelope, v int) {
	t.Helper()
	for _, e := range all {
		if e.SchemaVersion != v {
			t.Errorf("%s of %s written at version %d, want %d", e.Type, e.CheckoutID, e.SchemaVersion, v)
		}
	}
}
