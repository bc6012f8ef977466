package payments_test

import (
	"errors"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/stripeemu"
	"github.com/jetcheckout/jetcheckout/services/payments"
	"github.com/shopspring/decimal"
	"github.com/stripe/stripe-go/v76"
)

// Stripe charges and every answer is lost, until the runner gives the step up: the step
// fails uncertain, and the refund finds the charge in Stripe and gives the money back.
func TestRefundAfterTheStepGaveUpUncertain(t *testing.T) {
	h := start(t, options{httpTimeout: 300 * time.Millisecond, maxDeliver: 3,
		fault: func(int32) stripeemu.Fault { return stripeemu.ChargeThenTimeout }})
	q := quote("pm_card_visa", "USD", "64.00")
	h.Env.Publish(t, requested("co_lost", q))

	var f events.StepFailure
	h.Expect(t, "co_lost", events.PaymentFailed, &f, events.PaymentCaptured)
	if !f.Uncertain || f.Code != events.CodeRetriesExhausted {
		t.Fatalf("failure: %+v, want uncertain after the retries ran out", f)
	}
	if n := h.creates.Load(); n != 3 {
		t.Fatalf("%d attempts, want 3", n)
	}
	charged := h.emu.PaymentIntents()
	if len(charged) != 1 || charged[0].Status != "succeeded" || charged[0].AmountReceived != 6400 {
		t.Fatalf("want the customer charged once, unbeknownst to the service: %+v", charged)
	}
	if _, found, err := h.svc.Payment("co_lost"); found || err != nil {
		t.Fatalf("the service recorded a payment it never heard of (%v)", err)
	}

	h.Env.Publish(t, refundCommand("co_lost"))
	var r events.Refund
	h.Expect(t, "co_lost", events.PaymentRefunded, &r)
	if r.PaymentIntentID != charged[0].ID || r.RefundID == "" || !r.Amount.Equal(q.Total) || r.Currency != "USD" {
		t.Fatalf("refund event: %+v", r)
	}
	pi, _ := h.emu.PaymentIntent(charged[0].ID)
	if pi.AmountRefunded != pi.Amount {
		t.Fatalf("refunded %d of %d", pi.AmountRefunded, pi.Amount)
	}
	if refunds := h.emu.Refunds(); len(refunds) != 1 || refunds[0].ID != r.RefundID || refunds[0].Metadata["checkout_id"] != "co_lost" {
		t.Fatalf("refunds in Stripe: %+v", refunds)
	}
	rec := h.record(t, "co_lost")
	if rec.Status != payments.Voided || rec.RefundID != r.RefundID || !rec.RefundedAmount.Equal(q.Total) ||
		len(rec.Swept) != 1 || rec.Swept[0].Found != "succeeded" || rec.Swept[0].Action != payments.Refunded {
		t.Fatalf("record: %+v", rec)
	}

	// The payment asked for again (a late copy) is refused, without calling Stripe.
	late := requested("co_lost", q)
	late.ID += ":late"
	h.Env.Publish(t, late)
	h.WaitCount(t, "co_lost", events.PaymentFailed, 2)
	all := h.Watch.All("co_lost")
	var refused events.StepFailure
	for _, e := range all {
		if e.Type == events.PaymentFailed && e.CausationID == late.ID {
			if err := e.DecodePayload(&refused); err != nil {
				t.Fatal(err)
			}
		}
	}
	if refused.Code != events.CodeCheckoutCancelled || h.creates.Load() != 3 || len(h.emu.PaymentIntents()) != 1 {
		t.Fatalf("late payment: %+v after %d attempts", refused, h.creates.Load())
	}
	h.refundAgain(t, "co_lost")
}

// The sweep handles every state an intent of the checkout can be in.
func TestRefundSweepsEveryIntentOfTheCheckout(t *testing.T) {
	h := start(t, options{})
	create := func(pm string, amount int64) string { return h.newIntent(t, "co_sweep", pm, amount) }
	paid := create("pm_card_visa", 1000)
	paidToo := create("pm_card_mastercard", 250)
	authenticating := create("pm_card_authenticationRequired", 700)
	declined := create("pm_card_chargeDeclined", 800)
	canceled := create("pm_card_threeDSecure2Required", 900)
	if _, err := h.stripe.PaymentIntents.Cancel(canceled, nil); err != nil {
		t.Fatal(err)
	}
	other := h.newIntent(t, "co_other", "pm_card_visa", 5000)

	h.Env.Publish(t, refundCommand("co_sweep"))
	var r events.Refund
	h.Expect(t, "co_sweep", events.PaymentRefunded, &r)
	if !r.Amount.Equal(decimal.RequireFromString("12.50")) || r.Currency != "USD" || r.RefundID == "" {
		t.Fatalf("refund event: %+v", r)
	}
	want := map[string]struct {
		status   string
		refunded int64
		action   string
	}{
		paid:           {"succeeded", 1000, payments.Refunded},
		paidToo:        {"succeeded", 250, payments.Refunded},
		authenticating: {"canceled", 0, payments.Canceled},
		declined:       {"canceled", 0, payments.Canceled},
		canceled:       {"canceled", 0, payments.Untouched},
	}
	rec := h.record(t, "co_sweep")
	if rec.Status != payments.Voided || len(rec.Swept) != len(want) {
		t.Fatalf("record: %+v", rec)
	}
	for _, s := range rec.Swept {
		w, ok := want[s.PaymentIntentID]
		pi, _ := h.emu.PaymentIntent(s.PaymentIntentID)
		if !ok || s.Action != w.action || pi.Status != w.status || pi.AmountRefunded != w.refunded {
			t.Errorf("%s: action %s, intent %s refunded %d; want %+v", s.PaymentIntentID, s.Action, pi.Status, pi.AmountRefunded, w)
		}
	}
	if pi, _ := h.emu.PaymentIntent(other); pi.AmountRefunded != 0 {
		t.Fatalf("another checkout's payment was refunded")
	}
}

// newIntent creates and confirms a PaymentIntent for a checkout, as the service would,
// and returns its ID (also when the card is declined).
func (h *harness) newIntent(t *testing.T, checkoutID, pm string, amount int64) string {
	t.Helper()
	p := &stripe.PaymentIntentParams{
		Amount: stripe.Int64(amount), Currency: stripe.String("usd"), PaymentMethod: stripe.String(pm),
		Confirm: stripe.Bool(true), Metadata: map[string]string{"checkout_id": checkoutID},
		AutomaticPaymentMethods: &stripe.PaymentIntentAutomaticPaymentMethodsParams{
			Enabled: stripe.Bool(true), AllowRedirects: stripe.String("never"),
		},
	}
	pi, err := h.stripe.PaymentIntents.New(p)
	var se *stripe.Error
	switch {
	case err == nil:
		return pi.ID
	case errors.As(err, &se) && se.PaymentIntent != nil:
		return se.PaymentIntent.ID // declined
	}
	t.Fatal(err)
	return ""
}
