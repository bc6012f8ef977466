// Package topology creates the JetStream streams, buckets and consumers that events/ names.
// The setup role (`jetcheckout setup`, or the embedded server's one process) calls Ensure; the
// services and the HTTP API, whose NATS users may not create or change a stream, call Await,
// which waits for it. Both are idempotent, so start order does not matter.
package topology

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/nats-io/nats.go/jetstream"
)

// DuplicateWindow is how long the stream drops a republished event by its Nats-Msg-Id.
// It is the first line of defence only: consumers dedupe by event ID themselves.
const DuplicateWindow = 2 * time.Minute

// KeyMarkerTTL is how long the checkouts bucket keeps the marker of a key the server removed
// when its TTL ran out (a watcher sees the removal; then the marker goes too).
const KeyMarkerTTL = time.Minute

// MaxEventSize bounds one event; a larger publish is refused by the server.
const MaxEventSize = 1 << 20

// Option changes what Ensure creates.
type Option func(*options)

type options struct {
	replicas  int
	changed   func(name, how string)
	consumers []jetstream.ConsumerConfig
}

// OnChange tells changed each stream or bucket Ensure creates or updates ("created",
// "updated"): the setup role logs them, so a stream edited behind its back shows up as
// restored.
func OnChange(changed func(name, how string)) Option {
	return func(o *options) { o.changed = changed }
}

// Replicas sets how many copies of every stream and bucket a JetStream cluster keeps: 1 on
// a single server; 3 in a three-node cluster, so losing one node loses no acknowledged
// event (an ack then means a majority has it) at the price of a network round trip per
// write. Consumers follow their stream.
func Replicas(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.replicas = n
		}
	}
}

// Ensure creates or updates the timer streams, the CHECKOUT, WAREHOUSE, STOCK, DEADLETTER
// and carts bucket's streams, the checkouts bucket, each rebuildable service's views bucket
// (its snapshots), and the consumers of opts; and deletes the views bucket they once shared.
func Ensure(ctx context.Context, js jetstream.JetStream, opts ...Option) error {
	o := options{replicas: 1}
	for _, opt := range opts {
		opt(&o)
	}
	var streams []jetstream.StreamConfig
	for _, producer := range events.Timekeepers() {
		streams = append(streams, timerStream(producer, o.replicas))
	}
	if migrating, err := migrating(ctx, js); err != nil || migrating {
		return cmp.Or(err, ErrNeedsMigration)
	}
	streams = append(streams, checkoutStream(o.replicas), jetstream.StreamConfig{
		Name:        events.StreamWarehouse,
		Description: "Pick requests for the warehouse, removed once a picker acknowledges them.",
		Subjects:    []string{events.WarehouseSubjects},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.WorkQueuePolicy,
		Duplicates:  DuplicateWindow,
		MaxMsgSize:  MaxEventSize,
		AllowDirect: true, // a work queue can be paged only with direct access
		Replicas:    o.replicas,
	}, stockStream(o.replicas), cartsStream(o.replicas), subscriptionsStream(o.replicas), jetstream.StreamConfig{
		Name:        events.StreamDeadLetter,
		Description: "Every message a service gave up on, as it came, with its subject, sequence, attempts and the reason.",
		Subjects:    []string{events.DeadLetterSubjects},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Duplicates:  DuplicateWindow,
		MaxAge:      90 * 24 * time.Hour,
		AllowDirect: true,
		Replicas:    o.replicas,
	})
	for _, cfg := range streams {
		if err := ensureStream(ctx, js, cfg, o.changed); err != nil {
			return fmt.Errorf("ensure stream %s: %w", cfg.Name, err)
		}
	}
	if err := ensureBucket(ctx, js, o.changed, jetstream.KeyValueConfig{
		Bucket:      events.BucketCheckouts,
		Description: "The coordinator's per-checkout state, changed only by compare-and-swap.",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    o.replicas,
		// Per-key TTLs: the coordinator writes an ended checkout with one, so its key goes
		// after the retention. The marker the server leaves when it removes one lasts a minute.
		LimitMarkerTTL: KeyMarkerTTL,
	}); err != nil {
		return fmt.Errorf("ensure bucket %s: %w", events.BucketCheckouts, err)
	}
	if err := ensureBucket(ctx, js, o.changed, jetstream.KeyValueConfig{
		Bucket:      events.BucketSubscriptions,
		Description: "Subscriptions: one key per subscription, its plan, status and periods, changed only by compare-and-swap.",
		History:     1,
		Storage:     jetstream.FileStorage,
		Replicas:    o.replicas,
	}); err != nil {
		return fmt.Errorf("ensure bucket %s: %w", events.BucketSubscriptions, err)
	}
	for stream, c := range SubscriptionConsumers() {
		if _, err := js.CreateOrUpdateConsumer(ctx, stream, c); err != nil {
			return fmt.Errorf("ensure consumer %s on %s: %w", c.Durable, stream, err)
		}
	}
	for _, service := range snapshotted() {
		if err := ensureObjectStore(ctx, js, o.changed, jetstream.ObjectStoreConfig{
			Bucket:      events.ViewsBucket(service),
			Description: "Snapshots of the " + service + " service's view: one object, replaced at each snapshot.",
			Storage:     jetstream.FileStorage,
			Replicas:    o.replicas,
		}); err != nil {
			return fmt.Errorf("ensure bucket %s: %w", events.ViewsBucket(service), err)
		}
	}
	if err := deleteLegacyViews(ctx, js, o.changed); err != nil {
		return err
	}
	return ensureConsumers(ctx, js, o)
}

