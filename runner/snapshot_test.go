package runner

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/jetcheckout/jetcheckout/internal/store"
	"github.com/klauspost/compress/s2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	bolt "go.etcd.io/bbolt"
)

// snapshotBucket is the test runner's bucket of snapshots.
var snapshotBucket = events.ViewsBucket(consumer)

// snapshotRun: checkouts handled by a runner that snapshots its view, then more handled by
// one that takes none, then the file lost. It returns the harness on the new, empty file,
// the config to start its runner with (logging to logs), and the checkouts, those after
// the snapshot last.
func snapshotRun(t *testing.T, before, after int) (*harness, Config, *natstest.LogBuffer, []string) {
	t.Helper()
	h := newHarness(t, &step{}, func(c *Config) {
		c.Rebuild, c.Snapshots, c.SnapshotEvery = true, snapshotBucket, 20*time.Millisecond
	})
	// The setup role makes the rebuildable services' buckets only (topology.Ensure).
	if _, err := h.env.JS.CreateObjectStore(context.Background(), jetstream.ObjectStoreConfig{Bucket: snapshotBucket}); err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := h.runUntil(ctx)
	var ids []string
	var seq uint64
	for i := range before {
		ids = append(ids, fmt.Sprintf("co-%d", i))
		_, seq = h.publish(t, ids[i], "")
	}
	h.settle(t)
	natstest.Eventually(t, wait, func() bool { return snapshotSeq(t, h) >= seq }, "no snapshot covers stream sequence %d", seq)
	stop()
	wantStopped(t, done)

	cfg := h.runner.cfg
	cfg.SnapshotEvery = time.Hour
	var err error
	if h.runner, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	ctx, stop = context.WithCancel(context.Background())
	done = h.runUntil(ctx)
	for i := range after {
		ids = append(ids, fmt.Sprintf("co-late-%d", i))
		h.publish(t, ids[len(ids)-1], "")
	}
	h.settle(t)
	stop()
	wantStopped(t, done)

	h.db = newStepDB(t)
	logs := &natstest.LogBuffer{}
	cfg.DB = h.db
	cfg.Log = slog.New(slog.NewTextHandler(io.MultiWriter(t.Output(), logs), nil))
	return h, cfg, logs, ids
}

// snapshotSeq is the stream sequence the runner's snapshot covers, 0 when there is none.
func snapshotSeq(t *testing.T, h *harness) uint64 {
	t.Helper()
	obs, err := h.env.JS.ObjectStore(context.Background(), snapshotBucket)
	if err != nil {
		t.Fatal(err)
	}
	info, err := obs.GetInfo(context.Background(), consumer)
	if err != nil {
		return 0
	}
	seq, _ := strconv.ParseUint(info.Headers.Get(snapshotSeqHeader), 10, 64)
	return seq
}

// rebuilt waits for the rebuild's log line and returns how many messages it replayed.
func rebuilt(t *testing.T, logs *natstest.LogBuffer) int {
	t.Helper()
	re := regexp.MustCompile(`msg="view rebuilt from the stream" .*messages=(\d+)`)
	var m []string
	natstest.Eventually(t, wait, func() bool { m = re.FindStringSubmatch(logs.String()); return m != nil }, "the view was not rebuilt")
	n, _ := strconv.Atoi(m[1])
	return n
}

// restartRebuilt starts a new runner on cfg (the lost view's file) and returns how many
// messages its rebuild replayed.
func restartRebuilt(t *testing.T, h *harness, cfg Config, logs *natstest.LogBuffer) int {
	t.Helper()
	var err error
	if h.runner, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	h.run(t)
	return rebuilt(t, logs)
}

// wantRebuilt checks the rebuilt view holds each checkout once, and nothing was published again.
func wantRebuilt(t *testing.T, h *harness, ids []string) {
	t.Helper()
	natstest.Eventually(t, wait, func() bool {
		handled, _ := Handled(h.db, events.ID(ids[len(ids)-1], input))
		return handled
	}, "the last checkout is not in the rebuilt view")
	h.settle(t)
	for _, id := range ids {
		wantEffects(t, h, id, 1)
		if n := h.watch.Count(id, output); n != 1 {
			t.Errorf("checkout %s: %s published %d times, want 1", id, output, n)
		}
	}
	if n := h.outputsInStream(t); n != uint64(len(ids)) {
		t.Errorf("%d %s in the stream, want %d", n, output, len(ids))
	}
}

