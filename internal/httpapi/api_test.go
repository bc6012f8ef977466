package httpapi_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/app"
	"github.com/jetcheckout/jetcheckout/internal/httpapi"
	"github.com/jetcheckout/jetcheckout/internal/stripeemu"
	"github.com/jetcheckout/jetcheckout/services/fraud"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/shopspring/decimal"
	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"
)

// These tests drive the API over HTTP against the whole checkout as `make run` wires it:
// nats-server embedded with JetStream on disk, every service, the Stripe emulator, the API
// with its own read model. They assert what the checkouts leave behind.

const (
	wait       = 30 * time.Second
	adminToken = "test-admin-token"
)

// asAdmin is the header of a request with the admin token: customers' data needs it.
var asAdmin = []string{"Authorization", "Bearer " + adminToken}

type env struct {
	sys  *app.System
	base string
	cfg  httpapi.Config
	stop func() // stops the API (idempotent; also at the test's end)
}

// start runs the whole checkout and the API; opts change the API's configuration.
func start(t *testing.T, opts ...func(*httpapi.Config)) *env {
	t.Helper()
	return startWith(t, func(*app.Config) {}, opts...)
}

// startWith is start with the system's configuration changed by tweak.
func startWith(t *testing.T, tweak func(*app.Config), opts ...func(*httpapi.Config)) *env {
	t.Helper()
	dir := t.TempDir()
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	sysCfg := app.Config{NATSListen: "127.0.0.1:-1", DataDir: dir, StripeEmulatorAddr: "127.0.0.1:0",
		MailFrom: "JetCheckout <orders@jetcheckout.local>", LogFormat: "text", LogLevel: slog.LevelWarn}
	tweak(&sysCfg)
	sys, err := app.Start(context.Background(), sysCfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sys.Stop)
	cfg := httpapi.Config{Addr: "127.0.0.1:0", DataDir: dir, AdminToken: adminToken, NC: sys.NC, JS: sys.JS, Log: log,
		Emulator: &httpapi.Emulator{URL: sys.StripeURL, Key: "sk_test_jetcheckout_emulator"}}
	for _, o := range opts {
		o(&cfg)
	}
	e := &env{sys: sys, cfg: cfg}
	e.serve(t)
	return e
}

// serve runs the API on e's configuration and points e at it.
func (e *env) serve(t *testing.T) {
	t.Helper()
	srv, err := httpapi.New(e.cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	listening := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx, func(addr string) { listening <- addr }) }()
	var once sync.Once
	e.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("api stopped: %v", err)
			}
		})
	}
	t.Cleanup(e.stop) // runs before sys.Stop: the API stops using the connection first
	select {
	case addr := <-listening:
		e.base = "http://" + addr
	case err := <-done:
		t.Fatal(err)
	}
	// Ready once its read model is (a new one is rebuilt from the stream first).
	for deadline := time.Now().Add(wait); ; time.Sleep(10 * time.Millisecond) {
		status, _, raw := e.do(t, "GET", "/healthz", nil)
		if status == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the API never became healthy: %d %s", status, raw)
		}
	}
}

