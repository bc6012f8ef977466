package app

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/nats-io/nats.go/jetstream"
	bolt "go.etcd.io/bbolt"
)

// TestLostViewRestoredFromSnapshot: each rebuildable service snapshots its view while
// checkouts run; a few more run after its last snapshot; then its file is lost. The rebuild
// restores the snapshot and replays only what came after, and the view equals the lost one.
// Then the snapshot is replaced by another service's (validly signed, by that service): it
// is refused, and the rebuild replays from the stream's start, equal again. The log says how
// long each took (JETCHECKOUT_SNAPSHOT_CHECKOUTS sets how many checkouts run first).
func TestLostViewRestoredFromSnapshot(t *testing.T) {
	checkouts := 12
	if n, err := strconv.Atoi(os.Getenv("JETCHECKOUT_SNAPSHOT_CHECKOUTS")); err == nil && n > 0 {
		checkouts = n
	}
	env := natstest.Start(t)
	emu := startEmulator(t)
	logs := newLogRecorder(testLogger().Handler())
	log := slog.New(logs)
	dirs, every := map[string]string{}, map[string]time.Duration{}
	start := func(name string) *System {
		t.Helper()
		cfg := testConfig(dirs[name])
		cfg.NATSURL, cfg.StripeBase, cfg.StripeKey = env.URL, emu.URL, "sk_test_snapshot"
		cfg.MaxHoldPerCustomer, cfg.SnapshotEvery = -1, every[name]
		sys := startProcess(t, cfg, log, name)
		return sys
	}
	systems := map[string]*System{}
	for _, name := range Services {
		dirs[name], every[name] = t.TempDir(), 50*time.Millisecond
		systems[name] = start(name)
	}
	w := env.Watch(t, "checkout.>")
	run := func(prefix string, n int) {
		for i := 0; i < n; i += 10 {
			var ids []string
			for j := i; j < min(i+10, n); j++ {
				id := fmt.Sprintf("%s-%d", prefix, j)
				cart := createCart(t, systems[events.ServiceCatalog], "USD", events.CartItem{ProductID: "stickers", Quantity: 1})
				publishCheckout(t, systems[events.ServiceCatalog], checkoutRequestFor(id, cart.ID, "pm_card_visa", "ada@example.com"))
				ids = append(ids, id)
			}
			for _, id := range ids {
				if end := w.Wait(t, id, wait, events.Completed, events.Failed); end.Type != events.Completed {
					t.Fatalf("%s ended in %s: %s", id, end.Type, end.Payload)
				}
			}
		}
		for _, name := range Services {
			(&natstest.Env{JS: env.JS}).WaitIdle(t, name)
		}
	}
	run("co-snap", checkouts)
	ctx := context.Background()
	views := map[string]jetstream.ObjectStore{} // each service's bucket
	for name := range events.Rebuildable {
		obs, err := env.JS.ObjectStore(ctx, events.ViewsBucket(name))
		if err != nil {
			t.Fatal(err)
		}
		views[name] = obs
	}
	rebuildable := slices.Sorted(maps.Keys(events.Rebuildable))
	for _, name := range rebuildable {
		cons, err := env.JS.Consumer(ctx, events.StreamCheckout, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		natstest.Eventually(t, wait, func() bool { return snapshotOf(views[name], name) >= info.AckFloor.Stream },
			"%s's snapshot does not cover its ack floor %d", name, info.AckFloor.Stream)
		// No snapshot from now on: what runs next is after it.
		systems[name].Stop()
		every[name] = time.Hour
		systems[name] = start(name)
	}
	run("co-after", 3)
	published := len(w.All(""))

	// rebuild loses name's view and returns what the rebuild logged, how many messages it
	// replayed from which stream sequence, and how long it took.
	rebuild := func(t *testing.T, name string) (since []string, replayed int, from uint64, took string) {
		t.Helper()
		path := filepath.Join(dirs[name], name+".db")
		systems[name].Stop()
		live := dump(t, path)
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		mark := logs.len()
		systems[name] = start(name)
		natstest.Eventually(t, wait, func() bool { return logs.has(mark, "view rebuilt from the stream", name) }, "%s did not rebuild its view", name)
		systems[name].Stop()
		since = logs.since(mark)
		done := regexp.MustCompile(`runner=` + name + `\b.* messages=(\d+) from_seq=(\d+) took=(\S+)`)
		for _, line := range since {
			if strings.Contains(line, "replay:") && strings.Contains(line, "level=ERROR") {
				t.Errorf("replay error: %s", line)
			}
			if m := done.FindStringSubmatch(line); m != nil {
				replayed, _ = strconv.Atoi(m[1])
				from, _ = strconv.ParseUint(m[2], 10, 64)
				took = m[3]
			}
		}
		sameView(t, live, dump(t, path))
		systems[name] = start(name)
		return since, replayed, from, took
	}
	for i, name := range rebuildable {
		t.Run(name, func(t *testing.T) {
			since, fromSnapshot, seq, tookSnapshot := rebuild(t, name)
			if seq <= 1 {
				t.Errorf("%s did not restore its snapshot: %v", name, since)
			}
			if fromSnapshot > 12 {
				t.Errorf("%s replayed %d messages after its snapshot; want those of the 3 checkouts after it", name, fromSnapshot)
			}

			// Another service's snapshot, signed by that service, under this one's name in its bucket.
			other := rebuildable[(i+1)%len(rebuildable)]
			res, err := views[other].Get(ctx, other)
			if err != nil {
				t.Fatal(err)
			}
			info, _ := res.Info()
			if _, err := views[name].Put(ctx, jetstream.ObjectMeta{Name: name, Headers: info.Headers}, res); err != nil {
				t.Fatal(err)
			}
			res.Close()
			since, fromStart, seq, tookStart := rebuild(t, name)
			if seq != 1 {
				t.Errorf("%s replayed from stream sequence %d after refusing the snapshot, want 1", name, seq)
			}
			if !slices.ContainsFunc(since, func(l string) bool { return strings.Contains(l, "the signature is not "+name+"'s") }) {
				t.Errorf("%s's rebuild did not refuse %s's snapshot: %v", name, other, since)
			}
			if fromStart <= fromSnapshot {
				t.Errorf("%s replayed %d messages from the stream's start, no more than the %d after its snapshot", name, fromStart, fromSnapshot)
			}
			t.Logf("%s after %d checkouts: from its snapshot %d messages in %s; from the stream's start %d messages in %s",
				name, checkouts+3, fromSnapshot, tookSnapshot, fromStart, tookStart)
		})
	}
	if n := len(w.All("")); n != published {
		t.Errorf("%d events published while the views were rebuilt", n-published)
	}
}

// snapshotOf is the stream sequence name's snapshot in views covers, 0 when it has none.
func snapshotOf(views jetstream.ObjectStore, name string) uint64 {
	info, err := views.GetInfo(context.Background(), name)
	if err != nil {
		return 0
	}
	seq, _ := strconv.ParseUint(info.Headers.Get("Jetcheckout-Snapshot-Seq"), 10, 64)
	return seq
}

// TestAFileFromBeforeViewsIsSnapshottedAtStart: every rebuildable service started on a file
// from before views (synced, without the view code's bucket) snapshots it at once, whatever
// SNAPSHOT_EVERY, and only then makes it a view (marked dirty); a lost file is then restored
// from that snapshot.
func TestAFileFromBeforeViewsIsSnapshottedAtStart(t *testing.T) {
	env := natstest.Start(t)
	emu := startEmulator(t)
	dir := t.TempDir()
	cfg := testConfig(dir)
	cfg.NATSURL, cfg.StripeBase, cfg.StripeKey = env.URL, emu.URL, "sk_test_upgrade"
	cfg.SnapshotEvery = time.Hour
	sys := startProcess(t, cfg, testLogger())
	w := env.Watch(t, "checkout.>")
	cart := createCart(t, sys, "USD", events.CartItem{ProductID: "stickers", Quantity: 2})
	publishCheckout(t, sys, checkoutRequestFor("co-upgrade", cart.ID, "pm_card_visa", "ada@example.com"))
	if end := w.Wait(t, "co-upgrade", wait, events.Completed, events.Failed); end.Type != events.Completed {
		t.Fatalf("co-upgrade ended in %s: %s", end.Type, end.Payload)
	}
	for _, name := range Services {
		env.WaitIdle(t, name)
	}
	before := stock(t, sys, "stickers")
	sys.Stop()
	rebuildable := slices.Sorted(maps.Keys(events.Rebuildable))
	for _, name := range rebuildable {
		forgetViewBucket(t, filepath.Join(dir, name+".db"))
	}

	logs := newLogRecorder(testLogger().Handler())
	sys = startProcess(t, cfg, slog.New(logs))
	for _, name := range rebuildable {
		obs, err := sys.JS.ObjectStore(context.Background(), events.ViewsBucket(name))
		if err != nil {
			t.Fatal(err)
		}
		natstest.Eventually(t, wait, func() bool { return snapshotOf(obs, name) > 0 }, "%s took no snapshot of its file from before views", name)
		natstest.Eventually(t, wait, func() bool { _, err := os.Stat(filepath.Join(dir, name+".db.dirty")); return err == nil },
			"%s's file from before views did not become a view after its snapshot", name)
	}
	sys.Stop()

	path := filepath.Join(dir, events.ServiceInventory+".db")
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	mark := logs.len()
	sys = startProcess(t, cfg, slog.New(logs))
	natstest.Eventually(t, wait, func() bool { return logs.has(mark, "view rebuilt from the stream", events.ServiceInventory) }, "the inventory did not rebuild its view")
	restored := regexp.MustCompile(`runner=inventory\b.* from_seq=([2-9]|\d\d+) `)
	if !slices.ContainsFunc(logs.since(mark), restored.MatchString) {
		t.Error("the lost inventory view was not restored from the snapshot taken at the upgrade")
	}
	if after := stock(t, sys, "stickers"); after != before {
		t.Errorf("stickers after the rebuild: %+v, want %+v", after, before)
	}
}

// forgetViewBucket makes the view at path look like a file from before views.
func forgetViewBucket(t *testing.T, path string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket([]byte("store.view")) }); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