func wantEffects(t *testing.T, h *harness, id string, want int) {
	t.Helper()
	var n int
	if err := h.db.View(func(tx *bolt.Tx) error { _, err := store.Get(tx.Bucket(effectsBucket), id, &n); return err }); err != nil || n != want {
		t.Errorf("checkout %s applied %d times in the rebuilt view (%v), want %d", id, n, err, want)
	}
}

// A view lost after a snapshot is restored from it, and only what came after is replayed;
// a rebuild stopped after the restore goes on from there, on the restored file, even
// with the snapshot gone meanwhile.
func TestRebuildRestoresSnapshot(t *testing.T) {
	h, cfg, logs, ids := snapshotRun(t, 6, 3)
	runStoppedAt(t, cfg, 2)
	if !strings.Contains(logs.String(), "view restored from its snapshot") {
		t.Fatal("the view was not restored from its snapshot")
	}
	obs, err := h.env.JS.ObjectStore(context.Background(), snapshotBucket)
	if err != nil {
		t.Fatal(err)
	}
	if err := obs.Delete(context.Background(), consumer); err != nil {
		t.Fatal(err)
	}

	if n := restartRebuilt(t, h, cfg, logs); n > 3 {
		t.Errorf("the rebuild replayed %d messages, want at most the 3 after the snapshot", n)
	}
	if !strings.Contains(logs.String(), "going on with an interrupted rebuild of a restored snapshot") {
		t.Error("the interrupted rebuild did not go on from its restored snapshot")
	}
	wantRebuilt(t, h, ids)
}

// A snapshot whose contents were changed (its signed digest no longer matches) is refused,
// and the view is rebuilt from the stream's start, still right.
func TestRebuildRefusesTamperedSnapshot(t *testing.T) {
	h, cfg, logs, ids := snapshotRun(t, 4, 2)
	data, headers := storedSnapshot(t, h)
	// A record of a checkout never handled, in place of one: the file is still a bbolt file.
	forged := strings.Replace(string(data), "co-1", "co-9", 1)
	storeSnapshot(t, h, headers, compressed(t, []byte(forged)))
	if n := restartRebuilt(t, h, cfg, logs); n != len(ids) {
		t.Errorf("the rebuild replayed %d messages, want all %d from the stream's start", n, len(ids))
	}
	if !strings.Contains(logs.String(), "do not match its signed digest") {
		t.Error("the tampered snapshot was not refused for its digest")
	}
	wantRebuilt(t, h, ids)
	wantEffects(t, h, "co-9", 0)
}

// storedSnapshot is the runner's snapshot as stored: the file it holds, and its headers.
func storedSnapshot(t *testing.T, h *harness) ([]byte, nats.Header) {
	t.Helper()
	obs, err := h.env.JS.ObjectStore(context.Background(), snapshotBucket)
	if err != nil {
		t.Fatal(err)
	}
	res, err := obs.Get(context.Background(), consumer)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Close()
	info, err := res.Info()
	if err != nil {
		t.Fatal(err)
	}
	file, err := io.ReadAll(s2.NewReader(res))
	if err != nil {
		t.Fatal(err)
	}
	return file, info.Headers
}

// storeSnapshot replaces the runner's snapshot with body, under headers.
func storeSnapshot(t *testing.T, h *harness, headers nats.Header, body io.Reader) {
	t.Helper()
	obs, err := h.env.JS.ObjectStore(context.Background(), snapshotBucket)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := obs.Put(context.Background(), jetstream.ObjectMeta{Name: consumer, Headers: headers}, body); err != nil {
		t.Fatal(err)
	}
}

// compressed is data as a snapshot stores it.
func compressed(t *testing.T, data []byte) io.Reader {
	t.Helper()
	var b bytes.Buffer
	w := s2.NewWriter(&b)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return &b
}

// A snapshot stored as it is (by a release before snapshots were compressed) is restored as
// well; one in an encoding this release does not know is refused, and the view rebuilt from
// the stream's start.
func TestRebuildReadsSnapshotsStoredAsTheyAre(t *testing.T) {
	for _, encoding := range []string{"", "zstd"} {
		t.Run("encoding "+cmp.Or(encoding, "none"), func(t *testing.T) {
			h, cfg, logs, ids := snapshotRun(t, 4, 2)
			file, headers := storedSnapshot(t, h)
			headers.Del(snapshotEncodingHeader)
			if encoding != "" {
				headers.Set(snapshotEncodingHeader, encoding)
			}
			storeSnapshot(t, h, headers, bytes.NewReader(file))
			n := restartRebuilt(t, h, cfg, logs)
			switch {
			case encoding == "" && n > 2:
				t.Errorf("the rebuild replayed %d messages, want at most the 2 after the snapshot", n)
			case encoding != "" && (n != len(ids) || !strings.Contains(logs.String(), `encoding \"zstd\", which this release does not read`)):
				t.Errorf("the rebuild replayed %d messages, want all %d, refusing the snapshot's encoding", n, len(ids))
			}
			wantRebuilt(t, h, ids)
		})
	}
}