// deleteLegacyViews deletes the bucket the rebuildable services once shared for their
// snapshots: every one of them could read and purge it all. Nothing in it is needed: a
// service with no snapshot in its own bucket replays the stream from its start.
func deleteLegacyViews(ctx context.Context, js jetstream.JetStream, changed func(name, how string)) error {
	err := js.DeleteObjectStore(ctx, events.LegacyBucketViews)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("delete the old bucket %s: %w", events.LegacyBucketViews, err)
	}
	return report(nil, changed, "OBJ_"+events.LegacyBucketViews, "deleted")
}

// snapshotted are the services that have a views bucket, in events.Services' order.
func snapshotted() []string {
	var names []string
	for _, service := range events.Services {
		if events.Rebuildable[service] {
			names = append(names, service)
		}
	}
	return names
}

// ensureObjectStore creates an Object Store bucket, or gives it more replicas (see
// ensureStream).
func ensureObjectStore(ctx context.Context, js jetstream.JetStream, changed func(name, how string), want jetstream.ObjectStoreConfig) error {
	obs, err := js.ObjectStore(ctx, want.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		_, err = js.CreateObjectStore(ctx, want)
		if errors.Is(err, jetstream.ErrBucketExists) || errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return nil // another process created it a moment ago
		}
		return report(err, changed, "OBJ_"+want.Bucket, "created")
	}
	if err != nil {
		return err
	}
	st, err := obs.Status(ctx)
	if err != nil {
		return err
	}
	if st.Replicas() >= want.Replicas && st.Description() == want.Description {
		return nil
	}
	want.Replicas = max(want.Replicas, st.Replicas())
	_, err = js.UpdateObjectStore(ctx, want)
	return report(err, changed, "OBJ_"+want.Bucket, "updated")
}

// checkoutStream is CHECKOUT's configuration.
func checkoutStream(replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        events.StreamCheckout,
		Description: "Every checkout event: requests, step outcomes, compensations, terminal events.",
		Subjects:    []string{events.CheckoutSubjects},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Duplicates:  DuplicateWindow,
		MaxMsgSize:  MaxEventSize,
		MaxAge:      events.CheckoutRetention,
		AllowDirect: true, // `nats stream view` and direct gets read without a consumer
		// Every service publishes here, so nothing a publish can carry may remove history: no
		// roll-ups (so no message schedules: they live in the timer streams sourced below),
		// no purge, no message delete. Only age removes an event.
		DenyDelete: true,
		DenyPurge:  true,
		Sources:    timerSources(),
		Replicas:   replicas,
	}
}

// stockStream is STOCK's configuration (see writeOnce).
func stockStream(replicas int) jetstream.StreamConfig {
	return writeOnce(events.StreamStock, "The inventory's facts that are not checkout events: the initial stock, recorded once at its first start.",
		events.StockSubjects, replicas)
}

