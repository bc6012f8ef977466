package topology_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/jetcheckout/jetcheckout/internal/topology"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// legacyShop is a CHECKOUT as it was before the timer streams: it allows message schedules
// (and so roll-ups), holds events, a consumer part way through them, and pending schedules.
type legacyShop struct {
	keys     *events.Keys
	history  map[uint64]string // by sequence: subject and data
	lastSeq  uint64
	ackFloor uint64
}

func makeLegacyShop(t *testing.T, js jetstream.JetStream) *legacyShop {
	t.Helper()
	ctx := context.Background()
	if err := js.DeleteStream(ctx, events.StreamCheckout); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: events.StreamCheckout, Subjects: []string{events.CheckoutSubjects}, Storage: jetstream.FileStorage,
		Duplicates: topology.DuplicateWindow, MaxAge: events.CheckoutRetention, AllowDirect: true, AllowMsgSchedules: true,
	}); err != nil {
		t.Fatal(err)
	}
	seeds := map[string]string{}
	var public []string
	for _, s := range []string{events.ServiceInventory, events.ServiceCoordinator, events.ServiceCatalog} {
		seed, pub, err := events.GenerateSeed()
		if err != nil {
			t.Fatal(err)
		}
		seeds[s], public = seed, append(public, s+"="+pub)
	}
	keys, err := events.NewKeys(public, seeds)
	if err != nil {
		t.Fatal(err)
	}
	shop := &legacyShop{keys: keys, history: map[uint64]string{}}
	publish := func(service string, e events.Envelope, schedule bool) {
		t.Helper()
		data, err := e.Encode()
		if err != nil {
			t.Fatal(err)
		}
		h, err := keys.Header(service, e.Type, data)
		if err != nil {
			t.Fatal(err)
		}
		msg := &nats.Msg{Subject: string(e.Type), Data: data, Header: h}
		var opts []jetstream.PublishOpt
		if schedule {
			msg.Subject = string(events.LegacySchedules) + "." + e.CheckoutID + "." + e.Schedule.Key
			opts = append(opts, jetstream.WithScheduleAt(e.Schedule.At), jetstream.WithScheduleTarget(string(e.Type)))
		}
		ack, err := js.PublishMsg(ctx, msg, opts...)
		if err != nil {
			t.Fatal(err)
		}
		shop.history[ack.Sequence], shop.lastSeq = msg.Subject+" "+string(data), ack.Sequence
	}
	for i := range 10 {
		e := events.Must(fmt.Sprintf("co_%d", i), events.CartValidated, events.Quote{})
		e.Time = time.Now().UTC()
		publish(events.ServiceCatalog, e, false)
	}
	expire := events.Must("co_3", events.InventoryExpire, events.Expiry{})
	expire.Time = time.Now().UTC()
	expire.Schedule = &events.Schedule{At: time.Now().Add(4 * time.Second).Truncate(time.Second), Key: "inventory.expire"}
	publish(events.ServiceInventory, expire, true)
	deadline := events.Must("co_4", events.Deadline, events.DeadlineReached{Step: events.StepProcessPayment})
	deadline.Time = time.Now().UTC()
	deadline.Schedule = &events.Schedule{At: time.Now().Add(time.Hour).Truncate(time.Second), Key: "deadline.process_payment.1"}
	publish(events.ServiceCoordinator, deadline, true)

	// A service's consumer has handled the first four events.
	cons, err := js.CreateConsumer(ctx, events.StreamCheckout, jetstream.ConsumerConfig{
		Durable: events.ServiceInventory, FilterSubjects: []string{string(events.CartValidated)}, AckPolicy: jetstream.AckExplicitPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	batch, err := cons.Fetch(4)
	if err != nil {
		t.Fatal(err)
	}
	for m := range batch.Messages() {
		if err := m.DoubleAck(ctx); err != nil {
			t.Fatal(err)
		}
	}
	shop.ackFloor = 4
	return shop
}

// The steps Migrate tells, in order: a migration stopped before each goes on when run again.
var migrationSteps = []string{
	"sealing CHECKOUT and copying it, sequence for sequence",
	"deleting the old CHECKOUT",
	"making CHECKOUT again from the copy",
	"putting the consumers back at their positions",
	"moving the pending schedules into the timer streams",
	"promoting CHECKOUT to a stream of its own",
	"removing the copy",
}

func TestMigrateKeepsHistoryConsumersAndSchedules(t *testing.T) {
	for _, stopAt := range append([]string{""}, migrationSteps...) {
		name := "straight through"
		if stopAt != "" {
			name = "stopped before " + stopAt
		}
		t.Run(name, func(t *testing.T) {
			env := natstest.Start(t)
			shop := makeLegacyShop(t, env.JS)
			if err := topology.Ensure(context.Background(), env.JS); !errors.Is(err, topology.ErrNeedsMigration) {
				t.Errorf("Ensure on a CHECKOUT that allows schedules: %v, want ErrNeedsMigration", err)
			}
			if missing, err := topology.Missing(context.Background(), env.JS); err != nil || len(missing) != 1 {
				t.Errorf("missing before the migration: %v, %v; want CHECKOUT", missing, err)
			}
			var told []string
			if stopAt != "" {
				ctx, stop := context.WithCancel(context.Background())
				_, err := topology.Migrate(ctx, env.JS, func(step string) {
					if step == stopAt {
						stop()
					}
				})
				if err == nil {
					t.Fatalf("a migration stopped before %q returned no error", stopAt)
				}
				if missing, err := topology.Missing(context.Background(), env.JS); err != nil || (len(missing) == 0 && stopAt != "removing the copy") {
					t.Errorf("missing while stopped: %v, %v; want CHECKOUT until it is promoted", missing, err)
				}
			}
			did, err := topology.Migrate(context.Background(), env.JS, func(step string) { told = append(told, step) })
			if err != nil || !did {
				t.Fatalf("migrate: %v (did %v)", err, did)
			}
			if stopAt == "" && fmt.Sprint(told) != fmt.Sprint(migrationSteps) {
				t.Errorf("steps told: %q", told)
			}
			shop.check(t, env.JS)
			if did, err := topology.Migrate(context.Background(), env.JS, nil); did || err != nil {
				t.Errorf("a second migration: did %v, %v", did, err)
			}
		})
	}
}

func (shop *legacyShop) check(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	ctx := context.Background()
	if err := topology.Ensure(ctx, js); err != nil {
		t.Fatalf("Ensure after the migration: %v", err)
	}
	if missing, err := topology.Missing(ctx, js); err != nil || len(missing) != 0 {
		t.Errorf("missing after the migration: %v, %v", missing, err)
	}
	if _, err := js.Stream(ctx, topology.MigrationStream); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("the copy is still there: %v", err)
	}
	stream, err := js.Stream(ctx, events.StreamCheckout)
	if err != nil {
		t.Fatal(err)
	}
	cfg := stream.CachedInfo().Config
	if cfg.AllowMsgSchedules || cfg.AllowRollup || !cfg.DenyPurge || !cfg.DenyDelete || cfg.Mirror != nil || len(cfg.Sources) != 3 { // a source per scheduled event: deadline, expire, recheck
		t.Errorf("CHECKOUT after the migration: %+v", cfg)
	}
	for seq := uint64(1); seq <= shop.lastSeq; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if err != nil {
			t.Errorf("seq %d: %v", seq, err)
			continue
		}
		if got := m.Subject + " " + string(m.Data); got != shop.history[seq] {
			t.Errorf("seq %d is %q, was %q", seq, got, shop.history[seq])
		}
	}
	// The consumer goes on after what it handled.
	cons, err := stream.Consumer(ctx, events.ServiceInventory)
	if err != nil {
		t.Fatal(err)
	}
	m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if meta, _ := m.Metadata(); meta.Sequence.Stream != shop.ackFloor+1 {
		t.Errorf("the consumer resumed at %d, want %d", meta.Sequence.Stream, shop.ackFloor+1)
	}
	// The pending schedules moved: the hour-long deadline waits in the coordinator's timers,
	// and the expiry fires into CHECKOUT, still signed by inventory, from inventory's slot.
	timers, err := js.Stream(ctx, events.TimerStream(events.ServiceCoordinator))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := timers.GetLastMsgForSubject(ctx, "timer.coordinator.wait.co_4.deadline.process_payment.1"); err != nil {
		t.Errorf("the pending deadline: %v", err)
	}
	var fired *jetstream.RawStreamMsg
	natstest.Eventually(t, 15*time.Second, func() bool {
		fired, err = stream.GetLastMsgForSubject(ctx, string(events.InventoryExpire))
		return err == nil
	}, "the moved expiry never fired into CHECKOUT")
	e, err := events.Decode(fired.Subject, fired.Data)
	if err != nil {
		t.Fatal(err)
	}
	if err := shop.keys.Verify(events.InventoryExpire, fired.Header.Get(events.SignerHeader), fired.Header.Get(events.SignatureHeader), fired.Data); err != nil {
		t.Errorf("the fired expiry's signature: %v", err)
	}
	if err := events.CheckScheduler(e, fired.Header.Get(events.SchedulerHeader)); err != nil || e.CheckoutID != "co_3" {
		t.Errorf("the fired expiry of %s: %v", e.CheckoutID, err)
	}
	// And no publish purges it any more.
	_, err = js.PublishMsg(ctx, &nats.Msg{Subject: string(events.Stuck), Data: []byte(`{}`), Header: nats.Header{"Nats-Rollup": {"all"}}})
	if err == nil {
		t.Error("a roll-up was taken")
	}
}

