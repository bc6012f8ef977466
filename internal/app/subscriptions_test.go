package app

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/nats-io/nats.go"
	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"
)

// savedCard makes a Stripe customer in the emulator at stripeURL and attaches the test card
// to it, as a shop's page does with a SetupIntent: what a subscription pays with.
func savedCard(t *testing.T, stripeURL, email, testCard string) (customer, paymentMethod string) {
	t.Helper()
	backend := stripe.GetBackendWithConfig(stripe.APIBackend, &stripe.BackendConfig{URL: stripe.String(stripeURL)})
	sc := client.New(emulatorKey, &stripe.Backends{API: backend, Connect: backend, Uploads: backend})
	c, err := sc.Customers.New(&stripe.CustomerParams{Email: stripe.String(email)})
	if err != nil {
		t.Fatal(err)
	}
	pm, err := sc.PaymentMethods.Attach(testCard, &stripe.PaymentMethodAttachParams{Customer: stripe.String(c.ID)})
	if err != nil {
		t.Fatal(err)
	}
	return c.ID, pm.ID
}

func subscriptionRequest(id, customer, stripeCustomer, pm string, days int) events.CreateSubscription {
	return events.CreateSubscription{ID: id, CustomerID: customer, CustomerEmail: customer + "@example.com",
		StripeCustomer: stripeCustomer, PaymentMethodID: pm, ShippingAddress: california, BillingAddress: california,
		Currency: "USD", Items: []events.CartItem{{ProductID: "mug-nats", Quantity: 1}}, IntervalDays: days}
}

