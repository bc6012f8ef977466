package loadgen

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"
)

// ceilingStream is the scratch stream the raw ceiling is measured on, deleted afterwards.
const ceilingStream = "LOADGEN_CEILING"

// ceilingMsgSize is about one checkout event.
const ceilingMsgSize = 512

// asyncWindow is how many asynchronous publishes may await their ack at once.
const asyncWindow = 256

// Ceiling is what the same JetStream server stores per second with nothing else to do:
// 512-byte messages into a file-backed stream with one replica, with the server's own sync
// setting (sync always when embedded).
type Ceiling struct {
	Sync1  float64 `json:"sync_1_publisher_msgs_per_s"`
	Sync16 float64 `json:"sync_16_publishers_msgs_per_s"`
	Async  float64 `json:"async_msgs_per_s"`
	// Batch100 publishes atomic batches of 100 messages, one after the other.
	Batch100 float64 `json:"atomic_batch_100_msgs_per_s"`
	// BatchCurve, when asked for (Options.BatchCurve), is what atomic batches of each size
	// cost, from one publisher and from several at once: what amortising the sync by
	// batching can buy on this server and disk.
	BatchCurve []BatchPoint `json:"atomic_batch_curve,omitempty"`
	Seconds    float64      `json:"seconds_each"`
	MsgBytes   int          `json:"msg_bytes"`
}

// BatchPoint is one measurement of atomic batches of Size messages from Publishers at once,
// each publisher sending its next batch when the last one's ack came.
type BatchPoint struct {
	Publishers  int     `json:"publishers"`
	Size        int     `json:"size"`
	MsgsPerS    float64 `json:"msgs_per_s"`
	BatchesPerS float64 `json:"batches_per_s"`
	MeanMS      float64 `json:"mean_batch_ms"` // publish of the first message to the commit's ack
}

// batchCurve: the sizes and publisher counts of Ceiling.BatchCurve.
var (
	curveSizes      = []int{1, 2, 5, 10, 25, 100}
	curvePublishers = []int{1, 8}
)

// measureCeiling publishes for d each way into a fresh scratch stream; with curve, also
// atomic batches of every size in curveSizes from each count of curvePublishers.
func measureCeiling(ctx context.Context, js jetstream.JetStream, d time.Duration, curve bool) (Ceiling, error) {
	c := Ceiling{Seconds: d.Seconds(), MsgBytes: ceilingMsgSize}
	s, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: ceilingStream, Subjects: []string{"loadgen.ceiling"}, Storage: jetstream.FileStorage, Replicas: 1,
		AllowAtomicPublish: true,
	})
	if err != nil {
		return c, fmt.Errorf("ceiling stream: %w", err)
	}
	defer func() { _ = js.DeleteStream(context.WithoutCancel(ctx), ceilingStream) }()
	payload := make([]byte, ceilingMsgSize)
	if c.Sync1, err = syncRate(ctx, js, payload, 1, d); err != nil {
		return c, err
	}
	if err := s.Purge(ctx); err != nil {
		return c, err
	}
	if c.Sync16, err = syncRate(ctx, js, payload, 16, d); err != nil {
		return c, err
	}
	if err := s.Purge(ctx); err != nil {
		return c, err
	}
	if c.Async, err = asyncRate(ctx, js, payload, d); err != nil {
		return c, err
	}
	if err := s.Purge(ctx); err != nil {
		return c, err
	}
	p, err := batchRate(ctx, js, payload, 1, 100, d)
	c.Batch100 = p.MsgsPerS
	if err != nil || !curve {
		return c, err
	}
	for _, pubs := range curvePublishers {
		for _, size := range curveSizes {
			if err := s.Purge(ctx); err != nil {
				return c, err
			}
			p, err := batchRate(ctx, js, payload, pubs, size, d)
			if err != nil {
				return c, err
			}
			c.BatchCurve = append(c.BatchCurve, p)
		}
	}
	return c, nil
}

// batchRate: publishers each sending atomic batches of size messages, each after the last
// one's ack.
func batchRate(ctx context.Context, js jetstream.JetStream, payload []byte, publishers, size int, d time.Duration) (BatchPoint, error) {
	var batches, busy atomic.Int64 // busy: nanoseconds spent waiting for batches
	var firstErr error
	var once sync.Once
	start := time.Now()
	end := start.Add(d)
	var wg sync.WaitGroup
	for range publishers {
		wg.Go(func() {
			for time.Now().Before(end) {
				msgs := make([]*nats.Msg, size)
				for i := range msgs {
					msgs[i] = &nats.Msg{Subject: "loadgen.ceiling", Data: payload, Header: nats.Header{}}
				}
				sent := time.Now()
				if _, err := jetstreamext.PublishMsgBatch(ctx, js, msgs, jetstreamext.BatchFlowControl{}); err != nil {
					once.Do(func() { firstErr = fmt.Errorf("ceiling: atomic batch: %w", err) })
					return
				}
				busy.Add(int64(time.Since(sent)))
				batches.Add(1)
			}
		})
	}
	wg.Wait()
	secs, n := time.Since(start).Seconds(), batches.Load()
	p := BatchPoint{Publishers: publishers, Size: size, MsgsPerS: float64(n*int64(size)) / secs, BatchesPerS: float64(n) / secs}
	if n > 0 {
		p.MeanMS = float64(busy.Load()) / float64(n) / 1e6
	}
	return p, firstErr
}

// syncRate: publishers each waiting for every ack before the next publish.
func syncRate(ctx context.Context, js jetstream.JetStream, payload []byte, publishers int, d time.Duration) (float64, error) {
	var acked atomic.Uint64
	var firstErr error
	var once sync.Once
	start := time.Now()
	end := start.Add(d)
	var wg sync.WaitGroup
	for range publishers {
		wg.Go(func() {
			for time.Now().Before(end) {
				if _, err := js.Publish(ctx, "loadgen.ceiling", payload); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				acked.Add(1)
			}
		})
	}
	wg.Wait()
	return float64(acked.Load()) / time.Since(start).Seconds(), firstErr
}

// asyncRate: one publisher keeping up to asyncWindow publishes awaiting their acks.
func asyncRate(ctx context.Context, js jetstream.JetStream, payload []byte, d time.Duration) (float64, error) {
	start := time.Now()
	var n uint64
	for time.Since(start) < d {
		if _, err := js.PublishAsync("loadgen.ceiling", payload, jetstream.WithStallWait(5*time.Second)); err != nil {
			return 0, err
		}
		n++
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-time.After(30 * time.Second):
		return 0, fmt.Errorf("ceiling: async publishes not acknowledged after 30s")
	}
	return float64(n) / time.Since(start).Seconds(), nil
}
