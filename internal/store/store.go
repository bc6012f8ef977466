// Package store opens a service's bbolt file. Open's commits are fsynced (bbolt's default):
// a step acknowledges its input only after its state is on disk. OpenView's are not: the
// file is a view the stream rebuilds, discarded when it was not closed cleanly (view.go).
package store

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Open opens (creating if needed) the bbolt file at path and its buckets.
func Open(path string, buckets ...[]byte) (*bolt.DB, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w (is another process using it?)", path, err)
	}
	if err := EnsureBuckets(db, buckets...); err != nil {
		db.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return db, nil
}

// EnsureBuckets creates, in one transaction, those of the buckets that do not exist yet.
func EnsureBuckets(db *bolt.DB, buckets ...[]byte) error {
	return db.Update(func(tx *bolt.Tx) error {
		for _, b := range buckets {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return fmt.Errorf("create bucket %s: %w", b, err)
			}
		}
		return nil
	})
}