// With no snapshot in the bucket the rebuild replays from the stream's start, saying so.
func TestRebuildWithoutSnapshot(t *testing.T) {
	h, cfg, logs, ids := snapshotRun(t, 3, 2)
	obs, err := h.env.JS.ObjectStore(context.Background(), snapshotBucket)
	if err != nil {
		t.Fatal(err)
	}
	if err := obs.Delete(context.Background(), consumer); err != nil {
		t.Fatal(err)
	}
	if n := restartRebuilt(t, h, cfg, logs); n != len(ids) {
		t.Errorf("the rebuild replayed %d messages, want all %d", n, len(ids))
	}
	if !strings.Contains(logs.String(), "no usable snapshot of the view: replaying the stream from its start") {
		t.Error("the rebuild from the start did not say why")
	}
	wantRebuilt(t, h, ids)
}

// A file from before views (synced on every commit, holding a fact the stream no longer
// holds) is never discarded before a snapshot that holds it is stored: killed after a
// snapshot but before it became a view, it is opened as it was; the runner then takes a
// snapshot at once and makes it a view; killed after that, it is discarded and its fact comes
// back from the snapshot.
func TestAFileFromBeforeViewsIsKeptUntilItsSnapshotIsStored(t *testing.T) {
	h := newHarness(t, &step{}, func(c *Config) { c.Rebuild = true })
	if _, err := h.env.JS.CreateObjectStore(context.Background(), jetstream.ObjectStoreConfig{Bucket: snapshotBucket}); err != nil {
		t.Fatal(err)
	}
	// The previous version: a synced file, no snapshots.
	ctx, stop := context.WithCancel(context.Background())
	done := h.runUntil(ctx)
	h.publish(t, "co-1", "")
	h.settle(t)
	stop()
	wantStopped(t, done)
	// Handled longer ago than the stream keeps: only the file holds it.
	if err := h.db.Update(func(tx *bolt.Tx) error { return store.Put(tx.Bucket(effectsBucket), "co-ancient", 1) }); err != nil {
		t.Fatal(err)
	}
	path := h.db.Path()
	h.db.Close()

	cfg := h.runner.cfg
	cfg.Snapshots, cfg.SnapshotEvery = snapshotBucket, time.Hour
	v := openFromBeforeViews(t, path, false)
	cfg.DB = v.DB
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	cons, err := h.env.JS.Consumer(context.Background(), events.StreamCheckout, consumer)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.snapshot(context.Background(), cons, copied{}); err != nil {
		t.Fatal(err)
	}
	v.DB.Close() // killed after the snapshot, before the file became a view

	v = openFromBeforeViews(t, path, false)
	h.db, cfg.DB = v.DB, v.DB
	if h.runner, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	ctx, stop = context.WithCancel(context.Background())
	done = h.runUntil(ctx)
	natstest.Eventually(t, wait, func() bool { return !store.Synced(v.DB) }, "the runner did not make the file a view after its first snapshot")
	h.publish(t, "co-2", "")
	h.settle(t)
	stop()
	wantStopped(t, done)
	v.DB.Close() // killed as a view: discarded next time

	v = openFromBeforeViews(t, path, true)
	h.db, cfg.DB = v.DB, v.DB
	logs := &natstest.LogBuffer{}
	cfg.Log = slog.New(slog.NewTextHandler(io.MultiWriter(t.Output(), logs), nil))
	if n := restartRebuilt(t, h, cfg, logs); n > 1 {
		t.Errorf("the rebuild replayed %d messages, want at most the one after the snapshot", n)
	}
	for _, id := range []string{"co-ancient", "co-1", "co-2"} {
		wantEffects(t, h, id, 1)
	}
}

// openFromBeforeViews opens the file at path with store.OpenView: still synced, or (discarded)
// new, to be rebuilt.
func openFromBeforeViews(t *testing.T, path string, discarded bool) *store.ViewFile {
	t.Helper()
	v, err := store.OpenView(path, effectsBucket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.DB.Close() })
	if v.Discarded != discarded || !discarded && (!store.Synced(v.DB) || v.NoSync) {
		t.Fatalf("the file from before views: discarded %v, synced %v, NoSync %v; want discarded %v", v.Discarded, store.Synced(v.DB), v.NoSync, discarded)
	}
	return v
}
