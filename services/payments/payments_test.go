package payments_test

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/jetcheckout/jetcheckout/internal/steptest"
	"github.com/jetcheckout/jetcheckout/internal/stripeemu"
	"github.com/jetcheckout/jetcheckout/runner"
	"github.com/jetcheckout/jetcheckout/services/payments"
	"github.com/nats-io/nats.go"
	"github.com/shopspring/decimal"
	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"
	bolt "go.etcd.io/bbolt"
)

const secretKey = "sk_test_payments"

type harness struct {
	*steptest.Harness
	svc    *payments.Service
	emu    *stripeemu.Emulator
	stripe *client.API // the test's own client, to assert what Stripe holds
	// creates counts the requests to create a PaymentIntent that reached the emulator;
	// calls, every request.
	creates, calls atomic.Int32
	build          func(db *bolt.DB, log *slog.Logger) (*payments.Service, error)
}

type options struct {
	fault       func(n int32) stripeemu.Fault // fault of the n-th create request
	httpTimeout time.Duration
	authWindow  time.Duration // default 10s
	maxDeliver  int           // the runner's, default its own
	searchLag   time.Duration // default 300ms
	checked     bool          // ask the coordinator before charging (answered by harness.coordinator)
	concurrency int           // the runner's lanes, default one
	rebuild     bool
}

// start runs the service behind the real runner on an embedded JetStream, talking to the
// emulator over real HTTP.
func start(t *testing.T, o options) *harness {
	t.Helper()
	h := &harness{}
	h.emu = stripeemu.New(stripeemu.WithAPIKey(secretKey), stripeemu.WithFault(func(c stripeemu.Call) stripeemu.Fault {
		h.calls.Add(1)
		if c.Method != http.MethodPost || c.Path != "/v1/payment_intents" {
			return stripeemu.Fault{}
		}
		n := h.creates.Add(1)
		if o.fault == nil {
			return stripeemu.Fault{}
		}
		return o.fault(n)
	}))
	ts := httptest.NewServer(h.emu)
	t.Cleanup(ts.Close)
	t.Cleanup(h.emu.Close)

	if o.authWindow == 0 {
		o.authWindow = 10 * time.Second
	}
	if o.searchLag == 0 {
		o.searchLag = 300 * time.Millisecond
	}
	cfg := runner.Config{Name: "payments", RetryBase: 20 * time.Millisecond, RetryMax: 200 * time.Millisecond, MaxDeliver: o.maxDeliver,
		Concurrency: o.concurrency, Rebuild: o.rebuild}
	env := natstest.Start(t)
	var ask *nats.Conn
	if o.checked {
		ask = env.NC
	}
	h.build = func(db *bolt.DB, log *slog.Logger) (*payments.Service, error) {
		return payments.New(db, log, payments.Config{BaseURL: ts.URL, SecretKey: secretKey, HTTPTimeout: o.httpTimeout,
			AuthWindow: o.authWindow, RecheckEvery: 100 * time.Millisecond, SearchLag: o.searchLag, NC: ask})
	}
	h.Harness, h.svc = steptest.StartOn(t, env, cfg, h.build)

	backend := stripe.GetBackendWithConfig(stripe.APIBackend, &stripe.BackendConfig{
		URL: stripe.String(ts.URL), MaxNetworkRetries: stripe.Int64(0),
		LeveledLogger: &stripe.LeveledLogger{Level: stripe.LevelNull},
	})
	h.stripe = client.New(secretKey, &stripe.Backends{API: backend, Connect: backend, Uploads: backend})
	return h
}

