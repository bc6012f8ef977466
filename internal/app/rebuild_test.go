package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/jetcheckout/jetcheckout/internal/steptest"
	"github.com/jetcheckout/jetcheckout/services/fraud"
	"github.com/jetcheckout/jetcheckout/services/shipping"
)

// TestLostViewIsRebuilt runs every service as its own System (as separate processes do),
// runs checkouts that complete, fail, are compensated, given up and held for a review, then
// for each service whose view is rebuildable: stops it, deletes its bbolt file and starts
// it again. The rebuilt file equals the lost one byte for byte (determinism), nothing is
// published again, no email is sent again, nothing is charged or refunded again, and a
// checkout afterwards completes.
func TestLostViewIsRebuilt(t *testing.T) {
	env := natstest.Start(t)
	emu := startEmulator(t)
	logs := newLogRecorder(testLogger().Handler())
	log := slog.New(logs)
	dirs := map[string]string{}
	raceLost := failingOnce(events.Requested, "co-rb-race-1")
	start := func(name string) *System {
		t.Helper()
		cfg := testConfig(dirs[name])
		cfg.NATSURL, cfg.StripeBase, cfg.StripeKey = env.URL, emu.URL, "sk_test_rebuild"
		switch name {
		case events.ServiceCatalog:
			withFault(name, raceLost)(&cfg)
		case events.ServiceOrders:
			withFault(name, failingFor(events.OrderRequested, "co-rb-noorder", Permanent(errors.New("the order store refused it"))))(&cfg)
		case events.ServiceShipping:
			withMaxDeliver(3)(&cfg)
			withFault(name, failingFor(events.FulfilmentRequested, "co-rb-noship", errors.New("carrier API unavailable")))(&cfg)
		}
		sys := startProcess(t, cfg, log, name)
		return sys
	}
	systems := map[string]*System{}
	for _, name := range Services {
		dirs[name] = t.TempDir()
		systems[name] = start(name)
	}
	w, timers := env.Watch(t, "checkout.>"), env.Watch(t, events.TimerSubjects(events.ServicePayments))
	cartOf := map[string]string{} // checkout ID → its cart
	checkoutOf := func(id, cartID, pm, email string) {
		cartOf[id] = cartID
		publishCheckout(t, systems[events.ServiceCatalog], checkoutRequestFor(id, cartID, pm, email))
	}
	checkout := func(id, pm, email string, product ...string) {
		cart := createCart(t, systems[events.ServiceCatalog], "USD", events.CartItem{ProductID: append(product, "mug-nats")[0], Quantity: 1})
		checkoutOf(id, cart.ID, pm, email)
	}
	// A cart made before the catalog's view is lost and checked out after it.
	kept := createCart(t, systems[events.ServiceCatalog], "USD", events.CartItem{ProductID: "stickers", Quantity: 2})
	ends := map[string]events.Subject{
		"co-rb-happy": events.Completed, "co-rb-declined": events.Failed, "co-rb-fraud": events.Failed,
		"co-rb-noorder": events.Failed, "co-rb-noship": events.Completed, "co-rb-review": events.Completed,
		"co-rb-3ds": events.Completed, "co-rb-3ds-fail": events.Failed,
	}
	checkout("co-rb-happy", "pm_card_visa", "ada@example.com")
	checkout("co-rb-declined", "pm_card_chargeDeclined", "ada@example.com")
	checkout("co-rb-fraud", "pm_card_visa", "ada@fraud.test")
	checkout("co-rb-noorder", "pm_card_visa", "ada@example.com")
	checkout("co-rb-noship", "pm_card_visa", "ada@example.com")
	checkout("co-rb-review", "pm_card_visa", "ada@review.test")
	checkout("co-rb-3ds", "pm_card_authenticationRequired", "ada@example.com")
	checkout("co-rb-3ds-fail", "pm_card_authenticationRequired", "ada@example.com")
	// Checkouts with a coupon: its uses are counted in the catalog's view, and given back by
	// a checkout that fails.
	couponed := func(id, pm, code string) {
		cart := createCart(t, systems[events.ServiceCatalog], "USD", events.CartItem{ProductID: "tee-jetstream", Quantity: 1})
		cartOf[id] = cart.ID
		var req events.CheckoutRequest
		if err := json.Unmarshal(checkoutRequestFor(id, cart.ID, pm, "ada@example.com"), &req); err != nil {
			t.Fatal(err)
		}
		req.CouponCode = code
		body, _ := json.Marshal(req)
		publishCheckout(t, systems[events.ServiceCatalog], body)
	}
	couponed("co-rb-coupon-declined", "pm_card_chargeDeclined", "WELCOME10")
	ends["co-rb-coupon-declined"] = events.Failed
	// Checkouts at once, handled in the services' lanes side by side: commit order is not
	// stream order, and the rebuilt view must not depend on it.
	for i := range 12 {
		id := fmt.Sprintf("co-rb-many-%d", i)
		ends[id] = events.Completed
		if i%3 == 0 {
			couponed(id, "pm_card_visa", "LAUNCH15")
			continue
		}
		checkout(id, "pm_card_visa", "ada@example.com", []string{"tee-jetstream", "stickers", "poster-route66"}[i%3]) // under the hold limit
	}
	// Two checkouts of one cart: the first in the stream is tried again (failingOnce), so
	// the second holds the cart. Validation in stream order would give it to the first: a
	// rebuild takes who got it from the stream.
	shared := createCart(t, systems[events.ServiceCatalog], "USD", events.CartItem{ProductID: "mug-nats", Quantity: 1})
	checkoutOf("co-rb-race-1", shared.ID, "pm_card_visa", "ada@example.com")
	checkoutOf("co-rb-race-2", shared.ID, "pm_card_visa", "ada@example.com")
	w.Wait(t, "co-rb-review", wait, events.FraudReviewPending)
	// The customers authenticate after payments has looked at their intents again (and
	// scheduled a second look).
	for id, approved := range map[string]bool{"co-rb-3ds": true, "co-rb-3ds-fail": false} {
		natstest.Eventually(t, wait, func() bool { return timers.Count(id, events.PaymentRecheck) >= 2 }, "%s: no second look at its intent", id)
		for _, pi := range intentsOf(emu.Emulator, id) {
			if err := emu.Emulator.CompleteAuthentication(pi.ID, approved); err != nil {
				t.Fatal(err)
			}
		}
	}
	request[fraud.ReviewReply](t, systems[events.ServiceFraud].NC, events.FraudReview,
		fraud.ReviewRequest{CheckoutID: "co-rb-review", ReviewDecision: events.ReviewDecision{Decision: events.ReviewApprove, Reviewer: "alice"}})
	for id, want := range ends {
		if end := w.Wait(t, id, wait, events.Completed, events.Failed); end.Type != want {
			t.Fatalf("%s ended in %s (%s), want %s", id, end.Type, end.Payload, want)
		}
	}
	if end := w.Wait(t, "co-rb-race-2", wait, events.Completed, events.Failed); end.Type != events.Completed {
		t.Fatalf("co-rb-race-2 ended in %s: %s", end.Type, end.Payload)
	}
	if end := w.Wait(t, "co-rb-race-1", wait, events.Completed, events.Failed); end.Type != events.Failed {
		t.Fatalf("co-rb-race-1, which came second for its cart, ended in %s", end.Type)
	}
	for _, name := range Services {
		(&natstest.Env{JS: env.JS}).WaitIdle(t, name)
	}
	orderCreated := w.Count("co-rb-happy", events.OrderCreated)
	if orderCreated != 1 || w.Count("co-rb-noorder", events.OrderCancelled) != 1 || w.Count("co-rb-noship", events.LabelFailed) != 1 {
		t.Fatalf("the checkouts did not run as planned: %v / %v / %v", w.All("co-rb-happy"), w.All("co-rb-noorder"), w.All("co-rb-noship"))
	}
	published := len(w.All(""))
	outbox := systems[events.ServiceNotifications].Config.Outbox()
	intents, refunds := len(emu.Emulator.PaymentIntents()), len(emu.Emulator.Refunds())
	if w.Count("co-rb-noorder", events.PaymentRefunded) != 1 || refunds == 0 {
		t.Fatalf("co-rb-noorder was not refunded: %v", w.All("co-rb-noorder"))
	}
	if len(sentEmails(t, outbox)) == 0 {
		t.Fatal("no email was sent before the views were lost")
	}

	for _, name := range slices.Sorted(maps.Keys(events.Rebuildable)) {
		t.Run(name, func(t *testing.T) {
			if live := rebuildView(t, name, dirs[name], systems, start, logs); len(live["runner.processed"]) == 0 {
				t.Fatalf("%s handled nothing before its file was lost", name)
			}
			if n := len(w.All("")); n != published {
				t.Errorf("%d events published while %s rebuilt its view: %v", n-published, name, w.All("")[published:])
			}
		})
	}

	// The outbox went with notifications' data directory: an email sent again is back in it.
	if sent := sentEmails(t, outbox); len(sent) != 0 {
		t.Errorf("emails sent again after notifications rebuilt its view: %v", sent)
	}
	if n, m := len(emu.Emulator.PaymentIntents()), len(emu.Emulator.Refunds()); n != intents || m != refunds {
		t.Errorf("Stripe called while payments rebuilt its view: %d payment intents (%d before), %d refunds (%d before)", n, intents, m, refunds)
	}

	// Services that record the outside world's answers in no event carry on from their
	// consumer's position, saying so.
	for _, name := range []string{events.ServicePayments, events.ServiceNotifications} {
		if events.Rebuildable[name] {
			continue
		}
		systems[name].Stop()
		if err := os.Remove(filepath.Join(dirs[name], name+".db")); err != nil {
			t.Fatal(err)
		}
		mark := logs.len()
		systems[name] = start(name)
		natstest.Eventually(t, wait, func() bool { return logs.has(mark, "VIEW LOST", name) }, "%s started on a lost file silently", name)
	}

	// The catalog's carts: each as the checkouts left it, the one made before the loss free.
	for id, want := range map[string]string{"co-rb-happy": events.CartCheckedOut, "co-rb-declined": events.CartOpen, "co-rb-many-3": events.CartCheckedOut, "co-rb-race-2": events.CartCheckedOut} {
		if cart, err := systems[events.ServiceCatalog].Catalog.Cart(context.Background(), cartOf[id]); err != nil || cart.Status != want {
			t.Errorf("%s's cart after the rebuild: %+v, %v; want %s", id, cart, err, want)
		}
	}
	for code, want := range map[string]int{"LAUNCH15": 4, "WELCOME10": 0} {
		if n, err := systems[events.ServiceCatalog].Catalog.Redemptions(code); err != nil || n != want {
			t.Errorf("%s used %d times after the rebuild (%v), want %d", code, n, err, want)
		}
	}
	checkout("co-rb-after", "pm_card_visa", "ada@example.com")
	checkoutOf("co-rb-kept", kept.ID, "pm_card_visa", "ada@example.com")
	checkoutOf("co-rb-again", cartOf["co-rb-happy"], "pm_card_visa", "ada@example.com")
	for _, id := range []string{"co-rb-after", "co-rb-kept"} {
		if end := w.Wait(t, id, wait, events.Completed, events.Failed); end.Type != events.Completed {
			t.Fatalf("the checkout %s after the rebuilds ended in %s: %s", id, end.Type, end.Payload)
		}
	}
	failedWith(t, w, "co-rb-again", events.CodeCartCheckedOut, events.StepValidateCart)
	for id := range ends {
		for _, typ := range []events.Subject{events.OrderCreated, events.OrderCancelled, events.LabelCreated, events.WarehouseNotified,
			events.FraudCleared, events.PaymentCaptured, events.ConfirmationSent, events.FailureNoticeSent} {
			if n := w.Count(id, typ); n > 1 {
				t.Errorf("%s: %d %s", id, n, typ)
			}
		}
		if n := len(intentsOf(emu.Emulator, id)); n > 1 {
			t.Errorf("%s: %d payment intents", id, n)
		}
	}
	orders := systems[events.ServiceOrders].Orders
	for id, want := range map[string]string{"co-rb-happy": "confirmed", "co-rb-noship": "confirmed", "co-rb-review": "confirmed", "co-rb-after": "confirmed"} {
		if o, found, err := orders.OrderByCheckout(id); err != nil || !found || o.Status != want {
			t.Errorf("%s: order %+v found=%v err=%v, want %s", id, o, found, err, want)
		}
	}
	if _, found, _ := systems[events.ServiceShipping].Shipping.Label("ord_co-rb-after"); !found {
		t.Error("no label for the checkout after the rebuild")
	}
	if label, found, _ := systems[events.ServiceShipping].Shipping.Label("ord_co-rb-happy"); !found || label.TrackingNumber != shipping.TrackingNumber("ord_co-rb-happy") {
		t.Errorf("the rebuilt label of co-rb-happy: %+v found=%v", label, found)
	}
}

