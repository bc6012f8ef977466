package app

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/jetcheckout/jetcheckout/internal/topology"
	"github.com/nats-io/nats.go"
	dto "github.com/prometheus/client_model/go"
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
		if id, _, _, ok := events.ParseRenewalCheckoutID(pi.Metadata["checkout_id"]); ok && id == subscriptionID && pi.Status == "succeeded" {
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
	// Two mugs from the next period on.
	changed := request[events.Subscription](t, sys.NC, events.SubscriptionsChange, events.ChangeSubscription{ID: "sub_sam",
		Items: []events.CartItem{{ProductID: "mug-nats", Quantity: 2}}})
	if changed.NextPlan == nil || changed.Items[0].Quantity != 1 {
		t.Fatalf("changed: %+v, want the new plan pending", changed)
	}
	changedAt := len(changed.Periods)
	awaitSubscription(t, sys, "sub_sam", "a paid period of the new plan", func(s events.Subscription) bool {
		return s.NextPlan == nil && paidPeriods(s) > changedAt
	})
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
		if p.N != i+1 || p.Outcome != events.PeriodPaid || p.CheckoutID != events.RenewalCheckoutID("sub_sam", p.N, 1) {
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
	mugs := 0
	for _, p := range after.Periods {
		order, _, _ := sys.Orders.OrderByCheckout(p.CheckoutID)
		for _, l := range order.Lines {
			mugs += l.Quantity
		}
		if want := 1 + min(max(p.N-changedAt, 0), 1); len(order.Lines) != 1 || order.Lines[0].Quantity != want {
			t.Errorf("period %d's order: %+v, want %d mugs", p.N, order.Lines, want)
		}
	}
	if sold := stock(t, sys, "mug-nats").Sold - before; sold != mugs {
		t.Errorf("%d mugs sold, %d in the periods' orders", sold, mugs)
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
// charged, the stock comes back, the customer is told why and when it is tried again, and
// the subscription is past due with its retry set. Cancelled then, no attempt follows.
func TestRenewalNeedingAuthenticationFailsAndIsRetried(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.SubscriptionDay = time.Minute // the retry a minute away: it does not come during the test
	sys := startProcess(t, cfg, testLogger())
	w := (&natstest.Env{NC: sys.NC}).Watch(t, "checkout.>")
	customer, pm := savedCard(t, sys.StripeURL, "kim@example.com", "pm_card_authenticationRequired")
	before := stock(t, sys, "mug-nats")

	request[events.Subscription](t, sys.NC, events.SubscriptionsCreate, subscriptionRequest("sub_kim", "cus_kim", customer, pm, 30))
	var f events.CheckoutFailed
	if done := w.Wait(t, "sub_kim-1", wait, events.Completed, events.Failed); done.Type != events.Failed || done.DecodePayload(&f) != nil ||
		f.Code != events.CodeAuthenticationRequired || f.Renewal == nil || f.Renewal.Period != 1 {
		t.Fatalf("period 1 ended in %s %s, want authentication_required naming the renewal", done.Type, done.Payload)
	}
	if n := w.Count("sub_kim-1", events.PaymentActionPending); n != 0 {
		t.Errorf("the renewal waited for the absent customer's 3-D Secure %d times", n)
	}
	notice := failureNotice(t, cfg.DataDir+"/outbox", "sub_kim-1")
	if !strings.Contains(notice.body, "we could not renew your subscription") || !strings.Contains(notice.body, "again on") {
		t.Errorf("the failure notice does not say what comes next:\n%s", notice.body)
	}

	sub := awaitSubscription(t, sys, "sub_kim", "a retry set", func(s events.Subscription) bool {
		return s.Status == events.SubscriptionPastDue && s.Periods[0].RetryAt != nil
	})
	if p := sub.Periods[0]; p.Code != events.CodeAuthenticationRequired || p.Reason == "" || p.Outcome != "" || p.RetryAt.Sub(sub.Periods[0].StartedAt) < 50*time.Second {
		t.Errorf("period 1: %+v, want open, retried a day (a minute) after its decline, saying why", p)
	}
	if total, _ := succeededCharges(sys, "sub_kim"); total != 0 {
		t.Errorf("%d charges for a renewal that needed authentication", total)
	}
	natstest.Eventually(t, wait, func() bool {
		now := stock(t, sys, "mug-nats")
		return now.Available == before.Available && now.Sold == before.Sold
	}, "the failed renewal's mug did not come back: %+v, before %+v", stock(t, sys, "mug-nats"), before)

	cancelled := request[events.Subscription](t, sys.NC, events.SubscriptionsCancel, events.SubscriptionRef{ID: "sub_kim"})
	if p := cancelled.Periods[0]; cancelled.Status != events.SubscriptionCancelled || p.Outcome != events.PeriodFailed || p.RetryAt != nil {
		t.Fatalf("cancelled while past due: %s %+v", cancelled.Status, p)
	}
	stream, err := sys.JS.Stream(context.Background(), events.StreamSubscriptions)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := stream.GetLastMsgForSubject(context.Background(), events.SubscriptionRetrySubject("sub_kim")); err == nil {
		t.Error("a cancelled subscription keeps its retry")
	}
}

// Dunning to cancellation, with a day of a second and retries 1 and 2 days after the first
// decline: three attempts of period 1, each its own checkout and failure notice (the first
// two saying when the next comes, the last that the subscription is cancelled), no charge,
// the subscription cancelled with the reason and its schedules gone, no period after.
func TestDunningCancelsAfterTheLastRetry(t *testing.T) {
	cfg := testConfig(t.TempDir())
	cfg.SubscriptionDay, cfg.SubscriptionRetryDays = time.Second, []int{1, 2}
	sys := startProcess(t, cfg, testLogger())
	w := (&natstest.Env{NC: sys.NC}).Watch(t, "checkout.>")
	customer, pm := savedCard(t, sys.StripeURL, "lee@example.com", "pm_card_chargeCustomerFail")

	request[events.Subscription](t, sys.NC, events.SubscriptionsCreate, subscriptionRequest("sub_lee", "cus_lee", customer, pm, 30))
	attempts := []string{"sub_lee-1", "sub_lee-1-2", "sub_lee-1-3"}
	wantAttempt := []int{0, 2, 3} // the first is not numbered
	for i, id := range attempts {
		var f events.CheckoutFailed
		if done := w.Wait(t, id, wait, events.Completed, events.Failed); done.Type != events.Failed || done.DecodePayload(&f) != nil ||
			f.Code != events.CodeCardDeclined || f.Renewal == nil || f.Renewal.Attempt != wantAttempt[i] {
			t.Fatalf("%s ended in %s %s, want declined, attempt %d", id, done.Type, done.Payload, i+1)
		}
		want := "again on"
		if i == len(attempts)-1 {
			want = "your subscription has been cancelled"
		}
		if notice := failureNotice(t, cfg.DataDir+"/outbox", id); !strings.Contains(notice.body, want) {
			t.Errorf("%s's notice does not say %q:\n%s", id, want, notice.body)
		}
	}
	sub := awaitSubscription(t, sys, "sub_lee", "cancelled", func(s events.Subscription) bool { return s.Status == events.SubscriptionCancelled })
	if p := sub.Periods[0]; len(sub.Periods) != 1 || p.Attempts != 3 || p.Outcome != events.PeriodFailed || p.CheckoutID != "sub_lee-1-3" ||
		!strings.Contains(sub.CancelReason, "after 3 attempts") {
		t.Fatalf("after dunning: %+v", sub)
	}
	if total, _ := succeededCharges(sys, "sub_lee"); total != 0 {
		t.Errorf("%d charges for a card that declines", total)
	}
	families, err := sys.Metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := scraped{families: map[string]*dto.MetricFamily{}}
	for _, f := range families {
		got.families[f.GetName()] = f
	}
	if started, retried, failed := got.value("jetcheckout_subscription_periods_started_total"), got.value("jetcheckout_subscription_retries_total"),
		got.value("jetcheckout_subscription_periods_ended_total", "outcome", "failed"); started != 1 || retried != 2 || failed != 1 {
		t.Errorf("metrics: %v periods started, %v retries, %v failed; want 1, 2, 1", started, retried, failed)
	}
	stream, err := sys.JS.Stream(context.Background(), events.StreamSubscriptions)
	if err != nil {
		t.Fatal(err)
	}
	for _, subject := range []string{events.SubscriptionScheduleSubject("sub_lee"), events.SubscriptionRetrySubject("sub_lee")} {
		if _, err := stream.GetLastMsgForSubject(context.Background(), subject); err == nil {
			t.Errorf("a cancelled subscription keeps %s", subject)
		}
	}
}

// In a rolling upgrade from a release without subscriptions the setup role is replaced last:
// this release's coordinator starts, and runs, before the subscriptions' bucket and stream
// exist. The subscriptions answer 503 meanwhile, and work once the setup role made them.
func TestSubscriptionsWaitForTheirSetup(t *testing.T) {
	env := natstest.Start(t)
	cfg := testConfig(t.TempDir())
	ctx := context.Background()
	if err := topology.Ensure(ctx, env.JS, topology.Consumers(consumers(cfg, Services...)...)); err != nil {
		t.Fatal(err)
	}
	for _, stream := range []string{events.StreamSubscriptions, "KV_" + events.BucketSubscriptions} {
		if err := env.JS.DeleteStream(ctx, stream); err != nil {
			t.Fatal(err)
		}
	}
	cfg.NATSURL = env.URL
	sys := startProcess(t, cfg, testLogger(), events.ServiceCoordinator)
	raw, _ := json.Marshal(events.SubscriptionRef{ID: "sub_none"})
	code := func() string {
		msg, err := sys.NC.Request(string(events.SubscriptionsGet), raw, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return msg.Header.Get("Nats-Service-Error-Code")
	}
	if c := code(); c != "503" {
		t.Fatalf("before the setup: %q, want 503", c)
	}
	select {
	case <-sys.Failed():
		t.Fatalf("the coordinator's process failed: %v", sys.Err())
	default:
	}
	if err := topology.Ensure(ctx, env.JS, topology.Consumers(consumers(cfg, Services...)...)); err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, wait, func() bool { return code() == "404" }, "the subscriptions never bound to their bucket and stream")
}
