package runner

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/jetcheckout/jetcheckout/internal/store"
	"github.com/klauspost/compress/s2"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	bolt "go.etcd.io/bbolt"
)

// Snapshots of a rebuildable view (Config.Snapshots) shorten its rebuild: every
// SnapshotEvery, when something was committed since the last one, the runner copies its
// bbolt file in one read transaction (a consistent copy) and puts it in the Object Store
// bucket as one object named after the runner, replacing the last, compressed (S2) and in
// large chunks: each chunk is a synced write, and a snapshot's burst of them is what the
// checkouts' own syncs queue behind while it is stored. The object's headers say
// which stream sequence it covers: the consumer's ack floor read before the copy's
// transaction began. Every message at or below it was committed before the copy began;
// one above it that is in the copy already is a no-op on replay (its handled record).
//
// A lost view is restored from the snapshot inside the runner's own write transaction (the
// file is open already, the service's buckets made in it) and the replay starts after the
// snapshot's sequence. The snapshot is only a shortcut: one missing, unreadable, covering
// more than the consumer was given, or not signed by this service (Config.Keys) is refused
// and the replay starts from the stream's first message, as without snapshots.

// Headers of a snapshot object.
const (
	snapshotSeqHeader       = "Jetcheckout-Snapshot-Seq"       // stream sequence covered
	snapshotDigestHeader    = "Jetcheckout-Snapshot-Digest"    // hex SHA-256 of the file
	snapshotSignatureHeader = "Jetcheckout-Snapshot-Signature" // the service's, over both
	snapshotEncodingHeader  = "Jetcheckout-Snapshot-Encoding"  // how the file is stored: s2, or absent (as it is)
)

// snapshotEncoding is how snapshots are stored: S2, which bbolt's pages of JSON shrink to a
// fraction at gigabytes a second.
const snapshotEncoding = "s2"

// snapshotChunk is the size of a stored snapshot's chunks: half the server's default
// largest message (1 MB), so a chunk and its headers always fit.
const snapshotChunk = 512 << 10

// fromKey in the rebuilding marker is the stream sequence the replay of a restored
// snapshot starts at: a rebuild interrupted after the restore goes on from there, on the
// restored file.
var fromKey = []byte("from")

// errNoChange: nothing was committed since the last snapshot.
var errNoChange = errors.New("no change since the last snapshot")

// errNotHolder: only the instance that holds the consumer's pin takes snapshots.
var errNotHolder = fmt.Errorf("%w: another instance holds the pin", errNoChange)

// snapshotLoop takes a snapshot every SnapshotEvery until ctx ends. A file from before views
// (store.Synced: synced on every commit, holding what the stream may no longer hold) gets
// its first at once and becomes a view once it is stored (endSynced).
func (r *Runner) snapshotLoop(ctx context.Context, cons jetstream.Consumer) {
	t := time.NewTimer(jittered(r.cfg.SnapshotEvery))
	defer t.Stop()
	r.removeStaleCopies()
	synced := store.Synced(r.cfg.DB)
	var taken copied // the last copy
	for now := synced; ; now = false {
		if !now {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				t.Reset(jittered(r.cfg.SnapshotEvery))
			}
		}
		c, err := r.snapshot(ctx, cons, taken)
		switch {
		case err == nil:
			taken = c
		case !errors.Is(err, errNoChange) && ctx.Err() == nil:
			r.log.Warn("snapshot of the view failed; a rebuild would replay more", "err", err)
		}
		if synced && (err == nil || errors.Is(err, errNoChange) && !errors.Is(err, errNotHolder)) {
			synced = !r.endSynced()
		}
	}
}

// jittered is every, give or take a quarter: the services of one process (or of one
// deployment, started together) would otherwise copy their files in the same second, and a
// snapshot is a burst of synced writes the checkouts' events then queue behind.
func jittered(every time.Duration) time.Duration {
	return every*3/4 + rand.N(every/2+1)
}

// endSynced makes the file a view now that a stored snapshot holds it, and reports whether
// it did.
func (r *Runner) endSynced() bool {
	if err := store.EndSynced(r.cfg.DB); err != nil {
		r.log.Warn("the file from before views stays synced on every commit", "err", err)
		return false
	}
	r.log.Info("the file from before views is in its snapshot: it is a view from now on, not synced on every commit")
	return true
}

// copied is what a snapshot holds: the file as of a transaction, covering a sequence. The
// sequence can move on with no transaction (the ack of a message committed before the copy).
type copied struct {
	txid int
	seq  uint64
}

