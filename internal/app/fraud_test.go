package app

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
)

// Card testing, through the whole wiring and the demo's rules (deploy/demo/fraud.json): a
// customer whose payments were declined three times in an hour has the next checkout
// rejected by the fraud check, before any payment is tried; its stock is given back, and the
// rejection names the rule. Another customer's checkout goes through meanwhile.
func TestCardTestingIsRejectedBeforePayment(t *testing.T) {
	sys := startSystem(t, t.TempDir())
	w := (&natstest.Env{NC: sys.NC}).Watch(t, "checkout.>")
	before := stock(t, sys, "mug-nats").Available

	for i := range 3 {
		id := fmt.Sprintf("co-testing-%d", i)
		cart := createCart(t, sys, "USD", events.CartItem{ProductID: "mug-nats", Quantity: 1})
		publishCheckout(t, sys, checkoutRequest(id, cart.ID, "pm_card_chargeDeclined", california))
		var f events.CheckoutFailed
		if done := w.Wait(t, id, wait, events.Completed, events.Failed); done.Type != events.Failed || done.DecodePayload(&f) != nil ||
			f.Code != events.CodeCardDeclined {
			t.Fatalf("%s ended in %s %s, want a declined card", id, done.Type, done.Payload)
		}
	}
	cart := createCart(t, sys, "USD", events.CartItem{ProductID: "mug-nats", Quantity: 1})
	publishCheckout(t, sys, checkoutRequest("co-testing-next", cart.ID, "pm_card_visa", california))
	var f events.CheckoutFailed
	if done := w.Wait(t, "co-testing-next", wait, events.Completed, events.Failed); done.Type != events.Failed || done.DecodePayload(&f) != nil ||
		f.Step != events.StepCheckFraud || f.Code != events.CodeFraudRejected {
		t.Fatalf("the fourth checkout ended in %s %s, want a fraud rejection", done.Type, done.Payload)
	}
	var rejected events.StepFailure
	if err := w.Wait(t, "co-testing-next", wait, events.FraudFailed).DecodePayload(&rejected); err != nil || rejected.Assessment == nil {
		t.Fatalf("the rejection carries no assessment (%v)", err)
	}
	fired := map[string]string{}
	for _, r := range rejected.Assessment.Rules {
		if r.Outcome != events.RuleClear {
			fired[r.Rule] = r.Detail
		}
	}
	if want := "3 declined payments for this customer in the last 1h0m0s (limit 2)"; len(fired) != 1 || fired["card_testing"] != want {
		t.Errorf("rules that fired: %v, want card_testing alone: %q", fired, want)
	}
	if pis := intents(sys, "co-testing-next"); len(pis) != 0 {
		t.Errorf("the rejected checkout reached Stripe: %+v", pis)
	}

	other := request[events.Cart](t, sys.NC, events.CartsCreate, events.CreateCart{CustomerID: "cus_grace", Currency: "USD",
		Items: []events.CartItem{{ProductID: "mug-nats", Quantity: 1}}})
	publishCheckout(t, sys, checkoutRequestAs("co-grace", other.ID, "cus_grace"))
	if done := w.Wait(t, "co-grace", wait, events.Completed, events.Failed); done.Type != events.Completed {
		t.Fatalf("another customer's checkout ended in %s: %s", done.Type, done.Payload)
	}
	natstest.Eventually(t, wait, func() bool { return stock(t, sys, "mug-nats").Available == before-1 },
		"stock of mug-nats is not %d (one sold, the rest given back)", before-1)
}

// FRAUD_RULES replaces the demo's rules with a file of the shop's: here a customer's third
// checkout in 10 minutes is held for review, and the assessment says why. A file with a rule
// that cannot work stops the start, naming the file and the rule.
func TestFraudRulesFromAFile(t *testing.T) {
	dir := t.TempDir()
	rules := filepath.Join(dir, "fraud.json")
	write := func(body string) {
		if err := os.WriteFile(rules, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cfg := testConfig(dir)
	cfg.FraudRules = rules
	write(`{"velocity": [{"name": "bursty", "by": "customer", "count": "attempts", "window": "10m", "limit": 0, "weight": "0.8"}]}`)
	if sys, err := Start(context.Background(), cfg, testLogger()); err == nil || !strings.Contains(err.Error(), "velocity rule bursty: the limit") ||
		!strings.Contains(err.Error(), "FRAUD_RULES "+rules) {
		if sys != nil {
			sys.Stop()
		}
		t.Fatalf("start with a rule that cannot work: %v", err)
	}

	write(`{"velocity": [{"name": "bursty", "by": "customer", "count": "attempts", "window": "10m", "limit": 2, "weight": "0.5"}]}`)
	sys := startProcess(t, cfg, testLogger())
	w := (&natstest.Env{NC: sys.NC}).Watch(t, "checkout.>")
	for i, want := range []events.Subject{events.FraudCleared, events.FraudCleared, events.FraudReviewPending} {
		id := fmt.Sprintf("co-bursty-%d", i)
		cart := createCart(t, sys, "USD", events.CartItem{ProductID: "stickers", Quantity: 1})
		publishCheckout(t, sys, checkoutRequest(id, cart.ID, "pm_card_visa", california))
		if got := w.Wait(t, id, wait, events.FraudCleared, events.FraudFailed, events.FraudReviewPending); got.Type != want {
			t.Fatalf("%s: %s %s, want %s", id, got.Type, got.Payload, want)
		}
	}
	var held events.Waiting
	if err := w.Wait(t, "co-bursty-2", wait, events.FraudReviewPending).DecodePayload(&held); err != nil || held.Assessment == nil ||
		!strings.Contains(held.Reason, "3 checkouts for this customer in the last 10m0s (limit 2)") {
		t.Fatalf("the held checkout: %+v (%v)", held, err)
	}
}
