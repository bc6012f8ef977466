package catalog

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/steptest"
	"github.com/jetcheckout/jetcheckout/services/inventory"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	bolt "go.etcd.io/bbolt"
)

func TestCreateAndGetCart(t *testing.T) {
	h := start(t)
	created := h.createCart(t, events.CreateCart{CustomerID: " cus_ada ", Currency: "usd", Items: []events.CartItem{
		{ProductID: "mug-nats", Quantity: 1},
		{ProductID: "tee-jetstream", Quantity: 2},
		{ProductID: "mug-nats", Quantity: 3}, // merged into the first mug line
	}})
	if !strings.HasPrefix(created.ID, "cart_") || len(created.ID) != len("cart_")+32 {
		t.Errorf("cart ID %q", created.ID)
	}
	want := []events.CartItem{{ProductID: "mug-nats", Quantity: 4}, {ProductID: "tee-jetstream", Quantity: 2}}
	if created.CustomerID != "cus_ada" || created.Currency != "USD" || created.Status != events.CartOpen ||
		created.CreatedAt.IsZero() || len(created.Items) != 2 || created.Items[0] != want[0] || created.Items[1] != want[1] {
		t.Errorf("created cart = %+v", created)
	}

	msg := h.call(t, events.CartsGet, events.GetCart{CartID: created.ID})
	var got events.Cart
	if err := json.Unmarshal(msg.Data, &got); err != nil {
		t.Fatalf("get: %v (%s)", err, msg.Header.Get(micro.ErrorHeader))
	}
	stored := h.cart(t, created.ID)
	if got.ID != created.ID || len(got.Items) != 2 || got.Items[0] != want[0] || !got.CreatedAt.Equal(stored.CreatedAt) {
		t.Errorf("got cart %+v, stored %+v", got, stored)
	}

	other := h.createCart(t, events.CreateCart{CustomerID: "cus_ada", Currency: "USD", Items: want})
	if other.ID == created.ID {
		t.Errorf("two carts share ID %s", other.ID)
	}
}

func TestListProducts(t *testing.T) {
	h := start(t)
	// No inventory yet: the list answers, with the stock unknown.
	products := h.list(t)
	seed := demoSeed(t)
	if len(products) != len(seed) {
		t.Fatalf("listed %d products, seeded %d", len(products), len(seed))
	}
	for i := 1; i < len(products); i++ {
		if products[i-1].ID >= products[i].ID {
			t.Errorf("not ordered by ID: %s before %s", products[i-1].ID, products[i].ID)
		}
	}
	for _, p := range products {
		if p.ID == "tee-jetstream" && (p.Name != "JetStream T-Shirt" || !p.Prices["JPY"].Equal(dec("2800")) || !p.Prices["USD"].Equal(dec("25"))) {
			t.Errorf("tee = %+v", p)
		}
		if p.Available != nil {
			t.Errorf("%s: %d available without an inventory, want unknown", p.ID, *p.Available)
		}
	}
}

