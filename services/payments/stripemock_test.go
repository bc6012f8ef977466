package payments

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/steptest"
	"github.com/shopspring/decimal"
	"github.com/stripe/stripe-go/v76"
)

// Every request the service makes, sent by the service's own client to stripe-mock, which
// validates it against Stripe's OpenAPI spec: a parameter the emulator accepts but Stripe
// would refuse fails here. stripe-mock answers with canned fixtures, so only acceptance is
// checked; the emulator's tests check behaviour.
func TestStripeAcceptsTheServiceRequests(t *testing.T) {
	base := startStripeMock(t)
	svc, err := New(steptest.DB(t, "payments"), steptest.Logger(t), Config{BaseURL: base, SecretKey: "sk_test_shapes"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	withReturn := quoteFor("https://shop.example/checkout/return")
	cases := []struct {
		name string
		call func() error
	}{
		{"create and confirm with return_url", func() error {
			_, err := svc.createIntent(ctx, "co_shapes", withReturn, 1234)
			return err
		}},
		{"create and confirm without redirects", func() error {
			_, err := svc.createIntent(ctx, "co_shapes", quoteFor(""), 1234)
			return err
		}},
		{"create and confirm a renewal off-session", func() error {
			q := quoteFor("https://shop.example/checkout/return")
			q.PaymentMethodID = "pm_1SavedOnTheCustomer"
			q.Renewal = &events.Renewal{SubscriptionID: "sub_shapes", Period: 2, StripeCustomer: "cus_shapes"}
			_, err := svc.createIntent(ctx, q.Renewal.CheckoutID(), q, 1234)
			return err
		}},
		{"retrieve", func() error { _, err := svc.getIntent(ctx, "pi_shapes"); return err }},
		{"cancel", func() error { _, err := svc.cancelIntent(ctx, "co_shapes", "pi_shapes"); return err }},
		{"refund", func() error {
			_, err := svc.refundIntent(ctx, "co_shapes", "pi_shapes", strings.Repeat("create_order failed ", 40))
			return err
		}},
		{"list refunds", func() error { _, err := svc.refunds(ctx, "pi_shapes"); return err }},
		{"search by checkout", func() error { _, err := svc.checkoutIntents(ctx, "co_shapes"); return err }},
	}
	for _, c := range cases {
		if err := c.call(); err != nil {
			var se *stripe.Error
			if errors.As(err, &se) && se.Type == stripe.ErrorTypeInvalidRequest {
				t.Errorf("%s: Stripe would refuse the request: %s", c.name, se.Msg)
			} else {
				t.Errorf("%s: %v", c.name, err)
			}
		}
	}

	// And stripe-mock does refuse what Stripe refuses, or the test above proves nothing.
	p := &stripe.PaymentIntentParams{Amount: stripe.Int64(1234), Currency: stripe.String("usd")}
	p.AddExtra("card_number", "4242424242424242")
	p.Context = ctx
	_, err = svc.stripe.PaymentIntents.New(p)
	var se *stripe.Error
	if !errors.As(err, &se) || se.Type != stripe.ErrorTypeInvalidRequest {
		t.Fatalf("stripe-mock accepted an unknown parameter: %v", err)
	}
}

func quoteFor(returnURL string) events.Quote {
	addr := events.Address{Line1: "1 Main St", City: "Springfield", PostalCode: "12345", Country: "US"}
	total := decimal.RequireFromString("12.34")
	return events.Quote{
		CartID: "cart_1", CustomerID: "cus_1", CustomerEmail: "ada@example.com", PaymentMethodID: "pm_card_visa",
		ShippingAddress: addr, BillingAddress: addr, ReturnURL: returnURL, Currency: "USD",
		Lines:    []events.Line{{ProductID: "mug", Name: "Mug", Quantity: 1, UnitPrice: total, Total: total}},
		Subtotal: total, Total: total,
	}
}

// startStripeMock builds the stripe-mock pinned in go.mod (cached by go after the first
// time) and runs it until the test ends, on 127.0.0.1 only: without an HTTPS address of
// its own it would listen for HTTPS on every interface. It returns its HTTP base URL.
func startStripeMock(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go") // go test puts its own go first on PATH
	if err != nil {
		t.Fatalf("stripe-mock is built with the go command: %v", err)
	}
	began := time.Now()
	built, err := exec.CommandContext(t.Context(), goBin, "tool", "-n", "stripe-mock").Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = errors.New(string(ee.Stderr))
		}
		t.Fatalf("build stripe-mock: %v", err)
	}
	t.Logf("stripe-mock built in %s", time.Since(began).Round(time.Millisecond))

	cmd := exec.CommandContext(t.Context(), strings.TrimSpace(string(built)), "-http-addr", "127.0.0.1:", "-https-addr", "127.0.0.1:")
	out, w := io.Pipe()
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logs := &mockLog{}
	t.Cleanup(func() {
		_ = cmd.Process.Kill() // t.Context() is done: already killed, unless the test failed early
		_ = cmd.Wait()
		_ = w.Close()
		if t.Failed() {
			t.Logf("stripe-mock said:\n%s", logs)
		}
	})
	addr := make(chan string, 1)
	go func() {
		lines := bufio.NewScanner(out)
		for lines.Scan() {
			logs.add(lines.Text())
			if a, found := strings.CutPrefix(lines.Text(), "Listening for HTTP at address: "); found {
				addr <- a
			}
		}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	select {
	case a := <-addr:
		return "http://" + a
	case <-ctx.Done():
		t.Fatalf("stripe-mock did not start listening:\n%s", logs)
		return ""
	}
}

// mockLog keeps what stripe-mock printed, for a failing test.
type mockLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *mockLog) add(line string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, line)
}

func (l *mockLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}
