package runner

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/store"
	bolt "go.etcd.io/bbolt"
)

// With many lanes and group commit, every event is handled once and each checkout's events
// in the order of the stream.
func TestLanesKeepEachCheckoutInOrder(t *testing.T) {
	seen := map[string][]int{} // by checkout, in the store: what the handler saw, in order
	h := newHarness(t, &step{}, func(c *Config) {
		c.Concurrency, c.GroupCommit = 8, true
		c.Routes = []Route{{Subject: input, Handle: func(_ context.Context, tx *bolt.Tx, in events.Envelope) ([]events.Envelope, error) {
			var p struct{ N int }
			if err := in.DecodePayload(&p); err != nil {
				return nil, err
			}
			b := tx.Bucket(effectsBucket)
			var got []int
			if _, err := store.Get(b, in.CheckoutID, &got); err != nil {
				return nil, err
			}
			return []events.Envelope{events.Must(in.CheckoutID, output, p)}, store.Put(b, in.CheckoutID, append(got, p.N))
		}}}
	})
	const checkouts, each = 40, 5
	for n := range each {
		for c := range checkouts {
			in := events.Must(fmt.Sprintf("co-%d", c), input, struct{ N int }{n})
			in.ID = fmt.Sprintf("%s:%d", in.ID, n)
			data, err := in.Encode()
			if err != nil {
				t.Fatal(err)
			}
			h.publishRaw(t, data, in.ID)
		}
	}
	h.run(t)
	h.settle(t)
	err := h.db.View(func(tx *bolt.Tx) error {
		for c := range checkouts {
			id := fmt.Sprintf("co-%d", c)
			var got []int
			if _, err := store.Get(tx.Bucket(effectsBucket), id, &got); err != nil {
				return err
			}
			seen[id] = got
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []int{0, 1, 2, 3, 4}
	for id, got := range seen {
		if !slices.Equal(got, want) {
			t.Errorf("%s handled %v, want %v once each, in order", id, got, want)
		}
	}
}

// A handler failing inside a shared transaction rolls back only its own event: the others
// of the group run again without it and are committed once.
func TestGroupCommitIsolatesAFailingHandler(t *testing.T) {
	failure := errors.New("inventory row locked")
	s := &step{}
	h := newHarness(t, s, func(c *Config) { c.Concurrency, c.GroupCommit = 2, true })
	handle := func(ctx context.Context, tx *bolt.Tx, in events.Envelope) ([]events.Envelope, error) {
		outs, err := s.handle(ctx, tx, in) // counts the checkout in the store first
		if in.CheckoutID == "co-bad" {
			return nil, failure
		}
		return outs, err
	}
	g := h.runner.startGroup()
	defer g.stop()
	var batch []*commitReq
	for i, id := range []string{"co-a", "co-bad", "co-c"} {
		in := events.Must(id, input, map[string]string{})
		batch = append(batch, &commitReq{ctx: context.Background(), in: in, seq: uint64(i + 1), handle: handle, done: make(chan commitRes, 1)})
	}
	g.run(batch)

	for _, q := range batch {
		res := <-q.done
		switch q.in.CheckoutID {
		case "co-bad":
			if !errors.Is(res.err, failure) || len(res.outs) != 0 {
				t.Errorf("co-bad: %v, %d outputs; want its own failure", res.err, len(res.outs))
			}
		default:
			if res.err != nil || len(res.outs) != 1 {
				t.Errorf("%s: %v, %d outputs; want committed with its output", q.in.CheckoutID, res.err, len(res.outs))
			}
		}
	}
	wantEffects := map[string]int{"co-a": 1, "co-bad": 0, "co-c": 1}
	for id, want := range wantEffects {
		var n int
		if err := h.db.View(func(tx *bolt.Tx) error {
			_, err := store.Get(tx.Bucket(effectsBucket), id, &n)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if n != want {
			t.Errorf("%s counted %d times in the store, want %d", id, n, want)
		}
	}
	// co-a ran before the failure and again in the retried group; co-c only there.
	s.wantCalls(t, 4)
}

// A simulated crash in one lane stops the runner with that error, as with one lane.
func TestACrashInALaneStopsTheRunner(t *testing.T) {
	crash := errors.New("simulated crash")
	h := newHarness(t, &step{}, func(c *Config) {
		c.Concurrency, c.GroupCommit = 4, true
		c.Hooks.AfterCommit = func(events.Envelope) error { return crash }
	})
	for i := range 10 {
		h.publish(t, fmt.Sprintf("co-%d", i), "")
	}
	if err := h.runner.Run(context.Background()); !errors.Is(err, crash) {
		t.Fatalf("Run returned %v, want the simulated crash", err)
	}
	if n := h.outputsInStream(t); n != 0 {
		t.Fatalf("%d outputs published after the crash", n)
	}
}

func TestEnvelopeCheckoutID(t *testing.T) {
	for data, want := range map[string]string{
		`{"id":"x:1","type":"t","checkout_id":"co_1","payload":{"checkout_id":"other"}}`: "co_1",
		`{"id":"x:2","type":"u","payload":{}}`:                                           "",
		`not json`:                                                                       "",
	} {
		if got := string(envelopeCheckoutID([]byte(data))); got != want {
			t.Errorf("envelopeCheckoutID(%s) = %q, want %q", data, got, want)
		}
	}
}
