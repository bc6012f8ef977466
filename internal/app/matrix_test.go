package app

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/jetcheckout/jetcheckout/internal/stripeemu"
	"github.com/jetcheckout/jetcheckout/runner"
)

// The failure matrix of issue 3, end to end: each test breaks one thing and asserts what
// the checkout leaves behind: its terminal event, stock, charges and refunds, orders.

// rig is a running system with its own Stripe emulator, so a test can inject faults.
type rig struct {
	*System
	emu   *stripeemu.Emulator
	watch *natstest.Watcher
	env   *natstest.Env
}

// tweak adjusts a rig's configuration before it starts.
type tweak func(*Config)

func startRig(t *testing.T, dir string, faults stripeemu.FaultFunc, tweaks ...tweak) *rig {
	t.Helper()
	var opts []stripeemu.Option
	if faults != nil {
		opts = append(opts, stripeemu.WithFault(faults))
	}
	emu, err := stripeemu.Start("127.0.0.1:0", stripeemu.New(opts...))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emu.Close() })
	return startRigOn(t, dir, emu, tweaks...)
}

// startRigOn starts a system on dir against an emulator that outlives it (a restart).
func startRigOn(t *testing.T, dir string, emu *stripeemu.Server, tweaks ...tweak) *rig {
	t.Helper()
	cfg := testConfig(dir)
	cfg.StripeBase, cfg.StripeKey = emu.URL, "sk_test_matrix"
	cfg.RetryBase = 10 * time.Millisecond
	for _, tw := range tweaks {
		tw(&cfg)
	}
	log := testLogger()
	sys, err := Start(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sys.Stop)
	env := &natstest.Env{NC: sys.NC, JS: sys.JS}
	return &rig{System: sys, emu: emu.Emulator, env: env, watch: env.Watch(t, "checkout.>")}
}

// checkout creates a cart of items and checks it out with pm as checkout id.
func (r *rig) checkout(t *testing.T, id, pm string, items ...events.CartItem) {
	t.Helper()
	cart := createCart(t, r.System, "USD", items...)
	publishCheckout(t, r.System, checkoutRequest(id, cart.ID, pm, california))
}

func (r *rig) failed(t *testing.T, id, code string, step events.StepName) events.CheckoutFailed {
	t.Helper()
	return failedWith(t, r.watch, id, code, step)
}

func (r *rig) completed(t *testing.T, id string) events.CheckoutCompleted {
	t.Helper()
	end := r.watch.Wait(t, id, wait, events.Completed, events.Failed)
	var c events.CheckoutCompleted
	if end.Type != events.Completed {
		t.Fatalf("%s ended in %s: %s", id, end.Type, end.Payload)
	}
	if err := end.DecodePayload(&c); err != nil {
		t.Fatal(err)
	}
	return c
}

// money is what Stripe holds of a checkout's payments: charged, and refunded.
func (r *rig) money(id string) (charged, refunded int64, intents int) {
	for _, pi := range intentsOf(r.emu, id) {
		charged += pi.AmountReceived
		refunded += pi.AmountRefunded
		intents++
	}
	return charged, refunded, intents
}

// noMoneyKept asserts that whatever was charged for the checkout was refunded.
func (r *rig) noMoneyKept(t *testing.T, id string) {
	t.Helper()
	natstest.Eventually(t, wait, func() bool { c, rf, _ := r.money(id); return c == rf },
		"checkout %s: money kept without an order", id)
}

func (r *rig) noOrder(t *testing.T, id string) {
	t.Helper()
	if o, found, _ := r.Orders.OrderByCheckout(id); found {
		t.Errorf("checkout %s failed but has order %s", id, o.Number)
	}
}

func (r *rig) stockIs(t *testing.T, want events.Stock) {
	t.Helper()
	natstest.Eventually(t, wait, func() bool { return stock(t, r.System, want.ProductID) == want },
		"stock of %s is %+v, want %+v", want.ProductID, stock(t, r.System, want.ProductID), want)
}

