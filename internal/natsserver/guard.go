package natsserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Health reports why the server's JetStream cannot store, or nil. nats-server 2.15 keeps a
// stream's first failed write (a full disk: "no space left on device") and refuses every
// later write to that stream, answering no publish, until JetStream restarts; it stays
// "enabled" and answers account info as usual. Its own health check (the one behind the
// monitoring port's /healthz) reads that error, and is what this asks; it reads only the
// store directory's listing and the streams in memory.
func Health(s *server.Server) error {
	if !s.JetStreamEnabled() {
		return errors.New("JetStream is disabled")
	}
	if h := s.Healthz(nil); h.StatusCode != http.StatusOK {
		return fmt.Errorf("JetStream cannot store: %s", h.Error)
	}
	return nil
}

// maxRestarts is how many in-process restarts in a row may fail to bring JetStream back
// before Recover gives up for the process to be restarted.
const maxRestarts = 3

// probeSize is what the recovery probe writes: JetStream restarts only when at least this
// much fits, so a disk with a few bytes free does not start it only to fill at once.
const probeSize = 1 << 20

// Recover watches the server's JetStream every interval until ctx ends. When it cannot
// store (see Health) because it is disabled or a stream keeps a write error, Recover logs
// why once, then, every interval while it still cannot, writes and syncs a probe file of
// probeSize in the store directory and removes it; once that succeeds it restarts
// JetStream in-process with the configuration it started with, which recovers every stream
// and consumer from disk as a server start does (clients' pull requests resume on their
// own after a missed heartbeat). Nothing acknowledged is lost: a stream's failed write was
// never acknowledged, and every acknowledged one was synced (SyncAlways). Recover returns
// an error only when JetStream cannot be started again, or maxRestarts restarts in a row
// left it unable to store: the process should then exit, for its supervisor to restart it
// on the same directory.
func Recover(ctx context.Context, s *server.Server, log *slog.Logger, interval time.Duration) error {
	cfg := s.JetStreamConfig()
	if cfg == nil {
		return errors.New("natsserver: JetStream is not running")
	}
	var down error
	restarts := 0 // in a row, without JetStream storing again
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		err := Health(s)
		if err != nil && s.JetStreamEnabled() && !strings.Contains(err.Error(), "write error") {
			continue // not what a restart clears (a stream still loading, say): /healthz tells
		}
		switch {
		case err == nil && down != nil:
			log.Warn("JetStream stores again", "was", down.Error())
			down, restarts = nil, 0
			continue
		case err == nil:
			continue
		case down == nil:
			log.Error("JetStream is down: checkouts wait until it restarts, once the disk has room", "err", err, "store_dir", cfg.StoreDir)
			down = err
		}
		if probe(cfg.StoreDir) != nil {
			continue
		}
		if restarts == maxRestarts {
			return fmt.Errorf("natsserver: JetStream still cannot store after %d restarts in-process: %w", restarts, err)
		}
		log.Warn("disk has room again: restarting JetStream", "store_dir", cfg.StoreDir)
		restarts++
		if err := restart(s, *cfg); err != nil {
			return fmt.Errorf("natsserver: JetStream could not be restarted after %v: %w", down, err)
		}
	}
}

// restart stops JetStream, keeping its state on disk, and starts it again with cfg.
func restart(s *server.Server, cfg server.JetStreamConfig) error {
	if err := s.ShutdownJetStream(); err != nil {
		return err
	}
	// EnableJetStream appends "jetstream" to the directory it is given, as at a start.
	cfg.StoreDir = filepath.Dir(cfg.StoreDir)
	return s.EnableJetStream(&cfg)
}

// probe writes, syncs and removes probeSize bytes in dir.
func probe(dir string) error {
	f, err := os.CreateTemp(dir, ".space-probe-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = f.Write(make([]byte, probeSize))
	if err == nil {
		err = f.Sync()
	}
	return errors.Join(err, f.Close())
}