// snapshot puts a copy of the view in the bucket unless it would be the last one again,
// and returns what it copied.
func (r *Runner) snapshot(ctx context.Context, cons jetstream.Consumer, last copied) (copied, error) {
	info, err := cons.Info(ctx) // before the copy: see above
	if err != nil {
		return copied{}, fmt.Errorf("consumer info: %w", err)
	}
	c := copied{seq: info.AckFloor.Stream}
	if r.pinned() && !r.holdsPin(info) {
		if !store.Synced(r.cfg.DB) {
			return copied{}, errNotHolder // its view may lack what the holder acked
		}
		// A file from before views needs a stored copy before it may become a view, whoever
		// holds the pin: the copy covers what the file applied.
		mark, _, err := r.applied()
		if err != nil {
			return copied{}, err
		}
		c.seq = min(c.seq, mark)
	}
	f, err := os.CreateTemp(filepath.Dir(r.cfg.DB.Path()), filepath.Base(r.cfg.DB.Path())+".snapshot-*") // beside the view: its disk has room for it
	if err != nil {
		return copied{}, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	sum, zw := sha256.New(), s2.NewWriter(f)
	// Copied to a file first: a read transaction held through the upload would hold back
	// the writers that grow the file. The digest is of the file as it is, not as stored.
	err = r.cfg.DB.View(func(tx *bolt.Tx) error {
		if c.txid = tx.ID(); c == last {
			return errNoChange
		}
		_, err := tx.WriteTo(io.MultiWriter(zw, sum))
		return err
	})
	if cerr := zw.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return copied{}, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return copied{}, err
	}
	digest := hex.EncodeToString(sum.Sum(nil))
	h := nats.Header{}
	h.Set(snapshotSeqHeader, strconv.FormatUint(c.seq, 10))
	h.Set(snapshotDigestHeader, digest)
	h.Set(snapshotEncodingHeader, snapshotEncoding)
	if r.cfg.Keys != nil {
		sig, err := r.cfg.Keys.SignFor(r.cfg.Name, r.snapshotPurpose(), snapshotSigned(c.seq, digest))
		if err != nil {
			return copied{}, err
		}
		h.Set(snapshotSignatureHeader, sig)
	}
	obs, err := r.cfg.JS.ObjectStore(ctx, r.cfg.Snapshots)
	if err != nil {
		return copied{}, fmt.Errorf("bucket %s: %w", r.cfg.Snapshots, err)
	}
	meta := jetstream.ObjectMeta{Name: r.cfg.Name, Description: "bbolt view of " + r.cfg.Name, Headers: h,
		Opts: &jetstream.ObjectMetaOptions{ChunkSize: snapshotChunk}}
	if _, err := obs.Put(ctx, meta, f); err != nil {
		return copied{}, fmt.Errorf("put: %w", err)
	}
	r.log.Debug("snapshot of the view taken", "stream_seq", c.seq)
	return c, nil
}

// removeStaleCopies deletes the temporary copies a process that died while it took or
// restored a snapshot left beside the view (only the holder of the file's lock runs).
func (r *Runner) removeStaleCopies() {
	for _, kind := range []string{".snapshot-*", ".restore-*"} {
		stale, _ := filepath.Glob(r.cfg.DB.Path() + kind)
		for _, path := range stale {
			_ = os.Remove(path)
		}
	}
}

// snapshotPurpose is what a snapshot's signature is made for: this bucket's object of this
// service, so neither an event's signature nor another service's snapshot passes.
func (r *Runner) snapshotPurpose() string { return "$O." + r.cfg.Snapshots + "." + r.cfg.Name }

func snapshotSigned(seq uint64, digest string) []byte {
	return []byte(strconv.FormatUint(seq, 10) + "\n" + digest)
}

// rebuildFrom is the stream sequence a rebuild starts at: where an interrupted rebuild of
// a restored snapshot was to start, after the newest snapshot once restored, else 1. The
// rebuilding marker is set before it returns, with the start when it is not 1.
func (r *Runner) rebuildFrom(ctx context.Context, last uint64) (uint64, error) {
	var from uint64
	_ = r.cfg.DB.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(rebuildingBucket); b != nil && len(b.Get(fromKey)) == 8 {
			from = binary.BigEndian.Uint64(b.Get(fromKey))
		}
		return nil
	})
	if from > 0 {
		r.log.Info("going on with an interrupted rebuild of a restored snapshot", "from_seq", from)
		return from, nil
	}
	if r.cfg.Snapshots != "" {
		seq, err := r.restore(ctx, last)
		if err == nil {
			r.log.Info("view restored from its snapshot", "snapshot_seq", seq)
			return seq + 1, nil
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		r.log.Warn("no usable snapshot of the view: replaying the stream from its start", "err", err)
	}
	return 1, r.cfg.DB.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(rebuildingBucket)
		return err
	})
}