// failing is a fault that makes one route of a service fail with err.
func failing(route events.Subject, err error) Fault {
	return func(subject events.Subject, _ events.Envelope) error {
		if subject != route {
			return nil
		}
		return err
	}
}

func withFault(service string, f Fault) tweak {
	return func(c *Config) {
		if c.Faults == nil {
			c.Faults = map[string][]Fault{}
		}
		c.Faults[service] = append(c.Faults[service], f)
	}
}

func withMaxDeliver(n int) tweak { return func(c *Config) { c.MaxDeliver = n } }

// Validation failures found at checkout time: the product was withdrawn, or its price in
// the cart's currency, after the cart was made. Nothing is reserved, nothing charged.
func TestValidationFailsAtCheckout(t *testing.T) {
	r := startRig(t, t.TempDir(), nil)
	tee, mug := stock(t, r.System, "tee-jetstream"), stock(t, r.System, "mug-nats")
	goneCart := createCart(t, r.System, "USD", events.CartItem{ProductID: "tee-jetstream", Quantity: 1}, events.CartItem{ProductID: "stickers", Quantity: 1})
	pricedCart := createCart(t, r.System, "EUR", events.CartItem{ProductID: "mug-nats", Quantity: 1})
	if err := r.Catalog.Discontinue("stickers", ""); err != nil {
		t.Fatal(err)
	}
	if err := r.Catalog.Discontinue("mug-nats", "EUR"); err != nil {
		t.Fatal(err)
	}
	publishCheckout(t, r.System, checkoutRequest("co-gone", goneCart.ID, "pm_card_visa", california))
	publishCheckout(t, r.System, checkoutRequest("co-price", pricedCart.ID, "pm_card_visa", california))
	r.failed(t, "co-gone", events.CodeProductNotFound, events.StepValidateCart)
	r.failed(t, "co-price", events.CodeCurrencyMismatch, events.StepValidateCart)
	for _, id := range []string{"co-gone", "co-price"} {
		if c, _, n := r.money(id); c != 0 || n != 0 {
			t.Errorf("%s: %d intents, %d charged", id, n, c)
		}
		r.noOrder(t, id)
	}
	r.stockIs(t, tee)
	r.stockIs(t, mug)
}

// create_order fails for good after the payment: the payment is refunded, the stock
// released, in that order, and the checkout fails.
func TestOrderFailsPermanently(t *testing.T) {
	r := startRig(t, t.TempDir(), nil,
		withFault(events.ServiceOrders, failing(events.OrderRequested, Permanent(errors.New("the order store refused the order")))))
	before := stock(t, r.System, "keyboard-bbolt")
	r.checkout(t, "co-noorder", "pm_card_visa", events.CartItem{ProductID: "keyboard-bbolt", Quantity: 1})
	f := r.failed(t, "co-noorder", events.CodeStepFailed, events.StepCreateOrder)
	want := []events.StepName{events.StepCreateOrder, events.StepProcessPayment, events.StepReserveInventory}
	if !slices.Equal(f.Compensated, want) {
		t.Errorf("compensated %v, want %v: the order step undone (it may have run), the refund, then the release", f.Compensated, want)
	}
	charged, refunded, _ := r.money("co-noorder")
	if charged == 0 || charged != refunded {
		t.Errorf("charged %d, refunded %d: want a full refund of a real charge", charged, refunded)
	}
	r.noOrder(t, "co-noorder")
	r.stockIs(t, before)
	if notice := failureNotice(t, r.Config.Outbox(), "co-noorder"); !strings.Contains(strings.ToLower(notice.body), "refund") {
		t.Errorf("the failure notice does not mention the refund:\n%s", notice.body)
	}
}