// rebuildView stops the service's process, deletes its whole data directory, starts it
// again, waits until it has rebuilt its view from the stream (no replay error logged), and
// checks the rebuilt view equals the lost one (payments' but for the re-checks it scheduled,
// which a rebuild does not: steptest.Unscheduled); it returns the lost one. The service then
// runs again on its rebuilt file.
func rebuildView(t *testing.T, name, dir string, systems map[string]*System, start func(string) *System, logs *logRecorder) map[string]map[string][]byte {
	t.Helper()
	path := filepath.Join(dir, name+".db")
	systems[name].Stop()
	live := dump(t, path)
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	mark := logs.len()
	systems[name] = start(name)
	natstest.Eventually(t, wait, func() bool { return logs.has(mark, "view rebuilt from the stream", name) },
		"%s did not say it rebuilt its view", name)
	systems[name].Stop()
	for _, line := range logs.since(mark) {
		if strings.Contains(line, "replay:") && strings.Contains(line, "level=ERROR") {
			t.Errorf("%s: replay error: %s", name, line)
		}
	}
	if name == events.ServicePayments {
		steptest.Unscheduled(t, live, events.PaymentRecheck)
	}
	sameView(t, live, dump(t, path))
	systems[name] = start(name) // on its rebuilt file: no rebuild, it consumes
	return live
}

