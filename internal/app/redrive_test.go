package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
)

// TestRedrive: a completed checkout whose label (flagged) or confirmation email (warning)
// failed after its order is re-driven once the carrier and the mail are back: the failed
// step runs again and nothing is done twice (one label, one pick, one email); the re-drive
// and its outcome are in the checkout's history. A re-drive that fails again says so, and a
// later one can still finish it. A failed, a running, an unknown checkout, and one with
// nothing failed are refused with the reason; two re-drives at once make one.
func TestRedrive(t *testing.T) {
	var carrierDown, mailDown atomic.Bool
	carrierDown.Store(true)
	mailDown.Store(true)
	r := startRig(t, t.TempDir(), nil, withMaxDeliver(2),
		withFault(events.ServiceShipping, while(&carrierDown, events.FulfilmentRequested, "co-rd-label", "co-rd-again")),
		withFault(events.ServiceNotifications, while(&mailDown, events.FulfilmentRequested, "co-rd-mail")))
	item := events.CartItem{ProductID: "mug-nats", Quantity: 1}
	for _, id := range []string{"co-rd-label", "co-rd-again", "co-rd-mail", "co-rd-clean"} {
		r.checkout(t, id, "pm_card_visa", item)
	}
	r.checkout(t, "co-rd-declined", "pm_card_chargeDeclined", item)
	for id, attention := range map[string]bool{"co-rd-label": true, "co-rd-again": true, "co-rd-mail": false, "co-rd-clean": false} {
		done := completedOf(t, r.watch, id)
		if done.NeedsAttention != attention || (id != "co-rd-clean") != (len(done.Warnings) > 0) {
			t.Fatalf("%s completed with needs_attention=%v warnings=%v", id, done.NeedsAttention, done.Warnings)
		}
	}
	r.failed(t, "co-rd-declined", events.CodeCardDeclined, events.StepProcessPayment)

	refused := map[string]string{
		"co-rd-clean": "nothing to re-drive",
		"co-rd-nope":  "no checkout",
	}
	for id, why := range refused {
		if _, err := redrive(t, r.System, id, "ops", "the carrier is back"); err == nil || !strings.Contains(err.Error(), why) {
			t.Errorf("re-drive of %s: %v, want a refusal saying %q", id, err, why)
		}
	}
	if _, err := redrive(t, r.System, "co-rd-label", "ops", " "); err == nil || !strings.Contains(err.Error(), "reason") {
		t.Errorf("a re-drive without a reason: %v", err)
	}

	// The carrier is back: the label, then the warehouse notice, run; one pick.
	carrierDown.Store(false)
	reply, err := redrive(t, r.System, "co-rd-label", "ops", "the carrier is back")
	if err != nil || reply.Attempt != 1 || len(reply.Steps) != 1 || reply.Steps[0] != events.StepCreateLabel {
		t.Fatalf("re-drive of co-rd-label: %+v, %v", reply, err)
	}
	settled := settledOf(t, r.watch, "co-rd-label", 1)
	if settled.NeedsAttention || len(settled.Warnings) != 0 {
		t.Errorf("co-rd-label after its re-drive: %+v, want nothing left", settled)
	}
	if _, found, _ := r.Shipping.Label("ord_co-rd-label"); !found {
		t.Error("no label for co-rd-label after its re-drive")
	}
	if n := picks(t, r.System, "co-rd-label"); n != 1 {
		t.Errorf("co-rd-label: %d picks on WAREHOUSE, want 1", n)
	}
	if _, err := redrive(t, r.System, "co-rd-label", "ops", "again"); err == nil || !strings.Contains(err.Error(), "nothing to re-drive") {
		t.Errorf("a second re-drive of a settled checkout: %v", err)
	}

	// Two re-drives at once of the mail: one runs; one email.
	mailDown.Store(false)
	var wg sync.WaitGroup
	var accepted atomic.Int32
	for range 2 {
		wg.Go(func() {
			if _, err := redrive(t, r.System, "co-rd-mail", "ops", "SMTP is back"); err == nil {
				accepted.Add(1)
			}
		})
	}
	wg.Wait()
	if accepted.Load() != 1 {
		t.Errorf("%d of two simultaneous re-drives accepted, want 1", accepted.Load())
	}
	if settled := settledOf(t, r.watch, "co-rd-mail", 1); len(settled.Warnings) != 0 {
		t.Errorf("co-rd-mail after its re-drive: %+v", settled)
	}
	if n := confirmations(r.watch, "co-rd-mail"); n != 1 {
		t.Errorf("co-rd-mail: %d confirmations sent, want 1", n)
	}

	// Re-driven while the carrier is still down: it fails again, flagged; then it works.
	carrierDown.Store(true)
	if _, err := redrive(t, r.System, "co-rd-again", "ops", "try once more"); err != nil {
		t.Fatal(err)
	}
	if again := settledOf(t, r.watch, "co-rd-again", 1); !again.NeedsAttention || len(again.Warnings) != 1 {
		t.Errorf("co-rd-again re-driven while the carrier is down: %+v, want flagged with one warning", again)
	}
	carrierDown.Store(false)
	if reply, err := redrive(t, r.System, "co-rd-again", "ops", "the carrier is back"); err != nil || reply.Attempt != 2 {
		t.Fatalf("second re-drive of co-rd-again: %+v, %v", reply, err)
	}
	if again := settledOf(t, r.watch, "co-rd-again", 2); again.NeedsAttention || len(again.Warnings) != 0 {
		t.Errorf("co-rd-again after its second re-drive: %+v; events %v", again, eventIDs(r.watch, "co-rd-again"))
	}
	if n := picks(t, r.System, "co-rd-again"); n != 1 {
		t.Errorf("co-rd-again: %d picks, want 1", n)
	}
	for _, id := range []string{"co-rd-label", "co-rd-again", "co-rd-mail"} {
		if n := r.watch.Count(id, events.Completed); n != 1 {
			t.Errorf("%s: %d checkout.completed, want 1", id, n)
		}
		if n := len(intentsOf(r.emu, id)); n != 1 {
			t.Errorf("%s: %d payment intents", id, n)
		}
	}
}

