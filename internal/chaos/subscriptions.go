package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/money"
	"github.com/jetcheckout/jetcheckout/services/notifications"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"
)

// subscriptionDay is a day of a plan in the local stack (SUBSCRIPTION_DAY): each subscription
// of the load renews every few seconds through the faults, and a declined one is retried
// after one and two of them (SUBSCRIPTION_RETRY_DAYS) before it is cancelled.
const (
	subscriptionDay       = 5 * time.Second
	subscriptionRetryDays = "1,2"
)

// plannedSub is one subscription of the load: a mug every day, paid with a card saved on a
// Stripe customer, one that declines every charge when Declines (dunning to cancellation).
type plannedSub struct {
	ID       string
	Email    string
	Declines bool
	// MinPeriods is how many periods it must have started by the end of the run: a
	// subscription that stopped renewing without being cancelled would have fewer.
	MinPeriods int
}

// planSubscriptions draws the load's subscriptions: one for every 40 checkouts, at least
// two, every third with a card that declines. With days of seconds, a card that pays renews
// several times during the run (the shortest chaos-short loads for about a minute).
func planSubscriptions(r *rand.Rand, checkouts int, day time.Duration) []plannedSub {
	n := max(2, checkouts/40)
	out := make([]plannedSub, n)
	for i := range out {
		id := fmt.Sprintf("sub_chaos_%03d", i)
		out[i] = plannedSub{ID: id, Email: id + "@example.com", Declines: i%3 == 1, MinPeriods: 1}
		if day < time.Minute && !out[i].Declines {
			out[i].MinPeriods = 3
		}
	}
	r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// subscribe saves each subscription's card on a customer of the emulator, then creates it
// (its ID given, so a retry through a fault is the same subscription).
func subscribe(ctx context.Context, d driver, sc *client.API, subs []plannedSub) error {
	for _, p := range subs {
		card := "pm_card_visa"
		if p.Declines {
			card = "pm_card_chargeCustomerFail"
		}
		c, err := sc.Customers.New(&stripe.CustomerParams{Params: stripe.Params{Context: ctx}, Email: stripe.String(p.Email)})
		if err != nil {
			return fmt.Errorf("%s: stripe customer: %w", p.ID, err)
		}
		pm, err := sc.PaymentMethods.Attach(card, &stripe.PaymentMethodAttachParams{Params: stripe.Params{Context: ctx}, Customer: stripe.String(c.ID)})
		if err != nil {
			return fmt.Errorf("%s: save the card: %w", p.ID, err)
		}
		req := events.CreateSubscription{ID: p.ID, CustomerID: "cus_" + p.ID, CustomerEmail: p.Email, StripeCustomer: c.ID,
			PaymentMethodID: pm.ID, ShippingAddress: california, BillingAddress: california, Currency: "USD",
			Items: []events.CartItem{{ProductID: "mug-nats", Quantity: 1}}, IntervalDays: 1}
		if err := retry(ctx, func() error { return d.call(events.SubscriptionsCreate, req, nil) }); err != nil {
			return fmt.Errorf("%s: create: %w", p.ID, err)
		}
	}
	return nil
}

// unsubscribe cancels every subscription once the faults stopped, then waits until none has a
// period running: the renewals the run started have all ended.
func unsubscribe(ctx context.Context, d driver, subs []plannedSub, limit time.Duration) error {
	for _, p := range subs {
		if err := retry(ctx, func() error {
			return d.call(events.SubscriptionsCancel, events.SubscriptionRef{ID: p.ID, Reason: "the chaos run ended"}, nil)
		}); err != nil {
			return fmt.Errorf("%s: cancel: %w", p.ID, err)
		}
	}
	deadline := time.Now().Add(limit)
	for _, p := range subs {
		for {
			var sub events.Subscription
			err := d.call(events.SubscriptionsGet, events.SubscriptionRef{ID: p.ID}, &sub)
			if err == nil && sub.Open() == nil {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("%s: a period still running %v after the cancel (%v)", p.ID, limit, err)
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(500 * time.Millisecond):
			}
		}
	}
	return nil
}

// readSubscriptions reads every subscription's record from its bucket.
func readSubscriptions(ctx context.Context, js jetstream.JetStream) (map[string]events.Subscription, error) {
	kv, err := js.KeyValue(ctx, events.BucketSubscriptions)
	if err != nil {
		return nil, err
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]events.Subscription{}
	for id := range keys.Keys() {
		entry, err := kv.Get(ctx, id)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("subscription %s: %w", id, err)
		}
		var sub events.Subscription
		if err := json.Unmarshal(entry.Value(), &sub); err != nil {
			return nil, fmt.Errorf("subscription %s: %w", id, err)
		}
		out[id] = sub
	}
	return out, nil
}

// renewalCheckouts are the checkouts of every attempt of every period the records list.
func renewalCheckouts(subs map[string]events.Subscription) []string {
	var ids []string
	for _, sub := range subs {
		for _, p := range sub.Periods {
			for a := 1; a <= max(p.Attempts, 1); a++ {
				ids = append(ids, events.RenewalCheckoutID(sub.ID, p.N, a))
			}
		}
	}
	return ids
}

