package httpapi

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
)

// BenchmarkReadModelRebuild folds a stream of 1,000 checkouts' events (5 each) into a new
// read model, as a lost api.db is rebuilt: events per second is what a rebuild's length
// follows from (the stream's events up to the consumer's position, over this rate).
func BenchmarkReadModelRebuild(b *testing.B) {
	env := natstest.Start(b)
	ctx := context.Background()
	steps := []events.Subject{events.CartValidated, events.InventoryReserved, events.PaymentCaptured, events.OrderCreated, events.Completed}
	n := 0
	for i := range 1000 {
		id := fmt.Sprintf("co-%d", i)
		for _, s := range steps {
			data, err := events.Must(id, s, map[string]string{"note": "bench"}).Encode()
			if err != nil {
				b.Fatal(err)
			}
			if _, err := env.JS.Publish(ctx, string(s), data); err != nil {
				b.Fatal(err)
			}
			n++
		}
	}
	b.ResetTimer()
	for b.Loop() {
		st, err := OpenStore(filepath.Join(b.TempDir(), "api.db"))
		if err != nil {
			b.Fatal(err)
		}
		p := &Projector{JS: env.JS, Store: st, Log: slog.New(slog.DiscardHandler), Hub: &Hub{}}
		if got, err := p.rebuild(ctx, uint64(n)); err != nil || got != n {
			b.Fatalf("rebuilt %d events (%v), want %d", got, err, n)
		}
		st.Close()
	}
	b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "events/s")
}
