package subscriptions

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/microx"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
)

// callTimeout bounds one request's work: the bucket, the catalog, the stream.
const callTimeout = 10 * time.Second

// Serve starts the "subscriptions" micro service. A bad request gets an error reply with
// code "400", "404" or "409" and a description saying what is wrong.
func (s *Service) Serve(nc *nats.Conn) (micro.Service, error) {
	endpoints := []microx.Endpoint{
		{Name: "create", Subject: events.SubscriptionsCreate, Handle: s.bounded(s.createSubscription)},
		{Name: "get", Subject: events.SubscriptionsGet, Handle: s.bounded(s.getSubscription)},
		{Name: "list", Subject: events.SubscriptionsList, Handle: s.bounded(s.listSubscriptions)},
		{Name: "pause", Subject: events.SubscriptionsPause, Handle: s.bounded(s.pause)},
		{Name: "resume", Subject: events.SubscriptionsResume, Handle: s.bounded(s.resume)},
		{Name: "cancel", Subject: events.SubscriptionsCancel, Handle: s.bounded(s.cancel)},
		{Name: "change", Subject: events.SubscriptionsChange, Handle: s.bounded(s.change)},
	}
	return microx.AddService(nc, s.log, micro.Config{
		Name:        events.ServiceSubscriptions,
		Version:     "1.0.0",
		Description: "Subscriptions: create, read, pause, resume and cancel standing orders renewed every period.",
	}, endpoints...)
}

// bounded gives an endpoint's work callTimeout, answers an unknown subscription with a 404,
// and every request with a 503 until the service is bound to its bucket and stream.
func (s *Service) bounded(handle func(ctx context.Context, data []byte) (any, error)) func([]byte) (any, error) {
	return func(data []byte) (any, error) {
		select {
		case <-s.ready:
		default:
			return nil, &microx.Error{Code: "503", Description: "subscriptions are not set up yet: the setup role has not created their bucket and stream"}
		}
		ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
		defer cancel()
		out, err := handle(ctx, data)
		if errors.Is(err, errNotFound) {
			return nil, microx.NotFound("%v", err)
		}
		return out, err
	}
}

// createSubscription stores the subscription, schedules its renewals and starts its first
// period at once. The first period's cart is made before anything is stored, so a plan the
// catalog refuses (an unknown product, a currency not sold) is refused with its reason.
func (s *Service) createSubscription(ctx context.Context, data []byte) (any, error) {
	var req events.CreateSubscription
	if err := microx.Decode(events.SubscriptionsCreate, data, &req); err != nil {
		return nil, err
	}
	req.Currency = strings.ToUpper(strings.TrimSpace(req.Currency))
	if err := req.Validate(); err != nil {
		return nil, microx.BadRequest("%v", err)
	}
	if had, _, err := s.get(ctx, req.ID); err == nil {
		return s.created(ctx, had, req)
	}
	now := time.Now().UTC()
	sub := events.Subscription{CreateSubscription: req, Status: events.SubscriptionActive,
		Interval: events.Duration{Duration: time.Duration(req.IntervalDays) * s.cfg.Day}, CreatedAt: now, NextRenewal: now}
	var cart events.Cart
	err := microx.Request(ctx, s.cfg.NC, events.CartsCreate, events.CreateCart{
		CartID: events.RenewalCheckoutID(sub.ID, 1, 1), CustomerID: sub.CustomerID, Currency: sub.Currency, Items: sub.Items}, &cart)
	if refused, ok := microx.Refusal(err); ok {
		return nil, microx.BadRequest("the subscription's items cannot be sold: %s", refused.Description)
	}
	if err != nil {
		return nil, err
	}
	sub.Items = cart.Items // as the catalog merged them
	if err := s.create(ctx, sub); errors.Is(err, jetstream.ErrKeyExists) {
		had, _, err := s.get(ctx, sub.ID)
		if err != nil {
			return nil, err
		}
		return s.created(ctx, had, req)
	} else if err != nil {
		return nil, err
	}
	if err := s.schedule(ctx, sub); err != nil {
		return nil, err
	}
	s.log.Info("subscription created", "subscription_id", sub.ID, "customer_id", sub.CustomerID, "every", sub.Interval)
	return s.renew(ctx, sub.ID, trigger{at: now})
}

