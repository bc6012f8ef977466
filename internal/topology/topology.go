// Package topology creates the JetStream streams and buckets that events/ names. The setup
// role (`jetcheckout setup`, or the embedded server's one process) calls Ensure; the services
// and the HTTP API, whose NATS users may not create or change a stream, call Await, which
// waits for it. Both are idempotent, so start order does not matter.
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
	replicas int
	changed  func(name, how string)
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

// Ensure creates or updates the CHECKOUT, WAREHOUSE and DEADLETTER streams, the
// checkouts bucket and the views bucket (snapshots).
func Ensure(ctx context.Context, js jetstream.JetStream, opts ...Option) error {
	o := options{replicas: 1}
	for _, opt := range opts {
		opt(&o)
	}
	streams := []jetstream.StreamConfig{{
		Name:        events.StreamCheckout,
		Description: "Every checkout event: requests, step outcomes, compensations, terminal events.",
		Subjects:    []string{events.CheckoutSubjects},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Duplicates:  DuplicateWindow,
		MaxMsgSize:  MaxEventSize,
		MaxAge:      events.CheckoutRetention,
		AllowDirect: true, // `nats stream view` and direct gets read without a consumer
		// Deadlines, payment re-checks and reservation expiries are messages the server
		// publishes at their time: durable timers that survive any restart.
		AllowMsgSchedules: true,
		Replicas:          o.replicas,
	}, {
		Name:        events.StreamWarehouse,
		Description: "Pick requests for the warehouse, removed once a picker acknowledges them.",
		Subjects:    []string{events.WarehouseSubjects},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.WorkQueuePolicy,
		Duplicates:  DuplicateWindow,
		MaxMsgSize:  MaxEventSize,
		AllowDirect: true, // a work queue can be paged only with direct access
		Replicas:    o.replicas,
	}, {
		Name:        events.StreamDeadLetter,
		Description: "Every message a service gave up on, as it came, with its subject, sequence, attempts and the reason.",
		Subjects:    []string{events.DeadLetterSubjects},
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Duplicates:  DuplicateWindow,
		MaxAge:      90 * 24 * time.Hour,
		AllowDirect: true,
		Replicas:    o.replicas,
	}}
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
	if err := ensureObjectStore(ctx, js, o.changed, jetstream.ObjectStoreConfig{
		Bucket:      events.BucketViews,
		Description: "Snapshots of the rebuildable services' views: one object per service, replaced at each snapshot.",
		Storage:     jetstream.FileStorage,
		Replicas:    o.replicas,
	}); err != nil {
		return fmt.Errorf("ensure bucket %s: %w", events.BucketViews, err)
	}
	return nil
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

// Names are the streams Ensure makes, the bucket's among them.
var Names = []string{events.StreamCheckout, events.StreamWarehouse, events.StreamDeadLetter, "KV_" + events.BucketCheckouts, "OBJ_" + events.BucketViews}

// Await returns once every stream and the bucket exist, as they are: a process whose NATS
// user may not create or change them runs on what the setup role made. When one is missing it
// tries Ensure, which succeeds where the user may (a server without authorization), and
// otherwise waits for `jetcheckout setup`, telling waiting why.
func Await(ctx context.Context, js jetstream.JetStream, waiting func(error), opts ...Option) error {
	for {
		missing, err := Missing(ctx, js)
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

// Missing lists the streams (the bucket's too) that do not exist yet.
func Missing(ctx context.Context, js jetstream.JetStream) ([]string, error) {
	var missing []string
	for _, name := range Names {
		_, err := js.Stream(ctx, name)
		switch {
		case errors.Is(err, jetstream.ErrStreamNotFound):
			missing = append(missing, name)
		case err != nil:
			return nil, fmt.Errorf("stream %s: %w", name, err)
		}
	}
	return missing, nil
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
		unlimited(have.MaxMsgsPerSubject) == unlimited(want.MaxMsgsPerSubject) && have.Discard == want.Discard &&
		have.Replicas >= want.Replicas {
		return nil
	}
	// Replicas only grow: a process started without the cluster's setting (1 by default)
	// must not shrink what the others made 3.
	want.Replicas = max(want.Replicas, have.Replicas)
	_, err = js.UpdateStream(ctx, want)
	return report(err, changed, want.Name, "updated")
}