// do sends a request and returns the status, headers and body.
func (e *env) do(t *testing.T, method, path string, body any, header ...string) (int, http.Header, []byte) {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	req, err := http.NewRequest(method, e.base+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, raw
}

// ok sends a request that must answer want, and decodes the answer into out.
func ok[T any](t *testing.T, e *env, want int, method, path string, body any, header ...string) T {
	t.Helper()
	status, _, raw := e.do(t, method, path, body, header...)
	if status != want {
		t.Fatalf("%s %s: %d %s, want %d", method, path, status, raw, want)
	}
	var out T
	if err := json.Unmarshal(raw, &out); err != nil {
		t.Fatalf("%s %s: %v in %s", method, path, err, raw)
	}
	return out
}

var california = events.Address{Name: "Ada Lovelace", Line1: "1 Market St", City: "San Francisco", State: "CA", PostalCode: "94105", Country: "US"}

func (e *env) cart(t *testing.T, items ...events.CartItem) events.Cart {
	t.Helper()
	return ok[events.Cart](t, e, http.StatusCreated, "POST", "/carts", events.CreateCart{CustomerID: "cus_ada", Currency: "USD", Items: items})
}

func request(cartID, email, pm string) events.CheckoutRequest {
	return events.CheckoutRequest{CartID: cartID, CustomerID: "cus_ada", CustomerEmail: email, PaymentMethodID: pm,
		ShippingAddress: california, BillingAddress: california}
}

// until polls a checkout until cond holds.
func (e *env) until(t *testing.T, id string, what string, cond func(httpapi.Checkout) bool) httpapi.Checkout {
	t.Helper()
	deadline := time.Now().Add(wait)
	var c httpapi.Checkout
	for time.Now().Before(deadline) {
		status, _, raw := e.do(t, "GET", "/checkouts/"+id, nil)
		if status == http.StatusOK {
			c = httpapi.Checkout{}
			if err := json.Unmarshal(raw, &c); err != nil {
				t.Fatal(err)
			}
			if cond(c) {
				return c
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("checkout %s never %s; last: %+v", id, what, c)
	return c
}

func (e *env) ended(t *testing.T, id string) httpapi.Checkout {
	return e.until(t, id, "ended", httpapi.Checkout.Terminal)
}

func step(c httpapi.Checkout, name events.StepName) httpapi.StepView {
	for _, s := range c.Steps {
		if s.Name == name {
			return s
		}
	}
	return httpapi.StepView{}
}

func intents(sys *app.System, checkoutID string) []stripeemu.PaymentIntentView {
	var out []stripeemu.PaymentIntentView
	for _, pi := range sys.Emulator.Emulator.PaymentIntents() {
		if pi.Metadata["checkout_id"] == checkoutID {
			out = append(out, pi)
		}
	}
	return out
}

func TestCheckoutOverHTTPIsIdempotent(t *testing.T) {
	e := start(t)
	before := e.available(t)
	if len(before) == 0 {
		t.Fatal("GET /products: empty catalog")
	}
	cart := e.cart(t, events.CartItem{ProductID: "tee-jetstream", Quantity: 2}, events.CartItem{ProductID: "mug-nats", Quantity: 1})
	req := request(cart.ID, "ada@example.com", "pm_card_visa")

	first := ok[httpapi.Accepted202](t, e, http.StatusAccepted, "POST", "/checkout/process", req, "Idempotency-Key", "order-1")
	if first.CartID != cart.ID || first.StatusURL != "/checkouts/"+first.CheckoutID || first.Status != httpapi.StatusAccepted {
		t.Fatalf("202 answer %+v", first)
	}
	c := e.ended(t, first.CheckoutID)
	if c.Status != httpapi.StatusCompleted {
		t.Fatalf("checkout %s: %+v", c.Status, c.Failure)
	}
	order, found, err := e.sys.Orders.OrderByCheckout(first.CheckoutID)
	if err != nil || !found {
		t.Fatalf("no order (%v)", err)
	}
	// 2 × 25.00 + 12.50 = 62.50; CA tax 7.25% → 4.53; shipping 8.00.
	if c.OrderID != order.ID || c.Totals == nil || !c.Totals.Total.Equal(decimal.RequireFromString("75.03")) || !order.Total.Equal(c.Totals.Total) {
		t.Errorf("view order %s totals %+v, stored order %s total %s", c.OrderID, c.Totals, order.ID, order.Total)
	}
	for _, s := range c.Steps {
		if s.State != httpapi.StepDone || s.StartedAt.IsZero() || s.EndedAt.Before(s.StartedAt) || s.Attempts != 1 {
			t.Errorf("step %s: %+v", s.Name, s)
		}
	}
	// The catalog lists the stock as the inventory has it now: the units sold are gone.
	after := e.available(t)
	if after["tee-jetstream"] != before["tee-jetstream"]-2 || after["mug-nats"] != before["mug-nats"]-1 || after["stickers"] != before["stickers"] {
		t.Errorf("available before %v, after %v: want 2 tees and 1 mug fewer", before, after)
	}

	// The same key again: the same checkout, nothing new.
	status, hdr, raw := e.do(t, "POST", "/checkout/process", req, "Idempotency-Key", "order-1")
	var again httpapi.Accepted202
	_ = json.Unmarshal(raw, &again)
	if status != http.StatusAccepted || again.CheckoutID != first.CheckoutID || hdr.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("repeat: %d %s %v", status, raw, hdr)
	}
	// The same key with another request is refused.
	other := req
	other.CustomerEmail = "grace@example.com"
	if status, hdr, raw := e.do(t, "POST", "/checkout/process", other, "Idempotency-Key", "order-1"); status != http.StatusUnprocessableEntity || hdr.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("reused key: %d %s", status, raw)
	}
	// Past the stream's duplicate window the same request is stored again (here: under
	// another Nats-Msg-Id): the services and the read model still see one checkout.
	body, _ := json.Marshal(events.CheckoutRequest{CheckoutID: first.CheckoutID, CartID: req.CartID, CustomerID: req.CustomerID,
		CustomerEmail: req.CustomerEmail, PaymentMethodID: req.PaymentMethodID, ShippingAddress: california, BillingAddress: california})
	if _, err := e.sys.JS.Publish(context.Background(), string(events.Requested), body, jetstream.WithMsgID("after-the-window")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // time to (not) start a second checkout
	if n := len(intents(e.sys, first.CheckoutID)); n != 1 {
		t.Errorf("%d PaymentIntents for the checkout, want 1", n)
	}
	evs := ok[struct{ Events []httpapi.Event }](t, e, http.StatusOK, "GET", "/checkouts/"+first.CheckoutID+"/events", nil, asAdmin...).Events
	counts := map[events.Subject]int{}
	for _, ev := range evs {
		counts[ev.Type]++
	}
	if counts[events.Requested] != 1 || counts[events.Completed] != 1 || counts[events.PaymentCaptured] != 1 {
		t.Errorf("event history: %v", counts)
	}
	if got := ok[events.Cart](t, e, http.StatusOK, "GET", "/carts/"+cart.ID, nil); got.Status != events.CartCheckedOut || got.CheckoutID != first.CheckoutID {
		t.Errorf("cart after checkout: %+v", got)
	}
}

// available is GET /products' available units by product; every product's must be known.
func (e *env) available(t *testing.T) map[string]int {
	t.Helper()
	units := map[string]int{}
	for _, p := range ok[[]events.ListedProduct](t, e, http.StatusOK, "GET", "/products", nil) {
		if p.Available == nil {
			t.Fatalf("GET /products: %s's stock unknown", p.ID)
		}
		units[p.ID] = *p.Available
	}
	return units
}

// addressJSON is req as JSON with fields in place of its shipping address's state.
func addressJSON(t *testing.T, req events.CheckoutRequest, fields string) string {
	t.Helper()
	raw, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	body := strings.Replace(string(raw), `"state":"CA"`, fields, 1)
	if body == string(raw) {
		t.Fatal("the request has no state to replace")
	}
	return body
}

// Addresses in Stripe's shape (state, line2) are taken, and so are addresses with region,
// the old name of state: each reaches the tax rules and the order.
func TestCheckoutTakesStateAndRegion(t *testing.T) {
	e := start(t)
	for _, c := range []struct {
		fields, state, line2 string
		total                string // 2 × 25.00, shipping 7.00, the state's tax
	}{
		{`"line2":"Suite 400","state":"CA"`, "CA", "Suite 400", "60.63"}, // 7.25% of 50.00 = 3.63
		{`"region":"NY"`, "NY", "", "59.00"},                             // 4% of 50.00 = 2.00
	} {
		cart := e.cart(t, events.CartItem{ProductID: "tee-jetstream", Quantity: 2})
		body := addressJSON(t, request(cart.ID, "ada@example.com", "pm_card_visa"), c.fields)
		a := ok[httpapi.Accepted202](t, e, http.StatusAccepted, "POST", "/checkout/process", body, "Idempotency-Key", cart.ID)
		done := e.ended(t, a.CheckoutID)
		if done.Status != httpapi.StatusCompleted || done.Totals == nil || !done.Totals.Total.Equal(decimal.RequireFromString(c.total)) {
			t.Fatalf("%s: %s %+v totals %+v, want completed at %s", c.fields, done.Status, done.Failure, done.Totals, c.total)
		}
		order, found, err := e.sys.Orders.OrderByCheckout(a.CheckoutID)
		if got := order.ShippingAddress; err != nil || !found || got.State != c.state || got.Line2 != c.line2 {
			t.Errorf("%s: the order ships to %+v (%v)", c.fields, got, err)
		}
		// The same request with the address in the other spelling is the same request.
		other := addressJSON(t, request(cart.ID, "ada@example.com", "pm_card_visa"), strings.ReplaceAll(c.fields, `"state"`, `"region"`))
		if c.state == "NY" {
			other = addressJSON(t, request(cart.ID, "ada@example.com", "pm_card_visa"), `"state":"NY"`)
		}
		if status, hdr, raw := e.do(t, "POST", "/checkout/process", other, "Idempotency-Key", cart.ID); status != http.StatusAccepted || hdr.Get("Idempotent-Replayed") != "true" {
			t.Errorf("%s, again in the other spelling: %d %s", c.fields, status, raw)
		}
	}
}

func TestDeclinedCardShowsCompensation(t *testing.T) {
	e := start(t)
	cart := e.cart(t, events.CartItem{ProductID: "hoodie-saga", Quantity: 1})
	a := ok[httpapi.Accepted202](t, e, http.StatusAccepted, "POST", "/checkout/process", request(cart.ID, "ada@example.com", "pm_card_chargeDeclined"))
	c := e.ended(t, a.CheckoutID)
	if c.Status != httpapi.StatusFailed || c.Failure == nil || c.Failure.Code != events.CodeCardDeclined || c.Failure.Step != events.StepProcessPayment {
		t.Fatalf("declined checkout: %s %+v", c.Status, c.Failure)
	}
	if s := step(c, events.StepProcessPayment); s.State != httpapi.StepFailed || s.Error == nil || s.Error.Code != events.CodeCardDeclined {
		t.Errorf("process_payment: %+v", s)
	}
	if s := step(c, events.StepReserveInventory); s.State != httpapi.StepCompensated || s.CompensationEndedAt.IsZero() {
		t.Errorf("reserve_inventory: %+v", s)
	}
	// It never ran, and never will: not "pending".
	if s := step(c, events.StepCreateOrder); s.State != httpapi.StepNotRun {
		t.Errorf("create_order: %+v", s)
	}
}

func TestValidationErrors(t *testing.T) {
	e := start(t)
	good := request("cart_x", "ada@example.com", "pm_card_visa")
	noEmail := good
	noEmail.CustomerEmail = ""
	script, plainHTTP := good, good
	script.ReturnURL, plainHTTP.ReturnURL = "javascript:alert(document.cookie)", "http://evil.example/phish"
	renewal := request("sub_x-2", "ada@example.com", "pm_card_visa")
	renewal.CheckoutID, renewal.Renewal = "sub_x-2", &events.Renewal{SubscriptionID: "sub_x", Period: 2, StripeCustomer: "cus_1"}
	renewalID := request("cart_1", "ada@example.com", "pm_card_visa")
	renewalID.CheckoutID = "sub_x-2-2"
	cases := []struct {
		name, method, path string
		body               any
		want               int
		detail             string
	}{
		{"not json", "POST", "/checkout/process", "not json", 400, "invalid character"},
		{"empty body", "POST", "/checkout/process", "", 400, "JSON object"},
		{"unknown field", "POST", "/checkout/process", `{"cart_id":"c","coupon":"FREE"}`, 400, `unknown field "coupon"`},
		{"wrong type", "POST", "/checkout/process", `{"cart_id":7}`, 400, `"cart_id"`},
		{"trailing data", "POST", "/checkout/process", `{"cart_id":"c"} {}`, 400, "trailing"},
		{"missing email", "POST", "/checkout/process", noEmail, 422, "customer_email"},
		{"unknown address fields", "POST", "/checkout/process", addressJSON(t, good, `"county":"SF","state":"CA"`), 422,
			`unknown address field "shipping_address.county"`},
		{"card number", "POST", "/checkout/process", request("c", "ada@example.com", "4242424242424242"), 422, "payment_method_id"},
		{"script return_url", "POST", "/checkout/process", script, 422, "return_url must be an absolute https URL"},
		{"http return_url", "POST", "/checkout/process", plainHTTP, 422, "return_url must be an https URL"},
		{"too large", "POST", "/checkout/process", `{"cart_id":"` + strings.Repeat("x", 70<<10) + `"}`, 413, "larger"},
		{"bad status filter", "GET", "/checkouts?status=done", nil, 400, "status must be"},
		{"bad limit", "GET", "/checkouts?limit=0", nil, 400, "limit"},
		{"bad cursor", "GET", "/checkouts?cursor=!!", nil, 400, "cursor"},
		{"unknown checkout", "GET", "/checkouts/co_nope", nil, 404, "co_nope"},
		{"unknown checkout events", "GET", "/checkouts/co_nope/events", nil, 404, "co_nope"},
		{"unknown checkout stream", "GET", "/checkouts/co_nope/stream", nil, 404, "co_nope"},
		{"invalid checkout id", "GET", "/checkouts/a.b", nil, 400, "checkout ID"},
		{"unknown cart", "GET", "/carts/cart_nope", nil, 404, "cart_nope"},
		{"unknown product", "POST", "/carts", events.CreateCart{CustomerID: "c", Currency: "USD", Items: []events.CartItem{{ProductID: "nope", Quantity: 1}}}, 404, "nope"},
		{"bad quantity", "POST", "/carts", events.CreateCart{CustomerID: "c", Currency: "USD", Items: []events.CartItem{{ProductID: "stickers", Quantity: 0}}}, 400, "quantity"},
		{"unknown cart field", "POST", "/carts", `{"customer_id":"c","currency":"USD","items":[],"coupon":1}`, 400, "coupon"},
		{"a renewal from outside", "POST", "/checkout/process", renewal, 422, "renewal is set by the subscriptions service alone"},
		{"a subscription's cart ID", "POST", "/carts", events.CreateCart{CartID: "sub_x-2", CustomerID: "c", Currency: "USD", Items: []events.CartItem{{ProductID: "stickers", Quantity: 1}}}, 422, "sub_"},
		{"a renewal's checkout ID", "POST", "/checkout/process", renewalID, 422, "shaped like a subscription's renewal"},
		{"subscription without an id", "POST", "/subscriptions", events.CreateSubscription{CustomerID: "c"}, 422, "id is required"},
		{"bad subscription", "POST", "/subscriptions", events.CreateSubscription{ID: "sub_v", CustomerID: "c", CustomerEmail: "c@example.com", StripeCustomer: "cus_1", PaymentMethodID: "pm_card_visa",
			ShippingAddress: california, BillingAddress: california, Currency: "USD", Items: []events.CartItem{{ProductID: "stickers", Quantity: 1}}}, 422, "interval_days"},
		{"invalid subscription id", "GET", "/subscriptions/a.b", nil, 400, "subscription ID"},
		{"unknown subscription", "GET", "/subscriptions/sub_nope", nil, 404, "sub_nope"},
		{"no such route", "GET", "/nope", nil, 404, "openapi"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			status, hdr, raw := e.do(t, c.method, c.path, c.body, asAdmin...)
			var p httpapi.Problem
			if err := json.Unmarshal(raw, &p); err != nil || status != c.want || p.Status != c.want ||
				hdr.Get("Content-Type") != "application/problem+json" || !strings.Contains(p.Detail, c.detail) {
				t.Fatalf("%d %s %s, want %d problem mentioning %q", status, hdr.Get("Content-Type"), raw, c.want, c.detail)
			}
		})
	}
	// Nothing was published by the refused requests.
	page := ok[httpapi.Page](t, e, http.StatusOK, "GET", "/checkouts", nil, asAdmin...)
	if len(page.Checkouts) != 0 {
		t.Errorf("refused requests left checkouts: %+v", page.Checkouts)
	}
}

func TestReviewFlow(t *testing.T) {
	e := start(t)
	cart := e.cart(t, events.CartItem{ProductID: "keyboard-bbolt", Quantity: 1})
	a := ok[httpapi.Accepted202](t, e, http.StatusAccepted, "POST", "/checkout/process", request(cart.ID, "eve@review.test", "pm_card_visa"))
	c := e.until(t, a.CheckoutID, "held for review", func(c httpapi.Checkout) bool { return c.Status == httpapi.StatusWaiting })
	if s := step(c, events.StepCheckFraud); s.State != httpapi.StepWaiting || s.Waiting == nil || s.Waiting.Until.IsZero() {
		t.Fatalf("check_fraud while held: %+v", s)
	}
	// The assessment, rule by rule: the review list put it in the band, nothing else added.
	if c.Fraud == nil || !c.Fraud.Risk.Equal(decimal.RequireFromString("0.52")) {
		t.Fatalf("the held checkout's assessment: %+v", c.Fraud)
	}
	outcomes := map[string]string{}
	for _, r := range c.Fraud.Rules {
		outcomes[r.Rule] = r.Outcome + " " + r.Contribution.String()
	}
	if outcomes["review_domain"] != "review 0.5" || outcomes["high_value"] != "clear 0" || outcomes["card_testing"] != "clear 0" {
		t.Errorf("rules %v, want review_domain to review (0.5) and the others clear, the demo's velocity rules among them", outcomes)
	}
	if status, _, page := e.do(t, "GET", "/ui/checkouts/"+a.CheckoutID, nil, asAdmin...); status != http.StatusOK ||
		!strings.Contains(string(page), `data-rule="review_domain" data-outcome="review"`) || !strings.Contains(string(page), `data-rule="card_testing" data-outcome="clear"`) {
		t.Errorf("the run page (%d) does not list the fraud rules:\n%s", status, page)
	}

	for _, h := range [][]string{nil, {"Authorization", "Bearer wrong"}} {
		if status, _, raw := e.do(t, "GET", "/reviews", nil, h...); status != http.StatusUnauthorized {
			t.Fatalf("GET /reviews with %v: %d %s", h, status, raw)
		}
		if status, _, raw := e.do(t, "POST", "/checkouts/"+a.CheckoutID+"/review", events.ReviewDecision{Decision: "approve", Reviewer: "mallory"}, h...); status != http.StatusUnauthorized {
			t.Fatalf("POST review with %v: %d %s", h, status, raw)
		}
	}
	list := ok[struct{ Reviews []fraud.Review }](t, e, http.StatusOK, "GET", "/reviews", nil, asAdmin...)
	if len(list.Reviews) != 1 || list.Reviews[0].CheckoutID != a.CheckoutID {
		t.Fatalf("reviews: %+v", list)
	}
	if status, _, raw := e.do(t, "POST", "/checkouts/"+a.CheckoutID+"/review", events.ReviewDecision{Decision: "maybe", Reviewer: "ada"}, asAdmin...); status != http.StatusUnprocessableEntity {
		t.Fatalf("bad decision: %d %s", status, raw)
	}
	if status, _, raw := e.do(t, "POST", "/checkouts/co_unknown/review", events.ReviewDecision{Decision: "approve", Reviewer: "ada"}, asAdmin...); status != http.StatusNotFound {
		t.Fatalf("review of an unknown checkout: %d %s", status, raw)
	}
	ok[map[string]any](t, e, http.StatusAccepted, "POST", "/checkouts/"+a.CheckoutID+"/review", events.ReviewDecision{Decision: "approve", Reviewer: "ada", Note: "known customer"}, asAdmin...)
	c = e.ended(t, a.CheckoutID)
	if c.Status != httpapi.StatusCompleted || step(c, events.StepCheckFraud).State != httpapi.StepDone {
		t.Fatalf("approved checkout: %s %+v", c.Status, c.Failure)
	}
	if status, _, raw := e.do(t, "POST", "/checkouts/"+a.CheckoutID+"/review", events.ReviewDecision{Decision: "deny", Reviewer: "ada"}, asAdmin...); status != http.StatusConflict {
		t.Fatalf("second decision: %d %s", status, raw)
	}
	if list := ok[struct{ Reviews []any }](t, e, http.StatusOK, "GET", "/reviews", nil, asAdmin...); len(list.Reviews) != 0 {
		t.Errorf("reviews after the decision: %+v", list)
	}
}

// TestRedriveRefusals: POST /checkouts/{id}/redrive needs the admin token and a reason, and
// passes on the coordinator's refusals with their reasons (internal/app's TestRedrive runs
// re-drives that succeed); a failed checkout is retried as a new one, once.
func TestRedriveRefusals(t *testing.T) {
	e := start(t)
	var ids []string
	for _, pm := range []string{"pm_card_visa", "pm_card_chargeDeclined"} {
		cart := e.cart(t, events.CartItem{ProductID: "stickers", Quantity: 1})
		a := ok[httpapi.Accepted202](t, e, http.StatusAccepted, "POST", "/checkout/process", request(cart.ID, "ada@example.com", pm))
		e.ended(t, a.CheckoutID)
		ids = append(ids, a.CheckoutID)
	}
	clean, declined := ids[0], ids[1]
	why := httpapi.RedriveBody{Reason: "the carrier is back"}
	for _, h := range [][]string{nil, {"Authorization", "Bearer wrong"}} {
		if status, _, raw := e.do(t, "POST", "/checkouts/"+clean+"/redrive", why, h...); status != http.StatusUnauthorized {
			t.Fatalf("POST redrive with %v: %d %s", h, status, raw)
		}
	}
	for _, c := range []struct {
		id     string
		body   httpapi.RedriveBody
		status int
		says   string
	}{
		{clean, httpapi.RedriveBody{}, http.StatusUnprocessableEntity, "reason is required"},
		{clean, why, http.StatusConflict, "nothing to re-drive"},
		{"co_unknown", why, http.StatusNotFound, "no checkout"},
	} {
		if status, _, raw := e.do(t, "POST", "/checkouts/"+c.id+"/redrive", c.body, asAdmin...); status != c.status || !bytes.Contains(raw, []byte(c.says)) {
			t.Errorf("re-drive of %s with %+v: %d %s, want %d saying %q", c.id, c.body, status, raw, c.status, c.says)
		}
	}
	// A failed checkout is tried again as a new one (the card is still declined), once.
	retry := ok[events.RedriveReply](t, e, http.StatusAccepted, "POST", "/checkouts/"+declined+"/redrive", why, asAdmin...)
	if retry.NewCheckoutID != declined+"-r2" {
		t.Fatalf("re-drive of the failed %s: %+v, want a new attempt %s-r2", declined, retry, declined)
	}
	if c := e.ended(t, retry.NewCheckoutID); c.Status != httpapi.StatusFailed || c.Failure == nil || c.Failure.Code != events.CodeCardDeclined {
		t.Errorf("the new attempt %s: %+v, want it declined again", retry.NewCheckoutID, c)
	}
	if c := e.until(t, declined, "linked to its retry", func(c httpapi.Checkout) bool { return c.RetriedAs != "" }); c.RetriedAs != retry.NewCheckoutID {
		t.Errorf("%s retried as %q, want %s", declined, c.RetriedAs, retry.NewCheckoutID)
	}
	if status, _, raw := e.do(t, "POST", "/checkouts/"+declined+"/redrive", why, asAdmin...); status != http.StatusConflict || !bytes.Contains(raw, []byte("retried as")) {
		t.Errorf("a second retry of %s: %d %s", declined, status, raw)
	}
	if status, _, page := e.do(t, "GET", "/ui/checkouts/"+clean, nil, asAdmin...); status != http.StatusOK || bytes.Contains(page, []byte("/redrive")) {
		t.Errorf("the run page of a checkout with nothing to re-drive: %d, offers a re-drive: %v", status, bytes.Contains(page, []byte("/redrive")))
	}
}

// TestRedriveADeadLetterOverHTTP: a malformed input of a checkout, rejected by the
// inventory, shows on the checkout as a dead letter. POST /deadletters/{service}/{seq}/redrive
// (admin, with a reason) publishes it again as it came: still malformed, it is rejected
// again, so the checkout shows the first letter re-driven (who, in its history) and a second
// one waiting, with the run page's button for it. Refusals come with their reasons.
func TestRedriveADeadLetterOverHTTP(t *testing.T) {
	e := start(t)
	const id = "co_letter"
	bad := []byte(`{"checkout_id":"` + id + `","type":"checkout.inventory.release","schema_version":"one"}`)
	if _, err := e.sys.JS.Publish(context.Background(), string(events.InventoryRelease), bad); err != nil {
		t.Fatal(err)
	}
	first := e.until(t, id, "shown with a dead letter", func(c httpapi.Checkout) bool { return len(c.DeadLetters) == 1 }).DeadLetters[0]
	if first.Service != events.ServiceInventory || first.Subject != string(events.InventoryRelease) || first.Reason != "" {
		t.Fatalf("dead letter, as anyone sees it: %+v, want no reason (it may quote the input)", first)
	}
	if shown := ok[httpapi.Checkout](t, e, http.StatusOK, "GET", "/checkouts/"+id, nil, asAdmin...).DeadLetters; len(shown) != 1 || !strings.Contains(shown[0].Reason, "malformed") {
		t.Fatalf("dead letter, as the admin sees it: %+v, want why", shown)
	}
	path := fmt.Sprintf("/deadletters/%s/%d/redrive", first.Service, first.StreamSequence)
	why := httpapi.RedriveBody{Reason: "the inventory release is fixed"}
	if status, _, raw := e.do(t, "POST", path, why); status != http.StatusUnauthorized {
		t.Fatalf("POST %s without the admin token: %d %s", path, status, raw)
	}
	for _, c := range []struct {
		path   string
		body   httpapi.RedriveBody
		status int
		says   string
	}{
		{path, httpapi.RedriveBody{}, http.StatusUnprocessableEntity, "reason is required"},
		{"/deadletters/nope/1/redrive", why, http.StatusBadRequest, "named by its service"},
		{fmt.Sprintf("/deadletters/%s/%d/redrive", first.Service, first.StreamSequence+100), why, http.StatusNotFound, "holds no letter"},
	} {
		if status, _, raw := e.do(t, "POST", c.path, c.body, asAdmin...); status != c.status || !bytes.Contains(raw, []byte(c.says)) {
			t.Errorf("POST %s with %+v: %d %s, want %d saying %q", c.path, c.body, status, raw, c.status, c.says)
		}
	}
	reply := ok[events.DeadLetterRedriveReply](t, e, http.StatusAccepted, "POST", path, why, asAdmin...)
	if reply.CheckoutID != id || reply.Subject != string(events.InventoryRelease) || reply.Sequence <= first.StreamSequence {
		t.Fatalf("re-drive: %+v", reply)
	}
	c := e.until(t, id, "shown with the letter re-driven and rejected again", func(c httpapi.Checkout) bool {
		return len(c.DeadLetters) == 2 && c.DeadLetters[0].RedrivenBy != ""
	})
	if again := c.DeadLetters[1]; again.StreamSequence != reply.Sequence || again.RedrivenBy != "" {
		t.Errorf("the copy's letter: %+v, want the copy at %d waiting", again, reply.Sequence)
	}
	if status, _, raw := e.do(t, "POST", path, why, asAdmin...); status != http.StatusNotFound {
		t.Errorf("a second re-drive of the letter: %d %s, want 404", status, raw)
	}
	status, _, page := e.do(t, "GET", "/ui/checkouts/"+id, nil, asAdmin...)
	if status != http.StatusOK || !bytes.Contains(page, []byte("re-driven by admin (HTTP API)")) ||
		!bytes.Contains(page, []byte(fmt.Sprintf("/deadletters/%s/%d/redrive", first.Service, reply.Sequence))) {
		t.Errorf("the run page: %d, want the first letter re-driven and a button for the second:\n%s", status, page)
	}
}

func TestListingFiltersSearchAndPages(t *testing.T) {
	e := start(t)
	var ids []string
	for i, pm := range []string{"pm_card_visa", "pm_card_chargeDeclined", "pm_card_visa"} {
		cart := e.cart(t, events.CartItem{ProductID: "stickers", Quantity: i + 1})
		a := ok[httpapi.Accepted202](t, e, http.StatusAccepted, "POST", "/checkout/process", request(cart.ID, "ada@example.com", pm))
		e.ended(t, a.CheckoutID)
		ids = append(ids, a.CheckoutID)
	}
	failed := ok[httpapi.Page](t, e, http.StatusOK, "GET", "/checkouts?status=failed", nil, asAdmin...)
	if len(failed.Checkouts) != 1 || failed.Checkouts[0].ID != ids[1] {
		t.Errorf("status=failed: %+v", failed.Checkouts)
	}
	found := ok[httpapi.Page](t, e, http.StatusOK, "GET", "/checkouts?q="+failed.Checkouts[0].CartID, nil, asAdmin...)
	if len(found.Checkouts) != 1 || found.Checkouts[0].ID != ids[1] {
		t.Errorf("search by cart: %+v", found.Checkouts)
	}
	if byCustomer := ok[httpapi.Page](t, e, http.StatusOK, "GET", "/checkouts?q=cus_ada", nil, asAdmin...); len(byCustomer.Checkouts) != 3 {
		t.Errorf("search by customer: %d checkouts", len(byCustomer.Checkouts))
	}
	// One per page, newest first, each exactly once.
	var walked []string
	path := "/checkouts?limit=1"
	for range 5 {
		page := ok[httpapi.Page](t, e, http.StatusOK, "GET", path, nil, asAdmin...)
		for _, c := range page.Checkouts {
			walked = append(walked, c.ID)
		}
		if page.Next == "" {
			break
		}
		path = "/checkouts?limit=1&cursor=" + page.Next
	}
	if want := []string{ids[2], ids[1], ids[0]}; fmt.Sprint(walked) != fmt.Sprint(want) {
		t.Errorf("pages walked %v, want %v", walked, want)
	}
}

func TestStreamFollowsACheckoutToItsEnd(t *testing.T) {
	e := start(t)
	cart := e.cart(t, events.CartItem{ProductID: "mug-nats", Quantity: 1})
	a := ok[httpapi.Accepted202](t, e, http.StatusAccepted, "POST", "/checkout/process", request(cart.ID, "ada@example.com", "pm_card_visa"), "Idempotency-Key", "stream-1")
	resp, err := http.Get(e.base + "/checkouts/" + a.CheckoutID + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != http.StatusOK || ct != "text/event-stream" {
		t.Fatalf("stream: %d %s", resp.StatusCode, ct)
	}
	var seen []string
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() { // the server ends the stream after the terminal state
		data, isData := strings.CutPrefix(sc.Text(), "data: ")
		if !isData {
			continue
		}
		var c httpapi.Checkout
		if err := json.Unmarshal([]byte(data), &c); err != nil {
			t.Fatal(err)
		}
		if len(seen) == 0 || seen[len(seen)-1] != c.Status {
			seen = append(seen, c.Status)
		}
	}
	if len(seen) < 2 || seen[len(seen)-1] != httpapi.StatusCompleted {
		t.Fatalf("statuses streamed: %v, want several ending in completed", seen)
	}
}

func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	e := start(t)
	status, hdr, raw := e.do(t, "GET", "/openapi.yaml", nil)
	if status != http.StatusOK || !strings.Contains(hdr.Get("Content-Type"), "yaml") {
		t.Fatalf("GET /openapi.yaml: %d %s", status, hdr.Get("Content-Type"))
	}
	for _, path := range []string{"/checkout/process:", "/checkouts:", "/checkouts/{id}:", "/checkouts/{id}/events:",
		"/checkouts/{id}/stream:", "/checkouts/{id}/review:", "/checkouts/{id}/redrive:", "/reviews:", "/carts:", "/carts/{id}:", "/products:",
		"/subscriptions:", "/subscriptions/{id}:", "/subscriptions/{id}/plan:", "/subscriptions/{id}/{change}:"} {
		if !bytes.Contains(raw, []byte("\n  "+path+"\n")) {
			t.Errorf("openapi.yaml does not describe %s", strings.TrimSuffix(path, ":"))
		}
	}
}

// The UI's forms answer people: a refused order shows the store again with the reason,
// a decision without the admin cookie is refused, and a double submit is one order.
func TestUIForms(t *testing.T) {
	e := start(t)
	form := []string{"Content-Type", "application/x-www-form-urlencoded"}
	status, _, page := e.do(t, "POST", "/ui/store", "email=ada%40example.com&card=visa&key=k1", form...)
	if status != http.StatusOK || !bytes.Contains(page, []byte("Pick at least one product.")) {
		t.Errorf("empty order: %d", status)
	}
	if status, _, _ := e.do(t, "POST", "/ui/reviews/co_x", "decision=approve&reviewer=ada", form...); status != http.StatusUnauthorized {
		t.Errorf("decision without signing in: %d", status)
	}
	if status, _, page := e.do(t, "GET", "/ui/reviews", nil); status != http.StatusOK || !bytes.Contains(page, []byte(`name="token"`)) {
		t.Errorf("review queue before signing in: %d, no sign-in form", status)
	}
	order := "email=ada%40example.com&card=visa&key=twice&qty_stickers=1"
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var runs []string
	for range 2 {
		resp, err := noRedirect.Post(e.base+"/ui/store", "application/x-www-form-urlencoded", strings.NewReader(order))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		runs = append(runs, resp.Header.Get("Location"))
	}
	if runs[0] != runs[1] || !strings.HasPrefix(runs[0], "/ui/checkouts/co_") {
		t.Fatalf("double submit went to %v", runs)
	}
	if c := e.ended(t, strings.TrimPrefix(runs[0], "/ui/checkouts/")); c.Status != httpapi.StatusCompleted {
		t.Errorf("store order ended %s", c.Status)
	}
	if page := ok[httpapi.Page](t, e, http.StatusOK, "GET", "/checkouts", nil, asAdmin...); len(page.Checkouts) != 1 {
		t.Errorf("%d checkouts after a double submit, want 1", len(page.Checkouts))
	}

	// A coupon from the store: taken off the order, or refused with the reason on the form.
	resp, err := noRedirect.Post(e.base+"/ui/store", "application/x-www-form-urlencoded",
		strings.NewReader("email=bob%40example.com&card=visa&key=coupon&qty_tee-jetstream=1&coupon=launch15"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	c := e.ended(t, strings.TrimPrefix(resp.Header.Get("Location"), "/ui/checkouts/"))
	if c.Status != httpapi.StatusCompleted || c.Totals == nil || len(c.Totals.Discounts) != 1 || c.Totals.Discounts[0].Code != "LAUNCH15" {
		t.Errorf("store order with a coupon: %s totals %+v", c.Status, c.Totals)
	}
	status, _, page = e.do(t, "POST", "/ui/store", "email=bob%40example.com&card=visa&key=k2&qty_stickers=1&coupon=no+such", form...)
	if status != http.StatusOK || !bytes.Contains(page, []byte("coupon_code")) || !bytes.Contains(page, []byte(`value="no such"`)) {
		t.Errorf("a malformed coupon: %d, want the store again with the reason and the coupon as typed:\n%s", status, page)
	}
}

// TestScheduledEventTimedWhenItFired: a scheduled event carries the time it was scheduled,
// and the run view showed that, so a re-check the payments service scheduled 2 s ahead
// appeared at the moment of the 3-D Secure request. It is timed from when it fired.
func TestScheduledEventTimedWhenItFired(t *testing.T) {
	e := start(t)
	cart := e.cart(t, events.CartItem{ProductID: "stickers", Quantity: 1})
	a := ok[httpapi.Accepted202](t, e, http.StatusAccepted, "POST", "/checkout/process", request(cart.ID, "ada@example.com", "pm_card_authenticationRequired"))
	deadline := time.Now().Add(wait)
	for {
		at := map[events.Subject]time.Time{}
		for _, ev := range ok[struct{ Events []httpapi.Event }](t, e, http.StatusOK, "GET", "/checkouts/"+a.CheckoutID+"/events", nil, asAdmin...).Events {
			if _, seen := at[ev.Type]; !seen {
				at[ev.Type] = ev.Time
			}
		}
		asked, fired := at[events.PaymentActionPending], at[events.PaymentRecheck]
		if !asked.IsZero() && !fired.IsZero() {
			// payments schedules the first re-check RecheckEvery (2 s) after it asks.
			if gap := fired.Sub(asked); gap < 1500*time.Millisecond {
				t.Fatalf("the re-check is shown %s after the 3-D Secure request, want about 2 s: timed when scheduled, not when fired", gap)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no re-check after %s: %v", wait, at)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// The shop's promotions come with no code: the view's totals list each, marked automatic,
// and the run page shows it as a promotion.
func TestCheckoutWithAPromotion(t *testing.T) {
	e := start(t)
	cart := e.cart(t, events.CartItem{ProductID: "stickers", Quantity: 3}) // 14.97, the third free
	a := ok[httpapi.Accepted202](t, e, http.StatusAccepted, "POST", "/checkout/process", request(cart.ID, "ada@example.com", "pm_card_visa"), "Idempotency-Key", cart.ID)
	done := e.ended(t, a.CheckoutID)
	// 14.97 − 4.99 = 9.98; CA tax 7.25% of it 0.72355 → 0.72; shipping 5.00 + 3 × 1.00.
	if done.Status != httpapi.StatusCompleted || done.Totals == nil || len(done.Totals.Discounts) != 1 || !done.Totals.Discounts[0].Automatic ||
		done.Totals.Discounts[0].Code != "STICKERS-3FOR2" || !done.Totals.Total.Equal(decimal.RequireFromString("18.70")) {
		t.Fatalf("%s %+v totals %+v, want completed at 18.70 with STICKERS-3FOR2 taking 4.99 off", done.Status, done.Failure, done.Totals)
	}
	if pi := intents(e.sys, a.CheckoutID); len(pi) != 1 || pi[0].AmountReceived != 1870 {
		t.Errorf("charged %+v, want one payment of 18.70", pi)
	}
	if status, _, page := e.do(t, "GET", "/ui/checkouts/"+a.CheckoutID, nil, asAdmin...); status != http.StatusOK ||
		!strings.Contains(string(page), "<dt>Promotion</dt>") || !strings.Contains(string(page), "Sticker packs: 3 for the price of 2") {
		t.Errorf("the run page (%d) does not show the promotion:\n%s", status, page)
	}
}

// A checkout with a coupon: the API takes its code, the view's totals list the discount and
// the run page shows it; a code that does not apply fails the checkout with the reason.
func TestCheckoutWithACoupon(t *testing.T) {
	e := start(t)
	cart := e.cart(t, events.CartItem{ProductID: "tee-jetstream", Quantity: 2}) // 50.00
	req := request(cart.ID, "ada@example.com", "pm_card_visa")
	req.CouponCode = "welcome10"
	a := ok[httpapi.Accepted202](t, e, http.StatusAccepted, "POST", "/checkout/process", req, "Idempotency-Key", cart.ID)
	done := e.ended(t, a.CheckoutID)
	// 50.00 − 5.00; CA tax 7.25% of 45.00 = 3.2625 → 3.26; shipping 5.00 + 2 × 1.00.
	if done.Status != httpapi.StatusCompleted || done.Totals == nil || len(done.Totals.Discounts) != 1 ||
		done.Totals.Discounts[0].Code != "WELCOME10" || !done.Totals.Discounts[0].Amount.Equal(decimal.RequireFromString("5")) ||
		!done.Totals.Total.Equal(decimal.RequireFromString("55.26")) {
		t.Fatalf("%s %+v totals %+v, want completed at 55.26 with WELCOME10 taking 5.00 off", done.Status, done.Failure, done.Totals)
	}
	if pi := intents(e.sys, a.CheckoutID); len(pi) != 1 || pi[0].AmountReceived != 5526 {
		t.Errorf("charged %+v, want one payment of 55.26", pi)
	}
	if status, _, page := e.do(t, "GET", "/ui/checkouts/"+a.CheckoutID, nil, asAdmin...); status != http.StatusOK ||
		!strings.Contains(string(page), "WELCOME10") || !strings.Contains(string(page), "10% off your first order") {
		t.Errorf("the run page (%d) does not show the coupon:\n%s", status, page)
	}

	again := e.cart(t, events.CartItem{ProductID: "tee-jetstream", Quantity: 2})
	req = request(again.ID, "ada@example.com", "pm_card_visa")
	req.CouponCode = "WELCOME10" // once per customer
	a = ok[httpapi.Accepted202](t, e, http.StatusAccepted, "POST", "/checkout/process", req, "Idempotency-Key", again.ID)
	if f := e.ended(t, a.CheckoutID); f.Status != httpapi.StatusFailed || f.Failure == nil || f.Failure.Code != events.CodeCouponUsedUp {
		t.Errorf("a second use: %s %+v, want failed with %s", f.Status, f.Failure, events.CodeCouponUsedUp)
	}
}

// A subscription over HTTP: created (its first period paid off-session with a card saved on a
// Stripe customer of the emulator), read, its plan changed, shown on the run UI's
// subscriptions page with its period linked to its checkout, paused and cancelled; the reads
// need a token, the changes the admin's.
func TestSubscriptionOverHTTP(t *testing.T) {
	e := start(t)
	backend := stripe.GetBackendWithConfig(stripe.APIBackend, &stripe.BackendConfig{URL: stripe.String(e.sys.StripeURL)})
	sc := client.New("sk_test_jetcheckout_emulator", &stripe.Backends{API: backend, Connect: backend, Uploads: backend})
	customer, err := sc.Customers.New(&stripe.CustomerParams{Email: stripe.String("ada@example.com")})
	if err != nil {
		t.Fatal(err)
	}
	pm, err := sc.PaymentMethods.Attach("pm_card_visa", &stripe.PaymentMethodAttachParams{Customer: stripe.String(customer.ID)})
	if err != nil {
		t.Fatal(err)
	}
	body := events.CreateSubscription{ID: "sub_http", CustomerID: "cus_ada", CustomerEmail: "ada@example.com", StripeCustomer: customer.ID,
		PaymentMethodID: pm.ID, ShippingAddress: california, BillingAddress: california, Currency: "USD",
		Items: []events.CartItem{{ProductID: "stickers", Quantity: 1}}, IntervalDays: 30}
	if status, _, _ := e.do(t, "POST", "/subscriptions", body); status != http.StatusUnauthorized {
		t.Errorf("a subscription created without the admin token: %d", status)
	}
	created := ok[events.Subscription](t, e, http.StatusCreated, "POST", "/subscriptions", body, asAdmin...)
	if created.Status != events.SubscriptionActive || len(created.Periods) != 1 {
		t.Fatalf("created: %+v", created)
	}
	if status, _, _ := e.do(t, "GET", "/subscriptions/sub_http", nil); status != http.StatusUnauthorized {
		t.Errorf("a subscription read without a token: %d", status)
	}
	deadline := time.Now().Add(wait)
	for {
		sub := ok[events.Subscription](t, e, http.StatusOK, "GET", "/subscriptions/sub_http", nil, asAdmin...)
		if sub.Periods[0].Outcome == events.PeriodPaid {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("period 1 never paid: %+v", sub)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if c := e.until(t, "sub_http-1", "completed", func(c httpapi.Checkout) bool { return c.Status == httpapi.StatusCompleted }); c.Status != httpapi.StatusCompleted {
		t.Fatalf("the period's checkout: %+v", c)
	}

	changed := ok[events.Subscription](t, e, http.StatusOK, "POST", "/subscriptions/sub_http/plan", map[string]any{"interval_days": 7}, asAdmin...)
	if changed.NextPlan == nil || changed.NextPlan.IntervalDays != 7 || changed.IntervalDays != 30 {
		t.Errorf("plan changed: %+v, want 7 days from the next period", changed)
	}
	if status, _, _ := e.do(t, "POST", "/subscriptions/sub_http/plan", map[string]any{"items": []events.CartItem{{ProductID: "nope", Quantity: 1}}}, asAdmin...); status != http.StatusNotFound {
		t.Errorf("a plan with an unknown product: %d, want 404", status)
	}

	status, _, page := e.do(t, "GET", "/ui/subscriptions", nil, asAdmin...)
	if status != http.StatusOK || !bytes.Contains(page, []byte(`href="/ui/checkouts/sub_http-1"`)) || !bytes.Contains(page, []byte("paid")) {
		t.Errorf("the subscriptions page: %d\n%s", status, page)
	}
	if _, _, page := e.do(t, "GET", "/ui/subscriptions", nil); !bytes.Contains(page, []byte("sign in")) || bytes.Contains(page, []byte("ada@example.com")) {
		t.Errorf("the subscriptions page without a token shows customers or asks for no sign-in:\n%s", page)
	}

	if status, _, _ := e.do(t, "POST", "/subscriptions/sub_http/pause", nil); status != http.StatusUnauthorized {
		t.Errorf("a pause without the admin token: %d", status)
	}
	// Paused from the page's button, signed in as the admin (the form carries its CSRF token).
	_, cookie := e.signIn(t, adminToken)
	jar := []string{"Cookie", cookie.String()}
	_, _, page = e.do(t, "GET", "/ui/subscriptions", nil, jar...)
	m := regexp.MustCompile(`action="/ui/subscriptions/sub_http/pause"[^>]*>\s*<input type="hidden" name="csrf" value="([0-9a-f]{64})"`).FindSubmatch(page)
	if m == nil {
		t.Fatalf("no pause button on the subscriptions page:\n%s", page)
	}
	if resp, _ := e.postForm(t, "/ui/subscriptions/sub_http/pause", url.Values{"csrf": {"forged"}}, jar...); resp.StatusCode != http.StatusForbidden {
		t.Errorf("a pause with a forged CSRF token: %d", resp.StatusCode)
	}
	if resp, _ := e.postForm(t, "/ui/subscriptions/sub_http/pause", url.Values{"csrf": {string(m[1])}}, jar...); resp.StatusCode != http.StatusSeeOther {
		t.Errorf("the pause button: %d", resp.StatusCode)
	}
	if sub := ok[events.Subscription](t, e, http.StatusOK, "GET", "/subscriptions/sub_http", nil, asAdmin...); sub.Status != events.SubscriptionPaused {
		t.Errorf("after the pause button: %s", sub.Status)
	}
	sub := ok[events.Subscription](t, e, http.StatusOK, "POST", "/subscriptions/sub_http/cancel", map[string]string{"reason": "moving"}, asAdmin...)
	if sub.Status != events.SubscriptionCancelled || sub.CancelReason != "moving" {
		t.Errorf("cancelled: %+v", sub)
	}
	if status, _, _ := e.do(t, "POST", "/subscriptions/sub_http/resume", nil, asAdmin...); status != http.StatusConflict {
		t.Errorf("resuming a cancelled subscription: %d, want 409", status)
	}
}
