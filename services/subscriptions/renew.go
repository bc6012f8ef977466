package subscriptions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/microx"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// startPeriod starts sub's next period at at, if one is due: the subscription is active, the
// period before has ended, and the next renewal is less than half a period away. It reports
// whether it started one. It decides from the record and at alone, at being the renewal's
// time in the stream.
func startPeriod(sub *events.Subscription, at time.Time) bool {
	if sub.Status != events.SubscriptionActive {
		return false
	}
	last, started := sub.Last()
	if started && last.Outcome == "" {
		return false // the period before is still being paid for: it starts when that ends
	}
	half := sub.Interval.Duration / 2
	if at.Before(sub.NextRenewal.Add(-half)) {
		return false // early: a second firing, or a clock that went back
	}
	n := 1
	if started {
		n = last.N + 1
	}
	sub.Periods = append(sub.Periods, events.Period{N: n, CheckoutID: events.RenewalCheckoutID(sub.ID, n), StartedAt: at.UTC()})
	if extra := len(sub.Periods) - events.MaxPeriodsKept; extra > 0 {
		sub.Periods = sub.Periods[extra:]
	}
	sub.NextRenewal = sub.NextRenewal.Add(sub.Interval.Duration)
	if !sub.NextRenewal.After(at.Add(half)) {
		// More than a period late (the system was down, or the clock jumped on): the cycle
		// moves on from now rather than charging the periods missed one after the other.
		sub.NextRenewal = at.Add(sub.Interval.Duration).UTC()
	}
	return true
}

// renew starts subscription id's next period at at if one is due, and makes sure the
// checkout of its latest running period was requested (again after a crash: the cart is
// made under the checkout's ID and the request carries it, so a copy changes nothing).
func (s *Service) renew(ctx context.Context, id string, at time.Time) (events.Subscription, error) {
	sub, err := s.update(ctx, id, func(sub *events.Subscription) (bool, error) { return startPeriod(sub, at), nil })
	if err != nil {
		return sub, err
	}
	last, started := sub.Last()
	if !started || last.Outcome != "" {
		return sub, nil
	}
	return sub, s.request(ctx, sub, last)
}

// request makes period p's cart and publishes its checkout. A cart the catalog refuses (a
// product withdrawn, a currency no longer sold) fails the period with the catalog's reason:
// nothing was charged, and the customer's record says why.
func (s *Service) request(ctx context.Context, sub events.Subscription, p events.Period) error {
	var cart events.Cart
	err := microx.Request(ctx, s.cfg.NC, events.CartsCreate, events.CreateCart{
		CartID: p.CheckoutID, CustomerID: sub.CustomerID, Currency: sub.Currency, Items: sub.Items}, &cart)
	var refused *microx.Error
	if errors.As(err, &refused) {
		s.log.Warn("renewal's cart refused", "subscription_id", sub.ID, "period", p.N, "reason", refused.Description)
		_, err = s.end(ctx, sub.ID, p.N, events.PeriodFailed, events.CodeInvalidRequest, "the period's cart could not be made: "+refused.Description, p.StartedAt)
		return err
	}
	if err != nil {
		return fmt.Errorf("make the cart of %s: %w", p.CheckoutID, err)
	}
	req := events.CheckoutRequest{
		CheckoutID: p.CheckoutID, CartID: cart.ID, CustomerID: sub.CustomerID, CustomerEmail: sub.CustomerEmail,
		PaymentMethodID: sub.PaymentMethodID, ShippingAddress: sub.ShippingAddress, BillingAddress: sub.BillingAddress,
		Renewal: &events.Renewal{SubscriptionID: sub.ID, Period: p.N, StripeCustomer: sub.StripeCustomer},
	}
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	msg := &nats.Msg{Subject: string(events.Requested), Data: body}
	if _, err := s.cfg.JS.PublishMsg(ctx, msg, jetstream.WithMsgID(events.ID(p.CheckoutID, events.Requested))); err != nil {
		return fmt.Errorf("request the checkout of %s: %w", p.CheckoutID, err)
	}
	s.log.Info("renewal requested", "subscription_id", sub.ID, "period", p.N, "checkout_id", p.CheckoutID)
	return nil
}

// end records how period n ended and, the period before ended, starts the next one if it is
// due by at (a renewal that fired while this period was being paid for).
func (s *Service) end(ctx context.Context, id string, n int, outcome, code, reason string, at time.Time) (events.Subscription, error) {
	sub, err := s.update(ctx, id, func(sub *events.Subscription) (bool, error) {
		i := len(sub.Periods) - 1
		for i >= 0 && sub.Periods[i].N != n {
			i--
		}
		if i < 0 || sub.Periods[i].Outcome != "" {
			return false, nil // not a period of this record, or ended already (a copy)
		}
		sub.Periods[i].Outcome, sub.Periods[i].Code, sub.Periods[i].Reason = outcome, code, reason
		startPeriod(sub, at)
		return true, nil
	})
	if err != nil {
		return sub, err
	}
	if last, started := sub.Last(); started && last.N > n && last.Outcome == "" {
		return sub, s.request(ctx, sub, last)
	}
	return sub, nil
}
