package app

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"mime/quotedprintable"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/jetcheckout/jetcheckout/internal/stripeemu"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/shopspring/decimal"
)

// These tests run the whole checkout as `make run` does: nats-server embedded with
// JetStream on disk, every service with its bbolt file, the Stripe emulator over HTTP
// through stripe-go, email to the outbox. They assert what a checkout leaves behind.

const wait = 20 * time.Second

func testConfig(dir string) Config {
	public, seeds := testSigningKeys()
	return Config{
		NATSListen: "127.0.0.1:-1", DataDir: dir, StripeEmulatorAddr: "127.0.0.1:0",
		MailFrom: "JetCheckout <orders@jetcheckout.local>", LogFormat: "text", LogLevel: slog.LevelWarn,
		SigningPublic: public, SigningSeeds: seeds,
	}
}

// testSigningKeys are the signing keys every process of the package's tests shares, as
// SIGNING_PUBLIC_KEYS and SIGNING_SEED_<SERVICE> would give them.
var testSigningKeys = sync.OnceValues(func() ([]string, map[string]string) {
	env, err := SigningEnv()
	if err != nil {
		panic(err)
	}
	public, seeds := signingFromEnv(func(key string) string {
		for _, kv := range env {
			if k, v, _ := strings.Cut(kv, "="); k == key {
				return v
			}
		}
		return ""
	})
	return public, seeds
})

// testLogger logs warnings and worse to stderr, where go test shows them on failure.
func testLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

// startEmulator runs a Stripe emulator of the test's own on a free loopback port.
func startEmulator(t *testing.T) *stripeemu.Server {
	t.Helper()
	emu, err := stripeemu.Start("127.0.0.1:0", stripeemu.New())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = emu.Close() })
	return emu
}

// startProcess starts the named services (one process of the stack) on cfg until the test
// ends.
func startProcess(t *testing.T, cfg Config, log *slog.Logger, names ...string) *System {
	t.Helper()
	sys, err := Start(context.Background(), cfg, log, names...)
	if err != nil {
		t.Fatalf("start %v: %v", names, err)
	}
	t.Cleanup(sys.Stop)
	return sys
}

// startSystem starts every service, embedded, on a data directory of its own.
func startSystem(t *testing.T, dir string) *System {
	t.Helper()
	return startProcess(t, testConfig(dir), testLogger())
}

// request calls a micro endpoint and decodes its reply, failing on an error reply.
func request[T any](t *testing.T, nc *nats.Conn, subject events.Subject, body any) T {
	t.Helper()
	raw, _ := json.Marshal(body)
	msg, err := nc.Request(string(subject), raw, 5*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", subject, err)
	}
	if code := msg.Header.Get("Nats-Service-Error-Code"); code != "" {
		t.Fatalf("%s: error %s: %s", subject, code, msg.Header.Get("Nats-Service-Error"))
	}
	var out T
	if err := json.Unmarshal(msg.Data, &out); err != nil {
		t.Fatalf("%s reply %s: %v", subject, msg.Data, err)
	}
	return out
}

func createCart(t *testing.T, sys *System, currency string, items ...events.CartItem) events.Cart {
	t.Helper()
	return request[events.Cart](t, sys.NC, events.CartsCreate, events.CreateCart{CustomerID: "cus_ada", Currency: currency, Items: items})
}

func checkoutRequest(checkoutID, cartID, pm string, ship events.Address) []byte {
	raw, _ := json.Marshal(events.CheckoutRequest{
		CheckoutID: checkoutID, CartID: cartID, CustomerID: "cus_ada", CustomerEmail: "ada@example.com",
		PaymentMethodID: pm, ShippingAddress: ship, BillingAddress: ship,
	})
	return raw
}

// checkoutRequestAs is a Californian checkout paid with pm_card_visa by another customer
// than Ada, at <customer>@example.com.
func checkoutRequestAs(checkoutID, cartID, customer string) []byte {
	raw, _ := json.Marshal(events.CheckoutRequest{
		CheckoutID: checkoutID, CartID: cartID, CustomerID: customer, CustomerEmail: customer + "@example.com",
		PaymentMethodID: "pm_card_visa", ShippingAddress: california, BillingAddress: california,
	})
	return raw
}

