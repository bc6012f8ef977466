package app

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/coordinator"
	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// failedWith waits for the checkout's terminal event and checks it is a failure with code.
func failedWith(t *testing.T, w *natstest.Watcher, checkoutID, code string, step events.StepName) events.CheckoutFailed {
	t.Helper()
	end := w.Wait(t, checkoutID, wait, events.Completed, events.Failed)
	var f events.CheckoutFailed
	if end.Type != events.Failed {
		t.Fatalf("%s ended in %s, want checkout.failed with %s", checkoutID, end.Type, code)
	}
	if err := end.DecodePayload(&f); err != nil {
		t.Fatal(err)
	}
	if f.Code != code || f.Step != step || f.Message == "" {
		t.Errorf("%s failed with %+v, want code %s at %s and a message", checkoutID, f, code, step)
	}
	return f
}

// TestFailedCheckouts: every failure ends in one checkout.failed with a reason, leaves the
// stock where it was and charges nothing.
func TestFailedCheckouts(t *testing.T) {
	sys := startSystem(t, t.TempDir())
	w := (&natstest.Env{NC: sys.NC}).Watch(t, "checkout.>")
	hoodie := stock(t, sys, "hoodie-saga")
	tee := stock(t, sys, "tee-jetstream")

	tests := []struct {
		id    string
		body  func() []byte
		code  string
		step  events.StepName
		undid []events.StepName
	}{
		{"co-unknown-cart", func() []byte { return checkoutRequest("co-unknown-cart", "cart_nope", "pm_card_visa", california) },
			events.CodeCartNotFound, events.StepValidateCart, nil},
		{"co-no-stock", func() []byte {
			// the tee line could be reserved, the hoodie line cannot: nothing is reserved.
			cart := createCart(t, sys, "USD", events.CartItem{ProductID: "tee-jetstream", Quantity: 1}, events.CartItem{ProductID: "hoodie-saga", Quantity: hoodie.Available + 1})
			return checkoutRequest("co-no-stock", cart.ID, "pm_card_visa", california)
		}, events.CodeInsufficientStock, events.StepReserveInventory, nil},
		{"co-declined", func() []byte {
			cart := createCart(t, sys, "USD", events.CartItem{ProductID: "tee-jetstream", Quantity: 3})
			return checkoutRequest("co-declined", cart.ID, "pm_card_chargeDeclined", california)
		}, events.CodeCardDeclined, events.StepProcessPayment, []events.StepName{events.StepReserveInventory}},
		{"co-no-funds", func() []byte {
			cart := createCart(t, sys, "USD", events.CartItem{ProductID: "hoodie-saga", Quantity: 1})
			return checkoutRequest("co-no-funds", cart.ID, "pm_card_visa_chargeDeclinedInsufficientFunds", california)
		}, events.CodeInsufficientFunds, events.StepProcessPayment, []events.StepName{events.StepReserveInventory}},
		{"co-malformed", func() []byte { return []byte(`{"checkout_id":"co-malformed","cart_id":42}`) },
			events.CodeInvalidRequest, events.StepValidateCart, nil},
	}
	for _, tt := range tests {
		publishCheckout(t, sys, tt.body())
	}
	for _, tt := range tests {
		t.Run(tt.id, func(t *testing.T) {
			f := failedWith(t, w, tt.id, tt.code, tt.step)
			if len(f.Compensated) != len(tt.undid) || (len(tt.undid) > 0 && f.Compensated[0] != tt.undid[0]) {
				t.Errorf("compensated %v, want %v", f.Compensated, tt.undid)
			}
			for _, pi := range intents(sys, tt.id) {
				if pi.Status == "succeeded" {
					t.Errorf("charged: %+v", pi)
				}
			}
			if _, found, _ := sys.Orders.OrderByCheckout(tt.id); found {
				t.Error("an order exists for a failed checkout")
			}
			// A request validate_cart could not tie to a cart of its customer names nobody
			// the shop may write to; the others get their notice.
			if tt.step != events.StepValidateCart {
				notice := failureNotice(t, sys.Config.Outbox(), tt.id)
				if !strings.Contains(notice.body, "not been charged") ||
					(tt.code == events.CodeInsufficientStock && !strings.Contains(notice.body, "Saga Hoodie (limited run) (hoodie-saga)")) {
					t.Errorf("failure notice:\n%s", notice.body)
				}
			}
			if n := w.Count(tt.id, events.Completed) + w.Count(tt.id, events.Failed); n != 1 {
				t.Errorf("%d terminal events", n)
			}
		})
	}
	for _, p := range []events.Stock{hoodie, tee} {
		now := stock(t, sys, p.ProductID)
		if now.Available != p.Available || now.Reserved != p.Reserved || now.Sold != p.Sold {
			t.Errorf("%s: stock %+v after failed checkouts, was %+v", p.ProductID, now, p)
		}
	}

	t.Run("a payment requested of a checkout the coordinator failed is not charged", func(t *testing.T) {
		// As a stray copy, or one sent with the coordinator's credential and key, would come:
		// payments asks the coordinator (checkouts.step.active), which has failed co-no-stock.
		var q events.Quote
		if err := w.Wait(t, "co-declined", wait, events.PaymentRequested).DecodePayload(&q); err != nil {
			t.Fatal(err)
		}
		q.PaymentMethodID = "pm_card_visa" // a card that would be charged
		stray := events.Must("co-no-stock", events.PaymentRequested, q)
		stray.Time = time.Now().UTC()
		data, err := stray.Encode()
		if err != nil {
			t.Fatal(err)
		}
		h, err := sys.Keys.Header(events.ServiceCoordinator, stray.Type, data)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sys.JS.PublishMsg(t.Context(), &nats.Msg{Subject: string(stray.Type), Data: data, Header: h}, jetstream.WithMsgID(stray.ID)); err != nil {
			t.Fatal(err)
		}
		var refused events.StepFailure
		if err := w.Wait(t, "co-no-stock", wait, events.PaymentFailed, events.PaymentCaptured).DecodePayload(&refused); err != nil {
			t.Fatal(err)
		}
		if refused.Code != events.CodeNotRequested || refused.Uncertain {
			t.Errorf("the payment of a failed checkout: %+v; want refused as not requested", refused)
		}
		if pis := intents(sys, "co-no-stock"); len(pis) != 0 {
			t.Errorf("Stripe holds PaymentIntents of a failed checkout: %+v", pis)
		}
	})
}