// restore replaces the view's contents with the newest snapshot, in one transaction that
// also marks the rebuild as under way from after it, and returns the sequence it covers.
func (r *Runner) restore(ctx context.Context, last uint64) (uint64, error) {
	path, seq, err := r.fetchSnapshot(ctx, last)
	if err != nil {
		return 0, err
	}
	defer os.Remove(path)
	snap, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return 0, fmt.Errorf("open the snapshot: %w", err)
	}
	defer snap.Close()
	return seq, r.cfg.DB.Update(func(tx *bolt.Tx) error {
		// Emptied, not deleted: the service made its buckets already, and a snapshot taken
		// by an older version may lack one.
		var names [][]byte
		_ = tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
			names = append(names, name)
			return nil
		})
		for _, name := range names {
			if err := tx.DeleteBucket(name); err != nil {
				return err
			}
			if _, err := tx.CreateBucket(name); err != nil {
				return err
			}
		}
		err := snap.View(func(stx *bolt.Tx) error {
			return stx.ForEach(func(name []byte, b *bolt.Bucket) error {
				if string(name) == string(rebuildingBucket) || store.IsStateBucket(name) {
					return nil // the file's own: a view being rebuilt
				}
				dst, err := tx.CreateBucketIfNotExists(name)
				if err != nil {
					return err
				}
				return copyBucket(dst, b)
			})
		})
		if err != nil {
			return fmt.Errorf("copy the snapshot: %w", err)
		}
		mark, err := tx.CreateBucketIfNotExists(rebuildingBucket)
		if err != nil {
			return err
		}
		return mark.Put(fromKey, binary.BigEndian.AppendUint64(nil, seq+1))
	})
}

// copyBucket copies src's keys, nested buckets and sequence into the empty dst.
func copyBucket(dst, src *bolt.Bucket) error {
	if err := dst.SetSequence(src.Sequence()); err != nil {
		return err
	}
	return src.ForEach(func(k, v []byte) error {
		if v != nil {
			return dst.Put(k, v)
		}
		sub, err := dst.CreateBucket(k)
		if err != nil {
			return err
		}
		return copyBucket(sub, src.Bucket(k))
	})
}

// fetchSnapshot downloads the service's snapshot into a file beside the view and checks it:
// its signature (with Keys), its digest, and that it covers no more than the consumer was
// given. It returns the file and the stream sequence covered.
func (r *Runner) fetchSnapshot(ctx context.Context, last uint64) (string, uint64, error) {
	obs, err := r.cfg.JS.ObjectStore(ctx, r.cfg.Snapshots)
	if err != nil {
		return "", 0, fmt.Errorf("bucket %s: %w", r.cfg.Snapshots, err)
	}
	res, err := obs.Get(ctx, r.cfg.Name)
	if err != nil {
		return "", 0, fmt.Errorf("get the snapshot: %w", err)
	}
	defer res.Close()
	info, err := res.Info()
	if err != nil {
		return "", 0, err
	}
	seq, err := strconv.ParseUint(info.Headers.Get(snapshotSeqHeader), 10, 64)
	digest := info.Headers.Get(snapshotDigestHeader)
	switch {
	case err != nil || digest == "":
		return "", 0, errors.New("the snapshot does not say what it covers")
	case seq > last:
		return "", 0, fmt.Errorf("the snapshot covers stream sequence %d, beyond the last this consumer was given (%d)", seq, last)
	}
	if r.cfg.Keys != nil {
		if err := r.cfg.Keys.VerifyFrom(r.cfg.Name, r.snapshotPurpose(), info.Headers.Get(snapshotSignatureHeader), snapshotSigned(seq, digest)); err != nil {
			return "", 0, fmt.Errorf("refused the snapshot: %w", err)
		}
	}
	var stored io.Reader = res
	switch enc := info.Headers.Get(snapshotEncodingHeader); enc {
	case "": // stored as it is, by a release before snapshots were compressed
	case snapshotEncoding:
		stored = s2.NewReader(res)
	default:
		return "", 0, fmt.Errorf("the snapshot is stored in encoding %q, which this release does not read", enc)
	}
	f, err := os.CreateTemp(filepath.Dir(r.cfg.DB.Path()), filepath.Base(r.cfg.DB.Path())+".restore-*")
	if err != nil {
		return "", 0, err
	}
	sum := sha256.New()
	_, err = io.Copy(io.MultiWriter(f, sum), stored)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && hex.EncodeToString(sum.Sum(nil)) != digest {
		err = errors.New("refused the snapshot: its contents do not match its signed digest")
	}
	if err != nil {
		os.Remove(f.Name())
		return "", 0, fmt.Errorf("read the snapshot: %w", err)
	}
	return f.Name(), seq, nil
}