// intents are the checkout's PaymentIntents as Stripe lists them (through stripe-go).
func (h *harness) intents(t *testing.T, checkoutID string) []*stripe.PaymentIntent {
	t.Helper()
	var out []*stripe.PaymentIntent
	it := h.stripe.PaymentIntents.List(&stripe.PaymentIntentListParams{})
	for it.Next() {
		if pi := it.PaymentIntent(); pi.Metadata["checkout_id"] == checkoutID {
			out = append(out, pi)
		}
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func (h *harness) record(t *testing.T, checkoutID string) payments.Record {
	t.Helper()
	rec, found, err := h.svc.Payment(checkoutID)
	if err != nil || !found {
		t.Fatalf("payment record of %s: found %v, %v", checkoutID, found, err)
	}
	return rec
}

func quote(paymentMethod, currency, total string) events.Quote {
	addr := events.Address{Line1: "1 Main St", City: "Springfield", PostalCode: "12345", Country: "US"}
	amount := decimal.RequireFromString(total)
	return events.Quote{
		CartID: "cart_1", CustomerID: "cus_1", CustomerEmail: "ada@example.com", PaymentMethodID: paymentMethod,
		ShippingAddress: addr, BillingAddress: addr, Currency: currency,
		Lines:    []events.Line{{ProductID: "mug", Name: "Mug", Quantity: 1, UnitPrice: amount, Total: amount}},
		Subtotal: amount, Total: amount,
	}
}

func requested(checkoutID string, q events.Quote) events.Envelope {
	return events.Must(checkoutID, events.PaymentRequested, q)
}

func refundCommand(checkoutID string) events.Envelope {
	return events.Must(checkoutID, events.PaymentRefund, events.Compensation{Reason: "create_order failed"})
}

// captured waits for the checkout's PaymentCaptured and checks it against one succeeded
// intent in Stripe for the quote's amount.
func (h *harness) captured(t *testing.T, checkoutID string, q events.Quote, minor int64) events.Payment {
	t.Helper()
	var p events.Payment
	h.Expect(t, checkoutID, events.PaymentCaptured, &p, events.PaymentFailed)
	if !p.Amount.Equal(q.Total) || p.Currency != q.Currency {
		t.Fatalf("captured %s %s, want %s %s", p.Amount, p.Currency, q.Total, q.Currency)
	}
	intents := h.intents(t, checkoutID)
	if len(intents) != 1 {
		t.Fatalf("want exactly one intent for %s, got %d", checkoutID, len(intents))
	}
	pi := intents[0]
	if pi.ID != p.PaymentIntentID || pi.Status != stripe.PaymentIntentStatusSucceeded || pi.AmountReceived != minor {
		t.Fatalf("intent %s: status %s, received %d; want %s succeeded for %d", pi.ID, pi.Status, pi.AmountReceived, p.PaymentIntentID, minor)
	}
	if rec := h.record(t, checkoutID); rec.Status != payments.Captured || rec.PaymentIntentID != pi.ID {
		t.Fatalf("record: %+v", rec)
	}
	return p
}

func TestChargesTheQuoteTotalInMinorUnits(t *testing.T) {
	h := start(t, options{})
	cases := []struct {
		checkout, currency, total string
		minor                     int64
		returnURL                 string
	}{
		{"co_usd", "USD", "12.34", 1234, ""},
		{"co_jpy", "JPY", "1200", 1200, ""},
		{"co_eur_return", "EUR", "99.90", 9990, "https://shop.example/checkout/return"},
	}
	for _, c := range cases {
		t.Run(c.checkout, func(t *testing.T) {
			q := quote("pm_card_visa", c.currency, c.total)
			q.ReturnURL = c.returnURL
			h.Env.Publish(t, requested(c.checkout, q))
			p := h.captured(t, c.checkout, q, c.minor)
			if err := p.Validate(); err != nil {
				t.Fatalf("the payment create_order gets is invalid: %v", err)
			}
			pi := h.intents(t, c.checkout)[0]
			if string(pi.Currency) != map[string]string{"USD": "usd", "JPY": "jpy", "EUR": "eur"}[c.currency] ||
				pi.Metadata["cart_id"] != "cart_1" || pi.Metadata["customer_id"] != "cus_1" || pi.Description == "" {
				t.Fatalf("intent: currency %s metadata %v description %q", pi.Currency, pi.Metadata, pi.Description)
			}
			// Without a return URL nothing may redirect; with one, the account's methods may.
			wantRedirects := stripe.PaymentIntentAutomaticPaymentMethodsAllowRedirectsNever
			if c.returnURL != "" {
				wantRedirects = stripe.PaymentIntentAutomaticPaymentMethodsAllowRedirectsAlways
			}
			if pi.AutomaticPaymentMethods == nil || pi.AutomaticPaymentMethods.AllowRedirects != wantRedirects {
				t.Fatalf("automatic payment methods: %+v", pi.AutomaticPaymentMethods)
			}
		})
	}
}

// A slow answer from Stripe holds up its own checkout, not the others: the first charge
// is held until another checkout's charge reaches Stripe meanwhile. Made in the store's
// transaction, the calls would queue behind it: the first would be refused (a 503, retried)
// and Stripe would see more creates than checkouts.
func TestASlowStripeCallDoesNotHoldOtherCheckouts(t *testing.T) {
	const checkouts = 6
	second := make(chan struct{})
	var once sync.Once
	h := start(t, options{concurrency: 4, fault: func(n int32) stripeemu.Fault {
		if n > 1 {
			once.Do(func() { close(second) })
			return stripeemu.Fault{}
		}
		select {
		case <-second:
			return stripeemu.Fault{}
		case <-time.After(5 * time.Second):
			return stripeemu.Fault{Status: http.StatusServiceUnavailable}
		}
	}})
	q := quote("pm_card_visa", "USD", "10.00")
	for i := range checkouts {
		h.Env.Publish(t, requested(fmt.Sprintf("co_%d", i), q))
	}
	for i := range checkouts {
		h.captured(t, fmt.Sprintf("co_%d", i), q, 1000)
	}
	if n := h.creates.Load(); n != checkouts {
		t.Errorf("Stripe saw %d creates for %d checkouts: the first call held the others up", n, checkouts)
	}
}

func TestFailedPayments(t *testing.T) {
	h := start(t, options{})
	cases := []struct {
		checkout, paymentMethod, total, code, message string
		intents                                       int
	}{
		{"co_declined", "pm_card_chargeDeclined", "20.00", events.CodeCardDeclined, "Your card was declined.", 1},
		{"co_broke", "pm_card_chargeDeclinedInsufficientFunds", "20.00", events.CodeInsufficientFunds, "Your card was declined (insufficient funds).", 1},
		{"co_expired", "pm_card_chargeDeclinedExpiredCard", "20.00", events.CodeCardDeclined, "Your card was declined (expired card).", 1},
		// Stripe refuses the request itself: its message is passed on.
		{"co_tiny", "pm_card_visa", "0.10", events.CodePaymentFailed, "Amount must be at least 0.50 usd", 0},
		{"co_unknown_card", "pm_card_made_up", "20.00", events.CodePaymentFailed, "No such PaymentMethod: 'pm_card_made_up'", 0},
	}
	for _, c := range cases {
		t.Run(c.checkout, func(t *testing.T) {
			h.Env.Publish(t, requested(c.checkout, quote(c.paymentMethod, "USD", c.total)))
			var f events.StepFailure
			h.Expect(t, c.checkout, events.PaymentFailed, &f, events.PaymentCaptured)
			if f.Step != events.StepProcessPayment || f.Code != c.code || (c.message != "" && f.Message != c.message) || f.Message == "" {
				t.Fatalf("failure: %+v", f)
			}
			intents := h.intents(t, c.checkout)
			if len(intents) != c.intents {
				t.Fatalf("want %d intents, got %d", c.intents, len(intents))
			}
			for _, pi := range intents {
				if pi.Status == stripe.PaymentIntentStatusSucceeded || pi.AmountReceived != 0 {
					t.Fatalf("a failed payment charged: %s %s received %d", pi.ID, pi.Status, pi.AmountReceived)
				}
			}
			if rec := h.record(t, c.checkout); rec.Status != payments.Failed || rec.FailureCode != c.code {
				t.Fatalf("record: %+v", rec)
			}
		})
	}
}

func TestDuplicateDeliveryChargesOnce(t *testing.T) {
	h := start(t, options{})
	q := quote("pm_card_visa", "USD", "42.00")
	in := requested("co_dup", q)
	h.PublishCopy(t, in, "first-copy")
	h.PublishCopy(t, in, "second-copy")
	h.captured(t, "co_dup", q, 4200)

	// The same request as a new event (say, the coordinator re-deciding): the service's
	// own record answers, without asking Stripe again.
	again := requested("co_dup", q)
	again.ID = "co_dup:payment.requested.again"
	h.Env.Publish(t, again)
	h.Idle(t)
	if n := h.creates.Load(); n != 1 {
		t.Fatalf("Stripe was asked to create %d intents, want 1", n)
	}
	h.captured(t, "co_dup", q, 4200)
}

func TestRetryAfterAStripeFailureChargesOnce(t *testing.T) {
	cases := []struct {
		name  string
		fault stripeemu.Fault
	}{
		{"5xx before the charge", stripeemu.Fault{Status: 503}},
		{"429 rate limit", stripeemu.Fault{Status: 429}},
		{"5xx after the charge", stripeemu.Fault{Status: 500, AfterRun: true}},
		{"timeout after the charge", stripeemu.Fault{Hang: true, AfterRun: true}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			h := start(t, options{httpTimeout: 500 * time.Millisecond, fault: func(n int32) stripeemu.Fault {
				if n == 1 {
					return c.fault
				}
				return stripeemu.Fault{}
			}})
			q := quote("pm_card_visa", "USD", "15.00")
			h.Env.Publish(t, requested("co_retry", q))
			h.captured(t, "co_retry", q, 1500)
			if n := h.creates.Load(); n != 2 {
				t.Fatalf("want a failed attempt and a retry, got %d attempts", n)
			}
			if n := len(h.emu.PaymentIntents()); n != 1 {
				t.Fatalf("want one intent in Stripe, got %d", n)
			}
		})
	}
}

func TestRefund(t *testing.T) {
	h := start(t, options{})
	q := quote("pm_card_visa", "USD", "30.50")
	h.Env.Publish(t, requested("co_refund", q))
	p := h.captured(t, "co_refund", q, 3050)

	h.Env.Publish(t, refundCommand("co_refund"))
	var r events.Refund
	h.Expect(t, "co_refund", events.PaymentRefunded, &r)
	if r.PaymentIntentID != p.PaymentIntentID || r.RefundID == "" || !r.Amount.Equal(q.Total) || r.Currency != "USD" {
		t.Fatalf("refund event: %+v", r)
	}
	refunds := h.stripe.Refunds.List(&stripe.RefundListParams{PaymentIntent: stripe.String(p.PaymentIntentID)})
	var got []*stripe.Refund
	for refunds.Next() {
		got = append(got, refunds.Refund())
	}
	if len(got) != 1 || got[0].ID != r.RefundID || got[0].Amount != 3050 || got[0].Status != stripe.RefundStatusSucceeded {
		t.Fatalf("refunds in Stripe: %+v", got)
	}
	if rec := h.record(t, "co_refund"); rec.Status != payments.Refunded || rec.RefundID != r.RefundID || !rec.RefundedAmount.Equal(q.Total) {
		t.Fatalf("record: %+v", rec)
	}

	h.refundAgain(t, "co_refund")
}

// refundAgain sends the compensation again, as a new event, and checks that it refunds
// nothing more.
func (h *harness) refundAgain(t *testing.T, checkoutID string) {
	t.Helper()
	before := len(h.emu.Refunds())
	again := refundCommand(checkoutID)
	again.ID += ".again"
	h.Env.Publish(t, again)
	h.Idle(t)
	if n := len(h.emu.Refunds()); n != before {
		t.Fatalf("the compensation again made %d more refunds", n-before)
	}
}

func TestRefundWithoutCapturedPayment(t *testing.T) {
	h := start(t, options{})
	// A declined payment: nothing to give back.
	h.Env.Publish(t, requested("co_declined", quote("pm_card_chargeDeclined", "USD", "10.00")))
	h.Wait(t, "co_declined", events.PaymentFailed)
	h.Env.Publish(t, refundCommand("co_declined"))
	// No payment at all yet: the compensation overtook it.
	h.Env.Publish(t, refundCommand("co_early"))

	for _, checkout := range []string{"co_declined", "co_early"} {
		var r events.Refund
		h.Expect(t, checkout, events.PaymentRefunded, &r)
		if r.RefundID != "" || !r.Amount.IsZero() {
			t.Fatalf("%s: want an empty confirmation, got %+v", checkout, r)
		}
	}
	if n := len(h.emu.Refunds()); n != 0 {
		t.Fatalf("nothing was captured, yet %d refunds", n)
	}

	// The payment that arrives after the compensation must not charge.
	h.Env.Publish(t, requested("co_early", quote("pm_card_visa", "USD", "10.00")))
	h.Expect(t, "co_early", events.PaymentFailed, nil, events.PaymentCaptured) // after the compensation
	if n := len(h.intents(t, "co_early")); n != 0 {
		t.Fatalf("want no intent, got %d", n)
	}
}

func TestMalformedPaymentRequestIsRejected(t *testing.T) {
	h := start(t, options{})
	bad := requested("co_bad", quote("pm_card_visa", "USD", "10.00"))
	bad.Payload = []byte(`{"cart_id": "cart_1", "total": "10.00", "card_number": "4242424242424242"}`)
	h.Env.Publish(t, bad)
	h.Refusal(t, "co_bad", events.PaymentFailed, events.PaymentCaptured)
	h.Idle(t)
	if n := len(h.emu.PaymentIntents()); n != 0 || h.creates.Load() != 0 {
		t.Fatalf("a malformed request reached Stripe: %d intents", n)
	}
	if _, found, err := h.svc.Payment("co_bad"); found || err != nil {
		t.Fatalf("a malformed request left a record (%v)", err)
	}
}

// An uncertain refund that finds nothing does not believe it at once: Stripe's search
// index lags behind writes, so it looks again until SearchLag has passed.
func TestAnEmptySearchIsNotBelievedAtOnce(t *testing.T) {
	h := start(t, options{searchLag: 700 * time.Millisecond})
	asked := events.Must("co_nothing", events.PaymentRefund, events.Compensation{Reason: "gave up"})
	asked.Time = time.Now()
	h.Env.Publish(t, asked)
	var r events.Refund
	h.Expect(t, "co_nothing", events.PaymentRefunded, &r)
	if waited := time.Since(asked.Time); waited < 700*time.Millisecond {
		t.Errorf("answered after %s, before the search lag ran out", waited)
	}
	if r.RefundID != "" || !r.Amount.IsZero() {
		t.Errorf("refund %+v for a checkout that was never charged", r)
	}
}
