package topology

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/nats-io/nats.go/jetstream"
)

// DefaultAckWait is a step consumer's AckWait: a few seconds, far below every step's deadline,
// so a trigger held by a process that died is handled again in time. The runner's heartbeats
// keep a message held longer (a slow handler, or a lane's queue) from coming back meanwhile.
const DefaultAckWait = 5 * time.Second

// StepConsumer is the durable consumer of the service name (a step, or the coordinator) on
// the subjects it routes: the setup role creates it (Consumers), and the service's runner
// binds to it (Bind), creating it only where its NATS user may (a server without
// authorization).
func StepConsumer(name string, subjects []string, ackWait time.Duration) jetstream.ConsumerConfig {
	return jetstream.ConsumerConfig{
		Durable:        name,
		Description:    "checkout step runner " + name,
		FilterSubjects: slices.Sorted(slices.Values(subjects)),
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        ackWait,
		MaxDeliver:     -1, // the runner decides when to give up, and on what
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	}
}

// PriorityGroup is the priority group of a rebuildable service's consumer, through which its
// instances take turns: one holds the pin and gets the messages.
const PriorityGroup = "instances"

// DefaultPinnedTTL is how long a pinned instance may go without pulling before the server
// pins another: a few seconds, as AckWait, after which its held messages come back anyway.
const DefaultPinnedTTL = 5 * time.Second

// LogHoldingPin is what an instance logs when it holds its consumer's pin and its view is
// caught up (with "replayed", "delivered" and "took"): it handles the pin's first message next.
// The cluster chaos harness times takeovers by it.
const LogHoldingPin = "holding the consumer's pin: view caught up, handling messages"

// Pinned is cfg with the priority group that lets instances take turns on it.
func Pinned(cfg jetstream.ConsumerConfig, ttl time.Duration) jetstream.ConsumerConfig {
	cfg.PriorityPolicy = jetstream.PriorityPolicyPinned
	cfg.PriorityGroups = []string{PriorityGroup}
	cfg.PinnedTTL = ttl
	return cfg
}

// Consumers has Ensure create or fix these durable consumers on CHECKOUT, and Await wait for
// them. A consumer's filter decides what its reader sees, customers' addresses among it, so
// the setup role makes them; a service's or the API's NATS user may only bind to its own,
// fetch and ack (Bind).
func Consumers(cfgs ...jetstream.ConsumerConfig) Option {
	return func(o *options) { o.consumers = append(o.consumers, cfgs...) }
}

// Bind returns the durable consumer want.Durable on stream as it is when it has want's
// filter, ack policy and ack wait (the setup role made it so), and otherwise creates or
// updates it, which succeeds only where the user may (a server without authorization).
func Bind(ctx context.Context, js jetstream.JetStream, stream string, want jetstream.ConsumerConfig) (jetstream.Consumer, error) {
	cons, err := js.Consumer(ctx, stream, want.Durable)
	if err == nil && bindable(cons.CachedInfo().Config, want) {
		return cons, nil
	}
	if err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, err
	}
	cons, err = js.CreateOrUpdateConsumer(ctx, stream, want)
	if err != nil {
		return nil, fmt.Errorf("consumer %s is missing or not as the setup role makes it, and making it failed (`jetcheckout setup` makes it; a change it cannot undo needs the consumer deleted by the operator): %w", want.Durable, err)
	}
	return cons, nil
}

// bindable reports whether a consumer as the setup role left it serves a process that wants
// want: as Ensure makes it, but for its filter, which may hold more subjects (a newer setup
// role's, during a rolling upgrade: what this release cannot read it leaves for an upgraded
// instance) and may lack the subjects this process does not write yet (held back at an older
// schema version, nothing publishes them until every instance, the setup role last, is
// upgraded).
func bindable(have, want jetstream.ConsumerConfig) bool {
	need := slices.DeleteFunc(wantedFilters(want), func(s string) bool {
		return !events.ExistsAt(events.Subject(s), events.WriteVersion())
	})
	haveFilters := wantedFilters(have)
	if !slices.ContainsFunc(need, func(s string) bool { return !slices.Contains(haveFilters, s) }) {
		want.FilterSubjects, want.FilterSubject = have.FilterSubjects, have.FilterSubject
	}
	return sameConsumer(have, want)
}

// wantedFilters are a consumer's filter subjects, sorted.
func wantedFilters(c jetstream.ConsumerConfig) []string {
	f := slices.Clone(c.FilterSubjects)
	if c.FilterSubject != "" {
		f = append(f, c.FilterSubject)
	}
	slices.Sort(f)
	return f
}

// sameConsumer compares what Bind and Ensure set of a consumer.
func sameConsumer(have, want jetstream.ConsumerConfig) bool {
	paused := func(c jetstream.ConsumerConfig) bool { return c.PauseUntil != nil && !c.PauseUntil.IsZero() }
	return slices.Equal(wantedFilters(have), wantedFilters(want)) && have.AckPolicy == want.AckPolicy && have.AckWait == want.AckWait &&
		have.DeliverPolicy == want.DeliverPolicy && (want.MaxAckPending == 0 || have.MaxAckPending == want.MaxAckPending) &&
		unlimited(int64(have.MaxDeliver)) == unlimited(int64(want.MaxDeliver)) && have.HeadersOnly == want.HeadersOnly && slices.Equal(have.BackOff, want.BackOff) &&
		have.DeliverSubject == want.DeliverSubject && paused(have) == paused(want) &&
		have.PriorityPolicy == want.PriorityPolicy && slices.Equal(have.PriorityGroups, want.PriorityGroups) && have.PinnedTTL == want.PinnedTTL
}

// ensureConsumers creates each consumer missing on CHECKOUT, and puts back one whose
// filter or acks were changed.
func ensureConsumers(ctx context.Context, js jetstream.JetStream, o options) error {
	for _, want := range o.consumers {
		cons, err := js.Consumer(ctx, events.StreamCheckout, want.Durable)
		switch {
		case errors.Is(err, jetstream.ErrConsumerNotFound):
			_, err = js.CreateConsumer(ctx, events.StreamCheckout, want)
			err = report(err, o.changed, "consumer "+want.Durable, "created")
		case err == nil && !sameConsumer(cons.CachedInfo().Config, want):
			if paused := cons.CachedInfo().Config.PauseUntil; paused != nil && !paused.IsZero() {
				if _, err = js.ResumeConsumer(ctx, events.StreamCheckout, want.Durable); err != nil {
					break
				}
			}
			if _, err = js.UpdateConsumer(ctx, events.StreamCheckout, want); err != nil {
				err = fmt.Errorf("it differs from what it must be in what an update cannot change: the operator must delete it (%w)", err)
			}
			err = report(err, o.changed, "consumer "+want.Durable, "updated")
		}
		if err != nil {
			return fmt.Errorf("consumer %s: %w", want.Durable, err)
		}
	}
	return nil
}

// missingConsumers lists the consumers of o that do not exist on CHECKOUT yet.
func missingConsumers(ctx context.Context, js jetstream.JetStream, o options) ([]string, error) {
	var missing []string
	for _, want := range o.consumers {
		_, err := js.Consumer(ctx, events.StreamCheckout, want.Durable)
		switch {
		case errors.Is(err, jetstream.ErrConsumerNotFound):
			missing = append(missing, "consumer "+want.Durable)
		case err != nil:
			return nil, fmt.Errorf("consumer %s: %w", want.Durable, err)
		}
	}
	return missing, nil
}
