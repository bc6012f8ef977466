package topology_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/jetcheckout/jetcheckout/internal/topology"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestEnsureIsIdempotentAndRepairs(t *testing.T) {
	env := natstest.Start(t) // runs Ensure once
	ctx := context.Background()
	if err := topology.Ensure(ctx, env.JS); err != nil {
		t.Fatalf("second Ensure: %v", err)
	}
	s, err := env.JS.Stream(ctx, events.StreamCheckout)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	if cfg.Storage != jetstream.FileStorage || cfg.Duplicates != topology.DuplicateWindow {
		t.Errorf("CHECKOUT stream: storage %v, duplicate window %v", cfg.Storage, cfg.Duplicates)
	}
	cfg.MaxAge, cfg.MaxMsgs = time.Hour, 5 // someone changed it by hand, or with a stolen credential
	if _, err := env.JS.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	var changed []string
	if err := topology.Ensure(ctx, env.JS, topology.OnChange(func(name, how string) { changed = append(changed, name+" "+how) })); err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxAge == time.Hour || info.Config.MaxMsgs == 5 {
		t.Errorf("Ensure left a drifted stream as it was: max age %v, max messages %d", info.Config.MaxAge, info.Config.MaxMsgs)
	}
	if len(changed) != 1 || changed[0] != events.StreamCheckout+" updated" {
		t.Errorf("changes reported: %v, want the CHECKOUT stream updated", changed)
	}
	if _, err := env.JS.KeyValue(ctx, events.BucketCheckouts); err != nil {
		t.Errorf("bucket: %v", err)
	}
	if carts, err := env.JS.KeyValue(ctx, events.BucketCarts); err != nil {
		t.Errorf("carts bucket: %v", err)
	} else if st, err := carts.Status(ctx); err != nil || st.History() != 1 || st.BackingStore() != "JetStream" {
		t.Errorf("carts bucket: %+v, %v; want history 1", st, err)
	} else if info, err := env.JS.Stream(ctx, events.StreamCarts); err != nil || info.CachedInfo().Config.Storage != jetstream.FileStorage {
		t.Errorf("carts bucket's stream: %v; want file storage", err)
	}
	for service := range events.Rebuildable {
		if _, err := env.JS.ObjectStore(ctx, events.ViewsBucket(service)); err != nil {
			t.Errorf("%s's views bucket: %v", service, err)
		}
	}
	ws, err := env.JS.Stream(ctx, events.StreamWarehouse)
	if err != nil || ws.CachedInfo().Config.Retention != jetstream.WorkQueuePolicy {
		t.Errorf("WAREHOUSE stream: %v", err)
	}
}

// The views bucket the rebuildable services once shared is deleted, with its snapshots: each
// has its own bucket now, and a snapshot is only a shortcut of a rebuild.
func TestEnsureDeletesTheSharedViewsBucket(t *testing.T) {
	env := natstest.Start(t)
	ctx := context.Background()
	old, err := env.JS.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: events.LegacyBucketViews})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.PutString(ctx, events.ServiceOrders, "an old snapshot"); err != nil {
		t.Fatal(err)
	}
	var changed []string
	if err := topology.Ensure(ctx, env.JS, topology.OnChange(func(name, how string) { changed = append(changed, name+" "+how) })); err != nil {
		t.Fatal(err)
	}
	if _, err := env.JS.ObjectStore(ctx, events.LegacyBucketViews); !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Errorf("the shared views bucket after Ensure: %v, want it gone", err)
	}
	if want := "OBJ_" + events.LegacyBucketViews + " deleted"; len(changed) != 1 || changed[0] != want {
		t.Errorf("changes reported: %v, want %q", changed, want)
	}
	if missing, err := topology.Missing(ctx, env.JS); err != nil || len(missing) != 0 {
		t.Errorf("missing after Ensure: %v (%v)", missing, err)
	}
}

