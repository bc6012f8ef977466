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

// With many lanes, every event is handled once and each checkout's events in the order of
// the stream.
func TestLanesKeepEachCheckoutInOrder(t *testing.T) {
	seen := map[string][]int{} // by checkout, in the store: what the handler saw, in order
	h := newHarness(t, &step{}, func(c *Config) {
		c.Concurrency = 8
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

// A simulated crash in one lane stops the runner with that error, as with one lane.
func TestACrashInALaneStopsTheRunner(t *testing.T) {
	crash := errors.New("simulated crash")
	h := newHarness(t, &step{}, func(c *Config) {
		c.Concurrency = 4
		c.Hooks.AfterCommit = func(events.Envelope) error { return crash }
	})
	for i := range 10 {
		h.publish(t, fmt.Sprintf("co-%d", i), "")
	}
	h.runUntilCrash(t, crash)
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
