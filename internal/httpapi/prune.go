package httpapi

import (
	"bytes"
	"context"
	"log/slog"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/store"
	bolt "go.etcd.io/bbolt"
)

// DefaultRunsRetention keeps a checkout in the read model for as long as the CHECKOUT stream
// keeps its events (30 days): the runs the UI lists are the runs the stream can replay.
const DefaultRunsRetention = events.CheckoutRetention

// pruneBatch bounds the checkouts one pruning transaction removes: the projector's commits
// wait behind it.
const pruneBatch = 100

// Prune removes, oldest first and in small transactions, every checkout whose last change
// is before cutoff: its events, its view, what was accepted for it. It returns how many.
func (s *Store) Prune(cutoff time.Time) (int, error) {
	total := 0
	for {
		n, more, err := s.pruneSome(cutoff)
		total += n
		if err != nil || !more {
			return total, err
		}
	}
}

// pruneSome removes up to pruneBatch checkouts; more reports that others may be due.
func (s *Store) pruneSome(cutoff time.Time) (removed int, more bool, err error) {
	err = s.db.Update(func(tx *bolt.Tx) error {
		var due []Checkout
		end := indexKey(cutoff, "")
		cur := tx.Bucket(bucketIndex).Cursor()
		for k, _ := cur.First(); k != nil && bytes.Compare(k, end) < 0; k, _ = cur.Next() {
			if len(due) == pruneBatch {
				more = true
				break
			}
			var c Checkout
			if _, err := store.Get(tx.Bucket(bucketCheckouts), string(k[8:]), &c); err != nil {
				return err
			}
			if !later(later(c.CreatedAt, c.UpdatedAt), c.EndedAt).Before(cutoff) {
				continue // created long ago, changed since: kept
			}
			c.ID = string(k[8:])
			due = append(due, c)
		}
		for _, c := range due {
			if err := remove(tx, c); err != nil {
				return err
			}
		}
		removed = len(due)
		return nil
	})
	return removed, more, err
}

// remove deletes one checkout from every bucket.
func remove(tx *bolt.Tx, c Checkout) error {
	for _, b := range [][]byte{bucketEvents, bucketEventIDs} {
		if err := deletePrefix(tx.Bucket(b), checkoutPrefix(c.ID)); err != nil {
			return err
		}
	}
	if err := tx.Bucket(bucketIndex).Delete(indexKey(c.CreatedAt, c.ID)); err != nil {
		return err
	}
	if err := tx.Bucket(bucketAccepted).Delete([]byte(c.ID)); err != nil {
		return err
	}
	return tx.Bucket(bucketCheckouts).Delete([]byte(c.ID))
}

// deletePrefix deletes every key of b that starts with prefix.
func deletePrefix(b *bolt.Bucket, prefix []byte) error {
	var keys [][]byte
	cur := b.Cursor()
	for k, _ := cur.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = cur.Next() {
		keys = append(keys, append([]byte(nil), k...))
	}
	for _, k := range keys {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// pruneEvery removes the checkouts older than retention until ctx ends: every ten minutes,
// or more often for a short retention.
func (s *Store) pruneEvery(ctx context.Context, retention time.Duration, log *slog.Logger) {
	t := time.NewTicker(max(min(10*time.Minute, retention/4), time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		n, err := s.Prune(time.Now().Add(-retention))
		if err != nil {
			log.Warn("prune the read model", "err", err)
		}
		if n > 0 {
			log.Info("pruned old checkouts from the read model", "checkouts", n, "retention", retention)
		}
	}
}
