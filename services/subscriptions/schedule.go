package subscriptions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// scheduled is what a renewal carries: only which subscription is due. When, the stream
// says (the time it stored the renewal), and what, the record.
type scheduled struct {
	SubscriptionID string `json:"subscription_id"`
}

// schedule puts sub's renewal schedule in place, replacing any before it (a roll-up of its
// subject): every period from now, fired on its due subject. The renewals it fires expire
// with the checkouts' retention, the schedule itself never.
func (s *Service) schedule(ctx context.Context, sub events.Subscription) error {
	data, err := json.Marshal(scheduled{SubscriptionID: sub.ID})
	if err != nil {
		return err
	}
	msg := &nats.Msg{Subject: events.SubscriptionScheduleSubject(sub.ID), Data: data, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	_, err = s.cfg.JS.PublishMsg(ctx, msg, jetstream.WithScheduleEvery(sub.Interval.Duration),
		jetstream.WithScheduleTarget(events.SubscriptionDueSubject(sub.ID)), jetstream.WithScheduleTTL(events.CheckoutRetention))
	if err != nil {
		return fmt.Errorf("schedule the renewals of %s: %w", sub.ID, err)
	}
	return nil
}

// unschedule removes sub's renewal schedule: nothing more fires for it.
func (s *Service) unschedule(ctx context.Context, id string) error {
	if err := s.stream.Purge(ctx, jetstream.WithPurgeSubject(events.SubscriptionScheduleSubject(id))); err != nil {
		return fmt.Errorf("remove the renewals of %s: %w", id, err)
	}
	return nil
}

// scheduledNow reports whether sub has a schedule in the stream.
func (s *Service) scheduledNow(ctx context.Context, id string) (bool, error) {
	_, err := s.stream.GetLastMsgForSubject(ctx, events.SubscriptionScheduleSubject(id))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, nil
	}
	return err == nil, err
}

// reconcile gives each active subscription its schedule and takes it from the others: a
// process that died between changing a status and the schedule left them apart.
func (s *Service) reconcile(ctx context.Context) error {
	keys, err := s.kv.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("list subscriptions: %w", err)
	}
	for id := range keys.Keys() {
		sub, _, err := s.get(ctx, id)
		if err != nil {
			return err
		}
		if err := s.reconcileOne(ctx, sub); err != nil {
			return err
		}
	}
	return nil
}

// reconcileOne makes sub's schedule what its status says: there when active, gone otherwise.
func (s *Service) reconcileOne(ctx context.Context, sub events.Subscription) error {
	has, err := s.scheduledNow(ctx, sub.ID)
	if err != nil {
		return err
	}
	switch active := sub.Status == events.SubscriptionActive; {
	case active && !has:
		return s.schedule(ctx, sub)
	case !active && has:
		return s.unschedule(ctx, sub.ID)
	}
	return nil
}
