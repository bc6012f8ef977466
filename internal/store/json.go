package store

import (
	"encoding/json"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// Get decodes the JSON value at key into v; found is false when the key is absent.
func Get(b *bolt.Bucket, key string, v any) (found bool, err error) {
	raw := b.Get([]byte(key))
	if raw == nil {
		return false, nil
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return true, fmt.Errorf("decode %s: %w", key, err)
	}
	return true, nil
}

// Put stores v as JSON at key.
func Put(b *bolt.Bucket, key string, v any) error {
	raw, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode %s: %w", key, err)
	}
	return b.Put([]byte(key), raw)
}

// View decodes the JSON value at key of bucket into v, in a read-only transaction of its
// own; found is false when the key is absent.
func View(db *bolt.DB, bucket []byte, key string, v any) (found bool, err error) {
	err = db.View(func(tx *bolt.Tx) error {
		found, err = Get(tx.Bucket(bucket), key, v)
		return err
	})
	return found, err
}

// List decodes every JSON value of bucket, in key order. It is never nil, so that an empty
// bucket encodes as [] in a reply.
func List[T any](db *bolt.DB, bucket []byte) ([]T, error) {
	out := []T{}
	err := db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucket).ForEach(func(k, v []byte) error {
			var item T
			if err := json.Unmarshal(v, &item); err != nil {
				return fmt.Errorf("decode %s %s: %w", bucket, k, err)
			}
			out = append(out, item)
			return nil
		})
	})
	return out, err
}