// reconcileSubscriptions: every subscription of the load exists, cancelled, with no period
// running; each period was charged at most once (what was captured and not refunded, over
// all its attempts), paid exactly when one attempt completed, and each attempt is one
// checkout that ended once, with an order when it completed and money back when it failed,
// its customer told either way; the periods' orders count in the stock sold. A renewal
// checkout no record lists is a violation.
func reconcileSubscriptions(res *Result, subs []plannedSub, s *state, mails map[string]*customerMail, sold map[string]int,
	violate func(string, ...any)) (renewals map[string]bool) {
	renewals = map[string]bool{}
	for _, id := range renewalCheckouts(s.subscriptions) {
		renewals[id] = true
	}
	res.Renewals = len(renewals)
	for _, p := range subs {
		sub, ok := s.subscriptions[p.ID]
		if !ok {
			violate("%s: no such subscription", p.ID)
			continue
		}
		if sub.Status != events.SubscriptionCancelled {
			violate("%s: %s after the run cancelled it", p.ID, sub.Status)
		}
		if open := sub.Open(); open != nil {
			violate("%s: period %d still running after the run cancelled it", p.ID, open.N)
		}
		if len(sub.Periods) < p.MinPeriods {
			violate("%s: %d periods started, at least %d were due: it stopped renewing", p.ID, len(sub.Periods), p.MinPeriods)
		}
		for _, period := range sub.Periods {
			reconcilePeriod(p, sub, period, s, mails, sold, violate)
			switch period.Outcome {
			case events.PeriodPaid:
				res.PeriodsPaid++
			case events.PeriodFailed:
				res.PeriodsFailed++
			}
		}
	}
	return renewals
}

func reconcilePeriod(p plannedSub, sub events.Subscription, period events.Period, s *state, mails map[string]*customerMail,
	sold map[string]int, violate func(string, ...any)) {
	var net int64
	completed := 0
	for a := 1; a <= max(period.Attempts, 1); a++ {
		id := events.RenewalCheckoutID(sub.ID, period.N, a)
		pis := s.intents[id]
		if len(pis) > 1 {
			violate("%s: %d PaymentIntents", id, len(pis))
		}
		captured, refunded := kept(pis, s.refunded)
		net += captured - refunded
		ends := s.terminals[id]
		if len(ends) != 1 {
			violate("%s: %d terminal events %v", id, len(ends), types(ends))
			continue
		}
		m := mails[id]
		if m == nil {
			m = &customerMail{}
		}
		switch ends[0].Type {
		case events.Completed:
			completed++
			confirmed := confirmedOrders(s.orders[id])
			if len(confirmed) != 1 {
				violate("%s: completed with %d orders", id, len(confirmed))
			}
			for _, o := range confirmed {
				for _, l := range o.Lines {
					sold[l.ProductID] += l.Quantity
				}
			}
			if p.Declines {
				violate("%s: a card that declines paid a renewal", id)
			}
		case events.Failed:
			var f events.CheckoutFailed
			_ = ends[0].DecodePayload(&f)
			if captured != refunded {
				violate("%s: failed, but %d captured and %d refunded", id, captured, refunded)
			}
			if notifications.Notifies(f) && len(m.notices) == 0 {
				violate("%s: failed (%s), no failure notice", id, f.Code)
			}
		}
		for _, to := range append(m.confirmations, m.notices...) {
			if to != p.Email {
				violate("%s: email to %s, the subscriber is %s", id, to, p.Email)
			}
		}
	}
	if want, err := periodPrice(s, sub, period); err == nil && net > want {
		violate("%s period %d: charged %d minor units, one period costs %d", sub.ID, period.N, net, want)
	}
	if completed > 1 {
		violate("%s period %d: %d attempts completed", sub.ID, period.N, completed)
	}
	if paid := period.Outcome == events.PeriodPaid; paid != (completed == 1) {
		violate("%s period %d: outcome %q, %d attempts completed", sub.ID, period.N, period.Outcome, completed)
	}
}

// periodPrice is what the paid attempt of a period was charged, from its order; with no
// order, nothing may have been kept.
func periodPrice(s *state, sub events.Subscription, period events.Period) (int64, error) {
	for a := 1; a <= max(period.Attempts, 1); a++ {
		if confirmed := confirmedOrders(s.orders[events.RenewalCheckoutID(sub.ID, period.N, a)]); len(confirmed) == 1 {
			return money.ToMinor(confirmed[0].Total, confirmed[0].Currency)
		}
	}
	return 0, nil
}

// unplannedRenewal reports a renewal checkout that no subscription of the load lists.
func unplannedRenewal(id string, renewals map[string]bool) bool {
	_, _, _, isRenewal := events.ParseRenewalCheckoutID(id)
	return isRenewal && !renewals[id]
}