// TestSameCheckoutTwice: the same checkout_id published twice charges once and creates one
// order; the checked-out cart cannot check out again under another ID.
func TestSameCheckoutTwice(t *testing.T) {
	sys := startSystem(t, t.TempDir())
	w := (&natstest.Env{NC: sys.NC}).Watch(t, "checkout.>")
	cart := createCart(t, sys, "JPY", events.CartItem{ProductID: "tee-jetstream", Quantity: 3})
	body := checkoutRequest("co-twice", cart.ID, "pm_card_visa", tokyo)
	publishCheckout(t, sys, body)
	if end := w.Wait(t, "co-twice", wait, events.Completed, events.Failed); end.Type != events.Completed {
		t.Fatalf("first checkout ended in %s: %s", end.Type, end.Payload)
	}
	waitCheckedOut(t, sys, cart.ID)
	publishCheckout(t, sys, body) // the same message again, after it completed
	publishCheckout(t, sys, checkoutRequest("co-again", cart.ID, "pm_card_visa", tokyo))
	failedWith(t, w, "co-again", events.CodeCartCheckedOut, events.StepValidateCart)
	(&natstest.Env{JS: sys.JS}).WaitIdle(t, "catalog")
	(&natstest.Env{JS: sys.JS}).WaitIdle(t, "coordinator")

	// 3 × ¥2,800 = 8,400 and shipping 800 + 3 × 100 = 1,100, Japan's 10% tax included: ¥9,500,
	// and JPY has no minor unit.
	pis := intents(sys, "co-twice")
	if len(pis) != 1 || pis[0].Status != "succeeded" || pis[0].Amount != 9500 || pis[0].Currency != "jpy" {
		t.Fatalf("payment intents %+v, want one succeeded for 9500 jpy", pis)
	}
	orders, err := sys.Orders.Orders()
	if err != nil || len(orders) != 1 {
		t.Fatalf("%d orders (%v), want 1", len(orders), err)
	}
	if n := w.Count("co-twice", events.Completed); n != 1 {
		t.Errorf("%d checkout.completed, want 1", n)
	}
	if len(intents(sys, "co-again")) != 0 {
		t.Error("the second checkout of a checked-out cart reached Stripe")
	}
}

