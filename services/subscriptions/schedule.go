package subscriptions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// scheduled is what a renewal carries: only which subscription is due. When, the stream
// says (the time it stored the renewal), and what, the record.
type scheduled struct {
	SubscriptionID string `json:"subscription_id"`
}

// schedule puts sub's renewal schedule in place, replacing any before it: every period from
// now, fired on its due subject.
func (s *Service) schedule(ctx context.Context, sub events.Subscription) error {
	return s.putSchedule(ctx, events.SubscriptionScheduleSubject(sub.ID), sub.ID, jetstream.WithScheduleEvery(sub.Interval.Duration))
}

// scheduleRetry puts the retry of a declined period of subscription id in place, replacing
// any retry before it: one renewal fired at retryAt (rounded up: never early).
func (s *Service) scheduleRetry(ctx context.Context, id string, retryAt time.Time) error {
	return s.putSchedule(ctx, events.SubscriptionRetrySubject(id), id, jetstream.WithScheduleAt(events.CeilSecond(retryAt)))
}

// putSchedule stores a schedule of subscription id on subject, replacing any before it (a
// roll-up of its subject), firing on the subscription's due subject. What it fires expires
// with the checkouts' retention, the schedule itself never.
func (s *Service) putSchedule(ctx context.Context, subject, id string, when jetstream.PublishOpt) error {
	data, err := json.Marshal(scheduled{SubscriptionID: id})
	if err != nil {
		return err
	}
	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{}}
	msg.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupSubject)
	_, err = s.cfg.JS.PublishMsg(ctx, msg, when, jetstream.WithScheduleTarget(events.SubscriptionDueSubject(id)),
		jetstream.WithScheduleTTL(events.CheckoutRetention))
	if err != nil {
		return fmt.Errorf("schedule %s: %w", subject, err)
	}
	return nil
}

// unschedule removes what would fire for a subscription: its renewals and its retry.
func (s *Service) unschedule(ctx context.Context, id string) error {
	for _, subject := range []string{events.SubscriptionScheduleSubject(id), events.SubscriptionRetrySubject(id)} {
		if err := s.stream.Purge(ctx, jetstream.WithPurgeSubject(subject)); err != nil {
			return fmt.Errorf("remove the schedules of %s: %w", id, err)
		}
	}
	return nil
}

// scheduledEvery is subscription id's renewal schedule as the stream holds it ("@every 720h0m0s"),
// "" when it has none.
func (s *Service) scheduledEvery(ctx context.Context, id string) (string, error) {
	msg, err := s.stream.GetLastMsgForSubject(ctx, events.SubscriptionScheduleSubject(id))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return msg.Header.Get("Nats-Schedule"), nil
}

// reconcile puts each subscription right: its schedules as its record says (a process that
// died between changing a record and its schedules left them apart), the checkout of a
// running attempt requested, a period that came due started. At start, and every
// reconcileEvery after: the renewals come from the schedules; this only heals.
func (s *Service) reconcile(ctx context.Context) error {
	keys, err := s.kv.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("list subscriptions: %w", err)
	}
	var errs []error
	for id := range keys.Keys() {
		sub, _, err := s.get(ctx, id)
		if err == nil {
			err = s.reconcileOne(ctx, sub)
		}
		if err == nil && live(sub.Status) {
			_, err = s.renew(ctx, id, trigger{at: time.Now().UTC()})
		}
		if err != nil {
			// One record that cannot be put right stops none of the others.
			s.log.Error("subscription not put right", "subscription_id", id, "err", err)
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%d subscriptions not put right, the first: %w", len(errs), errs[0])
	}
	return nil
}

// reconcileEvery is how often the subscriptions are put right while the service runs.
const reconcileEvery = 5 * time.Minute

// reconcileOne makes sub's schedules what its record, read again, says: its renewals there while it is
// live, its retry while a declined period waits for one (an @at schedule that fired is gone,
// so one that was due is put back and fires at once); none once it is paused or cancelled.
func (s *Service) reconcileOne(ctx context.Context, sub events.Subscription) error {
	// As stored now: a change made meanwhile (a pause racing a resume) must not be undone
	// by acting on the record as it was.
	sub, _, err := s.get(ctx, sub.ID)
	if err != nil {
		return err
	}
	every, err := s.scheduledEvery(ctx, sub.ID)
	if err != nil {
		return err
	}
	if !live(sub.Status) {
		if every != "" {
			err = s.unschedule(ctx, sub.ID)
		}
		return err
	}
	if every != "@every "+sub.Interval.String() {
		err = s.schedule(ctx, sub) // none, or at a period the plan no longer has
	}
	if err != nil {
		return err
	}
	if p := sub.Open(); p != nil && p.RetryAt != nil {
		return s.scheduleRetry(ctx, sub.ID, *p.RetryAt)
	}
	return nil
}

// live reports a status whose subscription renews: active, or past due (a period being tried
// again).
func live(status string) bool {
	return status == events.SubscriptionActive || status == events.SubscriptionPastDue
}
