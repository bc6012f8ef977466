package subscriptions

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/microx"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The decisions below change a record from its state and a time alone, that time being the
// one the stream gave the message that brought it (a renewal fired, a checkout ended): the
// same messages again decide the same.

// trigger is what brings a subscription forward: a renewal its schedule fired (which may come
// a little early: up to half a period), a retry its one-time schedule fired, or anything
// else (an attempt that ended, a resume, a restart), which starts only what is due by then.
type trigger struct {
	at       time.Time
	schedule bool // fired by the renewal schedule
	retry    bool // fired by the retry schedule: the retry is due, whatever the clocks say
}

// startPeriod starts sub's next period at t.at, if one is due: the subscription is active,
// the period before has ended, and the next renewal has come (or, for a renewal the schedule
// fired, is less than half a period away). It reports whether it started one.
func startPeriod(sub *events.Subscription, t trigger) bool {
	at := t.at
	if sub.Status != events.SubscriptionActive {
		return false
	}
	last, started := sub.Last()
	if started && last.Outcome == "" {
		return false // the period before is still being paid for: it starts when that ends
	}
	half, early := sub.Interval.Duration/2, time.Duration(0)
	if t.schedule {
		early = half
	}
	if at.Before(sub.NextRenewal.Add(-early)) {
		return false // early: a second firing, a clock that went back, a resume within the period
	}
	n := 1
	if started {
		n = last.N + 1
	}
	sub.Periods = append(sub.Periods, events.Period{N: n, CheckoutID: events.RenewalCheckoutID(sub.ID, n, 1), StartedAt: at.UTC(), Attempts: 1})
	if extra := len(sub.Periods) - events.MaxPeriodsKept; extra > 0 {
		sub.Periods = sub.Periods[extra:]
	}
	if p := sub.NextPlan; p != nil {
		// A changed plan starts with this period, and its cycle with it.
		sub.Items, sub.IntervalDays, sub.Interval, sub.NextPlan = p.Items, p.IntervalDays, p.Interval, nil
		sub.NextRenewal = at.Add(sub.Interval.Duration).UTC()
		return true
	}
	sub.NextRenewal = sub.NextRenewal.Add(sub.Interval.Duration)
	if !sub.NextRenewal.After(at.Add(half)) {
		// More than a period late (the system was down, or the clock jumped on): the cycle
		// moves on from now rather than charging the missed periods in a burst.
		sub.NextRenewal = at.Add(sub.Interval.Duration).UTC()
	}
	return true
}

// retryDue starts the next attempt of a period whose payment was declined, once its retry is
// due: fired by its schedule (RetryAt is the coordinator's clock, the firing the server's),
// or by t.at otherwise. It reports whether it started one.
func retryDue(sub *events.Subscription, t trigger) bool {
	p := sub.Open()
	if p == nil || p.RetryAt == nil || sub.Status != events.SubscriptionPastDue || !t.retry && t.at.Before(*p.RetryAt) {
		return false
	}
	p.Attempts++
	p.CheckoutID, p.RetryAt = events.RenewalCheckoutID(sub.ID, p.N, p.Attempts), nil
	return true
}

// dunning is the retry schedule of a period whose payment was declined: the days after the
// first decline on which it is tried again, a day lasting day; then the subscription becomes
// final (cancelled or paused).
type dunning struct {
	days  []int
	day   time.Duration
	final string
}

// retryIn is how long after attempt's declined payment the next attempt comes; false when it
// was the last.
func (d dunning) retryIn(attempt int) (time.Duration, bool) {
	if attempt < 1 || attempt > len(d.days) {
		return 0, false
	}
	gap := d.days[attempt-1]
	if attempt > 1 {
		gap -= d.days[attempt-2]
	}
	return time.Duration(gap) * d.day, true
}

// endAttempt records how the checkout of period n's attempt ended at at: paid; declined with a
// retry to come (the subscription past due); or failed for good, which after the last retry of
// a decline makes the subscription final. It reports whether the record changed: the end of an
// attempt that is not the period's latest (a copy, a stale one) changes nothing.
func (d dunning) endAttempt(sub *events.Subscription, n, attempt int, code, reason string, at time.Time) bool {
	i := slices.IndexFunc(sub.Periods, func(p events.Period) bool { return p.N == n })
	if i < 0 || sub.Periods[i].Outcome != "" || max(sub.Periods[i].Attempts, 1) != attempt || sub.Periods[i].RetryAt != nil {
		return false
	}
	p := &sub.Periods[i]
	p.Code, p.Reason = code, reason
	if code == "" {
		p.Outcome = events.PeriodPaid
		if sub.Status == events.SubscriptionPastDue {
			sub.Status = events.SubscriptionActive
		}
		return true
	}
	retried := slices.Contains(events.RetriedRenewalCodes, code)
	live := sub.Status == events.SubscriptionActive || sub.Status == events.SubscriptionPastDue
	if gap, ok := d.retryIn(attempt); retried && ok && live {
		retryAt := at.Add(gap).UTC()
		p.RetryAt, sub.Status = &retryAt, events.SubscriptionPastDue
		return true
	}
	p.Outcome = events.PeriodFailed
	switch {
	case retried && live:
		// The last attempt of a declined period: the subscription ends as configured.
		sub.Status = d.final
		if d.final == events.SubscriptionCancelled {
			sub.CancelReason = fmt.Sprintf("period %d could not be paid after %d attempts: %s", n, attempt, reason)
		}
	case sub.Status == events.SubscriptionPastDue:
		// A retry failed for a reason no retry mends (out of stock): that period alone fails.
		sub.Status = events.SubscriptionActive
	}
	return true
}