// TestRestartResumes: a checkout in flight when the process stops completes after a
// restart on the same data directory. The first run has no payments service, so the
// checkout is certainly waiting at its payment when the process stops.
func TestRestartResumes(t *testing.T) {
	dir := t.TempDir()
	log := testLogger()
	first, err := Start(t.Context(), testConfig(dir), log, "catalog", "inventory", "fraud", "coordinator")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(first.Stop)
	cart := createCart(t, first, "EUR", events.CartItem{ProductID: "mug-nats", Quantity: 2})
	publishCheckout(t, first, checkoutRequest("co-restart", cart.ID, "pm_card_visa", events.Address{Line1: "Unter den Linden 1", City: "Berlin", PostalCode: "10117", Country: "DE"}))
	natstest.Eventually(t, wait, func() bool {
		st, found, err := first.Coordinator.State(t.Context(), "co-restart")
		return err == nil && found && slices.Contains(st.Decided, string(events.PaymentRequested))
	}, "the checkout never reached its payment")
	first.Stop()

	again := startSystem(t, dir)
	var st *coordinator.State
	natstest.Eventually(t, wait, func() bool {
		s, found, err := again.Coordinator.State(t.Context(), "co-restart")
		st = s
		return err == nil && found && s.Status == coordinator.StatusCompleted
	}, "checkout did not complete after the restart: %+v", st)
	order, found, err := again.Orders.OrderByCheckout("co-restart")
	if err != nil || !found || order.Currency != "EUR" {
		t.Errorf("order %+v found=%v err=%v", order, found, err)
	}
	if pis := intents(again, "co-restart"); len(pis) != 1 || pis[0].Status != "succeeded" {
		t.Errorf("payment intents %+v, want one succeeded", pis)
	}
	natstest.Eventually(t, wait, func() bool { return stock(t, again, "mug-nats").Reserved == 0 },
		"the reservation was not committed after the restart")
}

// TestDuplicatedBranchCompletions: copies of both branch completions, in the other order and
// past the stream's duplicate check (new Nats-Msg-Id), neither request nor take a second payment.
func TestDuplicatedBranchCompletions(t *testing.T) {
	sys := startSystem(t, t.TempDir())
	env := &natstest.Env{NC: sys.NC, JS: sys.JS}
	w := env.Watch(t, "checkout.>")
	cart := createCart(t, sys, "USD", events.CartItem{ProductID: "stickers", Quantity: 4})
	publishCheckout(t, sys, checkoutRequest("co-dup", cart.ID, "pm_card_visa", california))
	if end := w.Wait(t, "co-dup", wait, events.Completed, events.Failed); end.Type != events.Completed {
		t.Fatalf("ended in %s: %s", end.Type, end.Payload)
	}
	for _, typ := range []events.Subject{events.FraudCleared, events.InventoryReserved, events.FraudCleared} {
		e := w.Wait(t, "co-dup", time.Second, typ)
		env.Republish(t, w.Msg("co-dup", typ), e.ID+"-again-"+time.Now().String())
	}
	env.WaitIdle(t, "coordinator")
	env.WaitIdle(t, "payments")
	if n := w.Count("co-dup", events.PaymentRequested); n != 1 {
		t.Errorf("%d payment requests, want 1", n)
	}
	if pis := intents(sys, "co-dup"); len(pis) != 1 {
		t.Errorf("%d payment intents, want 1", len(pis))
	}
	if n := w.Count("co-dup", events.Completed); n != 1 {
		t.Errorf("%d checkout.completed, want 1", n)
	}
	// The copies were recognised as copies and dropped, not refused as contradictions.
	if n := w.Count("co-dup", events.Rejected); n != 0 {
		t.Errorf("%d copies rejected, want them dropped quietly", n)
	}
}

