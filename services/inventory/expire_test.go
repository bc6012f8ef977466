package inventory

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/jetcheckout/jetcheckout/internal/steptest"
	"github.com/nats-io/nats.go/jetstream"
)

// shortTTL lets a test watch reservations expire.
var shortTTL = Config{ReservationTTL: time.Second}

// scheduledExpiry returns the checkout's expiry as the inventory scheduled it (the
// watcher sees it go to its schedule subject, not its delivery).
func (h *harness) scheduledExpiry(t *testing.T, checkoutID string) events.Envelope {
	t.Helper()
	e := h.Wait(t, checkoutID, events.InventoryExpire)
	if n := h.Watch.Count(checkoutID, events.InventoryExpire); n != 1 {
		t.Errorf("checkout %s: %d expiries scheduled, want 1", checkoutID, n)
	}
	return e
}

// expiryHandled waits until the server has delivered the checkout's expiry into the
// stream at its time, then until the inventory has handled it.
func (h *harness) expiryHandled(t *testing.T, checkoutID string) {
	t.Helper()
	ctx := context.Background()
	stream, err := h.Env.JS.Stream(ctx, events.StreamCheckout)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, steptest.Timeout, func() bool {
		for seq := uint64(1); ; {
			m, err := stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(string(events.InventoryExpire)))
			if err != nil {
				return false
			}
			if e, err := events.Decode(m.Subject, m.Data); err == nil && e.CheckoutID == checkoutID {
				return true
			}
			seq = m.Sequence + 1
		}
	}, "checkout %s: the expiry was never delivered", checkoutID)
	h.Idle(t)
}

func TestReservationExpires(t *testing.T) {
	h := startWith(t, 1, shortTTL)
	reservedAt := time.Now()
	h.validated(t, "co-idle", quote(line("hoodie-saga", "Saga Hoodie", 2)))
	h.reservation(t, "co-idle")
	h.wantStock(t, "hoodie-saga", 1, 2, 0)

	sched := h.scheduledExpiry(t, "co-idle")
	var exp events.Expiry
	if err := sched.DecodePayload(&exp); err != nil || exp.ReservationID != "res_co-idle" {
		t.Errorf("expiry payload %+v (%v)", exp, err)
	}
	if s := sched.Schedule; s == nil || s.Key != "inventory.expire" ||
		s.At.Before(reservedAt.Add(time.Second)) || s.At.After(reservedAt.Add(3*time.Second)) {
		t.Errorf("expiry schedule %+v, want key inventory.expire about 1s after %s", s, reservedAt)
	}

	// The server delivers the expiry to the inventory's route through the stream.
	var rel events.Release
	h.Expect(t, "co-idle", events.InventoryExpired, &rel)
	if rel.ReservationID != "res_co-idle" || len(rel.Items) != 1 || rel.Items[0] != (events.ReservedItem{ProductID: "hoodie-saga", Quantity: 2}) {
		t.Errorf("expired = %+v", rel)
	}
	if waited := time.Since(reservedAt); waited < time.Second {
		t.Errorf("expired after %s, before its TTL", waited)
	}
	h.wantStock(t, "hoodie-saga", 3, 0, 0)
	h.wantStatus(t, "co-idle", Expired)

	// A copy of the expiry under another ID, and a late release command, give nothing
	// back twice; the release is still confirmed, as the coordinator waits for it.
	again := events.Must("co-idle", events.InventoryExpire, exp)
	again.ID = "co-idle:expire-again"
	h.Env.Publish(t, again)
	h.releaseCmd(t, "co-idle")
	h.Expect(t, "co-idle", events.InventoryReleased, &rel)
	h.Idle(t)
	if n := h.Watch.Count("co-idle", events.InventoryExpired); n != 1 {
		t.Errorf("%d expiries announced, want 1", n)
	}
	h.wantStock(t, "hoodie-saga", 3, 0, 0)
	h.wantStatus(t, "co-idle", Expired)
}

