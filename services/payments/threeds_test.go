package payments_test

import (
	"strings"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/stripeemu"
	"github.com/jetcheckout/jetcheckout/services/payments"
	"github.com/stripe/stripe-go/v76"
)

// waiting expects the checkout's 3-D Secure wait and checks it against the record and the
// intent in Stripe.
func (h *harness) waiting(t *testing.T, checkoutID string, window time.Duration) (events.Waiting, *stripe.PaymentIntent) {
	t.Helper()
	began := time.Now()
	var w events.Waiting
	h.Expect(t, checkoutID, events.PaymentActionPending, &w, events.PaymentCaptured, events.PaymentFailed)
	if w.Reason == "" || w.Until.Before(began.Add(window-time.Second)) || w.Until.After(time.Now().Add(window)) {
		t.Fatalf("waiting: %+v, want until about %s from now", w, window)
	}
	intents := h.intents(t, checkoutID)
	if len(intents) != 1 || intents[0].Status != stripe.PaymentIntentStatusRequiresAction {
		t.Fatalf("want one intent that requires action, got %d", len(intents))
	}
	if rec := h.record(t, checkoutID); rec.Status != payments.AwaitingAction || rec.PaymentIntentID != intents[0].ID || !rec.AuthUntil.Equal(w.Until) {
		t.Fatalf("record: %+v", rec)
	}
	return w, intents[0]
}

// The customer completes 3-D Secure: the payment is captured, once.
func TestAuthenticationCompleted(t *testing.T) {
	h := start(t, options{})
	q := quote("pm_card_authenticationRequired", "USD", "25.00")
	q.ReturnURL = "https://shop.example/checkout/return"
	h.Env.Publish(t, requested("co_3ds_ok", q))
	w, pi := h.waiting(t, "co_3ds_ok", 10*time.Second)
	if !strings.Contains(w.NextAction, "/_emulator/3ds/"+pi.ID) {
		t.Fatalf("next action %q: want the emulator's authentication page", w.NextAction)
	}

	// Stripe fails the next two looks at the intent: the rechecks are retried.
	if _, err := h.emu.AddFault(stripeemu.FaultRule{Match: stripeemu.FaultMatch{Method: "GET", Path: "/v1/payment_intents/" + pi.ID},
		Fault: stripeemu.Fault{Status: 503}, Count: 2}); err != nil {
		t.Fatal(err)
	}
	if err := h.emu.CompleteAuthentication(pi.ID, true); err != nil {
		t.Fatal(err)
	}
	h.captured(t, "co_3ds_ok", q, 2500)
	if left := h.emu.FaultRules(); len(left) != 0 {
		t.Fatalf("the rechecks never met the faults: %+v", left)
	}

	// Later looks at the intent, and the request again, do not charge again.
	again := events.Must("co_3ds_ok", events.PaymentRecheck, events.Recheck{PaymentIntentID: pi.ID, Until: w.Until})
	again.ID += ":from-the-test"
	h.Env.Publish(t, again)
	dup := requested("co_3ds_ok", q)
	dup.ID += ".again"
	h.Env.Publish(t, dup)
	h.Idle(t)
	// Reported again to the new request, as the same event (which the stream drops).
	for _, e := range h.Watch.All("co_3ds_ok") {
		if e.Type == events.PaymentCaptured && e.ID != events.ID("co_3ds_ok", events.PaymentCaptured) {
			t.Fatalf("a second capture event: %s", e.ID)
		}
	}
	if n := h.creates.Load(); n != 1 {
		t.Fatalf("Stripe was asked to create %d intents, want 1", n)
	}
	h.captured(t, "co_3ds_ok", q, 2500)
}

// The bank refuses the authentication: the payment fails and the intent is cancelled.
func TestAuthenticationFailed(t *testing.T) {
	h := start(t, options{})
	q := quote("pm_card_threeDSecure2Required", "EUR", "40.00")
	h.Env.Publish(t, requested("co_3ds_fail", q))
	w, pi := h.waiting(t, "co_3ds_fail", 10*time.Second)
	if w.NextAction != "" {
		t.Fatalf("without a return URL there is no page to redirect to, got %q", w.NextAction)
	}

	if err := h.emu.CompleteAuthentication(pi.ID, false); err != nil {
		t.Fatal(err)
	}
	var f events.StepFailure
	h.Expect(t, "co_3ds_fail", events.PaymentFailed, &f, events.PaymentCaptured)
	if f.Code != events.CodeAuthenticationFailed || f.Message == "" || f.Uncertain {
		t.Fatalf("failure: %+v", f)
	}
	got := h.intents(t, "co_3ds_fail")[0]
	if got.Status != stripe.PaymentIntentStatusCanceled || got.AmountReceived != 0 {
		t.Fatalf("intent %s received %d, want canceled with nothing taken", got.Status, got.AmountReceived)
	}
	if rec := h.record(t, "co_3ds_fail"); rec.Status != payments.Failed || rec.FailureCode != events.CodeAuthenticationFailed {
		t.Fatalf("record: %+v", rec)
	}
}