// cartsStream is the carts bucket's stream (see writeOnce): the server refuses a put over a
// cart and a KV delete marker after one as a second message on its subject, a KV purge or a
// "Nats-Rollup: all" (which would empty the bucket) as a roll-up. The KV client still binds
// to it (one message per subject is a bucket of history 1). A bucket made before, a plain KV
// bucket, is updated in place: the server lets an update deny what it allowed.
func cartsStream(replicas int) jetstream.StreamConfig {
	cfg := writeOnce(events.StreamCarts, "The catalog's carts as carts.create made them, signed by the catalog: one message per cart, written once ever.",
		events.CartsSubjects, replicas)
	cfg.AllowDirect = true // a cart is read in one direct get
	return cfg
}

// writeOnce is the configuration of a stream where what is written is written once ever:
// the server refuses a second message on a subject, and nobody may delete or purge one (so
// no roll-ups either); kept as long as the shop runs.
func writeOnce(name, description, subjects string, replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:                 name,
		Description:          description,
		Subjects:             []string{subjects},
		Storage:              jetstream.FileStorage,
		Retention:            jetstream.LimitsPolicy,
		Duplicates:           DuplicateWindow,
		MaxMsgsPerSubject:    1,
		Discard:              jetstream.DiscardNew,
		DiscardNewPerSubject: true,
		DenyDelete:           true,
		DenyPurge:            true,
		Replicas:             replicas,
	}
}

// Names are the streams Ensure makes, the buckets' among them.
var Names = append(append(required(), events.StreamSubscriptions, "KV_"+events.BucketSubscriptions), viewsStreams()...)

// required are the streams every process waits for (Await, Missing). The subscriptions'
// are not among them: in a rolling upgrade from a release without them the setup role is
// replaced last, so they come after this release's processes start, and only the
// subscriptions wait for them (services/subscriptions).
func required() []string {
	return append(timerStreams(), events.StreamCheckout, events.StreamWarehouse, events.StreamStock, events.StreamDeadLetter, "KV_"+events.BucketCheckouts, events.StreamCarts)
}

// viewsStreams are the streams of the views buckets.
func viewsStreams() []string {
	var names []string
	for _, service := range snapshotted() {
		names = append(names, "OBJ_"+events.ViewsBucket(service))
	}
	return names
}

func timerStreams() []string {
	var names []string
	for _, producer := range events.Timekeepers() {
		names = append(names, events.TimerStream(producer))
	}
	return names
}

// timerStream holds producer's scheduled events until they are due, and then the events
// the server fired, until CHECKOUT has taken them (it keeps them as long as CHECKOUT keeps
// events, so a CHECKOUT that lags, or is rebuilt from its sources, finds them).
func timerStream(producer string, replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        events.TimerStream(producer),
		Description: "The scheduled events of " + producer + ": each waits in its slot until the server fires it, and CHECKOUT takes it.",
		Subjects:    []string{events.TimerSubjects(producer)},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Duplicates:  DuplicateWindow,
		// Room for the header the source adds when CHECKOUT takes a fired event: one that did
		// not fit would stop the source at it, and every timer of the producer after it.
		MaxMsgSize:  MaxEventSize - 4096,
		MaxAge:      events.CheckoutRetention,
		AllowDirect: true,
		// Schedules force roll-ups on: only producer may publish here (internal/app's NATS
		// permissions), so only its own timers are its to remove.
		AllowMsgSchedules: true,
		Replicas:          replicas,
	}
}

// subscriptionsStream holds each active subscription's renewal schedule (kept for ever: a
// schedule is the subscription's clock) and the renewals the server fires from it, each
// expiring with the checkouts' retention (the schedule's TTL).
func subscriptionsStream(replicas int) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:              events.StreamSubscriptions,
		Description:       "Subscriptions' renewal schedules (@every one period) and the renewals they fire.",
		Subjects:          events.SubscriptionsSubjects,
		Storage:           jetstream.FileStorage,
		Retention:         jetstream.LimitsPolicy,
		Duplicates:        DuplicateWindow,
		MaxMsgSize:        MaxEventSize,
		AllowDirect:       true,
		AllowMsgSchedules: true,
		AllowMsgTTL:       true,
		Replicas:          replicas,
	}
}

