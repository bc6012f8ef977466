// Package natsserver runs nats-server in-process with JetStream on disk, for `make run`
// and for tests: its log goes to an *slog.Logger, Health says when JetStream cannot store,
// and Recover restarts JetStream in-process once a full disk has room again.
package natsserver

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// Config of an embedded server.
type Config struct {
	Host     string // default 127.0.0.1
	Port     int    // default 4222; -1 picks a free port
	StoreDir string // JetStream's directory
	// Log receives the server's notices, warnings and errors (nil: discarded); its debug
	// lines too when Log is enabled at Debug. The server never traces: that logs payloads.
	Log *slog.Logger
}

// Start runs a server and waits until it accepts connections. JetStream syncs every write
// to disk before acknowledging it (sync_interval: always): the default periodic sync can
// lose acknowledged events when the machine crashes.
func Start(cfg Config) (*server.Server, error) {
	if cfg.Host == "" {
		cfg.Host = "127.0.0.1"
	}
	if cfg.Port == 0 {
		cfg.Port = 4222
	}
	if cfg.StoreDir == "" {
		return nil, fmt.Errorf("natsserver: StoreDir is required")
	}
	dir, err := filepath.Abs(cfg.StoreDir)
	if err != nil {
		return nil, err
	}
	opts := &server.Options{
		ServerName: "jetcheckout",
		Host:       cfg.Host,
		Port:       cfg.Port,
		JetStream:  true,
		StoreDir:   dir,
		SyncAlways: true,
		NoSigs:     true,
		MaxPayload: 2 << 20,
	}
	s, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("natsserver: %w", err)
	}
	if cfg.Log != nil {
		s.SetLoggerV2(slogLogger{log: cfg.Log}, cfg.Log.Enabled(context.Background(), slog.LevelDebug), false, false)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		s.Shutdown()
		return nil, fmt.Errorf("natsserver: not ready after 10s on %s:%d", cfg.Host, cfg.Port)
	}
	return s, nil
}