// The shipping label cannot be made, however often it is tried: the order stays paid, the
// checkout completes flagged for attention, nothing is refunded, the input is dead-lettered.
func TestShippingFailsFlagsTheCheckout(t *testing.T) {
	r := startRig(t, t.TempDir(), nil, withMaxDeliver(3),
		withFault(events.ServiceShipping, failing(events.FulfilmentRequested, errors.New("carrier API unavailable"))))
	before := stock(t, r.System, "mug-nats")
	r.checkout(t, "co-noship", "pm_card_visa", events.CartItem{ProductID: "mug-nats", Quantity: 2})
	done := r.completed(t, "co-noship")
	if !done.NeedsAttention || len(done.Warnings) != 1 || done.Warnings[0].Step != events.StepCreateLabel ||
		done.Warnings[0].Code != events.CodeRetriesExhausted {
		t.Errorf("completed %+v, want it flagged with the label's failure", done)
	}
	charged, refunded, n := r.money("co-noship")
	if n != 1 || charged == 0 || refunded != 0 {
		t.Errorf("%d intents, charged %d, refunded %d: the paid order must stay paid", n, charged, refunded)
	}
	if _, found, _ := r.Orders.OrderByCheckout("co-noship"); !found {
		t.Error("no order")
	}
	if n := r.watch.Count("co-noship", events.WarehouseNotified); n != 0 {
		t.Error("the warehouse was asked to pick an order without a label")
	}
	r.stockIs(t, events.Stock{ProductID: "mug-nats", Available: before.Available - 2, Reserved: before.Reserved, Sold: before.Sold + 2})
	deadLetter(t, r.env, events.ServiceShipping, string(events.FulfilmentRequested))
}

// The confirmation email cannot be sent (the SMTP server is down): the order stands and the
// checkout completes with a warning.
func TestConfirmationFailsCompletesWithWarning(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	down := ln.Addr().String()
	ln.Close() // nothing listens there any more
	r := startRig(t, t.TempDir(), nil, withMaxDeliver(2), func(c *Config) { c.SMTPAddr = down })
	r.checkout(t, "co-nomail", "pm_card_visa", events.CartItem{ProductID: "stickers", Quantity: 3})
	done := r.completed(t, "co-nomail")
	if done.NeedsAttention || len(done.Warnings) != 1 || done.Warnings[0].Step != events.StepSendConfirmation {
		t.Errorf("completed %+v, want one warning about the confirmation", done)
	}
	if _, refunded, _ := r.money("co-nomail"); refunded != 0 {
		t.Error("an email failure refunded the order")
	}
	if _, found, _ := r.Shipping.PickRequest(done.OrderID); !found {
		t.Error("the order was not handed to the warehouse")
	}
}

// A step's service is down: its deadline fires, the reservation is released, the checkout
// fails and says so.
func TestStepNeverAnswers(t *testing.T) {
	dir := t.TempDir()
	emu := startEmulator(t)
	cfg := testConfig(dir)
	cfg.StripeBase, cfg.StripeKey = emu.URL, "sk_test_matrix"
	cfg.Grace = 300 * time.Millisecond
	cfg.Deadlines = map[events.StepName]time.Duration{events.StepCheckFraud: 700 * time.Millisecond}
	var names []string
	for _, n := range Services {
		if n != events.ServiceFraud {
			names = append(names, n)
		}
	}
	sys, err := Start(context.Background(), cfg, slog.New(slog.DiscardHandler), names...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sys.Stop)
	r := &rig{System: sys, emu: emu.Emulator, env: &natstest.Env{NC: sys.NC, JS: sys.JS}}
	r.watch = r.env.Watch(t, "checkout.>")
	before := stock(t, sys, "tee-jetstream")
	r.checkout(t, "co-nofraud", "pm_card_visa", events.CartItem{ProductID: "tee-jetstream", Quantity: 2})
	f := r.failed(t, "co-nofraud", events.CodeDeadlineExceeded, events.StepCheckFraud)
	if len(f.Compensated) != 1 || f.Compensated[0] != events.StepReserveInventory {
		t.Errorf("compensated %v, want the reservation released", f.Compensated)
	}
	if _, _, n := r.money("co-nofraud"); n != 0 {
		t.Error("a checkout without a fraud check reached Stripe")
	}
	r.stockIs(t, before)
}