// While the copy holds the history, nothing makes a CHECKOUT (Ensure refuses: an empty one
// would be taken for the migrated one), and a consumer with a delivery policy that cannot be
// reset is put back where it was all the same.
func TestMigrateStoppedAfterTheDeleteRefusesEnsure(t *testing.T) {
	env := natstest.Start(t)
	shop := makeLegacyShop(t, env.JS)
	ctx := context.Background()
	watcher, err := env.JS.CreateConsumer(ctx, events.StreamCheckout, jetstream.ConsumerConfig{
		Durable: "watcher", DeliverPolicy: jetstream.DeliverNewPolicy, AckPolicy: jetstream.AckExplicitPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	floor := watcher.CachedInfo().Delivered.Stream
	stopped, stop := context.WithCancel(ctx)
	if _, err := topology.Migrate(stopped, env.JS, func(step string) {
		if step == "making CHECKOUT again from the copy" {
			stop()
		}
	}); err == nil {
		t.Fatal("the stopped migration returned no error")
	}
	if err := topology.Ensure(ctx, env.JS); !errors.Is(err, topology.ErrNeedsMigration) {
		t.Errorf("Ensure while the copy holds the history: %v, want ErrNeedsMigration", err)
	}
	if _, err := env.JS.Stream(ctx, events.StreamCheckout); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("a CHECKOUT was made while the copy held the history: %v", err)
	}
	if _, err := topology.Migrate(ctx, env.JS, nil); err != nil {
		t.Fatal(err)
	}
	shop.check(t, env.JS)
	w, err := env.JS.Consumer(ctx, events.StreamCheckout, "watcher")
	if err != nil {
		t.Fatal(err)
	}
	if got := w.CachedInfo().Config.OptStartSeq; got != floor+1 {
		t.Errorf("the deliver-new consumer starts at %d, want %d", got, floor+1)
	}
}

// A migration stopped after the promotion removes the copy only if CHECKOUT holds all of it.
func TestMigrateKeepsTheCopyOfAHistoryCHECKOUTLacks(t *testing.T) {
	env := natstest.Start(t)
	makeLegacyShop(t, env.JS)
	ctx := context.Background()
	stopped, stop := context.WithCancel(ctx)
	if _, err := topology.Migrate(stopped, env.JS, func(step string) {
		if step == "removing the copy" {
			stop()
		}
	}); err == nil {
		t.Fatal("the stopped migration returned no error")
	}
	// Someone deletes the migrated CHECKOUT and makes an empty one by hand.
	stream, err := env.JS.Stream(ctx, events.StreamCheckout)
	if err != nil {
		t.Fatal(err)
	}
	cfg := stream.CachedInfo().Config
	if err := env.JS.DeleteStream(ctx, events.StreamCheckout); err != nil {
		t.Fatal(err)
	}
	if _, err := env.JS.CreateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if _, err := topology.Migrate(ctx, env.JS, nil); err == nil {
		t.Error("the migration removed the copy of a history CHECKOUT lacks")
	}
	if _, err := env.JS.Stream(ctx, topology.MigrationStream); err != nil {
		t.Errorf("the copy: %v", err)
	}
}