// checkoutRequestFor is a Californian checkout by a customer with the given email.
func checkoutRequestFor(checkoutID, cartID, pm, email string) []byte {
	raw, _ := json.Marshal(events.CheckoutRequest{
		CheckoutID: checkoutID, CartID: cartID, CustomerID: "cus_ada", CustomerEmail: email,
		PaymentMethodID: pm, ShippingAddress: california, BillingAddress: california,
	})
	return raw
}

var california = events.Address{Name: "Ada Lovelace", Line1: "1 Market St", City: "San Francisco", State: "CA", PostalCode: "94105", Country: "US"}
var tokyo = events.Address{Name: "Ada", Line1: "1-1 Chiyoda", City: "Tokyo", PostalCode: "100-0001", Country: "JP"}

func publishCheckout(t *testing.T, sys *System, body []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := sys.JS.Publish(ctx, string(events.Requested), body); err != nil {
		t.Fatal(err)
	}
}

func stock(t *testing.T, sys *System, productID string) events.Stock {
	t.Helper()
	all := request[[]events.Stock](t, sys.NC, events.InventoryStock, map[string]string{"product_id": productID})
	if len(all) != 1 {
		t.Fatalf("inventory.stock %s: %v", productID, all)
	}
	return all[0]
}

// intents returns the embedded emulator's PaymentIntents of a checkout.
func intents(sys *System, checkoutID string) []stripeemu.PaymentIntentView {
	return intentsOf(sys.Emulator.Emulator, checkoutID)
}

func intentsOf(emu *stripeemu.Emulator, checkoutID string) []stripeemu.PaymentIntentView {
	var out []stripeemu.PaymentIntentView
	for _, pi := range emu.PaymentIntents() {
		if pi.Metadata["checkout_id"] == checkoutID {
			out = append(out, pi)
		}
	}
	return out
}

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func TestHappyCheckout(t *testing.T) {
	sys := startSystem(t, t.TempDir())
	w := (&natstest.Env{NC: sys.NC}).Watch(t, "checkout.>")
	before := stock(t, sys, "tee-jetstream")
	cart := createCart(t, sys, "USD", events.CartItem{ProductID: "tee-jetstream", Quantity: 2}, events.CartItem{ProductID: "mug-nats", Quantity: 1})

	publishCheckout(t, sys, checkoutRequest("co-happy", cart.ID, "pm_card_visa", california))
	done := w.Wait(t, "co-happy", wait, events.Completed, events.Failed)
	if done.Type != events.Completed {
		t.Fatalf("checkout ended in %s: %s", done.Type, done.Payload)
	}

	// 2 × 25.00 + 12.50 = 62.50; CA tax 7.25% = 4.53125 → 4.53; shipping 5.00 + 3 × 1.00 = 8.00.
	wantTotal := dec("75.03")
	order, found, err := sys.Orders.OrderByCheckout("co-happy")
	if err != nil || !found {
		t.Fatalf("no order for the checkout (%v)", err)
	}
	if !order.Subtotal.Equal(dec("62.50")) || !order.Tax.Equal(dec("4.53")) || !order.Shipping.Equal(dec("8.00")) || !order.Total.Equal(wantTotal) {
		t.Errorf("order totals: subtotal %s tax %s shipping %s total %s", order.Subtotal, order.Tax, order.Shipping, order.Total)
	}
	var completed events.CheckoutCompleted
	if err := done.DecodePayload(&completed); err != nil || completed.OrderID != order.ID || !completed.Total.Equal(wantTotal) {
		t.Errorf("completed %+v (%v), want order %s total %s", completed, err, order.ID, wantTotal)
	}

	after := stock(t, sys, "tee-jetstream")
	natstest.Eventually(t, wait, func() bool { after = stock(t, sys, "tee-jetstream"); return after.Sold == before.Sold+2 },
		"the reservation did not become a sale: %+v", after)
	if after.Available != before.Available-2 || after.Reserved != before.Reserved {
		t.Errorf("stock after the sale %+v, before %+v", after, before)
	}

	pis := intents(sys, "co-happy")
	if len(pis) != 1 || pis[0].Status != "succeeded" || pis[0].Amount != 7503 || pis[0].Currency != "usd" {
		t.Fatalf("payment intents %+v, want one succeeded for 7503 usd", pis)
	}
	if pis[0].ID != order.PaymentIntentID {
		t.Errorf("order records intent %s, Stripe has %s", order.PaymentIntentID, pis[0].ID)
	}

	email := readEmail(t, sys.Config.Outbox(), "co-happy")
	body := email.body
	for _, want := range []string{order.Number, "JetStream T-Shirt", "NATS Coffee Mug", "$62.50", "$4.53", "$8.00", "$75.03"} {
		if !strings.Contains(body, want) {
			t.Errorf("confirmation email lacks %q:\n%s", want, body)
		}
	}
	if to := email.msg.Header.Get("To"); !strings.Contains(to, "ada@example.com") {
		t.Errorf("email to %q", to)
	}

	label, found, err := sys.Shipping.Label(order.ID)
	if err != nil || !found || label.TrackingNumber == "" || label.Address.PostalCode != "94105" {
		t.Errorf("label %+v found=%v err=%v", label, found, err)
	}
	pick, found, err := sys.Shipping.PickRequest(order.ID)
	if err != nil || !found || len(pick.Items) != 2 {
		t.Errorf("pick request %+v found=%v err=%v", pick, found, err)
	}
	(&natstest.Env{JS: sys.JS}).WaitIdle(t, events.ServiceCoordinator) // a second terminal event would be out by now
	if n := w.Count("co-happy", events.Completed) + w.Count("co-happy", events.Failed); n != 1 {
		t.Errorf("%d terminal events, want 1", n)
	}
	cart = request[events.Cart](t, sys.NC, events.CartsGet, events.GetCart{CartID: cart.ID})
	if cart.Status != events.CartCheckedOut {
		t.Errorf("cart status %s after the checkout, want %s", cart.Status, events.CartCheckedOut)
	}
}

