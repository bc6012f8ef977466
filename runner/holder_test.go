package runner

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/jetcheckout/jetcheckout/internal/store"
	"github.com/jetcheckout/jetcheckout/internal/topology"
	"github.com/nats-io/nats.go/jetstream"
	bolt "go.etcd.io/bbolt"
)

// handling is one call of a handler: by which instance, of what, on which delivery.
type handling struct {
	instance string
	eventID  string
	attempt  int
}

// A handler slower than AckWait (a slow Stripe or SMTP call) keeps its message, and the
// message waiting behind it in its lane, from being delivered to another instance idle on
// the same consumer: the heartbeats reset AckWait, and are not deliveries.
func TestHeartbeatsKeepHeldMessagesFromOtherInstances(t *testing.T) {
	const ackWait = 500 * time.Millisecond
	env := natstest.Start(t)
	var mu sync.Mutex
	var calls []handling
	entered := make(chan struct{}, 2)
	instance := func(name string) *Runner {
		db, err := store.Open(filepath.Join(t.TempDir(), name+".db")) // its own: a second handling shows
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		handle := func(ctx context.Context, _ *bolt.Tx, in events.Envelope) ([]events.Envelope, error) {
			mu.Lock()
			calls = append(calls, handling{name, in.ID, Attempt(ctx)})
			mu.Unlock()
			select {
			case entered <- struct{}{}:
			default:
			}
			time.Sleep(4 * ackWait) // the slow call
			out := events.Must(in.CheckoutID, output, map[string]string{"for": in.ID})
			out.ID = in.ID + ":out"
			return []events.Envelope{out}, nil
		}
		r, err := New(Config{Name: consumer, Routes: []Route{{Subject: input, Handle: handle}}, JS: env.JS, DB: db,
			Log: slog.New(slog.NewTextHandler(t.Output(), nil)), AckWait: ackWait, Concurrency: 2})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	natstest.Run(t, instance("first"))
	// Two events of one checkout: the second waits in the first's lane while it is handled.
	var last uint64
	for n := range 2 {
		in := events.Must("co-slow", input, map[string]int{"n": n})
		in.ID = fmt.Sprintf("%s:%d", in.ID, n)
		data, err := in.Encode()
		if err != nil {
			t.Fatal(err)
		}
		ack, err := env.JS.Publish(t.Context(), string(input), data, jetstream.WithMsgID(in.ID))
		if err != nil {
			t.Fatal(err)
		}
		last = ack.Sequence
	}
	<-entered
	cons, err := env.JS.Consumer(t.Context(), events.StreamCheckout, consumer)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Eventually(t, wait, func() bool {
		info, err := cons.Info(t.Context())
		return err == nil && info.NumAckPending == 2 && info.NumPending == 0
	}, "the first instance did not take both messages")
	natstest.Run(t, instance("second")) // idle, pulling: it gets whatever the server redelivers

	var info *jetstream.ConsumerInfo
	natstest.Eventually(t, 4*wait, func() bool {
		info, err = cons.Info(t.Context())
		return err == nil && info.AckFloor.Stream >= last && info.NumAckPending == 0
	}, "the messages were not acked")
	mu.Lock()
	defer mu.Unlock()
	if len(calls) != 2 || calls[0].instance != "first" || calls[1].instance != "first" {
		t.Errorf("handled %+v: want each event once, by the instance holding them", calls)
	}
	for _, c := range calls {
		if c.attempt != 1 {
			t.Errorf("%s handled on delivery %d: a heartbeat counted as a delivery, or it was redelivered", c.eventID, c.attempt)
		}
	}
	if info.Delivered.Consumer != 2 {
		t.Errorf("the consumer made %d deliveries of 2 messages", info.Delivered.Consumer)
	}
}

// A consumer an earlier version made with a 30s AckWait is updated to the runner's when
// the runner starts: a running system gets the quick redelivery without being rebuilt.
func TestRunUpdatesTheAckWaitOfAnExistingConsumer(t *testing.T) {
	h := newHarness(t, &step{}, nil)
	_, err := h.env.JS.CreateConsumer(t.Context(), events.StreamCheckout, jetstream.ConsumerConfig{
		Durable: consumer, FilterSubjects: []string{string(input)}, AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: 30 * time.Second, MaxDeliver: -1, DeliverPolicy: jetstream.DeliverAllPolicy,
	})
	if err != nil {
		t.Fatal(err)
	}
	h.run(t)
	h.publish(t, "co-1", "")
	h.settle(t)
	cons, err := h.env.JS.Consumer(t.Context(), events.StreamCheckout, consumer)
	if err != nil {
		t.Fatal(err)
	}
	if got := cons.CachedInfo().Config.AckWait; got != topology.DefaultAckWait {
		t.Errorf("the consumer's AckWait is %v, want %v", got, topology.DefaultAckWait)
	}
}