// while is a fault that fails a route of the checkouts named while down is set: a carrier
// or a mail server that is down, then back.
func while(down *atomic.Bool, route events.Subject, checkoutIDs ...string) Fault {
	return failWhile(down, errors.New("the service behind this step is down"), route, checkoutIDs...)
}

// failWhile fails route with err for checkoutIDs while down is set.
func failWhile(down *atomic.Bool, err error, route events.Subject, checkoutIDs ...string) Fault {
	return func(subject events.Subject, in events.Envelope) error {
		if subject == route && down.Load() && slices.Contains(checkoutIDs, in.CheckoutID) {
			return err
		}
		return nil
	}
}

// redrive asks the coordinator, as the HTTP API and the nats CLI do.
func redrive(t *testing.T, sys *System, id, by, reason string) (events.RedriveReply, error) {
	return ask[events.RedriveReply](t, sys, events.CheckoutsRedrive, events.RedriveRequest{CheckoutID: id, By: by, Reason: reason})
}

// ask sends req to a micro endpoint: its reply, or its error as "<code>: <description>".
func ask[R any](t *testing.T, sys *System, subject events.Subject, req any) (R, error) {
	t.Helper()
	var reply R
	raw, _ := json.Marshal(req)
	msg, err := sys.NC.Request(string(subject), raw, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		return reply, errors.New(code + ": " + msg.Header.Get(micro.ErrorHeader))
	}
	return reply, json.Unmarshal(msg.Data, &reply)
}

func completedOf(t *testing.T, w *natstest.Watcher, id string) events.CheckoutCompleted {
	t.Helper()
	end := w.Wait(t, id, wait, events.Completed, events.Failed)
	var done events.CheckoutCompleted
	if end.Type != events.Completed || json.Unmarshal(end.Payload, &done) != nil {
		t.Fatalf("%s ended in %s: %s", id, end.Type, end.Payload)
	}
	return done
}