// sentEmails are the names of the outbox's messages.
func sentEmails(t *testing.T, outbox string) []string {
	t.Helper()
	files, err := os.ReadDir(outbox)
	if err != nil {
		t.Fatal(err)
	}
	var sent []string
	for _, f := range files {
		sent = append(sent, f.Name())
	}
	return sent
}

// failingFor is a fault that makes one route of a service fail with err for one checkout.
func failingFor(route events.Subject, checkoutID string, err error) Fault {
	return func(subject events.Subject, in events.Envelope) error {
		if subject == route && in.CheckoutID == checkoutID {
			return err
		}
		return nil
	}
}

// failingOnce is a fault that fails one route once for one checkout, in whichever process
// it is given to, so that it is handled again later.
func failingOnce(route events.Subject, checkoutID string) Fault {
	var failed atomic.Bool
	return func(subject events.Subject, in events.Envelope) error {
		if subject == route && in.CheckoutID == checkoutID && failed.CompareAndSwap(false, true) {
			return errors.New("not yet")
		}
		return nil
	}
}

// dump and sameView read and compare the buckets of view files.
var dump, sameView = steptest.Dump, steptest.SameView

// logRecorder keeps what is logged, and passes it on.
type logRecorder struct {
	next  slog.Handler
	mu    *sync.Mutex
	lines *[]string
	attrs string
}

