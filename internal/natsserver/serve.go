package natsserver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// LoadConfig reads a nats-server configuration file as `nats-server --config` does: includes
// relative to it, and variables that the file does not define taken from the environment (the
// users' passwords, the routes). The caller handles the signals (NoSigs), and tracing is off:
// it would log message payloads.
func LoadConfig(path string) (*server.Options, error) {
	opts, err := server.ProcessConfigFile(path)
	if err != nil {
		return nil, fmt.Errorf("natsserver: %w", err)
	}
	opts.NoSigs = true
	opts.Trace, opts.TraceVerbose = false, false
	return opts, nil
}

// Serve runs a server with opts, its log on log, until ctx ends, then shuts it down as
// nats-server does on SIGTERM (JetStream's files flushed and closed) and returns nil. With
// JetStream on it runs Recover every interval. It returns an error, the server shut down,
// when the server cannot start or stops on its own, when it reports a fatal error (where
// nats-server's own logger would exit), when JetStream did not start, or when Recover gives
// up: the process should exit non-zero for its supervisor to restart it.
func Serve(ctx context.Context, opts *server.Options, log *slog.Logger, interval time.Duration) error {
	s, err := server.NewServer(opts)
	if err != nil {
		return fmt.Errorf("natsserver: %w", err)
	}
	fatal := make(chan string, 1)
	s.SetLoggerV2(slogLogger{log: log, fatal: fatal}, log.Enabled(ctx, slog.LevelDebug), false, false)
	go s.Start()
	defer func() {
		s.Shutdown()
		s.WaitForShutdown()
	}()
	stopped := make(chan struct{})
	go func() { s.WaitForShutdown(); close(stopped) }()

	// Recovering a large store can take a while before the server listens.
	for !s.ReadyForConnections(time.Second) {
		select {
		case <-ctx.Done():
			return nil
		case msg := <-fatal:
			return fmt.Errorf("natsserver: %s", msg)
		case <-stopped:
			return errors.New("natsserver: the server stopped while starting")
		default:
		}
	}
	recovered := make(chan error, 1)
	if opts.JetStream {
		if s.JetStreamConfig() == nil {
			return errors.New("natsserver: JetStream did not start (see the log above)")
		}
		rctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go func() { recovered <- Recover(rctx, s, log, interval) }()
	}
	log.Info("nats-server ready", "addr", s.Addr().String(), "jetstream", opts.JetStream)
	select {
	case <-ctx.Done():
		log.Info("nats-server shutting down")
		return nil
	case err := <-recovered: // non-nil: ctx is not done
		return err
	case msg := <-fatal:
		return fmt.Errorf("natsserver: %s", msg)
	case <-stopped:
		return errors.New("natsserver: the server stopped on its own")
	}
}