// TestEnsureAllowsKeyTTLs: a checkouts bucket made before per-key TTLs (the coordinator
// writes an ended checkout with one) is updated to allow them, and keeps its keys.
func TestEnsureAllowsKeyTTLs(t *testing.T) {
	env := natstest.Start(t)
	ctx := context.Background()
	if err := env.JS.DeleteKeyValue(ctx, events.BucketCheckouts); err != nil {
		t.Fatal(err)
	}
	kv, err := env.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: events.BucketCheckouts, History: 1, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Put(ctx, "co_before", []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	if err := topology.Ensure(ctx, env.JS); err != nil {
		t.Fatal(err)
	}
	st, err := kv.Status(ctx)
	if err != nil || st.LimitMarkerTTL() != topology.KeyMarkerTTL {
		t.Fatalf("bucket status %v (%v): want key TTLs allowed", st, err)
	}
	if _, err := kv.Get(ctx, "co_before"); err != nil {
		t.Errorf("the key written before the update: %v", err)
	}
	if _, err := kv.Create(ctx, "co_ttl", []byte(`{}`), jetstream.KeyTTL(time.Second)); err != nil {
		t.Fatalf("a key with a TTL: %v", err)
	}
	natstest.Eventually(t, 10*time.Second, func() bool {
		_, err := kv.Get(ctx, "co_ttl")
		return errors.Is(err, jetstream.ErrKeyNotFound)
	}, "the key with a 1s TTL is still there")
}

// A consumer changed behind the setup role's back (headers only, one delivery, paused) is
// put back by the next Ensure.
func TestEnsureRestoresAConsumer(t *testing.T) {
	env := natstest.Start(t)
	ctx := context.Background()
	want := jetstream.ConsumerConfig{Durable: "orders", FilterSubjects: []string{string(events.OrderRequested)},
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: 5 * time.Second, MaxDeliver: -1, DeliverPolicy: jetstream.DeliverAllPolicy}
	if err := topology.Ensure(ctx, env.JS, topology.Consumers(want)); err != nil {
		t.Fatal(err)
	}
	drifted := want
	drifted.HeadersOnly, drifted.MaxDeliver = true, 1
	if _, err := env.JS.UpdateConsumer(ctx, events.StreamCheckout, drifted); err != nil {
		t.Fatal(err)
	}
	if _, err := env.JS.PauseConsumer(ctx, events.StreamCheckout, "orders", time.Now().Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	var changed []string
	if err := topology.Ensure(ctx, env.JS, topology.Consumers(want), topology.OnChange(func(name, how string) { changed = append(changed, name+" "+how) })); err != nil {
		t.Fatal(err)
	}
	cons, err := env.JS.Consumer(ctx, events.StreamCheckout, "orders")
	if err != nil {
		t.Fatal(err)
	}
	info := cons.CachedInfo()
	if info.Config.HeadersOnly || info.Config.MaxDeliver != -1 || info.Paused || len(changed) != 1 {
		t.Errorf("after Ensure: headers only %v, max deliver %d, paused %v; changes %v", info.Config.HeadersOnly, info.Config.MaxDeliver, info.Paused, changed)
	}
	if _, err := topology.Bind(ctx, env.JS, events.StreamCheckout, want); err != nil {
		t.Errorf("bind: %v", err)
	}
	// A consumer that leaves limits to the server's defaults (the API's) is not "restored"
	// every time: the server's -1 is the unset 0.
	api := jetstream.ConsumerConfig{Durable: "api", FilterSubjects: []string{events.CheckoutSubjects}, AckPolicy: jetstream.AckAllPolicy,
		AckWait: 30 * time.Second, MaxAckPending: 1024}
	changed = nil
	for range 2 {
		if err := topology.Ensure(ctx, env.JS, topology.Consumers(api), topology.OnChange(func(name, how string) { changed = append(changed, name+" "+how) })); err != nil {
			t.Fatal(err)
		}
	}
	if len(changed) != 1 {
		t.Errorf("two Ensures of a new consumer changed %v, want it created once", changed)
	}
}

// A consumer that leaves MaxDeliver at 0 (the API's) is stored as -1, the server's word for
// the same unlimited deliveries: it was taken for a changed one, so the setup role "restored"
// it every minute and the API, which may not create consumers, could not bind to it.
func TestEnsureTakesDefaultMaxDeliverAsIs(t *testing.T) {
	env := natstest.Start(t)
	ctx := context.Background()
	want := jetstream.ConsumerConfig{Durable: "api", FilterSubjects: []string{"checkout.>"},
		AckPolicy: jetstream.AckAllPolicy, AckWait: 30 * time.Second, DeliverPolicy: jetstream.DeliverAllPolicy}
	if err := topology.Ensure(ctx, env.JS, topology.Consumers(want)); err != nil {
		t.Fatal(err)
	}
	var changed []string
	if err := topology.Ensure(ctx, env.JS, topology.Consumers(want), topology.OnChange(func(name, how string) { changed = append(changed, name+" "+how) })); err != nil {
		t.Fatal(err)
	}
	if len(changed) != 0 {
		t.Errorf("a second Ensure changed %v", changed)
	}
}

// A carts bucket made before (a KV bucket: roll-ups, purges and overwrites allowed) is
// updated in place and keeps its carts; from then on the server keeps every cart as written,
// whoever asks: no put over one, no KV delete or purge, no roll-up, no purge or message delete
// through the API. The KV client still binds to it and creates carts.
func TestEnsureKeepsCartsAsWritten(t *testing.T) {
	env := natstest.Start(t)
	ctx := context.Background()
	if err := env.JS.DeleteStream(ctx, events.StreamCarts); err != nil {
		t.Fatal(err)
	}
	old, err := env.JS.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: events.BucketCarts, History: 1, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := old.Create(ctx, "cart_before", []byte(`{"id":"cart_before"}`)); err != nil {
		t.Fatal(err)
	}
	var changed []string
	onChange := topology.OnChange(func(name, how string) { changed = append(changed, name+" "+how) })
	if err := topology.Ensure(ctx, env.JS, onChange); err != nil {
		t.Fatal(err)
	}
	if want := events.StreamCarts + " updated"; len(changed) != 1 || changed[0] != want {
		t.Errorf("changes reported: %v, want %q", changed, want)
	}
	stream, err := env.JS.Stream(ctx, events.StreamCarts)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := stream.CachedInfo().Config; cfg.AllowRollup || !cfg.DenyPurge || !cfg.DenyDelete || !cfg.DiscardNewPerSubject || cfg.MaxMsgsPerSubject != 1 {
		t.Errorf("carts stream after Ensure: roll-ups %v, deny purge %v, deny delete %v, discard new per subject %v, per subject %d",
			cfg.AllowRollup, cfg.DenyPurge, cfg.DenyDelete, cfg.DiscardNewPerSubject, cfg.MaxMsgsPerSubject)
	}
	carts, err := env.JS.KeyValue(ctx, events.BucketCarts)
	if err != nil {
		t.Fatalf("the KV client binds no more: %v", err)
	}
	if _, err := carts.Create(ctx, "cart_after", []byte(`{"id":"cart_after"}`)); err != nil {
		t.Errorf("create a cart: %v", err)
	}
	if _, err := carts.Put(ctx, "cart_before", []byte(`{"id":"cart_before","customer_id":"mallory"}`)); err == nil {
		t.Errorf("a put over a cart was taken")
	}
	if err := carts.Delete(ctx, "cart_before"); err == nil {
		t.Errorf("a KV delete of a cart was taken")
	}
	if err := carts.Purge(ctx, "cart_after"); err == nil {
		t.Errorf("a KV purge of a cart was taken")
	}
	rollup := nats.NewMsg(events.CartSubject("cart_new"))
	rollup.Header.Set(jetstream.MsgRollup, jetstream.MsgRollupAll)
	if _, err := env.JS.PublishMsg(ctx, rollup); err == nil {
		t.Errorf("a roll-up of every cart was taken")
	}
	if err := stream.Purge(ctx); err == nil {
		t.Errorf("a purge of the carts stream was taken")
	}
	if err := stream.DeleteMsg(ctx, 1); err == nil {
		t.Errorf("a delete of the first cart was taken")
	}
	for _, id := range []string{"cart_before", "cart_after"} {
		if e, err := carts.Get(ctx, id); err != nil || string(e.Value()) != `{"id":"`+id+`"}` {
			t.Errorf("%s after the attempts: %v; want it as created", id, err)
		}
	}
	changed = nil
	if err := topology.Ensure(ctx, env.JS, onChange); err != nil || len(changed) != 0 {
		t.Errorf("a second Ensure: %v, changed %v; want nothing to change", err, changed)
	}
}

// A consumer made before a service's instances took turns on it has no priority group: the
// setup role puts it on (an update, the consumer keeps its position), and then leaves it.
func TestEnsureGivesAConsumerItsPriorityGroup(t *testing.T) {
	env := natstest.Start(t)
	ctx := context.Background()
	plain := jetstream.ConsumerConfig{Durable: "orders", FilterSubjects: []string{string(events.OrderRequested)},
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: 5 * time.Second, MaxDeliver: -1, DeliverPolicy: jetstream.DeliverAllPolicy}
	if err := topology.Ensure(ctx, env.JS, topology.Consumers(plain)); err != nil {
		t.Fatal(err)
	}
	want := plain
	want.PriorityPolicy, want.PriorityGroups, want.PinnedTTL = jetstream.PriorityPolicyPinned, []string{"instances"}, 5*time.Second
	var changed []string
	for range 2 {
		if err := topology.Ensure(ctx, env.JS, topology.Consumers(want), topology.OnChange(func(name, how string) { changed = append(changed, name+" "+how) })); err != nil {
			t.Fatal(err)
		}
	}
	cons, err := env.JS.Consumer(ctx, events.StreamCheckout, "orders")
	if err != nil {
		t.Fatal(err)
	}
	cfg := cons.CachedInfo().Config
	if cfg.PriorityPolicy != jetstream.PriorityPolicyPinned || len(cfg.PriorityGroups) != 1 || cfg.PinnedTTL != want.PinnedTTL || len(changed) != 1 {
		t.Errorf("after Ensure: policy %v, groups %v, pinned TTL %v; changes %v (want one update)", cfg.PriorityPolicy, cfg.PriorityGroups, cfg.PinnedTTL, changed)
	}
}
