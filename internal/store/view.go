package store

import (
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

// dirtySuffix names the mark beside the file.
const dirtySuffix = ".dirty"

// ViewFile is an open view and how it was found.
type ViewFile struct {
	*bolt.DB
	path string
	// Discarded reports that the file was left dirty by a process that did not close it (a
	// crash, a kill, a power loss) and was removed: the view is to be rebuilt.
	Discarded bool
}

// OpenView opens (creating if needed) the view at path with its buckets: unsynced commits,
// a file left dirty removed first (ViewFile.Discarded). A file written by an older version that
// synced every commit has no mark and is trusted as it is.
func OpenView(path string, buckets ...[]byte) (*ViewFile, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	v := &ViewFile{path: path}
	_, err := os.Stat(path + dirtySuffix)
	switch {
	case err == nil:
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("remove the view %s left dirty: %w", path, err)
		}
		v.Discarded = true
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	if err := mark(path + dirtySuffix); err != nil {
		return nil, fmt.Errorf("mark the view %s dirty: %w", path, err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 5 * time.Second, NoSync: true})
	if err != nil {
		return nil, fmt.Errorf("open %s: %w (is another process using it?)", path, err)
	}
	v.DB = db
	if err := EnsureBuckets(db, buckets...); err != nil {
		db.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// Close syncs the view, closes it and clears its dirty mark: the next open trusts it.
func (v *ViewFile) Close() error {
	syncErr := v.DB.Sync()
	if err := v.DB.Close(); err != nil || syncErr != nil {
		return errors.Join(syncErr, err) // left dirty: rebuilt next time
	}
	if err := os.Remove(v.path + dirtySuffix); err != nil {
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