// A step's input fails every time: after MaxDeliver attempts it is moved to DEADLETTER and
// the checkout is compensated and fails.
func TestRetriesExhaustedDeadLetters(t *testing.T) {
	r := startRig(t, t.TempDir(), nil, withMaxDeliver(3),
		withFault(events.ServiceInventory, failing(events.CartValidated, errors.New("inventory database unavailable"))))
	before := stock(t, r.System, "mug-nats")
	r.checkout(t, "co-poison", "pm_card_visa", events.CartItem{ProductID: "mug-nats", Quantity: 1})
	r.failed(t, "co-poison", events.CodeRetriesExhausted, events.StepReserveInventory)
	dead := deadLetter(t, r.env, events.ServiceInventory, string(events.CartValidated))
	if !strings.Contains(dead.Header.Get(events.HeaderDeadReason), "inventory database unavailable") || dead.Header.Get(events.HeaderDeadAttempts) != "3" {
		t.Errorf("dead letter headers %v", dead.Header)
	}
	if _, _, n := r.money("co-poison"); n != 0 {
		t.Error("charged without a reservation")
	}
	r.stockIs(t, before)
}

// Stripe answers 503 before running the first attempt, then charges but loses the answer on
// the second: the payment is retried with the same idempotency key and charged once.
func TestPaymentRetriedChargesOnce(t *testing.T) {
	var creates atomic.Int32
	faults := func(c stripeemu.Call) stripeemu.Fault {
		if c.Method != "POST" || c.Path != "/v1/payment_intents" {
			return stripeemu.Fault{}
		}
		switch creates.Add(1) {
		case 1:
			return stripeemu.Fault{Status: 503}
		case 2:
			return stripeemu.Fault{Status: 500, AfterRun: true}
		}
		return stripeemu.Fault{}
	}
	r := startRig(t, t.TempDir(), faults)
	r.checkout(t, "co-flaky", "pm_card_visa", events.CartItem{ProductID: "tee-jetstream", Quantity: 1})
	r.completed(t, "co-flaky")
	charged, refunded, n := r.money("co-flaky")
	if n != 1 || charged == 0 || refunded != 0 || creates.Load() < 3 {
		t.Errorf("%d intents, charged %d, refunded %d after %d create calls: want one charge", n, charged, refunded, creates.Load())
	}
}

// A service dies between committing its state and publishing its events, or between
// publishing and acking: after a restart nothing is done twice.
func TestCrashWindows(t *testing.T) {
	for _, window := range []string{"after commit", "after publish"} {
		t.Run(window, func(t *testing.T) {
			dir := t.TempDir()
			emu := startEmulator(t)
			crash := errors.New("simulated crash " + window)
			var once atomic.Bool
			die := func(in events.Envelope) error {
				if in.Type == events.PaymentRequested && once.CompareAndSwap(false, true) {
					return crash
				}
				return nil
			}
			hooks := runner.Hooks{AfterCommit: die}
			if window == "after publish" {
				hooks = runner.Hooks{AfterPublish: die}
			}
			// A short AckWait: the dead process's message is redelivered after it.
			quick := func(c *Config) { c.AckWait = 2 * time.Second }
			first := startRigOn(t, dir, emu, quick, func(c *Config) { c.Hooks = map[string]runner.Hooks{events.ServicePayments: hooks} })
			first.checkout(t, "co-crash", "pm_card_visa", events.CartItem{ProductID: "keyboard-bbolt", Quantity: 1})
			select {
			case <-first.Failed():
				if !errors.Is(first.Err(), crash) {
					t.Fatalf("stopped with %v", first.Err())
				}
			case <-time.After(wait):
				t.Fatal("the crash never happened")
			}
			first.Stop()

			again := startRigOn(t, dir, emu, quick)
			var st bool
			natstest.Eventually(t, wait, func() bool {
				s, found, err := again.Coordinator.State(t.Context(), "co-crash")
				st = err == nil && found && s.Status == "completed"
				return st
			}, "the checkout did not complete after the restart")
			charged, _, n := again.money("co-crash")
			if n != 1 || charged == 0 {
				t.Errorf("%d intents, charged %d: want one charge", n, charged)
			}
			orders, _ := again.Orders.Orders()
			if len(orders) != 1 {
				t.Errorf("%d orders, want 1", len(orders))
			}
		})
	}
}