// renew brings subscription id forward at t: the next attempt of a declined period if its
// retry is due, else the next period if one is due; then it makes sure the checkout of the
// running attempt was requested (again after a crash: the cart is made under the checkout's
// ID and the request carries it, so a copy changes nothing).
func (s *Service) renew(ctx context.Context, id string, t trigger) (events.Subscription, error) {
	started, retried := false, false
	sub, err := s.update(ctx, id, func(sub *events.Subscription) (bool, error) {
		retried = retryDue(sub, t)
		started = !retried && startPeriod(sub, t)
		return retried || started, nil
	})
	if err != nil {
		return sub, err
	}
	if retried {
		s.meters.retried.Inc()
	}
	if started {
		s.meters.started.Inc()
		if err := s.reconcileOne(ctx, sub); err != nil { // a changed plan's period
			return sub, err
		}
	}
	return sub, s.requestRunning(ctx, sub)
}

// requestRunning requests the checkout of sub's running attempt, if one runs.
func (s *Service) requestRunning(ctx context.Context, sub events.Subscription) error {
	if p := sub.Open(); p != nil && p.RetryAt == nil {
		return s.request(ctx, sub, *p)
	}
	return nil
}

// request makes period p's cart and publishes its checkout. A cart the catalog refuses (a
// product withdrawn, a currency no longer sold) fails the period with the catalog's reason:
// nothing was charged, and the customer's record says why.
func (s *Service) request(ctx context.Context, sub events.Subscription, p events.Period) error {
	var cart events.Cart
	err := microx.Request(ctx, s.cfg.NC, events.CartsCreate, events.CreateCart{
		CartID: p.CheckoutID, CustomerID: sub.CustomerID, Currency: sub.Currency, Items: sub.Items}, &cart)
	if refused, ok := microx.Refusal(err); ok {
		s.log.Warn("renewal's cart refused", "subscription_id", sub.ID, "period", p.N, "reason", refused.Description)
		_, err = s.end(ctx, sub.ID, p.N, p.Attempts, events.CodeInvalidRequest, "the period's cart could not be made: "+refused.Description, p.StartedAt)
		return err
	}
	if err != nil {
		return fmt.Errorf("make the cart of %s: %w", p.CheckoutID, err)
	}
	renewal := &events.Renewal{SubscriptionID: sub.ID, Period: p.N, StripeCustomer: sub.StripeCustomer, FinalAction: s.dunning.final}
	if p.Attempts > 1 {
		renewal.Attempt = p.Attempts
	}
	if gap, ok := s.dunning.retryIn(max(p.Attempts, 1)); ok {
		renewal.RetryIn = &events.Duration{Duration: gap}
	}
	req := events.CheckoutRequest{
		CheckoutID: p.CheckoutID, CartID: cart.ID, CustomerID: sub.CustomerID, CustomerEmail: sub.CustomerEmail,
		PaymentMethodID: sub.PaymentMethodID, ShippingAddress: sub.ShippingAddress, BillingAddress: sub.BillingAddress,
		Renewal: renewal,
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	msg := &nats.Msg{Subject: string(events.Requested), Data: body}
	if _, err := s.cfg.JS.PublishMsg(ctx, msg, jetstream.WithMsgID(events.ID(p.CheckoutID, events.Requested))); err != nil {
		return fmt.Errorf("request the checkout of %s: %w", p.CheckoutID, err)
	}
	s.log.Info("renewal requested", "subscription_id", sub.ID, "period", p.N, "attempt", max(p.Attempts, 1), "checkout_id", p.CheckoutID)
	return nil
}

// end records how period n's attempt ended (code "" for paid) and carries the subscription
// on: a retry scheduled, the schedules put right after it became final, the next period
// started if it is due by at (a renewal that fired while this period was being paid for).
func (s *Service) end(ctx context.Context, id string, n, attempt int, code, reason string, at time.Time) (events.Subscription, error) {
	var outcome string
	started := false
	sub, err := s.update(ctx, id, func(sub *events.Subscription) (bool, error) {
		outcome, started = "", false
		if !s.dunning.endAttempt(sub, n, attempt, code, reason, at) {
			return false, nil
		}
		if i := slices.IndexFunc(sub.Periods, func(p events.Period) bool { return p.N == n }); i >= 0 {
			outcome = sub.Periods[i].Outcome
		}
		started = startPeriod(sub, trigger{at: at})
		return true, nil
	})
	if err != nil {
		return sub, err
	}
	if outcome != "" {
		s.meters.ended.WithLabelValues(outcome).Inc()
	}
	if started {
		s.meters.started.Inc()
	}
	if err := s.reconcileOne(ctx, sub); err != nil {
		return sub, err
	}
	return sub, s.requestRunning(ctx, sub)
}
