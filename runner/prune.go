package runner

import (
	"bytes"
	"context"
	"encoding/binary"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/store"
	"github.com/nats-io/nats.go/jetstream"
	bolt "go.etcd.io/bbolt"
)

// DefaultRetention is how long a handled-event record is kept. A record stops a copy of an
// event from being handled twice, and copies arrive in three ways:
//   - this consumer delivers the same message again (a crash between commit and ack): the
//     record is kept, whatever its age, until the consumer's ack floor is past it;
//   - the producer publishes it again because its own input was delivered again (it died
//     between publishing and acking): within its AckWait (30 s) of a restart, and past the
//     stream's 2-minute duplicate window only if the producer stays down that long;
//   - a step's trigger copied later: refused anyway once older than the step's deadline.
//
// Beyond those, a consumer reset (deleted and made again, reading the stream from its
// start) delivers every event the stream still keeps. So a record is kept as long as the
// stream keeps the event it guards (events.CheckoutRetention, 30 days): no copy can come
// after its record is gone. About 10 KB per checkout in all services; a shorter retention
// saves disk at the price of that guarantee.
const DefaultRetention = events.CheckoutRetention

// handledAtBucket indexes the records by when they were written: a key is the time (8 bytes,
// big-endian Unix nanoseconds) and the event ID, so pruning walks the oldest first and never
// scans the records it keeps.
var handledAtBucket = []byte("runner.handled_at")

// pruneBatch bounds the records one pruning transaction deletes: bbolt has one writer, and a
// step's commit waits behind it.
const pruneBatch = 256

// index records that in.ID was handled at t.
func index(tx *bolt.Tx, id string, t time.Time) error {
	return tx.Bucket(handledAtBucket).Put(indexKey(t, id), nil)
}

func indexKey(t time.Time, id string) []byte {
	k := make([]byte, 8, 8+len(id))
	binary.BigEndian.PutUint64(k, uint64(t.UnixNano()))
	return append(k, id...)
}

// indexLegacy gives the records written before the index existed an entry at now, so they
// are pruned one retention from now. It runs once, when New creates the index.
func indexLegacy(tx *bolt.Tx, now time.Time) error {
	return tx.Bucket(processedBucket).ForEach(func(k, _ []byte) error {
		return index(tx, string(k), now)
	})
}

// pruneLoop prunes expired records every interval until ctx ends.
func (r *Runner) pruneLoop(ctx context.Context, cons jetstream.Consumer) {
	repeat(ctx, r.cfg.PruneEvery, func() {
		info, err := cons.Info(ctx)
		if err != nil {
			r.log.Warn("prune: consumer info", "err", err)
			return
		}
		n, err := r.Prune(time.Now().Add(-r.cfg.Retention), info.AckFloor.Stream)
		if err != nil {
			r.log.Warn("prune handled records", "err", err)
		}
		if n > 0 {
			r.log.Debug("pruned handled records", "records", n)
		}
	})
}

// Prune deletes the records written before cutoff whose message is at or below ackFloor (the
// consumer's: every message there is acknowledged, so none is delivered again), in small
// transactions, and returns how many it deleted. A record above the floor is kept for a
// later round.
func (r *Runner) Prune(cutoff time.Time, ackFloor uint64) (int, error) {
	var (
		total int
		after []byte // the last index key looked at: the next transaction starts past it
	)
	end := indexKey(cutoff, "")
	for {
		n, next, err := r.pruneSome(end, after, ackFloor)
		total += n
		if err != nil || next == nil {
			return total, err
		}
		after = next
	}
}

// pruneSome deletes up to pruneBatch expired records from the index position after on. It
// returns where to go on, or nil when the expired part of the index is done.
func (r *Runner) pruneSome(end, after []byte, ackFloor uint64) (deleted int, next []byte, err error) {
	err = r.cfg.DB.Update(func(tx *bolt.Tx) error {
		idx, recs := tx.Bucket(handledAtBucket), tx.Bucket(processedBucket)
		c := idx.Cursor()
		k, _ := c.First()
		if after != nil {
			if k, _ = c.Seek(after); bytes.Equal(k, after) {
				k, _ = c.Next()
			}
		}
		// Deleted after the walk: a bbolt cursor must not move on from a key it deleted.
		var expired [][]byte
		var last []byte // the last key looked at
		next = nil
		for scanned := 0; k != nil && bytes.Compare(k, end) < 0; k, _ = c.Next() {
			if scanned == 4*pruneBatch || len(expired) == pruneBatch {
				next = last
				break
			}
			scanned++
			last = append([]byte(nil), k...)
			var rec record
			found, err := store.Get(recs, string(k[8:]), &rec)
			if err != nil {
				return err
			}
			if found && rec.Seq > ackFloor {
				continue // its message may still be delivered again
			}
			expired = append(expired, last)
		}
		for _, k := range expired {
			if err := recs.Delete(k[8:]); err != nil {
				return err
			}
			if err := idx.Delete(k); err != nil {
				return err
			}
		}
		deleted = len(expired)
		return nil
	})
	return deleted, next, err
}