// created answers a create of an ID that exists: the same request again gets the record (and
// its schedule and first period made sure of, in case the first create stopped halfway);
// another is a conflict.
func (s *Service) created(ctx context.Context, had events.Subscription, req events.CreateSubscription) (any, error) {
	asked := req
	asked.Items = had.Items // the catalog merged them
	if !reflect.DeepEqual(had.CreateSubscription, asked) {
		return nil, microx.Conflict("subscription %q exists with another plan", req.ID)
	}
	if !live(had.Status) {
		return had, nil
	}
	if err := s.reconcileOne(ctx, had); err != nil {
		return nil, err
	}
	return s.renew(ctx, had.ID, trigger{at: time.Now().UTC()})
}

func (s *Service) getSubscription(ctx context.Context, data []byte) (any, error) {
	var ref events.SubscriptionRef
	if err := microx.Decode(events.SubscriptionsGet, data, &ref); err != nil {
		return nil, err
	}
	sub, _, err := s.get(ctx, ref.ID)
	return sub, err
}

// listSubscriptions answers every subscription, in the order of their IDs.
func (s *Service) listSubscriptions(ctx context.Context, _ []byte) (any, error) {
	keys, err := s.kv.ListKeys(ctx)
	if err != nil {
		return nil, err
	}
	out := []events.Subscription{}
	for id := range keys.Keys() {
		sub, _, err := s.get(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, sub)
	}
	return out, nil
}

// pause stops the renewals: no period starts until it is resumed; one being paid for ends.
func (s *Service) pause(ctx context.Context, data []byte) (any, error) {
	return s.setStatus(ctx, events.SubscriptionsPause, data, func(sub *events.Subscription, _ events.SubscriptionRef) (bool, error) {
		switch sub.Status {
		case events.SubscriptionCancelled:
			return false, microx.Conflict("subscription %q is cancelled", sub.ID)
		case events.SubscriptionPaused:
			return false, nil
		}
		sub.Status = events.SubscriptionPaused
		return true, nil
	})
}

// resume renews again: a period that fell due while paused starts now, as does the retry of
// a declined one, and the cycle follows from the resume.
func (s *Service) resume(ctx context.Context, data []byte) (any, error) {
	now := time.Now().UTC()
	return s.setStatus(ctx, events.SubscriptionsResume, data, func(sub *events.Subscription, _ events.SubscriptionRef) (bool, error) {
		switch sub.Status {
		case events.SubscriptionCancelled:
			return false, microx.Conflict("subscription %q is cancelled", sub.ID)
		case events.SubscriptionActive, events.SubscriptionPastDue:
			return false, nil
		}
		sub.Status = events.SubscriptionActive
		if p := sub.Open(); p != nil && p.RetryAt != nil {
			sub.Status, p.RetryAt = events.SubscriptionPastDue, &now
		}
		if sub.NextRenewal.Before(now) {
			sub.NextRenewal = now
		}
		return true, nil
	})
}

// cancel ends the subscription for good; a period being paid for ends as it ends, one
// waiting for its retry fails now.
func (s *Service) cancel(ctx context.Context, data []byte) (any, error) {
	endedOpen := false
	out, err := s.setStatus(ctx, events.SubscriptionsCancel, data, func(sub *events.Subscription, ref events.SubscriptionRef) (bool, error) {
		endedOpen = false
		if sub.Status == events.SubscriptionCancelled {
			return false, nil
		}
		sub.Status, sub.CancelReason = events.SubscriptionCancelled, strings.TrimSpace(ref.Reason)
		if sub.CancelReason == "" {
			sub.CancelReason = "cancelled on request"
		}
		if p := sub.Open(); p != nil && p.RetryAt != nil {
			p.Outcome, p.RetryAt, endedOpen = events.PeriodFailed, nil, true // no more attempts
		}
		return true, nil
	})
	if err == nil && endedOpen {
		s.meters.ended.WithLabelValues(events.PeriodFailed).Inc()
	}
	return out, err
}