// awaitSubscription polls subscriptions.get until done says the record is as wanted.
func awaitSubscription(t *testing.T, sys *System, id string, what string, done func(events.Subscription) bool) events.Subscription {
	t.Helper()
	deadline := time.Now().Add(2 * wait)
	for {
		sub := request[events.Subscription](t, sys.NC, events.SubscriptionsGet, events.SubscriptionRef{ID: id})
		if done(sub) {
			return sub
		}
		if time.Now().After(deadline) {
			t.Fatalf("subscription %s never got %s: %+v", id, what, sub)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func paidPeriods(sub events.Subscription) int {
	n := 0
	for _, p := range sub.Periods {
		if p.Outcome == events.PeriodPaid {
			n++
		}
	}
	return n
}

// succeededCharges counts the emulator's succeeded PaymentIntents of a subscription, by the
// metadata payments gives a renewal, and each period's.
func succeededCharges(sys *System, subscriptionID string) (total int, perPeriod map[string]int) {
	perPeriod = map[string]int{}
	for _, pi := range sys.Emulator.Emulator.PaymentIntents() {
		if id, _, ok := events.ParseRenewalCheckoutID(pi.Metadata["checkout_id"]); ok && id == subscriptionID && pi.Status == "succeeded" {
			total++
			perPeriod[pi.Metadata["checkout_id"]]++
		}
	}
	return total, perPeriod
}

// A subscription renewed by its JetStream schedule over several periods, with a day of a
// second: each period is one checkout, paid off-session with the saved card, one order and
// one charge each; renewals fired again within a period start nothing; paused, nothing
// renews; cancelled, the schedule is gone and it cannot be resumed.
func TestSubscriptionRenewsOncePerPeriod(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.SubscriptionDay = time.Second
	sys := startProcess(t, cfg, testLogger())
	w := (&natstest.Env{NC: sys.NC}).Watch(t, "checkout.>")
	customer, pm := savedCard(t, sys.StripeURL, "sam@example.com", "pm_card_visa")
	before := stock(t, sys, "mug-nats").Sold

	sub := request[events.Subscription](t, sys.NC, events.SubscriptionsCreate, subscriptionRequest("sub_sam", "cus_sam", customer, pm, 2))
	if sub.Status != events.SubscriptionActive || len(sub.Periods) != 1 || sub.Periods[0].CheckoutID != "sub_sam-1" {
		t.Fatalf("created: %+v, want active with period 1 started", sub)
	}
	if again := request[events.Subscription](t, sys.NC, events.SubscriptionsCreate, subscriptionRequest("sub_sam", "cus_sam", customer, pm, 2)); len(again.Periods) != 1 {
		t.Fatalf("creating it again started another period: %+v", again)
	}
	if done := w.Wait(t, "sub_sam-1", wait, events.Completed, events.Failed); done.Type != events.Completed {
		t.Fatalf("period 1 ended in %s: %s", done.Type, done.Payload)
	}

	// Renewals fired twice more at once, as a schedule firing twice would.
	due := events.SubscriptionDueSubject("sub_sam")
	for range 2 {
		if _, err := sys.JS.PublishMsg(context.Background(), &nats.Msg{Subject: due, Data: []byte(`{"subscription_id":"sub_sam"}`)}); err != nil {
			t.Fatal(err)
		}
	}

	sub = awaitSubscription(t, sys, "sub_sam", "3 paid periods", func(s events.Subscription) bool { return paidPeriods(s) >= 3 })
	paused := request[events.Subscription](t, sys.NC, events.SubscriptionsPause, events.SubscriptionRef{ID: "sub_sam"})
	if paused.Status != events.SubscriptionPaused {
		t.Fatalf("paused: %+v", paused)
	}
	// A period that started just before the pause ends as it ends.
	settled := awaitSubscription(t, sys, "sub_sam", "no period running", func(s events.Subscription) bool {
		last, _ := s.Last()
		return last.Outcome != ""
	})
	time.Sleep(5 * time.Second) // two and a half periods: none may start
	after := request[events.Subscription](t, sys.NC, events.SubscriptionsGet, events.SubscriptionRef{ID: "sub_sam"})
	if len(after.Periods) != len(settled.Periods) {
		t.Fatalf("a paused subscription renewed: %d periods, then %d", len(settled.Periods), len(after.Periods))
	}

	for i, p := range after.Periods {
		if p.N != i+1 || p.Outcome != events.PeriodPaid || p.CheckoutID != events.RenewalCheckoutID("sub_sam", p.N) {
			t.Errorf("period %d: %+v, want paid, numbered in order", i+1, p)
		}
		if i > 0 && p.StartedAt.Sub(after.Periods[i-1].StartedAt) < time.Second {
			t.Errorf("period %d started %v after the one before: less than half a period", p.N, p.StartedAt.Sub(after.Periods[i-1].StartedAt))
		}
		if _, found, err := sys.Orders.OrderByCheckout(p.CheckoutID); err != nil || !found {
			t.Errorf("no order for %s (%v)", p.CheckoutID, err)
		}
	}
	total, perPeriod := succeededCharges(sys, "sub_sam")
	if total != len(after.Periods) {
		t.Errorf("%d charges for %d periods: %v", total, len(after.Periods), perPeriod)
	}
	for id, n := range perPeriod {
		if n != 1 {
			t.Errorf("%s charged %d times", id, n)
		}
	}
	for _, pi := range sys.Emulator.Emulator.PaymentIntents() {
		if strings.HasPrefix(pi.Metadata["checkout_id"], "sub_sam-") && pi.Metadata["subscription_id"] != "sub_sam" {
			t.Errorf("renewal %s carries no subscription: %v", pi.ID, pi.Metadata)
		}
	}
	if sold := stock(t, sys, "mug-nats").Sold - before; sold != len(after.Periods) {
		t.Errorf("%d mugs sold for %d periods", sold, len(after.Periods))
	}

	cancelled := request[events.Subscription](t, sys.NC, events.SubscriptionsCancel, events.SubscriptionRef{ID: "sub_sam", Reason: "moving abroad"})
	if cancelled.Status != events.SubscriptionCancelled || cancelled.CancelReason != "moving abroad" {
		t.Fatalf("cancelled: %+v", cancelled)
	}
	stream, err := sys.JS.Stream(context.Background(), events.StreamSubscriptions)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.GetLastMsgForSubject(context.Background(), events.SubscriptionScheduleSubject("sub_sam")); err == nil {
		t.Error("a cancelled subscription keeps its renewal schedule")
	}
	raw, _ := json.Marshal(events.SubscriptionRef{ID: "sub_sam"})
	if msg, err := sys.NC.Request(string(events.SubscriptionsResume), raw, 5*time.Second); err != nil || msg.Header.Get("Nats-Service-Error-Code") != "409" {
		t.Errorf("resuming a cancelled subscription: %v %v, want a 409", err, msg.Header)
	}
}

// A renewal the bank wants the absent customer to authenticate fails as
// authentication_required, never as a wait for 3-D Secure nobody can complete: nothing is
// charged, the stock comes back, the customer is told why, the period's record says so, and
// the next period renews as planned.
func TestRenewalNeedingAuthenticationFailsAndTheNextPeriodRenews(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.SubscriptionDay = time.Second
	sys := startProcess(t, cfg, testLogger())
	w := (&natstest.Env{NC: sys.NC}).Watch(t, "checkout.>")
	customer, pm := savedCard(t, sys.StripeURL, "kim@example.com", "pm_card_authenticationRequired")
	before := stock(t, sys, "mug-nats")

	request[events.Subscription](t, sys.NC, events.SubscriptionsCreate, subscriptionRequest("sub_kim", "cus_kim", customer, pm, 1))
	var f events.CheckoutFailed
	if done := w.Wait(t, "sub_kim-1", wait, events.Completed, events.Failed); done.Type != events.Failed || done.DecodePayload(&f) != nil ||
		f.Code != events.CodeAuthenticationRequired {
		t.Fatalf("period 1 ended in %s %s, want authentication_required", done.Type, done.Payload)
	}
	if n := w.Count("sub_kim-1", events.PaymentActionPending); n != 0 {
		t.Errorf("the renewal waited for the absent customer's 3-D Secure %d times", n)
	}
	notice := failureNotice(t, cfg.DataDir+"/outbox", "sub_kim-1")
	if !strings.Contains(notice.body, "renewal") {
		t.Errorf("the failure notice does not say why:\n%s", notice.body)
	}

	sub := awaitSubscription(t, sys, "sub_kim", "two failed periods", func(s events.Subscription) bool {
		return len(s.Periods) >= 2 && s.Periods[1].Outcome != ""
	})
	for _, p := range sub.Periods[:2] {
		if p.Outcome != events.PeriodFailed || p.Code != events.CodeAuthenticationRequired || p.Reason == "" {
			t.Errorf("period %d: %+v, want failed with authentication_required and the reason", p.N, p)
		}
	}
	if total, _ := succeededCharges(sys, "sub_kim"); total != 0 {
		t.Errorf("%d charges for renewals that needed authentication", total)
	}
	natstest.Eventually(t, wait, func() bool {
		now := stock(t, sys, "mug-nats")
		return now.Available == before.Available && now.Sold == before.Sold
	}, "the failed renewals' mugs did not come back: %+v, before %+v", stock(t, sys, "mug-nats"), before)
}
