package store

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

var viewBucket = []byte("orders")

func put(t *testing.T, db *bolt.DB, key string) {
	t.Helper()
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(viewBucket).Put([]byte(key), []byte("x")) }); err != nil {
		t.Fatal(err)
	}
}

func has(t *testing.T, db *bolt.DB, key string) bool {
	t.Helper()
	var found bool
	_ = db.View(func(tx *bolt.Tx) error { found = tx.Bucket(viewBucket).Get([]byte(key)) != nil; return nil })
	return found
}

// A view closed cleanly is trusted when opened again; one its process left without closing
// (a crash: its unsynced commits may be lost, the file torn) is removed and starts empty, to
// be rebuilt.
func TestAViewNotClosedCleanlyIsDiscarded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "orders.db")
	v, err := OpenView(path, viewBucket)
	if err != nil || v.Discarded || Synced(v.DB) {
		t.Fatalf("a new view: %v, discarded %v, synced %v", err, v.Discarded, Synced(v.DB))
	}
	put(t, v.DB, "ord_1")
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if v, err = OpenView(path, viewBucket); err != nil || v.Discarded || !has(t, v.DB, "ord_1") {
		t.Fatalf("after a clean close: %v, discarded %v", err, v.Discarded)
	}
	wantView(t, v, path)
	put(t, v.DB, "ord_2")
	if err := v.DB.Close(); err != nil { // the process dies: the mark stays
		t.Fatal(err)
	}
	if v, err = OpenView(path, viewBucket); err != nil || !v.Discarded || has(t, v.DB, "ord_1") {
		t.Fatalf("after a crash: %v, discarded %v; want an empty file to rebuild", err, v.Discarded)
	}
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
}

// A file from before views (synced on every commit, authoritative) is kept as it is, synced
// and unmarked, through any number of kills, until EndSynced (a snapshot holds it); from then
// on it is a view, discarded by a kill.
func TestAFileFromBeforeViewsStaysSyncedUntilEndSynced(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shipping.db")
	db, err := Open(path, viewBucket)
	if err != nil {
		t.Fatal(err)
	}
	put(t, db, "lbl_1")
	db.Close()
	for range 2 { // opened, written, killed: twice
		v, err := OpenView(path, viewBucket)
		if err != nil || v.Discarded || !has(t, v.DB, "lbl_1") {
			t.Fatalf("a file from before views: %v, discarded %v; want it kept", err, v.Discarded)
		}
		if !Synced(v.DB) || v.NoSync {
			t.Fatalf("a file from before views: synced %v, NoSync %v; want its commits synced", Synced(v.DB), v.NoSync)
		}
		if _, err := os.Stat(path + dirtySuffix); err == nil {
			t.Fatal("a file from before views is marked dirty: a kill would discard it")
		}
		put(t, v.DB, "lbl_2")
		v.DB.Close()
	}

	v, err := OpenView(path, viewBucket)
	if err != nil {
		t.Fatal(err)
	}
	writing := make(chan struct{})
	go func() { // commits go on while it becomes a view (go test -race)
		defer close(writing)
		for i := range 20 {
			err := v.Update(func(tx *bolt.Tx) error { return tx.Bucket(viewBucket).Put(fmt.Appendf(nil, "lbl_w%d", i), []byte("x")) })
			if err != nil {
				t.Error(err)
			}
		}
	}()
	if err := EndSynced(v.DB); err != nil {
		t.Fatal(err)
	}
	<-writing
	wantView(t, v, path)
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if v, err = OpenView(path, viewBucket); err != nil || v.Discarded || !has(t, v.DB, "lbl_2") {
		t.Fatalf("after EndSynced and a clean close: %v, discarded %v", err, v.Discarded)
	}
	wantView(t, v, path)
	v.DB.Close() // killed
	if v, err = OpenView(path, viewBucket); err != nil || !v.Discarded {
		t.Fatalf("a view killed after EndSynced: %v, discarded %v; want it rebuilt", err, v.Discarded)
	}
	v.Close()
}

// wantView checks v is open as a view: marked dirty, commits not synced.
func wantView(t *testing.T, v *ViewFile, path string) {
	t.Helper()
	if Synced(v.DB) || !v.NoSync {
		t.Errorf("a view: synced %v, NoSync %v; want a view's unsynced commits", Synced(v.DB), v.NoSync)
	}
	if _, err := os.Stat(path + dirtySuffix); err != nil {
		t.Errorf("an open view is not marked dirty: %v", err)
	}
}
