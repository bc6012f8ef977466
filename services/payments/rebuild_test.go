package payments_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/jetcheckout/jetcheckout/internal/steptest"
	"github.com/jetcheckout/jetcheckout/internal/stripeemu"
	"github.com/jetcheckout/jetcheckout/services/payments"
	bolt "go.etcd.io/bbolt"
)

// loseView deletes the service's file as a lost data directory would, starts it again
// and waits until it has rebuilt its view from the stream.
func (h *harness) loseView(t *testing.T) {
	t.Helper()
	h.svc = steptest.LoseView(t, h.Harness, h.build)
	natstest.Eventually(t, steptest.Timeout, func() bool { return strings.Contains(h.Logs(), "view rebuilt from the stream") },
		"the view was not rebuilt")
}

// authenticateAfterLooks plays the customer on the checkout's intent once the service has
// scheduled n looks at it.
func (h *harness) authenticateAfterLooks(t *testing.T, checkoutID string, n int, approved bool) {
	t.Helper()
	natstest.Eventually(t, steptest.Timeout, func() bool { return h.Watch.Count(checkoutID, events.PaymentRecheck) >= n },
		"%s: fewer than %d looks at its intent", checkoutID, n)
	if err := h.emu.CompleteAuthentication(h.intents(t, checkoutID)[0].ID, approved); err != nil {
		t.Fatal(err)
	}
}

// A lost payments.db is rebuilt from the stream: payments captured, declined, refunded,
// approved and refused after 3-D Secure, undone while the customer authenticated, and
// refunded after the step gave up not knowing whether Stripe charged. The rebuilt view
// equals the lost one, and Stripe is not called at all.
func TestLostViewIsRebuiltWithoutCallingStripe(t *testing.T) {
	h := start(t, options{rebuild: true, httpTimeout: 300 * time.Millisecond, maxDeliver: 3})
	if _, err := h.emu.AddFault(stripeemu.FaultRule{Fault: stripeemu.ChargeThenTimeout,
		Match: stripeemu.FaultMatch{Method: http.MethodPost, Path: "/v1/payment_intents", PaymentMethod: "pm_card_mastercard"}}); err != nil {
		t.Fatal(err)
	}
	threeDS := quote("pm_card_authenticationRequired", "USD", "25.00")
	threeDS.ReturnURL = "https://shop.example/checkout/return"
	for id, q := range map[string]events.Quote{
		"co_paid": quote("pm_card_visa", "USD", "10.00"), "co_declined": quote("pm_card_chargeDeclined", "USD", "11.00"),
		"co_refunded": quote("pm_card_visa", "EUR", "12.50"), "co_3ds": threeDS, "co_3ds_refused": threeDS,
		"co_3ds_undone": threeDS, "co_lost": quote("pm_card_mastercard", "USD", "64.00"),
	} {
		h.Env.Publish(t, timed(requested(id, q)))
	}
	h.Expect(t, "co_refunded", events.PaymentCaptured, nil, events.PaymentFailed)
	h.Env.Publish(t, timed(refundCommand("co_refunded")))
	h.authenticateAfterLooks(t, "co_3ds", 2, true)
	h.authenticateAfterLooks(t, "co_3ds_refused", 2, false)
	h.Expect(t, "co_3ds_undone", events.PaymentActionPending, nil)
	h.Env.Publish(t, timed(refundCommand("co_3ds_undone")))
	h.Expect(t, "co_lost", events.PaymentFailed, nil, events.PaymentCaptured)
	h.Env.Publish(t, timed(refundCommand("co_lost")))

	for id, want := range map[string]string{"co_paid": payments.Captured, "co_declined": payments.Failed, "co_refunded": payments.Refunded,
		"co_3ds": payments.Captured, "co_3ds_refused": payments.Failed, "co_3ds_undone": payments.Voided, "co_lost": payments.Voided} {
		natstest.Eventually(t, steptest.Timeout, func() bool {
			rec, found, err := h.svc.Payment(id)
			return err == nil && found && rec.Status == want
		}, "%s never became %s", id, want)
	}
	h.Idle(t)
	if rec := h.record(t, "co_lost"); len(rec.Swept) != 1 || rec.Swept[0].Action != payments.Refunded || rec.Amount.IsZero() {
		t.Fatalf("the uncertain payment was not swept: %+v", rec)
	}
	live, calls, intents, refunds := steptest.DumpDB(t, h.DB), h.calls.Load(), len(h.emu.PaymentIntents()), len(h.emu.Refunds())
	steptest.Unscheduled(t, live, events.PaymentRecheck)

	h.loseView(t)
	h.Idle(t)
	steptest.SameView(t, live, steptest.DumpDB(t, h.DB))
	if looks := scheduledBy(t, h, events.ID("co_3ds", events.PaymentRequested)); len(looks) != 1 ||
		looks[0].ID != events.ID("co_3ds", events.PaymentRecheck)+":1" || looks[0].Schedule.At.IsZero() {
		t.Errorf("the rebuilt record of the 3-D Secure payment schedules %+v, want its first look", looks)
	}
	if n := h.calls.Load(); n != calls {
		t.Errorf("%d calls to Stripe while the view was rebuilt", n-calls)
	}
	if n, m := len(h.emu.PaymentIntents()), len(h.emu.Refunds()); n != intents || m != refunds {
		t.Errorf("%d payment intents and %d refunds, before the rebuild %d and %d", n, m, intents, refunds)
	}
}

