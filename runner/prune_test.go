package runner

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/jetcheckout/jetcheckout/internal/store"
	bolt "go.etcd.io/bbolt"
)

// records counts the handled-event records and their index entries.
func (h *harness) records(t *testing.T) (records, indexed int) {
	t.Helper()
	if err := h.db.View(func(tx *bolt.Tx) error {
		records, indexed = tx.Bucket(processedBucket).Stats().KeyN, tx.Bucket(handledAtBucket).Stats().KeyN
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return records, indexed
}

// TestPruneKeepsWhatMayBeDeliveredAgain: records older than the cutoff go, in several
// transactions, except those whose message is above the ack floor (it may come again);
// records newer than the cutoff stay. The effects of the events stay whatever is pruned.
func TestPruneKeepsWhatMayBeDeliveredAgain(t *testing.T) {
	h := newHarness(t, &step{}, nil)
	const n, floor = 2*pruneBatch + 50, 2*pruneBatch + 40
	handle := h.runner.routes[string(input)].Handle
	for i := range n {
		in := events.Must(fmt.Sprintf("co-%d", i), input, map[string]string{})
		if _, _, err := h.runner.commit(context.Background(), in, uint64(i+1), handle); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := h.runner.Prune(time.Now().Add(-time.Hour), n); err != nil || got != 0 {
		t.Fatalf("Prune before any record expired deleted %d (%v), want 0", got, err)
	}
	got, err := h.runner.Prune(time.Now().Add(time.Second), floor)
	if err != nil || got != floor {
		t.Fatalf("Prune deleted %d (%v), want the %d at or below the ack floor", got, err, floor)
	}
	if recs, idx := h.records(t); recs != n-floor || idx != n-floor {
		t.Errorf("%d records and %d index entries left, want %d of each", recs, idx, n-floor)
	}
	var rec record
	if found, err := store.View(h.db, processedBucket, events.ID(fmt.Sprintf("co-%d", n-1), input), &rec); !found || err != nil {
		t.Errorf("the record above the ack floor is gone (%v)", err)
	}
	// Once the floor passes them, they go too.
	if got, err := h.runner.Prune(time.Now().Add(time.Second), n); err != nil || got != n-floor {
		t.Fatalf("second Prune deleted %d (%v), want %d", got, err, n-floor)
	}
	h.wantState(t, "co-0", 1, 0)
}

// TestPrunesInTheBackground: a running runner deletes its expired records on its own and
// goes on handling.
func TestPrunesInTheBackground(t *testing.T) {
	s := &step{}
	h := newHarness(t, s, func(c *Config) { c.Retention, c.PruneEvery = time.Millisecond, 20*time.Millisecond })
	h.run(t)
	for i := range 3 {
		h.publish(t, fmt.Sprintf("co-%d", i), "")
	}
	h.settle(t)
	natstest.Eventually(t, wait, func() bool { recs, idx := h.records(t); return recs == 0 && idx == 0 },
		"records were not pruned")
	h.publish(t, "co-after", "")
	h.settle(t)
	var n int
	if _, err := store.View(h.db, effectsBucket, "co-after", &n); err != nil || n != 1 {
		t.Errorf("co-after handled %d times (%v), want once", n, err)
	}
	s.wantCalls(t, 4)
}

// TestIndexesRecordsWrittenBeforeTheIndex: a file from before pruning existed gets its
// records indexed when the runner opens it, so they are pruned a retention later.
func TestIndexesRecordsWrittenBeforeTheIndex(t *testing.T) {
	h := newHarness(t, &step{}, nil)
	if err := h.db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(handledAtBucket); err != nil {
			return err
		}
		return store.Put(tx.Bucket(processedBucket), "old-event", record{Seq: 1})
	}); err != nil {
		t.Fatal(err)
	}
	r, err := New(h.runner.cfg)
	if err != nil {
		t.Fatal(err)
	}
	if recs, idx := h.records(t); recs != 1 || idx != 1 {
		t.Fatalf("%d records, %d indexed after New, want 1 and 1", recs, idx)
	}
	if got, err := r.Prune(time.Now().Add(time.Second), 1); err != nil || got != 1 {
		t.Errorf("Prune deleted %d (%v), want the old record", got, err)
	}
}