// settledOf waits for the outcome of re-drive attempt of checkout id.
func settledOf(t *testing.T, w *natstest.Watcher, id string, attempt int) events.RedriveOutcome {
	t.Helper()
	var found events.RedriveOutcome
	natstest.Eventually(t, wait, func() bool {
		for _, e := range w.All(id) {
			var out events.RedriveOutcome
			if e.Type == events.RedriveSettled && json.Unmarshal(e.Payload, &out) == nil && out.Attempt == attempt {
				found = out
				return true
			}
		}
		return false
	}, "%s: re-drive %d never settled; saw %v", id, attempt, eventIDs(w, id))
	return found
}

// confirmations counts the confirmation emails sent for a checkout: its distinct message IDs.
func confirmations(w *natstest.Watcher, id string) int {
	ids := map[string]bool{}
	for _, e := range w.All(id) {
		var sent events.EmailSent
		if e.Type == events.ConfirmationSent && json.Unmarshal(e.Payload, &sent) == nil {
			ids[sent.MessageID] = true
		}
	}
	return len(ids)
}

// picks counts the pick requests the WAREHOUSE work queue holds for a checkout's order.
func picks(t *testing.T, sys *System, id string) int {
	t.Helper()
	stream, err := sys.JS.Stream(context.Background(), events.StreamWarehouse)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(context.Background(), jetstream.WithSubjectFilter(events.WarehouseSubjects))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := stream.GetMsg(context.Background(), seq)
		if err != nil {
			continue
		}
		var p events.Envelope
		if json.Unmarshal(m.Data, &p) == nil && p.CheckoutID == id {
			n++
		}
	}
	return n
}

func eventIDs(w *natstest.Watcher, id string) []string {
	var out []string
	for _, e := range w.All(id) {
		out = append(out, strings.TrimPrefix(e.ID, id+":"))
	}
	return out
}

// TestARedrivenCheckoutRebuilds: every view rebuilt from a stream with a re-drive in it (a
// label that failed, then was made, its pick queued) equals the live one, and the rebuild
// publishes nothing.
func TestARedrivenCheckoutRebuilds(t *testing.T) {
	env := natstest.Start(t)
	emu := startEmulator(t)
	logs := newLogRecorder(testLogger().Handler())
	log := slog.New(logs)
	var carrierDown atomic.Bool
	carrierDown.Store(true)
	dirs := map[string]string{}
	start := func(name string) *System {
		t.Helper()
		cfg := testConfig(dirs[name])
		cfg.NATSURL, cfg.StripeBase, cfg.StripeKey, cfg.MaxDeliver, cfg.RetryBase = env.URL, emu.URL, "sk_test_redrive", 2, 10*time.Millisecond
		if name == events.ServiceShipping {
			withFault(name, while(&carrierDown, events.FulfilmentRequested, "co-rdr-label"))(&cfg)
		}
		return startProcess(t, cfg, log, name)
	}
	systems := map[string]*System{}
	for _, name := range Services {
		dirs[name] = t.TempDir()
		systems[name] = start(name)
	}
	w := env.Watch(t, "checkout.>")
	cart := createCart(t, systems[events.ServiceCatalog], "USD", events.CartItem{ProductID: "mug-nats", Quantity: 1})
	publishCheckout(t, systems[events.ServiceCatalog], checkoutRequestFor("co-rdr-label", cart.ID, "pm_card_visa", "ada@example.com"))
	if done := completedOf(t, w, "co-rdr-label"); !done.NeedsAttention {
		t.Fatalf("co-rdr-label completed without attention: %+v", done)
	}
	carrierDown.Store(false)
	if _, err := redrive(t, systems[events.ServiceCoordinator], "co-rdr-label", "ops", "the carrier is back"); err != nil {
		t.Fatal(err)
	}
	if out := settledOf(t, w, "co-rdr-label", 1); out.NeedsAttention {
		t.Fatalf("the re-drive left %+v", out)
	}
	for _, name := range Services {
		(&natstest.Env{JS: env.JS}).WaitIdle(t, name)
	}
	published := len(w.All(""))
	for _, name := range slices.Sorted(maps.Keys(events.Rebuildable)) {
		rebuildView(t, name, dirs[name], systems, start, logs)
	}
	if n := len(w.All("")); n != published {
		t.Errorf("%d events published while the views were rebuilt: %v", n-published, w.All("")[published:])
	}
}