// timed is e with its time, as the events of a checkout have: what a record's updated_at
// is taken from.
func timed(e events.Envelope) events.Envelope {
	e.Time = time.Now().UTC()
	return e
}

// scheduledBy are the scheduled outputs the runner's record of the handled event id holds:
// what it publishes again if the event comes back.
func scheduledBy(t *testing.T, h *harness, id string) []events.Envelope {
	t.Helper()
	var record struct {
		Outputs []events.Envelope `json:"outputs"`
	}
	err := h.DB.View(func(tx *bolt.Tx) error {
		return json.Unmarshal(tx.Bucket([]byte("runner.processed")).Get([]byte(id)), &record)
	})
	if err != nil {
		t.Fatal(err)
	}
	return slices.DeleteFunc(record.Outputs, func(e events.Envelope) bool { return e.Schedule == nil })
}

// A customer still authenticating when the view is lost: the looks at the intent go on
// from the rebuilt view, and the payment is captured once.
func TestAuthenticationGoesOnAfterTheViewIsLost(t *testing.T) {
	h := start(t, options{rebuild: true})
	q := quote("pm_card_authenticationRequired", "USD", "25.00")
	h.Env.Publish(t, requested("co_3ds_lost", q))
	h.Expect(t, "co_3ds_lost", events.PaymentActionPending, nil, events.PaymentCaptured, events.PaymentFailed)
	natstest.Eventually(t, steptest.Timeout, func() bool { return h.Watch.Count("co_3ds_lost", events.PaymentRecheck) >= 2 },
		"no second look at the intent")

	h.loseView(t)
	if rec := h.record(t, "co_3ds_lost"); rec.Status != payments.AwaitingAction || rec.Rechecks < 2 {
		t.Fatalf("rebuilt record %+v, want it waiting after its looks", rec)
	}
	looks := h.Watch.Count("co_3ds_lost", events.PaymentRecheck)
	h.authenticateAfterLooks(t, "co_3ds_lost", looks+1, true)
	h.captured(t, "co_3ds_lost", q, 2500)
	h.Idle(t)
	if n := h.Watch.Count("co_3ds_lost", events.PaymentCaptured); n != 1 {
		t.Errorf("%d captures", n)
	}
	if n := h.creates.Load(); n != 1 {
		t.Errorf("%d payment intents created, want 1", n)
	}
}