// TestDerivedCheckoutIDs: without a checkout_id, a publisher's retry under the same
// Nats-Msg-Id is the same checkout, while the same JSON published again is a second attempt,
// refused because the cart has checked out.
func TestDerivedCheckoutIDs(t *testing.T) {
	sys := startSystem(t, t.TempDir())
	env := &natstest.Env{NC: sys.NC, JS: sys.JS}
	w := env.Watch(t, "checkout.>")
	cart := createCart(t, sys, "USD", events.CartItem{ProductID: "mug-nats", Quantity: 1})
	body := checkoutRequest("", cart.ID, "pm_card_visa", california)

	env.PublishRaw(t, string(events.Requested), body, "client-attempt-1")
	env.PublishRaw(t, string(events.Requested), body, "client-attempt-1") // the client's retry
	terminal := func() map[events.Subject][]string {
		out := map[events.Subject][]string{}
		for _, e := range w.All("") {
			if e.Type == events.Completed || e.Type == events.Failed {
				out[e.Type] = append(out[e.Type], e.CheckoutID)
			}
		}
		return out
	}
	natstest.Eventually(t, wait, func() bool { return len(terminal()[events.Completed]) == 1 }, "the checkout did not complete")
	first := terminal()[events.Completed][0]
	if !strings.HasPrefix(first, "co_") {
		t.Errorf("derived checkout ID %q", first)
	}

	waitCheckedOut(t, sys, cart.ID)
	env.PublishRaw(t, string(events.Requested), body, "") // the same JSON, a new message
	natstest.Eventually(t, wait, func() bool { return len(terminal()[events.Failed]) == 1 }, "the second attempt did not fail")
	second := terminal()[events.Failed][0]
	if second == first {
		t.Fatal("the second message was taken for the first checkout")
	}
	failedWith(t, w, second, events.CodeCartCheckedOut, events.StepValidateCart)
	env.WaitIdle(t, events.ServiceCoordinator)
	if got := terminal(); len(got[events.Completed]) != 1 || len(got[events.Failed]) != 1 {
		t.Errorf("terminal events %v, want one completed and one failed", got)
	}
	if n := len(intents(sys, first)) + len(intents(sys, second)); n != 1 {
		t.Errorf("%d payment intents, want 1", n)
	}
}

// waitCheckedOut waits until the catalog has checked the cart out. Its completion and a
// later request for the same cart are different checkouts, so they may run on different
// lanes of the catalog: a request handled first finds the cart still in its checkout
// (cart_in_checkout), not checked out.
func waitCheckedOut(t *testing.T, sys *System, cartID string) {
	t.Helper()
	natstest.Eventually(t, wait, func() bool {
		return request[events.Cart](t, sys.NC, events.CartsGet, events.GetCart{CartID: cartID}).Status == events.CartCheckedOut
	}, "cart %s was never checked out", cartID)
}