// The customer never finishes: at Until the intent is cancelled and the payment fails.
func TestAuthenticationAbandoned(t *testing.T) {
	const window = 1500 * time.Millisecond
	h := start(t, options{authWindow: window})
	h.Env.Publish(t, requested("co_3ds_gone", quote("pm_card_authenticationRequired", "USD", "12.00")))
	w, pi := h.waiting(t, "co_3ds_gone", window)

	var f events.StepFailure
	failed := h.Expect(t, "co_3ds_gone", events.PaymentFailed, &f, events.PaymentCaptured)
	if f.Code != events.CodeAuthenticationAbandoned || f.Message == "" {
		t.Fatalf("failure: %+v", f)
	}
	if failed.Time.Before(w.Until) {
		t.Fatalf("failed at %s, before the customer's time ran out at %s", failed.Time, w.Until)
	}
	got := h.intents(t, "co_3ds_gone")[0]
	if got.Status != stripe.PaymentIntentStatusCanceled || got.CancellationReason != stripe.PaymentIntentCancellationReasonAbandoned {
		t.Fatalf("intent %s (%s), want canceled as abandoned", got.Status, got.CancellationReason)
	}
	// A customer who comes back too late cannot pay any more.
	if err := h.emu.CompleteAuthentication(pi.ID, true); err == nil {
		t.Fatal("a cancelled intent was authenticated")
	}
	if rec := h.record(t, "co_3ds_gone"); rec.Status != payments.Failed || rec.FailureCode != events.CodeAuthenticationAbandoned {
		t.Fatalf("record: %+v", rec)
	}
}

// The checkout is undone while the customer authenticates: the intent is cancelled, the
// compensation confirmed with nothing refunded, and the rechecks stop.
func TestRefundWhileAuthenticating(t *testing.T) {
	h := start(t, options{})
	h.Env.Publish(t, requested("co_3ds_undo", quote("pm_card_authenticationRequired", "USD", "18.00")))
	_, pi := h.waiting(t, "co_3ds_undo", 10*time.Second)

	h.Env.Publish(t, refundCommand("co_3ds_undo"))
	var r events.Refund
	h.Expect(t, "co_3ds_undo", events.PaymentRefunded, &r)
	if r.PaymentIntentID != pi.ID || r.RefundID != "" || !r.Amount.IsZero() {
		t.Fatalf("refund event: %+v", r)
	}
	if got := h.intents(t, "co_3ds_undo")[0]; got.Status != stripe.PaymentIntentStatusCanceled {
		t.Fatalf("intent is %s, want canceled", got.Status)
	}
	rec := h.record(t, "co_3ds_undo")
	if rec.Status != payments.Voided || len(rec.Swept) != 1 || rec.Swept[0].Action != payments.Canceled {
		t.Fatalf("record: %+v", rec)
	}
	if err := h.emu.CompleteAuthentication(pi.ID, true); err == nil {
		t.Fatal("a cancelled intent was authenticated")
	}
	h.Idle(t)
	if n := h.Watch.Count("co_3ds_undo", events.PaymentCaptured) + h.Watch.Count("co_3ds_undo", events.PaymentFailed); n != 0 {
		t.Fatalf("the payment reported an outcome after its compensation: %v", h.Watch.All("co_3ds_undo"))
	}
}

func TestMalformedRecheckIsRejected(t *testing.T) {
	h := start(t, options{})
	bad := events.Must("co_bad_recheck", events.PaymentRecheck, events.Recheck{PaymentIntentID: "pi_x"})
	bad.Payload = []byte(`{"payment_intent_id": "pi_x", "until": "soon"}`)
	h.Env.Publish(t, bad)
	h.Rejection(t, "co_bad_recheck")
	if _, found, err := h.svc.Payment("co_bad_recheck"); found || err != nil {
		t.Fatalf("a malformed recheck left a record (%v)", err)
	}
}