// change sets the plan of the next period on. Its items are checked against the catalog
// first (each product sold in the subscription's currency), so a change that could not be
// bought is refused now, not found out at the next renewal.
func (s *Service) change(ctx context.Context, data []byte) (any, error) {
	var req events.ChangeSubscription
	if err := microx.Decode(events.SubscriptionsChange, data, &req); err != nil {
		return nil, err
	}
	if err := req.Validate(); err != nil {
		return nil, microx.BadRequest("%v", err)
	}
	had, _, err := s.get(ctx, req.ID)
	if err != nil {
		return nil, err
	}
	if len(req.Items) > 0 {
		if err := s.sold(ctx, req.Items, had.Currency); err != nil {
			return nil, err
		}
	}
	sub, err := s.update(ctx, req.ID, func(sub *events.Subscription) (bool, error) {
		if sub.Status == events.SubscriptionCancelled {
			return false, microx.Conflict("subscription %q is cancelled", sub.ID)
		}
		plan := events.Plan{Items: sub.Items, IntervalDays: sub.IntervalDays}
		if sub.NextPlan != nil {
			plan = *sub.NextPlan
		}
		if len(req.Items) > 0 {
			plan.Items = req.Items
		}
		if req.IntervalDays > 0 {
			plan.IntervalDays = req.IntervalDays
		}
		plan.Interval = events.Duration{Duration: time.Duration(plan.IntervalDays) * s.cfg.Day}
		sub.NextPlan = &plan
		return true, nil
	})
	if err == nil {
		s.log.Info("subscription plan changed from the next period", "subscription_id", sub.ID, "every", sub.NextPlan.Interval, "items", len(sub.NextPlan.Items))
	}
	return sub, err
}

// sold refuses items the catalog does not sell in currency.
func (s *Service) sold(ctx context.Context, items []events.CartItem, currency string) error {
	var products []events.ListedProduct
	if err := microx.Request(ctx, s.cfg.NC, events.CatalogList, nil, &products); err != nil {
		return fmt.Errorf("ask the catalog: %w", err)
	}
	for _, it := range items {
		i := slices.IndexFunc(products, func(p events.ListedProduct) bool { return p.ID == it.ProductID })
		if i < 0 {
			return microx.NotFound("product %q does not exist", it.ProductID)
		}
		if _, priced := products[i].Prices[currency]; !priced {
			return microx.BadRequest("%s (%s) is not sold in %s", products[i].Name, it.ProductID, currency)
		}
	}
	return nil
}

// setStatus changes a subscription's status by change, then makes its schedule follow (and,
// active again, starts a period that is due).
func (s *Service) setStatus(ctx context.Context, subject events.Subject, data []byte,
	change func(*events.Subscription, events.SubscriptionRef) (bool, error)) (any, error) {
	var ref events.SubscriptionRef
	if err := microx.Decode(subject, data, &ref); err != nil {
		return nil, err
	}
	sub, err := s.update(ctx, ref.ID, func(sub *events.Subscription) (bool, error) { return change(sub, ref) })
	if err != nil {
		return nil, err
	}
	if err := s.reconcileOne(ctx, sub); err != nil {
		return nil, err
	}
	s.log.Info("subscription "+sub.Status, "subscription_id", sub.ID)
	if live(sub.Status) {
		return s.renew(ctx, sub.ID, trigger{at: time.Now().UTC()})
	}
	return sub, nil
}