// review asks the fraud service's operator endpoint for a decision.
func (r *rig) review(t *testing.T, id, decision string) {
	t.Helper()
	r.watch.Wait(t, id, wait, events.FraudReviewPending)
	reply := request[map[string]any](t, r.NC, events.FraudReview,
		map[string]string{"checkout_id": id, "decision": decision, "reviewer": "ada"})
	if reply["accepted"] != true {
		t.Fatalf("review of %s not accepted: %v", id, reply)
	}
}

// A risky checkout waits for a person, holding its stock; approved, it completes.
func TestFraudReviewApproved(t *testing.T) {
	r := startRig(t, t.TempDir(), nil)
	before := stock(t, r.System, "hoodie-saga")
	cart := createCart(t, r.System, "USD", events.CartItem{ProductID: "hoodie-saga", Quantity: 1})
	body := checkoutRequestFor("co-review-ok", cart.ID, "pm_card_visa", "eve@review.test")
	publishCheckout(t, r.System, body)
	r.watch.Wait(t, "co-review-ok", wait, events.FraudReviewPending)
	r.stockIs(t, events.Stock{ProductID: "hoodie-saga", Available: before.Available - 1, Reserved: before.Reserved + 1, Sold: before.Sold})
	pending := request[[]map[string]any](t, r.NC, events.FraudReviews, nil)
	if len(pending) != 1 || pending[0]["checkout_id"] != "co-review-ok" {
		t.Fatalf("pending reviews %v", pending)
	}
	r.review(t, "co-review-ok", events.ReviewApprove)
	r.completed(t, "co-review-ok")
	if charged, _, n := r.money("co-review-ok"); n != 1 || charged == 0 {
		t.Errorf("%d intents, %d charged", n, charged)
	}
}

// Denied, the stock is released and the customer told.
func TestFraudReviewDenied(t *testing.T) {
	r := startRig(t, t.TempDir(), nil)
	before := stock(t, r.System, "hoodie-saga")
	cart := createCart(t, r.System, "USD", events.CartItem{ProductID: "hoodie-saga", Quantity: 2})
	publishCheckout(t, r.System, checkoutRequestFor("co-review-no", cart.ID, "pm_card_visa", "eve@review.test"))
	r.review(t, "co-review-no", events.ReviewDeny)
	f := r.failed(t, "co-review-no", events.CodeFraudReviewDenied, events.StepCheckFraud)
	if len(f.Compensated) != 1 || f.Compensated[0] != events.StepReserveInventory {
		t.Errorf("compensated %v", f.Compensated)
	}
	r.stockIs(t, before)
	if _, _, n := r.money("co-review-no"); n != 0 {
		t.Error("a denied checkout reached Stripe")
	}
	notice := failureNotice(t, r.Config.Outbox(), "co-review-no")
	if to := notice.msg.Header.Get("To"); !strings.Contains(to, "eve@review.test") || !strings.Contains(notice.body, "not been charged") {
		t.Errorf("failure notice to %q:\n%s", to, notice.body)
	}
}

// Nobody decides before the review window closes: released, failed.
func TestFraudReviewExpires(t *testing.T) {
	r := startRig(t, t.TempDir(), nil, func(c *Config) { c.ReviewWindow, c.Grace = time.Second, 500*time.Millisecond })
	before := stock(t, r.System, "tee-jetstream")
	cart := createCart(t, r.System, "USD", events.CartItem{ProductID: "tee-jetstream", Quantity: 1})
	publishCheckout(t, r.System, checkoutRequestFor("co-review-late", cart.ID, "pm_card_visa", "eve@review.test"))
	r.failed(t, "co-review-late", events.CodeDeadlineExceeded, events.StepCheckFraud)
	r.stockIs(t, before)
	if _, _, n := r.money("co-review-late"); n != 0 {
		t.Error("an undecided checkout reached Stripe")
	}
}

