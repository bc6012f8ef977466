package topology_test

import (
	"context"
	"slices"
	"testing"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/jetcheckout/jetcheckout/internal/topology"
	"github.com/nats-io/nats.go/jetstream"
)

// TestBindDuringARollingUpgrade: a process binds, without changing it, to its consumer as a
// newer setup role made it (more subjects) and, held back at schema version 1, as the
// previous release's setup role made it (without the subjects version 1 does not have); it
// still puts back a filter that lacks a subject it reads and writes.
func TestBindDuringARollingUpgrade(t *testing.T) {
	t.Cleanup(func() { _ = events.HoldWriteVersion(0) })
	env := natstest.Start(t)
	ctx := context.Background()
	want := topology.StepConsumer(events.ServiceNotifications, events.Checkout.ConsumedBy(events.ServiceNotifications), topology.DefaultAckWait)
	with := func(filters []string) jetstream.ConsumerConfig {
		c := want
		c.FilterSubjects = filters
		return c
	}
	newer := with(append(slices.Clone(want.FilterSubjects), "checkout.fulfilment.amended"))
	older := with(slices.DeleteFunc(slices.Clone(want.FilterSubjects), func(s string) bool { return s == string(events.FulfilmentRequested) }))
	for _, c := range []struct {
		name   string
		have   jetstream.ConsumerConfig
		held   int
		keeps  bool
		reason string
	}{
		{"a newer setup role's", newer, 0, true, "what this release cannot read is left for an upgraded instance"},
		{"the previous setup role's, held at 1", older, 1, true, "nothing writes the missing subject during the hold"},
		{"the previous setup role's, not held", older, 0, false, "this release writes the missing subject"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if err := events.HoldWriteVersion(c.held); err != nil {
				t.Fatal(err)
			}
			if err := topology.Ensure(ctx, env.JS, topology.Consumers(c.have)); err != nil {
				t.Fatal(err)
			}
			cons, err := topology.Bind(ctx, env.JS, events.StreamCheckout, want)
			if err != nil {
				t.Fatal(err)
			}
			kept := slices.Equal(cons.CachedInfo().Config.FilterSubjects, c.have.FilterSubjects)
			if kept != c.keeps {
				t.Errorf("filter after Bind %v; want it kept: %v (%s)", cons.CachedInfo().Config.FilterSubjects, c.keeps, c.reason)
			}
		})
	}
}
