package store

import (
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
// be rebuilt; a file from before views (synced every commit, no mark) is trusted.
func TestAViewNotClosedCleanlyIsDiscarded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "orders.db")
	v, err := OpenView(path, viewBucket)
	if err != nil || v.Discarded {
		t.Fatalf("a new view: %v, discarded %v", err, v.Discarded)
	}
	put(t, v.DB, "ord_1")
	if err := v.Close(); err != nil {
		t.Fatal(err)
	}
	if v, err = OpenView(path, viewBucket); err != nil || v.Discarded || !has(t, v.DB, "ord_1") {
		t.Fatalf("after a clean close: %v, discarded %v", err, v.Discarded)
	}
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

	legacy := filepath.Join(t.TempDir(), "shipping.db")
	db, err := Open(legacy, viewBucket)
	if err != nil {
		t.Fatal(err)
	}
	put(t, db, "lbl_1")
	db.Close()
	if v, err = OpenView(legacy, viewBucket); err != nil || v.Discarded || !has(t, v.DB, "lbl_1") {
		t.Fatalf("a file synced on every commit, from before views: %v, discarded %v; want it kept", err, v.Discarded)
	}
	if _, err := os.Stat(legacy + dirtySuffix); err != nil {
		t.Errorf("an open view is not marked dirty: %v", err)
	}
	v.Close()
}
