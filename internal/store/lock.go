//go:build unix

package store

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// LockPoll is how often a waiting Lock tries again: the longest a standby replica lags
// behind the death of the one it replaces, on top of its own start.
const LockPoll = 200 * time.Millisecond

// Lock takes an exclusive lock on the file at path (created if needed), waiting while
// another process holds it; wait, when not nil, is called once if it has to. The lock is
// the kernel's (flock): it ends with release or with the holder's death however it dies,
// SIGKILL included, so a replica on the same volume takes over without a timeout to tune.
// It returns ctx's error if ctx ends first.
func Lock(ctx context.Context, path string, wait func()) (release func() error, err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	t := time.NewTicker(LockPoll)
	defer t.Stop()
	for waited := false; ; waited = true {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return f.Close, nil // closing the file releases the lock
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if !waited && wait != nil {
			wait()
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-t.C:
		}
	}
}
