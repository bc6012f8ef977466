package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// A view is a bbolt file that the stream can rebuild (the runner's Rebuild, from a snapshot
// and the events after it), so its commits are not synced one by one: the stream holds every
// fact before the input is acknowledged, and a sync per commit would only make the disk wait
// for what can be made again. A crash, or a power loss, may then lose the last commits or tear
// the file; such a file is never trusted. OpenView marks the file dirty before it writes and
// Close clears the mark after a sync; a file found with the mark was not closed cleanly and is
// removed before it is opened, so the runner finds a new file and rebuilds the view.
//
// A file from before views was synced on every commit and is authoritative: it may hold what
// the stream no longer does (facts older than its retention), which no rebuild can make again.
// OpenView tells it by the bucket it makes in every view (stateBucket) and keeps it as it was,
// synced, unmarked and trusted (Synced), until a snapshot holding its contents is stored in
// JetStream (the runner takes one at once); only then does EndSynced make it a view. A kill
// at any point leaves either that synced file or a snapshot that covers it. A file nobody
// takes snapshots of stays synced, unless its opener knows the stream holds all of it and
// calls EndSynced at once.

// dirtySuffix names the mark beside the file.
const dirtySuffix = ".dirty"

// stateBucket is in every file OpenView opens; syncedKey in it marks a file from before
// views, synced on every commit until EndSynced.
var (
	stateBucket = []byte("store.view")
	syncedKey   = []byte("synced")
)

// ViewFile is an open view and how it was found.
type ViewFile struct {
	*bolt.DB
	path string
	// Discarded reports that the file was left dirty by a process that did not close it (a
	// crash, a kill, a power loss) and was removed: the view is to be rebuilt.
	Discarded bool
}

// OpenView opens (creating if needed) the view at path with its buckets: unsynced commits,
// a file left dirty removed first (ViewFile.Discarded). A file from before views is opened
// synced and unmarked instead (Synced), until EndSynced.
func OpenView(path string, buckets ...[]byte) (*ViewFile, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	v := &ViewFile{path: path}
	var err error
	if v.Discarded, err = removeDirty(path); err != nil {
		return nil, err
	}
	existed, err := exists(path)
	if err != nil {
		return nil, err
	}
	if !existed { // marked before its first write
		if err := mark(path + dirtySuffix); err != nil {
			return nil, fmt.Errorf("mark the view %s dirty: %w", path, err)
		}
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second, NoSync: !existed})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w (is another process using it?)", path, err)
	}
	v.DB = db
	if err := v.prepare(existed, buckets); err != nil {
		db.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// prepare makes the file's buckets: a new file a view; an existing one a view again when it
// was one, else marked as from before views and left synced.
func (v *ViewFile) prepare(existed bool, buckets [][]byte) error {
	view, _ := inspect(v.DB)
	synced := existed && !view
	if view { // marked before its first write, as a new file was
		if err := mark(v.path + dirtySuffix); err != nil {
			return fmt.Errorf("mark the view dirty: %w", err)
		}
		v.NoSync = true // nothing else uses the file yet
	}
	return v.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucketIfNotExists(stateBucket)
		if err != nil {
			return err
		}
		if synced {
			if err := b.Put(syncedKey, []byte{1}); err != nil {
				return err
			}
		}
		for _, name := range buckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		return nil
	})
}

// Synced reports that db is a file from before views that OpenView keeps synced until a
// snapshot of it is stored (EndSynced).
func Synced(db *bolt.DB) bool {
	_, synced := inspect(db)
	return synced
}

// inspect reports whether db is a view, or a file from before views that OpenView opened.
// A file with neither is new, from before views, or not OpenView's.
func inspect(db *bolt.DB) (view, synced bool) {
	_ = db.View(func(tx *bolt.Tx) error {
		if b := tx.Bucket(stateBucket); b != nil {
			synced = b.Get(syncedKey) != nil
			view = !synced
		}
		return nil
	})
	return view, synced
}

// EndSynced makes a file from before views that OpenView opened a view: marked dirty,
// commits no longer synced. Call it only once a snapshot holding the file's contents is
// stored and acknowledged: from then on a kill discards the file, and the snapshot restores
// it. Any other file is left as it is.
func EndSynced(db *bolt.DB) error {
	return db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(stateBucket)
		if b == nil || b.Get(syncedKey) == nil {
			return nil // a view already, or not opened by OpenView
		}
		if err := mark(db.Path() + dirtySuffix); err != nil {
			return fmt.Errorf("mark the view dirty: %w", err)
		}
		// Commits read it under the writer's lock, which this transaction holds.
		db.NoSync = true
		return b.Delete(syncedKey)
	})
}

// IsStateBucket reports whether name is the bucket OpenView keeps its own state in: a
// snapshot's copy of it does not say what the file it is restored into is.
func IsStateBucket(name []byte) bool { return string(name) == string(stateBucket) }

// removeDirty removes the file at path when its dirty mark is there, and says so.
func removeDirty(path string) (bool, error) {
	dirty, err := exists(path + dirtySuffix)
	if err != nil || !dirty {
		return false, err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return false, fmt.Errorf("remove the view %s left dirty: %w", path, err)
	}
	return true, nil
}

func exists(path string) (bool, error) {
	_, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return err == nil, err
}

// Close syncs the view, closes it and clears its dirty mark (a file still Synced has none):
// the next open trusts it.
func (v *ViewFile) Close() error {
	syncErr := v.DB.Sync()
	if err := v.DB.Close(); err != nil || syncErr != nil {
		return errors.Join(syncErr, err) // left dirty: rebuilt next time
	}
	if err := os.Remove(v.path + dirtySuffix); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return syncDir(filepath.Dir(v.path))
}

// mark creates an empty file and makes its existence durable.
func mark(path string) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// The view's applied mark: every message of its service's subjects up to that stream
// sequence is in the view. An instance sharing its consumer with others (a standby) follows
// the stream up to it; whoever compares two replicas' files reads it.
var (
	appliedBucket = []byte("runner.applied")
	appliedKey    = []byte("seq")
)

// AppliedIn is the view's mark, and whether it has one.
func AppliedIn(tx *bolt.Tx) (uint64, bool) {
	b := tx.Bucket(appliedBucket)
	if b == nil || len(b.Get(appliedKey)) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(b.Get(appliedKey)), true
}

// Applied is the mark of the view in db, 0 when it has none.
func Applied(db *bolt.DB) uint64 {
	var seq uint64
	_ = db.View(func(tx *bolt.Tx) error {
		seq, _ = AppliedIn(tx)
		return nil
	})
	return seq
}

// AdvanceApplied moves the view's mark up to seq, never down.
func AdvanceApplied(tx *bolt.Tx, seq uint64) error {
	if have, ok := AppliedIn(tx); ok && have >= seq {
		return nil
	}
	b, err := tx.CreateBucketIfNotExists(appliedBucket)
	if err != nil {
		return err
	}
	return b.Put(appliedKey, binary.BigEndian.AppendUint64(nil, seq))
}