// TestCheckoutIDReusedForAnotherCart: a checkout_id names one checkout. The same request
// again is a copy (dropped quietly); the same checkout_id for another cart is refused with
// the reason, and nothing of it runs: one charge, one order, the other cart still open.
func TestCheckoutIDReusedForAnotherCart(t *testing.T) {
	sys := startSystem(t, t.TempDir())
	env := &natstest.Env{NC: sys.NC, JS: sys.JS}
	w := env.Watch(t, "checkout.>")
	first := createCart(t, sys, "USD", events.CartItem{ProductID: "stickers", Quantity: 1})
	second := createCart(t, sys, "USD", events.CartItem{ProductID: "mug-nats", Quantity: 1})
	mugs := stock(t, sys, "mug-nats")
	publishCheckout(t, sys, checkoutRequest("co-reused", first.ID, "pm_card_visa", california))
	if end := w.Wait(t, "co-reused", wait, events.Completed, events.Failed); end.Type != events.Completed {
		t.Fatalf("ended in %s: %s", end.Type, end.Payload)
	}
	publishCheckout(t, sys, checkoutRequest("co-reused", first.ID, "pm_card_visa", california))
	publishCheckout(t, sys, checkoutRequest("co-reused", second.ID, "pm_card_visa", california))

	rejected := w.Wait(t, "co-reused", wait, events.Rejected)
	var r events.RejectedInput
	if err := rejected.DecodePayload(&r); err != nil || r.Consumer != events.ServiceCoordinator || !strings.Contains(r.Reason, "already requested with other content") {
		t.Fatalf("rejection %+v (%v), want the coordinator's reason", r, err)
	}
	deadLetter(t, env, events.ServiceCoordinator, string(events.Requested))
	env.WaitIdle(t, events.ServiceCoordinator)
	env.WaitIdle(t, events.ServiceCatalog)
	if n := w.Count("co-reused", events.Rejected); n != 1 {
		t.Errorf("%d rejections, want 1 (the copy of the first request is dropped quietly)", n)
	}
	if n := w.Count("co-reused", events.Completed) + w.Count("co-reused", events.Failed); n != 1 {
		t.Errorf("%d terminal events, want 1", n)
	}
	if pis := intents(sys, "co-reused"); len(pis) != 1 {
		t.Errorf("%d payment intents, want 1", len(pis))
	}
	if got := stock(t, sys, "mug-nats"); got != mugs {
		t.Errorf("the other cart's stock moved: %+v, before %+v", got, mugs)
	}
	if cart := request[events.Cart](t, sys.NC, events.CartsGet, events.GetCart{CartID: second.ID}); cart.Status == events.CartCheckedOut {
		t.Errorf("the other cart checked out under a reused checkout_id")
	}
}

// TestPreemptedMsgIDs: the stream drops a message whose Nats-Msg-Id it has seen, whoever sent
// it, and an event's ID is derived from its checkout and type. Junk published beforehand under
// every ID a checkout's events will carry (as any holder of a credential into the stream
// could) must not drop a single one of them: the checkout completes, charged once.
func TestPreemptedMsgIDs(t *testing.T) {
	sys := startSystem(t, t.TempDir())
	env := &natstest.Env{NC: sys.NC, JS: sys.JS}
	w := env.Watch(t, "checkout.>")
	const id = "co-preempted"
	for _, d := range events.Checkout.Catalog() {
		if d.Subject == events.Requested || strings.HasSuffix(string(d.Subject), ">") {
			continue
		}
		env.PublishRaw(t, string(events.Stuck), []byte(`{"junk":true}`), events.ID(id, d.Subject))
	}
	cart := createCart(t, sys, "USD", events.CartItem{ProductID: "stickers", Quantity: 1})
	publishCheckout(t, sys, checkoutRequest(id, cart.ID, "pm_card_visa", california))
	if end := w.Wait(t, id, wait, events.Completed, events.Failed); end.Type != events.Completed {
		t.Fatalf("ended in %s: %s", end.Type, end.Payload)
	}
	if pis := intents(sys, id); len(pis) != 1 || pis[0].Status != "succeeded" {
		t.Errorf("payment intents %+v, want one succeeded", pis)
	}
}
