package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/jetcheckout/jetcheckout/runner"
	"github.com/nats-io/nats.go/jetstream"
)

// newCoordinator is a coordinator with the default timing, fed by nothing: the test commits.
func newCoordinator(t *testing.T, env *natstest.Env) *Coordinator {
	t.Helper()
	c, err := New(context.Background(), env.JS, slog.New(slog.DiscardHandler), Config{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func startCoordinator(t *testing.T, env *natstest.Env) *Coordinator {
	t.Helper()
	c := newCoordinator(t, env)
	r, err := c.Runner(env.JS)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Run(t, r)
	return c
}

// requestOf is a checkout.requested naming checkout id (its other fields do not matter here).
func requestOf(id string) []byte {
	return []byte(`{"checkout_id":"` + id + `","cart_id":"cart_1"}`)
}

func forCheckout(t *testing.T, id string, typ events.Subject) events.Envelope {
	e := outcome(t, typ)
	e.CheckoutID, e.ID = id, events.ID(id, typ)
	return e
}

// TestFanIn delivers the two branch completions in both orders, each twice (a second copy
// published later and so not dropped by the stream's duplicate window): exactly one payment
// request per checkout, and nothing else.
func TestFanIn(t *testing.T) {
	env := natstest.Start(t)
	w := env.Watch(t, "checkout.>")
	startCoordinator(t, env)

	orders := map[string][]events.Subject{
		"co_inventory_first": {events.InventoryReserved, events.FraudCleared},
		"co_fraud_first":     {events.FraudCleared, events.InventoryReserved},
	}
	for id, order := range orders {
		env.PublishRaw(t, string(events.Requested), requestOf(id), "")
		env.Publish(t, forCheckout(t, id, events.CartValidated))
		for copyN := range 2 {
			for _, typ := range order {
				e := forCheckout(t, id, typ)
				data, _ := e.Encode()
				env.PublishRaw(t, string(typ), data, fmt.Sprintf("%s-copy-%d", e.ID, copyN))
			}
		}
	}
	env.WaitIdle(t, "coordinator")
	for id := range orders {
		if n := w.Count(id, events.PaymentRequested); n != 1 {
			t.Errorf("%s: %d payment requests, want 1", id, n)
		}
		req := w.Wait(t, id, time.Second, events.PaymentRequested)
		var q events.Quote
		if err := req.DecodePayload(&q); err != nil || !q.Total.Equal(quote().Total) {
			t.Errorf("%s: payment request carries %+v (%v), want the validated quote", id, q, err)
		}
		n := 0
		for _, e := range w.All(id) {
			if e.Type != events.Deadline { // the steps' deadlines are scheduled too
				n++
			}
		}
		if n != 1+4+1 {
			t.Errorf("%s: %d events, want the 5 published and 1 decision", id, n)
		}
	}
}

// TestRedeliveryAfterCrash: the state was saved but the process died before publishing;
// the redelivered message publishes the decision it recorded, once.
func TestRedeliveryAfterCrash(t *testing.T) {
	env := natstest.Start(t)
	w := env.Watch(t, "checkout.>")
	ctx := context.Background()
	c, err := New(ctx, env.JS, slog.New(slog.DiscardHandler), Config{})
	if err != nil {
		t.Fatal(err)
	}
	id := "co_crash"
	var lastSeq uint64
	ack, err := env.JS.Publish(ctx, string(events.Requested), requestOf(id))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Commit(ctx, events.RequestEnvelope(requestOf(id), events.Origin{StreamSeq: ack.Sequence}), ack.Sequence); err != nil {
		t.Fatal(err)
	}
	for _, typ := range []events.Subject{events.CartValidated, events.InventoryReserved, events.FraudCleared} {
		e := forCheckout(t, id, typ)
		data, _ := e.Encode()
		ack, err := env.JS.Publish(ctx, string(typ), data, jetstream.WithMsgID(e.ID))
		if err != nil {
			t.Fatal(err)
		}
		lastSeq = ack.Sequence
		// The "crashed" coordinator applies every event, publishing nothing.
		if _, err := c.Commit(ctx, e, ack.Sequence); err != nil {
			t.Fatal(err)
		}
	}
	st, _, _ := c.State(ctx, id)
	if st.Applied[events.ID(id, events.FraudCleared)].Seq != lastSeq {
		t.Fatal("state does not record the stream sequence of the event it applied")
	}
	startCoordinator(t, env) // the restarted coordinator gets all three again
	env.WaitIdle(t, "coordinator")
	if n := w.Count(id, events.PaymentRequested); n != 1 {
		t.Errorf("%d payment requests after the restart, want 1", n)
	}
}

// TestConcurrentCompletions races the two completions of many checkouts through two
// coordinators sharing the bucket: compare-and-swap makes exactly one of them decide.
func TestConcurrentCompletions(t *testing.T) {
	env := natstest.Start(t)
	ctx := context.Background()
	var cs [2]*Coordinator
	for i := range cs {
		c, err := New(ctx, env.JS, slog.New(slog.DiscardHandler), Config{})
		if err != nil {
			t.Fatal(err)
		}
		cs[i] = c
	}
	const n = 40
	var mu sync.Mutex
	requests := map[string]int{}
	var wg sync.WaitGroup
	for i := range n {
		id := fmt.Sprintf("co_race_%d", i)
		if _, err := cs[0].Commit(ctx, events.RequestEnvelope(requestOf(id), events.Origin{}), 100); err != nil {
			t.Fatal(err)
		}
		if _, err := cs[0].Commit(ctx, forCheckout(t, id, events.CartValidated), 1); err != nil {
			t.Fatal(err)
		}
		for k, typ := range []events.Subject{events.InventoryReserved, events.FraudCleared} {
			wg.Go(func() {
				outs, err := cs[k].Commit(ctx, forCheckout(t, id, typ), uint64(2+k))
				if err != nil {
					t.Error(err)
				}
				mu.Lock()
				defer mu.Unlock()
				for _, o := range outs {
					if o.Type == events.PaymentRequested {
						requests[id]++
					}
				}
			})
		}
	}
	wg.Wait()
	for i := range n {
		id := fmt.Sprintf("co_race_%d", i)
		if requests[id] != 1 {
			t.Errorf("%s: %d payment requests, want 1", id, requests[id])
		}
	}
}

// TestMalformedInput: garbage and contradictions are terminated with a reason on
// checkout.rejected, never redelivered, and change no state.
func TestMalformedInput(t *testing.T) {
	env := natstest.Start(t)
	w := env.Watch(t, "checkout.>")
	c := startCoordinator(t, env)

	env.PublishRaw(t, string(events.InventoryReserved), []byte(`{"id":`), "")
	forged := forCheckout(t, "co_forged", events.InventoryReleased) // a release nobody asked for
	env.Publish(t, forged)
	env.WaitIdle(t, "coordinator")

	natstest.Eventually(t, 5*time.Second, func() bool {
		return w.Count("unknown", events.Rejected)+w.Count("co_forged", events.Rejected) >= 2
	}, "expected two rejections")
	rejections := 0
	for _, e := range w.All("") {
		if e.Type == events.Rejected {
			rejections++
			var r events.RejectedInput
			if err := e.DecodePayload(&r); err != nil || r.Reason == "" || r.Consumer != "coordinator" {
				t.Errorf("rejection %+v (%v): want a reason and the consumer", r, err)
			}
		}
	}
	if rejections != 2 {
		t.Errorf("%d rejections, want 2", rejections)
	}
	if _, found, _ := c.State(context.Background(), "co_forged"); found {
		t.Error("a forged compensation created checkout state")
	}
}

// TestOrphans: a step done for a checkout that was never requested (no request before it
// in the stream) is undone, so nothing stays held for nobody; its undo says why.
// (TestEventBeforeItsRequest: one whose request may still come waits for it.)
func TestOrphans(t *testing.T) {
	env := natstest.Start(t)
	w := env.Watch(t, "checkout.>")
	startCoordinator(t, env)

	env.Publish(t, forCheckout(t, "co_orphan", events.InventoryReserved))
	env.Publish(t, forCheckout(t, "co_orphan_validated", events.CartValidated))

	var undo events.Compensation
	release := w.Wait(t, "co_orphan", 10*time.Second, events.InventoryRelease)
	if err := release.DecodePayload(&undo); err != nil || !strings.Contains(undo.Reason, "never requested") {
		t.Errorf("release of the orphan reservation: %+v (%v)", undo, err)
	}
	if release.CausationID != events.ID("co_orphan", events.InventoryReserved) {
		t.Errorf("release caused by %q", release.CausationID)
	}
	// A success with nothing to undo is refused with the reason.
	var why events.RejectedInput
	if err := w.Wait(t, "co_orphan_validated", 10*time.Second, events.Rejected).DecodePayload(&why); err != nil || !strings.Contains(why.Reason, "never requested") {
		t.Errorf("rejection %+v (%v)", why, err)
	}
}

// TestDeadlineFires: nobody validates the cart; the deadline the coordinator scheduled
// with the server fires and the checkout fails, explained.
func TestDeadlineFires(t *testing.T) {
	env := natstest.Start(t)
	w := env.Watch(t, "checkout.>")
	c, err := New(context.Background(), env.JS, slog.New(slog.DiscardHandler), Config{
		Grace: 200 * time.Millisecond, Deadlines: map[events.StepName]time.Duration{events.StepValidateCart: 300 * time.Millisecond},
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.Runner(env.JS)
	if err != nil {
		t.Fatal(err)
	}
	natstest.Run(t, r)
	env.PublishRaw(t, string(events.Requested), []byte(`{"checkout_id":"co_lonely","cart_id":"cart_1"}`), "")
	end := w.Wait(t, "co_lonely", 10*time.Second, events.Failed, events.Completed)
	var f events.CheckoutFailed
	if err := end.DecodePayload(&f); err != nil || end.Type != events.Failed {
		t.Fatalf("ended with %s %s (%v)", end.Type, end.Payload, err)
	}
	if f.Code != events.CodeDeadlineExceeded || f.Step != events.StepValidateCart {
		t.Errorf("failed with %+v, want validate_cart_items' deadline", f)
	}
}

// TestEventBeforeItsRequest is the chaos run's finding (seed 4): a coordinator killed while
// it held a checkout.requested gets the checkout's next events at once after its restart,
// and the request only when its AckWait has run out. Those events must wait for the
// request, not be refused as belonging to a checkout that was never requested (which lost
// them: the stock they reserved stayed held and the checkout failed at a step that had
// succeeded).
func TestEventBeforeItsRequest(t *testing.T) {
	env := natstest.Start(t)
	w := env.Watch(t, "checkout.>")
	ctx := t.Context()
	c, err := New(ctx, env.JS, slog.New(slog.DiscardHandler), Config{})
	if err != nil {
		t.Fatal(err)
	}
	subjects := make([]string, 0, len(c.Subjects()))
	for _, s := range c.Subjects() {
		subjects = append(subjects, string(s))
	}
	// The first coordinator: it takes the request and dies before acknowledging it.
	cons, err := env.JS.CreateOrUpdateConsumer(ctx, events.StreamCheckout, jetstream.ConsumerConfig{
		Durable: events.ServiceCoordinator, FilterSubjects: subjects, AckPolicy: jetstream.AckExplicitPolicy,
		AckWait: 2 * time.Second, MaxDeliver: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	env.PublishRaw(t, string(events.Requested), requestOf("co_early"), "")
	batch, err := cons.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	for range batch.Messages() {
		// held, never acknowledged
	}
	// Its next events, and a stray one for a checkout nobody requested.
	for _, typ := range []events.Subject{events.CartValidated, events.InventoryReserved} {
		env.Publish(t, forCheckout(t, "co_early", typ))
	}

	// The restarted coordinator.
	r, err := c.Runner(env.JS, func(rc *runner.Config) { rc.AckWait, rc.RetryBase = 2*time.Second, 100*time.Millisecond })
	if err != nil {
		t.Fatal(err)
	}
	natstest.Run(t, r)
	natstest.Eventually(t, 15*time.Second, func() bool {
		st, found, err := c.State(ctx, "co_early")
		return err == nil && found && st.Steps[events.StepValidateCart] != nil && st.Steps[events.StepValidateCart].Status == StepDone &&
			st.Steps[events.StepReserveInventory] != nil && st.Steps[events.StepReserveInventory].Status == StepDone
	}, "the events that came before the request were not applied after it")
	if n := w.Count("co_early", events.Rejected); n != 0 {
		t.Errorf("%d events of the requested checkout were refused", n)
	}

	// Once nothing before it is pending, a reservation of a checkout never requested is
	// undone (TestOrphans).
	env.Publish(t, forCheckout(t, "co_stray", events.InventoryReserved))
	natstest.Eventually(t, 10*time.Second, func() bool { return w.Count("co_stray", events.InventoryRelease) == 1 },
		"a reservation of a checkout never requested was not undone once nothing before it was pending")
}

// TestAStaleDeadlineWritesNothing: a timer the checkout does not hold (a copy, or one from
// before a restart) that finds no step past its deadline changes nothing, so the checkout's
// state is not written again; one that finds a step late fails it, as TestDeadlineFires shows.
func TestAStaleDeadlineWritesNothing(t *testing.T) {
	env := natstest.Start(t)
	ctx := context.Background()
	c, err := New(ctx, env.JS, slog.New(slog.DiscardHandler), Config{})
	if err != nil {
		t.Fatal(err)
	}
	id := "co_answered"
	if _, err := c.Commit(ctx, events.RequestEnvelope(requestOf(id), events.Origin{StreamSeq: 1}), 1); err != nil {
		t.Fatal(err)
	}
	st, _, _ := c.State(ctx, id)
	deadline := st.Steps[events.StepValidateCart].Deadline.Add(-time.Second)
	if _, err := c.Commit(ctx, forCheckout(t, id, events.CartValidated), 2); err != nil {
		t.Fatal(err)
	}
	kv, err := env.JS.KeyValue(ctx, events.BucketCheckouts)
	if err != nil {
		t.Fatal(err)
	}
	before, err := kv.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	stale := events.Must(id, events.Deadline, events.DeadlineReached{Step: events.StepValidateCart, Deadline: deadline})
	// Its first deliveries read again (a replica may not show the write that set it yet);
	// then it is dropped.
	if outs, err := c.Commit(runner.WithAttempt(ctx, 1), stale, 3); err == nil || errors.Is(err, events.ErrMalformed) || len(outs) != 0 {
		t.Fatalf("stale deadline, first delivery: %d decisions, %v; want a retry", len(outs), err)
	}
	outs, err := c.Commit(runner.WithAttempt(ctx, staleReadAttempts), stale, 3)
	if err != nil || len(outs) != 0 {
		t.Fatalf("stale deadline: %d decisions, %v; want none", len(outs), err)
	}
	after, err := kv.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if after.Revision() != before.Revision() {
		t.Errorf("the stale deadline wrote the state (revision %d → %d)", before.Revision(), after.Revision())
	}
	if st, _, _ := c.State(ctx, id); st.Steps[events.StepValidateCart].Status != StepDone {
		t.Errorf("validation is %s after its stale deadline, want done", st.Steps[events.StepValidateCart].Status)
	}
}

// TestRequestReusedForOtherContent: a later checkout.requested with the same checkout_id
// is a copy when it asks for the same thing (however it is encoded) and is dropped; one
// that asks for something else is refused with the reason (the runner rejects it to
// DEADLETTER and checkout.rejected), and the first request's checkout goes on untouched.
func TestRequestReusedForOtherContent(t *testing.T) {
	env := natstest.Start(t)
	ctx := context.Background()
	c, err := New(ctx, env.JS, slog.New(slog.DiscardHandler), Config{})
	if err != nil {
		t.Fatal(err)
	}
	id := "co_reused"
	addr := events.Address{Name: "Ada Lovelace", Line1: "1 Main St", City: "Springfield", State: "CA", PostalCode: "12345", Country: "US"}
	req := events.CheckoutRequest{CheckoutID: id, CartID: "cart_1", CustomerID: "cus_1", CustomerEmail: "ada@example.com",
		PaymentMethodID: "pm_card_visa", ShippingAddress: addr, BillingAddress: addr}
	first, _ := json.Marshal(req)
	if _, err := c.Commit(ctx, events.RequestEnvelope(first, events.Origin{StreamSeq: 1}), 1); err != nil {
		t.Fatal(err)
	}
	// The same request, its fields in another order and spaced out.
	var fields map[string]any
	_ = json.Unmarshal(first, &fields)
	reordered, _ := json.MarshalIndent(fields, "", "  ")
	if outs, err := c.Commit(ctx, events.RequestEnvelope(reordered, events.Origin{StreamSeq: 7}), 7); err != nil || len(outs) != 0 {
		t.Fatalf("a copy encoded differently: %d decisions, %v; want dropped", len(outs), err)
	}
	req.CartID = "cart_2"
	other, _ := json.Marshal(req)
	_, err = c.Commit(ctx, events.RequestEnvelope(other, events.Origin{StreamSeq: 9}), 9)
	if !errors.Is(err, events.ErrMalformed) || !strings.Contains(err.Error(), "already requested with other content") {
		t.Fatalf("a reuse for another cart: %v; want it refused as malformed with the reason", err)
	}
	if st, _, _ := c.State(ctx, id); st.CartID != "cart_1" || st.Status != StatusRunning {
		t.Errorf("after the refused reuse: cart %s, status %s; want the first request's checkout untouched", st.CartID, st.Status)
	}
}

// TestNoStateAfterRetention: with no key for a checkout, a timer or a success older than
// half the retention is dropped, not undone (a late event of an ended checkout whose key the
// server removed), while a fresh success still is undone (an orphan). The old ones are not
// refused either: handled, with the reason in the log.
func TestNoStateAfterRetention(t *testing.T) {
	env := natstest.Start(t)
	w := env.Watch(t, "checkout.>")
	c, err := New(context.Background(), env.JS, slog.New(slog.DiscardHandler), Config{Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	r, err := c.Runner(env.JS, func(rc *runner.Config) { rc.RetryBase = 10 * time.Millisecond })
	if err != nil {
		t.Fatal(err)
	}
	natstest.Run(t, r)

	deadline := events.Must("co_removed_timer", events.Deadline, events.DeadlineReached{Step: events.StepCreateOrder, Deadline: time.Now()})
	deadline.Time = time.Now().Add(-31 * time.Minute)
	old := forCheckout(t, "co_removed", events.InventoryReserved)
	old.Time = time.Now().Add(-31 * time.Minute)
	fresh := forCheckout(t, "co_fresh_orphan", events.InventoryReserved)
	fresh.Time = time.Now()
	for _, e := range []events.Envelope{deadline, old, fresh} {
		env.Publish(t, e)
	}
	w.Wait(t, "co_fresh_orphan", 10*time.Second, events.InventoryRelease)
	env.WaitIdle(t, "coordinator")
	for _, id := range []string{"co_removed_timer", "co_removed"} {
		if all := w.All(id); len(all) != 1 {
			t.Errorf("%s: %d events (the last %s), want only the one published: nothing undone, nothing refused", id, len(all), all[len(all)-1].Type)
		}
	}
}

// TestCachedStateOfAnotherWriter: a coordinator starts an event from the state it wrote
// last, but another coordinator sharing the bucket may have written since. Its write then
// fails the compare-and-swap and the event is applied to what the bucket holds: the fan-in
// still decides once, and a copy the stale state has not seen is still dropped as a copy.
func TestCachedStateOfAnotherWriter(t *testing.T) {
	env := natstest.Start(t)
	ctx := context.Background()
	var a, b *Coordinator
	for _, c := range []**Coordinator{&a, &b} {
		var err error
		if *c, err = New(ctx, env.JS, slog.New(slog.DiscardHandler), Config{}); err != nil {
			t.Fatal(err)
		}
	}
	kv, err := env.JS.KeyValue(ctx, events.BucketCheckouts)
	if err != nil {
		t.Fatal(err)
	}
	id := "co_two_writers"
	commit := func(c *Coordinator, e events.Envelope, seq uint64) []events.Envelope {
		t.Helper()
		outs, err := c.Commit(ctx, e, seq)
		if err != nil {
			t.Fatal(err)
		}
		return outs
	}
	commit(a, events.RequestEnvelope(requestOf(id), events.Origin{StreamSeq: 1}), 1)
	commit(a, forCheckout(t, id, events.CartValidated), 2)
	entry, err := kv.Get(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if st, rev, ok := a.states.take(id); !ok || rev != entry.Revision() || st.Steps[events.StepValidateCart].Status != StepDone {
		t.Fatalf("a's cached state: found %v at revision %d, want the one it wrote at %d", ok, rev, entry.Revision())
	} else {
		a.states.put(st, rev)
	}

	commit(b, forCheckout(t, id, events.InventoryReserved), 3) // a's cached state is stale now
	outs := commit(a, forCheckout(t, id, events.FraudCleared), 4)
	if n := len(slices.DeleteFunc(outs, func(o events.Envelope) bool { return o.Type != events.PaymentRequested })); n != 1 {
		t.Fatalf("fraud cleared after inventory reserved by the other coordinator: %d payment requests, want 1", n)
	}
	// b's cached state has not seen fraud cleared; a later copy of it is still a copy.
	if outs := commit(b, forCheckout(t, id, events.FraudCleared), 9); len(outs) != 0 {
		t.Errorf("a later copy, on a stale cached state: %d decisions, want it dropped", len(outs))
	}
	if _, _, ok := a.states.take(id); !ok {
		t.Error("a keeps no state of the running checkout it wrote last")
	}
	commit(b, forCheckout(t, id, events.PaymentFailed), 5) // the checkout fails, its stock released
	commit(b, forCheckout(t, id, events.InventoryReleased), 6)
	if st, _, _ := b.State(ctx, id); st.Status != StatusFailed {
		t.Fatalf("checkout %s after its payment failed and its stock was released, want failed", st.Status)
	}
	if _, _, ok := b.states.take(id); ok {
		t.Error("b keeps the state of the checkout it ended: nothing starts from it")
	}
	st, _, _ := a.State(ctx, id)
	for typ, seq := range map[events.Subject]uint64{events.InventoryReserved: 3, events.FraudCleared: 4} {
		if got := st.Applied[events.ID(id, typ)].Seq; got != seq {
			t.Errorf("%s applied at sequence %d, want %d", typ, got, seq)
		}
	}
}

// TestStaleCachedStateRefusesNothing: a cached state another coordinator has moved past can
// refuse an event the bucket's state accepts (here an undo's confirmation for a step it still
// sees running). A refusal writes nothing, so it is decided on a fresh read: the refund is
// decided, not the confirmation dead-lettered with the checkout left failing for ever.
func TestStaleCachedStateRefusesNothing(t *testing.T) {
	env := natstest.Start(t)
	ctx := context.Background()
	var a, b *Coordinator
	for _, c := range []**Coordinator{&a, &b} {
		var err error
		if *c, err = New(ctx, env.JS, slog.New(slog.DiscardHandler), Config{}); err != nil {
			t.Fatal(err)
		}
	}
	id := "co_stale_refusal"
	commit := func(c *Coordinator, e events.Envelope, seq uint64) []events.Envelope {
		t.Helper()
		outs, err := c.Commit(ctx, e, seq)
		if err != nil {
			t.Fatalf("%s: %v", e.Type, err)
		}
		return outs
	}
	commit(a, events.RequestEnvelope(requestOf(id), events.Origin{StreamSeq: 1}), 1)
	for i, typ := range []events.Subject{events.CartValidated, events.InventoryReserved, events.FraudCleared, events.PaymentCaptured} {
		commit(a, forCheckout(t, id, typ), uint64(i+2)) // a caches create_order running
	}
	if outs := commit(b, forCheckout(t, id, events.OrderFailed+uncertain), 6); len(outs) != 1 || outs[0].Type != events.OrderCancel {
		t.Fatalf("order given up: decided %v, want its cancel", outs)
	}
	outs := commit(a, forCheckout(t, id, events.OrderCancelled), 7)
	if len(outs) != 1 || outs[0].Type != events.PaymentRefund {
		t.Fatalf("order cancelled, seen from a stale cached state: decided %v, want the payment's refund", outs)
	}
}

// TestARefusalIsReadAgainBeforeItIsBelieved: in a cluster a read of the bucket may lag the
// other coordinator's last write, so an event the state read refuses (here the confirmation
// of an undo never asked for, as a lagging replica would show one just decided) is retried
// on its first deliveries and refused only on the last: the refusal of a real confirmation
// would leave its checkout failing for ever, a refund never decided.
func TestARefusalIsReadAgainBeforeItIsBelieved(t *testing.T) {
	env := natstest.Start(t)
	ctx := context.Background()
	c, err := New(ctx, env.JS, slog.New(slog.DiscardHandler), Config{})
	if err != nil {
		t.Fatal(err)
	}
	id := "co_refused"
	if _, err := c.Commit(ctx, events.RequestEnvelope(requestOf(id), events.Origin{StreamSeq: 1}), 1); err != nil {
		t.Fatal(err)
	}
	released := forCheckout(t, id, events.InventoryReleased)
	for attempt := 1; attempt < staleReadAttempts; attempt++ {
		if _, err := c.Commit(runner.WithAttempt(ctx, attempt), released, 2); err == nil || errors.Is(err, events.ErrMalformed) {
			t.Fatalf("delivery %d: %v; want a retry, not a refusal", attempt, err)
		}
	}
	if _, err := c.Commit(runner.WithAttempt(ctx, staleReadAttempts), released, 2); !errors.Is(err, events.ErrMalformed) {
		t.Fatalf("delivery %d: %v; want it refused as malformed", staleReadAttempts, err)
	}
	if st, _, _ := c.State(ctx, id); st.Status != StatusRunning {
		t.Errorf("status %s after the refusals, want running", st.Status)
	}
}

// lagging makes c's direct gets of checkout id answer as a replica that has not applied the
// bucket's writes since then: the key as it is now.
func lagging(t *testing.T, c *Coordinator, id string) {
	t.Helper()
	then, err := c.kv.Get(context.Background(), id)
	if err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatal(err)
	}
	c.readReplica = func(_ context.Context, key string) (*State, uint64, error) {
		if key != id {
			t.Fatalf("read %s; want only %s", key, id)
		}
		if then == nil {
			return newState(id), 0, nil
		}
		return decodeState(id, then.Value(), then.Revision())
	}
}

// In a cluster an undo's confirmation can reach the other coordinator while the replica that
// answers its reads has not applied the writes before it. There it looks like one for a
// step never done (refused), or it applies to a state the bucket has moved past (its
// compare-and-swap fails). Either way it is applied again to the leader's state and
// decided at once, on its first delivery: not refused as malformed if the replica stays
// behind, nor failed after its conflicts.
func TestAStaleReadIsSettledOnTheLeader(t *testing.T) {
	for name, lagsFrom := range map[string]events.Subject{
		"refused by a state that never saw the reservation": events.CartValidated,
		"applied to a state that has moved on":              events.InventoryReserved,
	} {
		t.Run(name, func(t *testing.T) {
			env := natstest.Start(t)
			ctx := context.Background()
			a := newCoordinator(t, env)
			b := newCoordinator(t, env) // the other coordinator
			id := "co_lagging"
			if _, err := a.Commit(ctx, events.RequestEnvelope(requestOf(id), events.Origin{StreamSeq: 1}), 1); err != nil {
				t.Fatal(err)
			}
			var seq uint64 = 1
			for _, typ := range []events.Subject{events.CartValidated, events.InventoryReserved, events.FraudFailed} {
				seq++
				outs, err := a.Commit(ctx, forCheckout(t, id, typ), seq)
				if err != nil {
					t.Fatalf("%s: %v", typ, err)
				}
				if typ == lagsFrom {
					lagging(t, b, id)
				}
				if typ == events.FraudFailed && !slices.ContainsFunc(outs, func(e events.Envelope) bool { return e.Type == events.InventoryRelease }) {
					t.Fatalf("fraud failed, decisions %v; want the reservation released", outs)
				}
			}
			outs, err := b.Commit(runner.WithAttempt(ctx, 1), forCheckout(t, id, events.InventoryReleased), seq+1)
			if err != nil {
				t.Fatalf("the release's first delivery: %v; want it applied", err)
			}
			if !slices.ContainsFunc(outs, func(e events.Envelope) bool { return e.Type == events.Failed }) {
				t.Errorf("decisions %v; want the checkout failed once the reservation is released", outs)
			}
			if st, _, err := a.State(ctx, id); err != nil || st.Status != StatusFailed || st.Steps[events.StepReserveInventory].Status != StepCompensated {
				t.Errorf("state %+v (%v); want failed, the reservation compensated", st, err)
			}
		})
	}
}

// An event of a checkout whose request a lagging replica does not show yet is not taken for
// one of a checkout never requested, even on the delivery where that would be believed.
func TestNoStateIsConfirmedOnTheLeader(t *testing.T) {
	env := natstest.Start(t)
	ctx := context.Background()
	a := newCoordinator(t, env)
	b := newCoordinator(t, env)
	id := "co_unseen"
	lagging(t, b, id)
	if _, err := a.Commit(ctx, events.RequestEnvelope(requestOf(id), events.Origin{StreamSeq: 1}), 1); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Commit(runner.WithAttempt(ctx, staleReadAttempts), forCheckout(t, id, events.CartValidated), 2); err != nil {
		t.Fatalf("cart validated, as the replica does not show the request: %v; want it applied", err)
	}
	if st, _, err := a.State(ctx, id); err != nil || st.Steps[events.StepValidateCart].Status != StepDone {
		t.Errorf("state %+v (%v); want the cart validated", st, err)
	}
}