// TestRetryAFailedCheckout: a checkout failed because the fraud service was down (its check
// given up on), and was undone. Re-driven once fraud is back, it is tried again as a new
// checkout, co-rt-r2, of the same cart and card, which completes with its own reservation,
// charge and order; the failed one keeps nothing (no charge, no reservation), records the
// retry in its history, and is not retried twice. A retry whose new ID a client already
// used is refused.
func TestRetryAFailedCheckout(t *testing.T) {
	var fraudDown atomic.Bool
	fraudDown.Store(true)
	r := startRig(t, t.TempDir(), nil, withMaxDeliver(2),
		withFault(events.ServiceFraud, while(&fraudDown, events.CartValidated, "co-rt")))
	item := events.CartItem{ProductID: "mug-nats", Quantity: 3}
	before := stock(t, r.System, item.ProductID)
	r.checkout(t, "co-rt", "pm_card_visa", item)
	r.failed(t, "co-rt", events.CodeRetriesExhausted, events.StepCheckFraud)
	natstest.Eventually(t, wait, func() bool { return stock(t, r.System, item.ProductID) == before },
		"the failed checkout's reservation was never released")

	fraudDown.Store(false)
	reply, err := redrive(t, r.System, "co-rt", "ops", "fraud is back")
	if err != nil || reply.NewCheckoutID != "co-rt-r2" || reply.Attempt != 1 || len(reply.Steps) != 0 {
		t.Fatalf("re-drive of the failed co-rt: %+v, %v", reply, err)
	}
	var rd events.Redrive
	if err := r.watch.Wait(t, "co-rt", wait, events.RedriveRequested).DecodePayload(&rd); err != nil || rd.NewCheckoutID != "co-rt-r2" || rd.By != "ops" {
		t.Errorf("co-rt's history: %+v, %v, want its retry as co-rt-r2", rd, err)
	}
	done := r.completed(t, "co-rt-r2")
	if done.OrderID == "" || done.Total.IsZero() {
		t.Errorf("co-rt-r2 completed as %+v", done)
	}
	if n := len(intentsOf(r.emu, "co-rt")); n != 0 {
		t.Errorf("co-rt: %d PaymentIntents, want none (it failed before its payment)", n)
	}
	if pis := intentsOf(r.emu, "co-rt-r2"); len(pis) != 1 || pis[0].Status != "succeeded" {
		t.Errorf("co-rt-r2: PaymentIntents %+v, want one, succeeded", pis)
	}
	natstest.Eventually(t, wait, func() bool {
		s := stock(t, r.System, item.ProductID)
		return s.Sold == before.Sold+3 && s.Reserved == before.Reserved
	}, "the new attempt's units were never sold (exactly once)")
	if _, err := redrive(t, r.System, "co-rt", "ops", "again"); err == nil || !strings.Contains(err.Error(), "retried as co-rt-r2 already") {
		t.Errorf("a second retry of co-rt: %v, want a refusal naming co-rt-r2", err)
	}
	if st, _, err := r.Coordinator.State(context.Background(), "co-rt"); err != nil || st.Status != "failed" || st.RetriedAs != "co-rt-r2" {
		t.Errorf("co-rt's state: %+v, %v", st, err)
	}
	// A client used the next attempt's ID for a checkout of its own: the retry is refused,
	// and that checkout is left alone.
	r.checkout(t, "co-cx", "pm_card_chargeDeclined", events.CartItem{ProductID: "stickers", Quantity: 1})
	r.checkout(t, "co-cx-r2", "pm_card_visa", events.CartItem{ProductID: "stickers", Quantity: 2})
	r.failed(t, "co-cx", events.CodeCardDeclined, events.StepProcessPayment)
	r.completed(t, "co-cx-r2")
	if _, err := redrive(t, r.System, "co-cx", "ops", "try again"); err == nil || !strings.Contains(err.Error(), "taken by another checkout") {
		t.Errorf("a retry onto a client's co-cx-r2: %v, want a refusal", err)
	}
	if st, _, err := r.Coordinator.State(context.Background(), "co-cx"); err != nil || st.RetriedAs != "" {
		t.Errorf("co-cx's state after the refused retry: %+v, %v", st, err)
	}
}

