package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jetcheckout/jetcheckout/internal/metrics"
	"github.com/jetcheckout/jetcheckout/internal/topology"
	"github.com/nats-io/nats.go/jetstream"
)

// setupEvery is how often `jetcheckout setup` checks the streams again: a stream changed
// behind its back (by hand, or with a stolen credential) is put back and logged.
const setupEvery = time.Minute

// runSetup is `jetcheckout setup`, the setup role: as the setup user it creates or updates
// the streams, the buckets and the processes' consumers, which no service's or API's user
// may. With once it then exits; otherwise it stays, healthy, and restores them every
// setupEvery until stopped. With migrating (the operator's credentials) it first migrates a
// CHECKOUT from before the timer streams (topology.Migrate).
func runSetup(ctx context.Context, cfg Config, log *slog.Logger, h *health, once, migrating bool) error {
	cfg.NATSWaiting = h.waitingForNATS
	nc, err := connect(ctx, cfg.NATSURL, cfg, log, []string{NATSSetup})
	if err != nil {
		return err
	}
	defer drain(nc)
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	// The streams as the server has them, reported by the one setup role of a deployment.
	metrics.Register(cfg.Metrics, metrics.NewStreams()).Watch(js, topology.Names)
	watching := false // after the first pass, a change is news: someone else made it
	opts := []topology.Option{topology.Replicas(cfg.Replicas), topology.Consumers(consumers(cfg, append(Services, APIName)...)...), topology.OnChange(func(name, how string) {
		if watching {
			log.Warn("setup: a stream was changed behind the setup role's back: restored", "stream", name, "how", how)
			return
		}
		log.Info("setup: "+how, "stream", name)
	})}
	if migrating {
		if err := migrate(ctx, js, cfg, log); err != nil {
			return err
		}
	}
	ensure := func() error {
		attempt, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return topology.Ensure(attempt, js, opts...)
	}
	if err := ensure(); err != nil {
		return err
	}
	log.Info("setup: the streams and the bucket are as they should be", "replicas", max(cfg.Replicas, 1))
	if once {
		return nil
	}
	h.set(func(context.Context) error { return nil })
	watching = true
	tick := time.NewTicker(setupEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
			if err := ensure(); err != nil && !errors.Is(err, context.Canceled) {
				log.Error("setup: check the streams", "err", err)
			}
		}
	}
}

// migrate makes a CHECKOUT stream from before the timer streams into today's
// (topology.Migrate), telling the log each step: the services wait meanwhile.
func migrate(ctx context.Context, js jetstream.JetStream, cfg Config, log *slog.Logger) error {
	began := time.Now()
	did, err := topology.Migrate(ctx, js, func(step string) { log.Warn("setup: migrating CHECKOUT: " + step) }, topology.Replicas(cfg.Replicas))
	if err != nil {
		return fmt.Errorf("migrate CHECKOUT (run setup again: it goes on where it stopped): %w", err)
	}
	if did {
		log.Warn("setup: CHECKOUT migrated: its schedules are in the timer streams, and no publish can purge it", "took", time.Since(began).Round(time.Millisecond))
	}
	return nil
}