// A reservation sold or released has its expiry cancelled: the server does not hold it for
// the rest of the hour (the default TTL here), and it never fires.
func TestSettledReservationOutlivesItsExpiry(t *testing.T) {
	h := start(t, 1)
	h.validated(t, "co-sold", quote(line("mug-nats", "Mug", 3)))
	h.validated(t, "co-undone", quote(line("stickers", "Stickers", 3)))
	for _, id := range []string{"co-sold", "co-undone"} {
		h.reservation(t, id)
		h.scheduledExpiry(t, id)
	}
	h.completed(t, "co-sold")
	h.releaseCmd(t, "co-undone")
	h.Wait(t, "co-sold", events.InventoryCommitted)
	h.Wait(t, "co-undone", events.InventoryReleased)

	ctx := context.Background()
	timers, err := h.Env.JS.Stream(ctx, events.TimerStream(events.ServiceInventory))
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"co-sold", "co-undone"} {
		slot := events.Envelope{Type: events.InventoryExpire, CheckoutID: id, Schedule: &events.Schedule{Key: expiryKey}}.ScheduleSubject()
		natstest.Eventually(t, steptest.Timeout, func() bool {
			_, err := timers.GetLastMsgForSubject(ctx, slot)
			return errors.Is(err, jetstream.ErrMsgNotFound)
		}, "%s: the server still holds its expiry schedule on %s", id, slot)
	}
	// Had it been left (or brought forward, as before), it would have fired by now.
	time.Sleep(2 * time.Second)
	checkout, err := h.Env.JS.Stream(ctx, events.StreamCheckout)
	if err != nil {
		t.Fatal(err)
	}
	if m, err := checkout.GetLastMsgForSubject(ctx, string(events.InventoryExpire)); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Errorf("an expiry fired after its reservation was settled: %v %v", m, err)
	}
	for _, id := range []string{"co-sold", "co-undone"} {
		if n := h.Watch.Count(id, events.InventoryExpired); n != 0 {
			t.Errorf("%s: a settled reservation expired", id)
		}
	}
	h.wantStock(t, "mug-nats", 97, 0, 3)
	h.wantStatus(t, "co-sold", Committed)
	h.wantStock(t, "stickers", 500, 0, 0) // given back once, not twice
	h.wantStatus(t, "co-undone", Released)
}

// A refused reservation holds nothing and schedules no expiry.
func TestRefusedReservationSchedulesNoExpiry(t *testing.T) {
	h := startWith(t, 1, shortTTL)
	h.validated(t, "co-short", quote(line("hoodie-saga", "Saga Hoodie", 9)))
	h.refusal(t, "co-short")
	h.barrier(t)
	if n := h.Watch.Count("co-short", events.InventoryExpire); n != 0 {
		t.Errorf("%d expiries scheduled for a refused reservation", n)
	}
}

// The completion and the expiry can cross: the order stands, so the units are sold from
// available stock when they are still there, and the sale is refused loudly when not.
func TestCompletionAfterExpirySellsFromAvailable(t *testing.T) {
	h := startWith(t, 1, shortTTL)
	h.validated(t, "co-slow", quote(line("hoodie-saga", "Saga Hoodie", 2)))
	h.reservation(t, "co-slow")
	h.Wait(t, "co-slow", events.InventoryExpired)
	h.completed(t, "co-slow")
	h.Wait(t, "co-slow", events.InventoryCommitted)
	h.wantStock(t, "hoodie-saga", 1, 0, 2)
	h.wantStatus(t, "co-slow", Committed)

	h.validated(t, "co-gone", quote(line("hoodie-saga", "Saga Hoodie", 1)))
	h.reservation(t, "co-gone")
	h.Wait(t, "co-gone", events.InventoryExpired)
	h.validated(t, "co-other", quote(line("hoodie-saga", "Saga Hoodie", 1)))
	h.reservation(t, "co-other") // takes the last hoodie
	h.completed(t, "co-gone")
	why := h.Rejection(t, "co-gone", events.InventoryCommitted)
	if !strings.Contains(why.Reason, "expired") {
		t.Errorf("rejection = %+v", why)
	}
	h.wantStock(t, "hoodie-saga", 0, 1, 2)
	h.wantStatus(t, "co-gone", Expired)
}

// Expiry is not a step: a malformed one is rejected and changes nothing.
func TestMalformedExpiryRejected(t *testing.T) {
	h := start(t, 1)
	h.validated(t, "co-bad", quote(line("mug-nats", "Mug", 1)))
	h.reservation(t, "co-bad")
	bad := events.Must("co-bad", events.InventoryExpire, map[string]any{"reservation_id": "res_co-bad", "now": true})
	bad.ID = "co-bad:expire-now"
	h.Env.Publish(t, bad)
	if why := h.Rejection(t, "co-bad", events.InventoryExpired); why.Subject != string(events.InventoryExpire) {
		t.Errorf("rejection = %+v", why)
	}
	// An expiry naming another reservation is not this one's.
	other := events.Must("co-bad", events.InventoryExpire, events.Expiry{ReservationID: "res_someone-else"})
	other.ID = "co-bad:expire-other"
	h.Env.Publish(t, other)
	h.barrier(t)
	if n := h.Watch.Count("co-bad", events.InventoryExpired); n != 0 {
		t.Errorf("%d expiries announced", n)
	}
	h.wantStock(t, "mug-nats", 99, 1, 0)
	h.wantStatus(t, "co-bad", Reserved)
}

func TestConfigValidate(t *testing.T) {
	if err := (Config{ReservationTTL: -time.Second}).Validate(); err == nil {
		t.Error("a negative TTL validated")
	}
	var c Config
	c.setDefaults()
	if c.ReservationTTL != time.Hour || c.Validate() != nil {
		t.Errorf("defaults %+v", c)
	}
}