type email struct {
	msg  *mail.Message
	body string
}

// readEmail finds the confirmation of a checkout in the outbox and decodes its text.
func readEmail(t *testing.T, outbox, checkoutID string) email {
	t.Helper()
	return readOutbox(t, filepath.Join(outbox, checkoutID+".eml"))
}

// failureNotice finds the failure notice of a checkout in the outbox.
func failureNotice(t *testing.T, outbox, checkoutID string) email {
	t.Helper()
	return readOutbox(t, filepath.Join(outbox, checkoutID+".failure.eml"))
}

func readOutbox(t *testing.T, path string) email {
	t.Helper()
	natstest.Eventually(t, wait, func() bool { _, err := os.Stat(path); return err == nil }, "no email at %s", path)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := mail.ReadMessage(strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	text, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if err != nil {
		t.Fatalf("decode %s: %v", path, err)
	}
	return email{msg: msg, body: string(text)}
}

// deadLetter returns the last message a service gave up on, checking where it came from.
func deadLetter(t *testing.T, env *natstest.Env, service, subject string) *jetstream.RawStreamMsg {
	t.Helper()
	stream, err := env.JS.Stream(context.Background(), events.StreamDeadLetter)
	if err != nil {
		t.Fatal(err)
	}
	var m *jetstream.RawStreamMsg
	natstest.Eventually(t, wait, func() bool {
		m, err = stream.GetLastMsgForSubject(context.Background(), events.DeadLetterSubject(service))
		return err == nil
	}, "nothing in %s from %s", events.StreamDeadLetter, service)
	if got := m.Header.Get(events.HeaderDeadSubject); got != subject {
		t.Errorf("dead letter from %s, want %s", got, subject)
	}
	return m
}