// SubscriptionConsumers are the subscriptions' durable consumers, by stream, both named after
// the service: the renewals the server fires, and the ends of renewal checkouts (from when
// the consumer was made: no renewal ended before subscriptions existed).
func SubscriptionConsumers() map[string]jetstream.ConsumerConfig {
	return map[string]jetstream.ConsumerConfig{
		events.StreamSubscriptions: {Durable: events.ServiceSubscriptions, Description: "renewals fired by the subscriptions' schedules",
			FilterSubject: events.SubscriptionsDue, AckPolicy: jetstream.AckExplicitPolicy, AckWait: DefaultAckWait,
			MaxDeliver: -1, DeliverPolicy: jetstream.DeliverAllPolicy},
		events.StreamCheckout: {Durable: events.ServiceSubscriptions, Description: "the ends of subscriptions' renewal checkouts",
			FilterSubjects: []string{string(events.Completed), string(events.Failed)}, AckPolicy: jetstream.AckExplicitPolicy,
			AckWait: DefaultAckWait, MaxDeliver: -1, DeliverPolicy: jetstream.DeliverNewPolicy},
	}
}

// timerSources are CHECKOUT's sources: from each timer stream, one per event its producer
// schedules, taking exactly that event's fire subject, back on the event's subject. One
// source per event, because the server keeps a source's position under a name made of its
// stream and transforms: a timer added to a producer later must not rename, and so restart
// from the stream's start, the sources that were there.
func timerSources() []*jetstream.StreamSource {
	var sources []*jetstream.StreamSource
	for _, producer := range events.Timekeepers() {
		for _, typ := range slices.Sorted(slices.Values(events.Timed()[producer])) {
			sources = append(sources, &jetstream.StreamSource{Name: events.TimerStream(producer),
				SubjectTransforms: []jetstream.SubjectTransformConfig{{Source: events.FireSubject(producer, typ), Destination: string(typ)}}})
		}
	}
	return sources
}

// sameSources compares what Ensure sets of a stream's sources.
func sameSources(have, want []*jetstream.StreamSource) bool {
	return slices.EqualFunc(have, want, func(a, b *jetstream.StreamSource) bool {
		return a.Name == b.Name && a.FilterSubject == b.FilterSubject && slices.Equal(a.SubjectTransforms, b.SubjectTransforms)
	})
}

// Await returns once every stream and the bucket exist, as they are: a process whose NATS
// user may not create or change them runs on what the setup role made. When one is missing it
// tries Ensure, which succeeds where the user may (a server without authorization), and
// otherwise waits for `jetcheckout setup`, telling waiting why.
func Await(ctx context.Context, js jetstream.JetStream, waiting func(error), opts ...Option) error {
	for {
		missing, err := Missing(ctx, js, opts...)
		if err == nil && len(missing) == 0 {
			return nil
		}
		if err == nil {
			attempt, cancel := context.WithTimeout(ctx, 5*time.Second)
			err = Ensure(attempt, js, opts...)
			cancel()
			if err == nil {
				return nil
			}
			err = fmt.Errorf("waiting for the setup role (`jetcheckout setup`) to create %v: %w", missing, err)
		}
		if waiting != nil {
			waiting(err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (%w)", ctx.Err(), err)
		case <-time.After(time.Second):
		}
	}
}

// Missing lists the streams (the buckets' too) that do not exist yet, or not as they must
// be: a CHECKOUT still to be migrated, or being migrated, is missing; and then the consumers
// of opts (Consumers) that do not exist yet.
func Missing(ctx context.Context, js jetstream.JetStream, opts ...Option) ([]string, error) {
	o := options{}
	for _, opt := range opts {
		opt(&o)
	}
	var missing []string
	for _, name := range append(required(), viewsStreams()...) {
		s, err := js.Stream(ctx, name)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			missing = append(missing, name)
		case err != nil:
			return nil, fmt.Errorf("stream %s: %w", name, err)
		case name == events.StreamCheckout && legacy(&s.CachedInfo().Config):
			missing = append(missing, name+" (to be migrated: `jetcheckout setup -migrate` as the operator)")
		}
	}
	if _, err := js.Stream(ctx, MigrationStream); err == nil {
		missing = append(missing, events.StreamCheckout+" (being migrated)")
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("stream %s: %w", MigrationStream, err)
	}
	if len(missing) > 0 {
		return missing, nil
	}
	return missingConsumers(ctx, js, o)
}