// threeDS waits for the checkout's payment to ask for authentication and returns its intent.
func (r *rig) threeDS(t *testing.T, id string) string {
	t.Helper()
	r.watch.Wait(t, id, wait, events.PaymentActionPending)
	var pi string
	natstest.Eventually(t, wait, func() bool {
		for _, v := range intentsOf(r.emu, id) {
			if v.Status == "requires_action" {
				pi = v.ID
			}
		}
		return pi != ""
	}, "no intent awaits authentication")
	return pi
}

// 3-D Secure: the checkout waits for the customer; completed, it goes on; failed or
// abandoned, the stock is released and nothing is charged.
func TestThreeDSecure(t *testing.T) {
	r := startRig(t, t.TempDir(), nil, func(c *Config) { c.AuthWindow, c.Grace = 2*time.Second, time.Second })
	before := stock(t, r.System, "stickers")
	r.checkout(t, "co-3ds-ok", "pm_card_authenticationRequired", events.CartItem{ProductID: "stickers", Quantity: 1})
	r.checkout(t, "co-3ds-fail", "pm_card_authenticationRequired", events.CartItem{ProductID: "stickers", Quantity: 1})
	r.checkout(t, "co-3ds-gone", "pm_card_authenticationRequired", events.CartItem{ProductID: "stickers", Quantity: 1})
	if err := r.emu.CompleteAuthentication(r.threeDS(t, "co-3ds-ok"), true); err != nil {
		t.Fatal(err)
	}
	if err := r.emu.CompleteAuthentication(r.threeDS(t, "co-3ds-fail"), false); err != nil {
		t.Fatal(err)
	}
	r.threeDS(t, "co-3ds-gone") // the customer walks away

	r.completed(t, "co-3ds-ok")
	if charged, _, n := r.money("co-3ds-ok"); n != 1 || charged == 0 {
		t.Errorf("authenticated: %d intents, %d charged", n, charged)
	}
	r.failed(t, "co-3ds-fail", events.CodeAuthenticationFailed, events.StepProcessPayment)
	r.failed(t, "co-3ds-gone", events.CodeAuthenticationAbandoned, events.StepProcessPayment)
	for _, id := range []string{"co-3ds-fail", "co-3ds-gone"} {
		if charged, _, _ := r.money(id); charged != 0 {
			t.Errorf("%s: charged %d", id, charged)
		}
		r.noOrder(t, id)
	}
	r.stockIs(t, events.Stock{ProductID: "stickers", Available: before.Available - 1, Reserved: before.Reserved, Sold: before.Sold + 1})
}

// Stripe charges and then never answers, every time: the payment step gives up not knowing
// whether it charged; the charge is found and refunded, the stock released, the checkout
// failed.
func TestPaymentFinallyFailsAfterCharging(t *testing.T) {
	faults := stripeemu.When(stripeemu.FaultMatch{Method: "POST", Path: "/v1/payment_intents"}, stripeemu.Fault{Status: 500, AfterRun: true})
	r := startRig(t, t.TempDir(), faults, withMaxDeliver(3))
	before := stock(t, r.System, "keyboard-bbolt")
	r.checkout(t, "co-lost", "pm_card_visa", events.CartItem{ProductID: "keyboard-bbolt", Quantity: 1})
	f := r.failed(t, "co-lost", events.CodeRetriesExhausted, events.StepProcessPayment)
	if len(f.Compensated) != 2 || f.Compensated[0] != events.StepProcessPayment {
		t.Errorf("compensated %v, want the refund first", f.Compensated)
	}
	charged, refunded, n := r.money("co-lost")
	if n != 1 || charged == 0 || refunded != charged {
		t.Errorf("%d intents, charged %d, refunded %d: want the one charge refunded in full", n, charged, refunded)
	}
	r.noOrder(t, "co-lost")
	r.stockIs(t, before)
}
