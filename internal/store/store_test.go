package store

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

func TestEnsureViewList(t *testing.T) {
	db, err := Open(filepath.Join(t.TempDir(), "s.db"), []byte("a"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	items := []byte("items")
	for range 2 { // a second call finds the buckets there
		if err := EnsureBuckets(db, []byte("a"), items); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := List[int](db, items); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("List of an empty bucket = %#v, %v; want an empty, non-nil slice", got, err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		for k, v := range map[string]int{"b": 2, "a": 1, "c": 3} {
			if err := Put(tx.Bucket(items), k, v); err != nil {
				return err
			}
		}
		return tx.Bucket(items).Put([]byte("z"), []byte("not json"))
	}); err != nil {
		t.Fatal(err)
	}
	var v int
	if found, err := View(db, items, "b", &v); !found || err != nil || v != 2 {
		t.Errorf("View(b) = %d, %v, %v", v, found, err)
	}
	if found, err := View(db, items, "missing", &v); found || err != nil {
		t.Errorf("View(missing) = %v, %v", found, err)
	}
	if _, err := View(db, items, "z", &v); err == nil {
		t.Error("View decoded a value that is not JSON")
	}
	if got, err := List[int](db, items); err == nil || len(got) != 3 || got[0] != 1 || got[2] != 3 {
		t.Errorf("List = %v, %v; want 1 2 3 in key order, then an error for z", got, err)
	}
}

// TestLockTakesTurns: a second holder waits, is told it waits, and gets the lock the moment
// the first lets go; a cancelled wait returns the context's error.
func TestLockTakesTurns(t *testing.T) {
	path := filepath.Join(t.TempDir(), "svc.lock")
	release, err := Lock(context.Background(), path, func() { t.Error("the first Lock waited") })
	if err != nil {
		t.Fatal(err)
	}
	waiting := make(chan struct{})
	got := make(chan error, 1)
	go func() {
		r, err := Lock(context.Background(), path, func() { close(waiting) })
		if err == nil {
			defer r()
		}
		got <- err
	}()
	<-waiting
	select {
	case err := <-got:
		t.Fatalf("the second Lock returned (%v) while the first held it", err)
	case <-time.After(3 * LockPoll):
	}
	if err := release(); err != nil {
		t.Fatal(err)
	}
	if err := <-got; err != nil {
		t.Fatalf("second Lock after release: %v", err)
	}

	release, err = Lock(context.Background(), path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	ctx, cancel := context.WithTimeout(context.Background(), 2*LockPoll)
	defer cancel()
	if _, err := Lock(ctx, path, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock with a held lock and an ending context: %v", err)
	}
}
