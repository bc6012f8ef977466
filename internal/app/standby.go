package app

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"slices"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/store"
)

// A step service keeps its state in a bbolt file, which one process at a time may open.
// Replicas of it share the data volume and take turns: the one holding DATA_DIR/NAME.lock
// runs, the others stand by until it dies (flock ends with its process, SIGKILL included)
// and one of them takes over the same file and the same durable consumer. The coordinator
// keeps its state in the replicated KV bucket, so its replicas all run at once.

// errStandby is a healthy standby's status: alive and ready to take over.
type errStandby struct{ lock string }

func (e errStandby) Error() string {
	return "standby: another replica holds " + e.lock + "; taking over when it stops"
}

// lockFile is where the replicas of a service with a store take turns.
func lockFile(dataDir, name string) string { return filepath.Join(dataDir, name+".lock") }

// awaitTurn waits until this process holds the lock of every named service that has a
// store, telling h (the health endpoint) meanwhile that it stands by. Locks are taken in
// sorted order, so two processes running the same services cannot each hold one of them.
// It returns ctx's error if ctx ends while it waits.
func awaitTurn(ctx context.Context, dataDir string, log *slog.Logger, h *health, names []string) (release func(), err error) {
	var releases []func() error
	release = func() {
		for _, r := range slices.Backward(releases) {
			_ = r()
		}
	}
	for _, name := range slices.Sorted(slices.Values(names)) {
		if name == events.ServiceCoordinator {
			continue
		}
		path := lockFile(dataDir, name)
		waiting := func() {
			h.set(func(context.Context) error { return errStandby{lock: path} })
			log.Info("standing by: another replica runs this service", "service", name, "lock", path)
		}
		r, err := store.Lock(ctx, path, waiting)
		if err != nil {
			release()
			return nil, err
		}
		releases = append(releases, r)
	}
	return release, nil
}

// isStandby reports whether a health check's error is a standby's status.
func isStandby(err error) bool {
	var s errStandby
	return errors.As(err, &s)
}