// catalog.list asks the inventory for the stock at each request, and answers without it
// when the inventory is too slow.
func TestListProductsWithStock(t *testing.T) {
	h := start(t)
	h.svc.stockTimeout = 200 * time.Millisecond
	mute, err := h.Env.NC.Subscribe(string(events.InventoryStock), func(*nats.Msg) {}) // hears, never answers
	if err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	for _, p := range h.list(t) {
		if p.Available != nil {
			t.Errorf("%s: %d available from a mute inventory, want unknown", p.ID, *p.Available)
		}
	}
	if took := time.Since(began); took > 2*time.Second {
		t.Errorf("the list took %s with a mute inventory, want about the stock timeout", took)
	}
	if err := mute.Unsubscribe(); err != nil {
		t.Fatal(err)
	}

	inv, err := inventory.NewWithConfig(steptest.DB(t, "inventory"), steptest.Logger(t), inventory.Config{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := inv.Seed(map[string]int{"tee-jetstream": 7, "mug-nats": 0}); err != nil {
		t.Fatal(err)
	}
	h.Serve(t, inv.Serve)
	want := map[string]int{"tee-jetstream": 7, "mug-nats": 0, "stickers": 0} // not stocked: none to buy
	for _, p := range h.list(t) {
		if w, ok := want[p.ID]; ok && (p.Available == nil || *p.Available != w) {
			t.Errorf("%s: available %v, want %d", p.ID, p.Available, w)
		}
	}
}

// list asks catalog.list.
func (h *harness) list(t *testing.T) []events.ListedProduct {
	t.Helper()
	msg := h.call(t, events.CatalogList, []byte{})
	var products []events.ListedProduct
	if err := json.Unmarshal(msg.Data, &products); err != nil {
		t.Fatalf("%v: %s", err, msg.Data)
	}
	return products
}

func TestCartRequestErrors(t *testing.T) {
	h := start(t)
	one := []events.CartItem{{ProductID: "mug-nats", Quantity: 1}}
	tests := []struct {
		name    string
		subject events.Subject
		body    any
		code    string
		mention string
	}{
		{"empty body", events.CartsCreate, []byte{}, "400", "JSON object"},
		{"not JSON", events.CartsCreate, []byte("one mug please"), "400", "invalid character"},
		{"unknown field", events.CartsCreate, []byte(`{"customer_id":"c","currency":"USD","items":[],"coupon":"X"}`), "400", "coupon"},
		{"quantity of the wrong type", events.CartsCreate, []byte(`{"customer_id":"c","currency":"USD","items":[{"product_id":"mug-nats","quantity":"2"}]}`), "400", "quantity"},
		{"no customer", events.CartsCreate, events.CreateCart{Currency: "USD", Items: one}, "400", "customer_id"},
		{"no items", events.CartsCreate, events.CreateCart{CustomerID: "c", Currency: "USD"}, "400", "at least one product"},
		{"zero quantity", events.CartsCreate, events.CreateCart{CustomerID: "c", Currency: "USD", Items: []events.CartItem{{ProductID: "mug-nats"}}}, "400", "at least 1"},
		{"negative quantity", events.CartsCreate, events.CreateCart{CustomerID: "c", Currency: "USD", Items: []events.CartItem{{ProductID: "mug-nats", Quantity: -2}}}, "400", "at least 1"},
		{"absurd quantity", events.CartsCreate, events.CreateCart{CustomerID: "c", Currency: "USD", Items: []events.CartItem{{ProductID: "mug-nats", Quantity: 1_000_000}}}, "400", "at most 999"},
		{"absurd once merged", events.CartsCreate, events.CreateCart{CustomerID: "c", Currency: "USD", Items: []events.CartItem{
			{ProductID: "mug-nats", Quantity: 500}, {ProductID: "mug-nats", Quantity: 500}}}, "400", "at most 999"},
		{"no product id", events.CartsCreate, events.CreateCart{CustomerID: "c", Currency: "USD", Items: []events.CartItem{{Quantity: 1}}}, "400", "product_id"},
		{"unknown product", events.CartsCreate, events.CreateCart{CustomerID: "c", Currency: "USD", Items: []events.CartItem{{ProductID: "flux-capacitor", Quantity: 1}}}, "404", "flux-capacitor"},
		{"not sold in the currency", events.CartsCreate, events.CreateCart{CustomerID: "c", Currency: "EUR", Items: []events.CartItem{{ProductID: "poster-route66", Quantity: 1}}}, "400", "not sold in EUR"},
		{"unsupported currency", events.CartsCreate, events.CreateCart{CustomerID: "c", Currency: "GBP", Items: one}, "400", "EUR, JPY, USD"},
		{"no currency", events.CartsCreate, events.CreateCart{CustomerID: "c", Items: one}, "400", "currency"},
		{"get without cart_id", events.CartsGet, events.GetCart{}, "400", "cart_id"},
		{"get unknown cart", events.CartsGet, events.GetCart{CartID: "cart_nope"}, "404", "cart_nope"},
		{"get with unknown field", events.CartsGet, []byte(`{"cart":"x"}`), "400", "unknown field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg := h.call(t, tt.subject, tt.body)
			code, desc := msg.Header.Get(micro.ErrorCodeHeader), msg.Header.Get(micro.ErrorHeader)
			if code != tt.code || !strings.Contains(desc, tt.mention) {
				t.Errorf("reply %s %q (%s), want %s mentioning %q", code, desc, msg.Data, tt.code, tt.mention)
			}
		})
	}
	products, err := h.svc.Products()
	if err != nil {
		t.Fatal(err)
	}
	err = h.svc.db.View(func(tx *bolt.Tx) error {
		if n := tx.Bucket(bucketCarts).Stats().KeyN; n != 0 {
			t.Errorf("refused requests stored %d carts", n)
		}
		return nil
	})
	if err != nil || len(products) != len(demoSeed(t)) {
		t.Fatal(err)
	}
}

func TestServiceInfo(t *testing.T) {
	h := start(t)
	msg := h.call(t, "$SRV.INFO.catalog", []byte{})
	var info micro.Info
	if err := json.Unmarshal(msg.Data, &info); err != nil {
		t.Fatal(err)
	}
	subjects := map[string]bool{}
	for _, e := range info.Endpoints {
		subjects[e.Subject] = true
	}
	if info.Name != "catalog" || info.Version != Version || info.Description == "" ||
		!subjects[string(events.CartsCreate)] || !subjects[string(events.CartsGet)] || !subjects[string(events.CatalogList)] {
		t.Errorf("service info = %+v", info)
	}
}