// TestRedriveADeadLetter: the inventory, with a bug, rejects the sale of a completed
// checkout (a dead letter and checkout.rejected), so its units stay reserved. Once fixed, the
// letter is re-driven: the sale is made once, the catalog (which handled the original) drops
// the copy, the letter leaves DEADLETTER, and the re-drive is in the checkout's history. A
// second re-drive finds no letter; the trigger of a step given up on, an unknown service and
// a request without a reason are refused with the reason.
func TestRedriveADeadLetter(t *testing.T) {
	var bug, carrierDown atomic.Bool
	bug.Store(true)
	carrierDown.Store(true)
	r := startRig(t, t.TempDir(), nil, withMaxDeliver(2),
		withFault(events.ServiceInventory, failWhile(&bug, Permanent(errors.New("a bug in making the sale")), events.Completed, "co-dl-sale")),
		withFault(events.ServiceShipping, while(&carrierDown, events.FulfilmentRequested, "co-dl-label")))
	item := events.CartItem{ProductID: "mug-nats", Quantity: 2}
	before := stock(t, r.System, item.ProductID)
	r.checkout(t, "co-dl-sale", "pm_card_visa", item)
	r.checkout(t, "co-dl-label", "pm_card_visa", events.CartItem{ProductID: "stickers", Quantity: 1})
	r.completed(t, "co-dl-sale")
	var rejected events.RejectedInput
	if err := r.watch.Wait(t, "co-dl-sale", wait, events.Rejected).DecodePayload(&rejected); err != nil {
		t.Fatal(err)
	}
	if rejected.Consumer != events.ServiceInventory || rejected.Subject != string(events.Completed) {
		t.Fatalf("rejected: %+v, want the inventory's checkout.completed", rejected)
	}
	if s := stock(t, r.System, item.ProductID); s.Reserved != before.Reserved+2 || s.Sold != before.Sold {
		t.Fatalf("with the sale rejected: %+v, want 2 more reserved and none sold (before: %+v)", s, before)
	}
	if done := completedOf(t, r.watch, "co-dl-label"); !done.NeedsAttention {
		t.Fatalf("co-dl-label: %+v, want its label given up on", done)
	}

	for _, c := range []struct {
		req  events.DeadLetterRedriveRequest
		says string
	}{
		{events.DeadLetterRedriveRequest{Service: "nope", StreamSequence: rejected.StreamSequence, By: "ops", Reason: "fixed"}, "service (one of"},
		{events.DeadLetterRedriveRequest{Service: events.ServiceInventory, StreamSequence: rejected.StreamSequence, By: "ops"}, "reason"},
		{events.DeadLetterRedriveRequest{Service: events.ServiceInventory, StreamSequence: rejected.StreamSequence + 1000, By: "ops", Reason: "fixed"}, "holds no letter"},
		{events.DeadLetterRedriveRequest{Service: events.ServiceShipping, StreamSequence: givenUpSequence(t, r.System, events.ServiceShipping), By: "ops", Reason: "the carrier is back"}, "re-drive the checkout"},
	} {
		if _, err := redriveDeadLetter(t, r.System, c.req); err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("re-drive of %+v: %v, want a refusal saying %q", c.req, err, c.says)
		}
	}
	if s := stock(t, r.System, item.ProductID); s.Sold != before.Sold {
		t.Fatalf("after the refusals: %+v, want nothing sold", s)
	}

	// The bug is fixed: the letter, re-driven, makes the sale.
	bug.Store(false)
	req := events.DeadLetterRedriveRequest{Service: events.ServiceInventory, StreamSequence: rejected.StreamSequence, By: "ops", Reason: "the sale bug is fixed"}
	reply, err := redriveDeadLetter(t, r.System, req)
	if err != nil || reply.CheckoutID != "co-dl-sale" || reply.Subject != string(events.Completed) || reply.Sequence <= rejected.StreamSequence {
		t.Fatalf("re-drive: %+v, %v", reply, err)
	}
	r.watch.Wait(t, "co-dl-sale", wait, events.InventoryCommitted)
	var record events.DeadLetterRedrive
	if err := r.watch.Wait(t, "co-dl-sale", wait, events.DeadLetterRedriven).DecodePayload(&record); err != nil {
		t.Fatal(err)
	}
	if record.By != "ops" || record.Reason != req.Reason || record.StreamSequence != rejected.StreamSequence || !strings.Contains(record.LetterReason, "sale") {
		t.Errorf("the re-drive's record: %+v", record)
	}
	natstest.Eventually(t, wait, func() bool {
		s := stock(t, r.System, item.ProductID)
		return s.Sold == before.Sold+2 && s.Reserved == before.Reserved
	}, "the re-driven sale never moved the units from reserved to sold")
	if _, err := redriveDeadLetter(t, r.System, req); err == nil || !strings.Contains(err.Error(), "holds no letter") {
		t.Errorf("a second re-drive of the letter: %v, want none found", err)
	}
	for _, consumer := range []string{events.ServiceInventory, events.ServiceCatalog} {
		r.env.WaitIdle(t, consumer) // each has handled the copy: a second sale or rejection would be out
	}
	if n := r.watch.Count("co-dl-sale", events.InventoryCommitted); n != 1 {
		t.Errorf("%d sales of co-dl-sale, want 1", n)
	}
	copies := 0
	for _, m := range r.watch.Msgs("co-dl-sale") {
		if m.Subject == string(events.Completed) && m.Header.Get(events.HeaderRedriveOf) == fmt.Sprintf("%s:%d", events.ServiceInventory, rejected.StreamSequence) {
			copies++
		}
	}
	if copies != 1 {
		t.Errorf("%d copies of co-dl-sale's checkout.completed marked as the re-drive of its letter, want 1", copies)
	}
	if n := r.watch.Count("co-dl-sale", events.Rejected); n != 1 {
		t.Errorf("%d rejections of co-dl-sale, want 1 (the catalog drops the copy it handled)", n)
	}
	if s := stock(t, r.System, item.ProductID); s.Sold != before.Sold+2 {
		t.Errorf("stock after: %+v, want %d sold", s, before.Sold+2)
	}
}

// givenUpSequence is the stream sequence of service's last dead letter, one given up on.
func givenUpSequence(t *testing.T, sys *System, service string) uint64 {
	t.Helper()
	dead, err := sys.JS.Stream(context.Background(), events.StreamDeadLetter)
	if err != nil {
		t.Fatal(err)
	}
	m, err := dead.GetLastMsgForSubject(context.Background(), events.DeadLetterSubject(service))
	if err != nil || m.Header.Get(events.HeaderDeadGivenUp) == "" {
		t.Fatalf("%s's last dead letter: %v, %v: want one given up on", service, m, err)
	}
	seq, err := strconv.ParseUint(m.Header.Get(events.HeaderDeadSequence), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return seq
}

// redriveDeadLetter asks the coordinator, as the HTTP API and the nats CLI do.
func redriveDeadLetter(t *testing.T, sys *System, req events.DeadLetterRedriveRequest) (events.DeadLetterRedriveReply, error) {
	return ask[events.DeadLetterRedriveReply](t, sys, events.DeadLettersRedrive, req)
}