// migrating reports a CHECKOUT that Migrate has still to make anew or is making anew: nothing
// may create it, nor consume it, meanwhile.
func migrating(ctx context.Context, js jetstream.JetStream) (bool, error) {
	old, err := streamConfig(ctx, js, events.StreamCheckout)
	if err != nil || legacy(old) {
		return legacy(old), err
	}
	kept, err := streamConfig(ctx, js, MigrationStream)
	return kept != nil, err
}

// legacy reports a CHECKOUT that Migrate has still to make anew: one that allows message
// schedules, or the mirror it is made from.
func legacy(checkout *jetstream.StreamConfig) bool {
	return checkout != nil && (checkout.AllowMsgSchedules || checkout.Mirror != nil)
}

// ensureBucket creates a bucket, or updates one whose replica count differs (a stack that
// grew from one server to a cluster) or that predates per-key TTLs.
func ensureBucket(ctx context.Context, js jetstream.JetStream, changed func(name, how string), want jetstream.KeyValueConfig) error {
	kv, err := js.KeyValue(ctx, want.Bucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		_, err = js.CreateKeyValue(ctx, want)
		if errors.Is(err, jetstream.ErrBucketExists) {
			return nil // another process created it a moment ago
		}
		return report(err, changed, "KV_"+want.Bucket, "created")
	}
	if err != nil {
		return err
	}
	st, err := kv.Status(ctx)
	if err != nil {
		return err
	}
	have := st.Config()
	if have.Replicas >= want.Replicas && have.LimitMarkerTTL == want.LimitMarkerTTL && have.History == want.History &&
		unlimited(have.MaxBytes) == unlimited(want.MaxBytes) && unlimited(int64(have.MaxValueSize)) == unlimited(int64(want.MaxValueSize)) {
		return nil
	}
	want.Replicas = max(want.Replicas, have.Replicas) // never fewer: see ensureStream
	_, err = js.UpdateKeyValue(ctx, want)
	return report(err, changed, "KV_"+want.Bucket, "updated")
}

// unlimited maps the server's "no limit" (-1) and an unset limit (0) to one value.
func unlimited(limit int64) int64 { return max(limit, 0) }

// report tells changed about a change that succeeded.
func report(err error, changed func(name, how string), name, how string) error {
	if err == nil && changed != nil {
		changed(name, how)
	}
	return err
}

// ensureStream creates a stream, or updates it only when what we set differs: every process
// calls Ensure at start, and a needless update while others create consumers is churn the
// server does not need.
func ensureStream(ctx context.Context, js jetstream.JetStream, want jetstream.StreamConfig, changed func(name, how string)) error {
	s, err := js.Stream(ctx, want.Name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		_, err = js.CreateStream(ctx, want)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			return nil // another process created it a moment ago
		}
		return report(err, changed, want.Name, "created")
	}
	if err != nil {
		return err
	}
	have := s.CachedInfo().Config
	if slices.Equal(have.Subjects, want.Subjects) && have.Description == want.Description &&
		have.Storage == want.Storage && have.Retention == want.Retention && have.Duplicates == want.Duplicates &&
		unlimited(int64(have.MaxMsgSize)) == unlimited(int64(want.MaxMsgSize)) && have.MaxAge == want.MaxAge && have.AllowDirect == want.AllowDirect && have.AllowMsgSchedules == want.AllowMsgSchedules &&
		unlimited(have.MaxMsgs) == unlimited(want.MaxMsgs) && unlimited(have.MaxBytes) == unlimited(want.MaxBytes) &&
		unlimited(have.MaxMsgsPerSubject) == unlimited(want.MaxMsgsPerSubject) && have.Discard == want.Discard && have.DiscardNewPerSubject == want.DiscardNewPerSubject &&
		have.DenyDelete == want.DenyDelete && have.DenyPurge == want.DenyPurge && sameSources(have.Sources, want.Sources) &&
		have.Replicas >= want.Replicas {
		return nil
	}
	// Replicas only grow: a process started without the cluster's setting (1 by default)
	// must not shrink what the others made 3.
	want.Replicas = max(want.Replicas, have.Replicas)
	_, err = js.UpdateStream(ctx, want)
	return report(err, changed, want.Name, "updated")
}
