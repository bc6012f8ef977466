package topology_test

import (
	"context"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/jetcheckout/jetcheckout/internal/topology"
	"github.com/nats-io/nats.go/jetstream"
)

func TestEnsureIsIdempotentAndRepairs(t *testing.T) {
	env := natstest.Start(t) // runs Ensure once
	ctx := context.Background()
	if err := topology.Ensure(ctx, env.JS); err != nil {
		t.Fatalf("second Ensure: %v", err)
	}
	s, err := env.JS.Stream(ctx, events.StreamCheckout)
	if err != nil {
		t.Fatal(err)
	}
	cfg := s.CachedInfo().Config
	if cfg.Storage != jetstream.FileStorage || cfg.Duplicates != topology.DuplicateWindow {
		t.Errorf("CHECKOUT stream: storage %v, duplicate window %v", cfg.Storage, cfg.Duplicates)
	}
	cfg.MaxAge = time.Hour // someone changed it by hand
	if _, err := env.JS.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	if err := topology.Ensure(ctx, env.JS); err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.MaxAge == time.Hour {
		t.Error("Ensure left a drifted stream as it was")
	}
	if _, err := env.JS.KeyValue(ctx, events.BucketCheckouts); err != nil {
		t.Errorf("bucket: %v", err)
	}
	ws, err := env.JS.Stream(ctx, events.StreamWarehouse)
	if err != nil || ws.CachedInfo().Config.Retention != jetstream.WorkQueuePolicy {
		t.Errorf("WAREHOUSE stream: %v", err)
	}
}