func newLogRecorder(next slog.Handler) *logRecorder {
	return &logRecorder{next: next, mu: &sync.Mutex{}, lines: &[]string{}}
}

func (l *logRecorder) Enabled(ctx context.Context, level slog.Level) bool {
	return level >= slog.LevelWarn || l.next.Enabled(ctx, level)
}

func (l *logRecorder) Handle(ctx context.Context, r slog.Record) error {
	line := fmt.Sprintf("level=%s msg=%q%s", r.Level, r.Message, l.attrs)
	r.Attrs(func(a slog.Attr) bool { line += " " + a.String(); return true })
	l.mu.Lock()
	*l.lines = append(*l.lines, line)
	l.mu.Unlock()
	if l.next.Enabled(ctx, r.Level) {
		return l.next.Handle(ctx, r)
	}
	return nil
}

func (l *logRecorder) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *l
	for _, a := range attrs {
		c.attrs += " " + a.String()
	}
	c.next = l.next.WithAttrs(attrs)
	return &c
}

func (l *logRecorder) WithGroup(name string) slog.Handler {
	c := *l
	c.next = l.next.WithGroup(name)
	return &c
}

func (l *logRecorder) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(*l.lines)
}

func (l *logRecorder) since(mark int) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone((*l.lines)[mark:])
}

// has reports whether a line logged since mark says msg, by the runner of service.
func (l *logRecorder) has(mark int, msg, service string) bool {
	for _, line := range l.since(mark) {
		if strings.Contains(line, msg) && strings.Contains(line, "runner="+service) {
			return true
		}
	}
	return false
}
