package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/steptest"
	"github.com/jetcheckout/jetcheckout/internal/store"
	"github.com/jetcheckout/jetcheckout/services/inventory"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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

// A cart named by its creator (a subscription's period) is safe to create again: the same
// cart answers the cart made first; another under the name is a conflict; a bad name a 400.
func TestCreateNamedCartIsIdempotent(t *testing.T) {
	h := start(t)
	req := events.CreateCart{CartID: "sub_sam-1", CustomerID: "cus_sam", Currency: "USD", Items: []events.CartItem{{ProductID: "mug-nats", Quantity: 1}}}
	first := h.createCart(t, req)
	again := h.createCart(t, req)
	if first.ID != "sub_sam-1" || again.ID != first.ID || !again.CreatedAt.Equal(first.CreatedAt) {
		t.Fatalf("first %+v, again %+v: want the same cart", first, again)
	}
	other := req
	other.Items = []events.CartItem{{ProductID: "mug-nats", Quantity: 2}}
	if code := h.call(t, events.CartsCreate, other).Header.Get(micro.ErrorCodeHeader); code != "409" {
		t.Errorf("another cart under the name: code %q, want 409", code)
	}
	bad := req
	bad.CartID = "a.b"
	if code := h.call(t, events.CartsCreate, bad).Header.Get(micro.ErrorCodeHeader); code != "400" {
		t.Errorf("cart_id %q: code %q, want 400", bad.CartID, code)
	}
}

// A cart is durable in JetStream once carts.create answers, and written once: a second
// create of its ID changes nothing.
func TestCartIsStoredOnceInTheBucket(t *testing.T) {
	h := start(t)
	created := h.newCart(t, "USD", item("mug-nats", 2))
	ctx := context.Background()
	kv, err := h.Env.JS.KeyValue(ctx, events.BucketCarts)
	if err != nil {
		t.Fatal(err)
	}
	entry, err := kv.Get(ctx, created.ID)
	if err != nil {
		t.Fatalf("the created cart is not in the bucket: %v", err)
	}
	var stored events.Cart
	if err := json.Unmarshal(entry.Value(), &stored); err != nil {
		t.Fatal(err)
	}
	if stored.ID != created.ID || stored.CustomerID != "cus_ada" || len(stored.Items) != 1 || stored.Items[0] != item("mug-nats", 2) ||
		stored.Status != events.CartOpen || !stored.CreatedAt.Equal(created.CreatedAt) {
		t.Errorf("stored cart %+v, created %+v", stored, created)
	}
	again := stored
	again.Items = []events.CartItem{item("stickers", 9)}
	if err := h.svc.carts.create(ctx, again); !errors.Is(err, jetstream.ErrKeyExists) {
		t.Errorf("a second create of %s: %v, want %v", created.ID, err, jetstream.ErrKeyExists)
	}
	if after, err := kv.Get(ctx, created.ID); err != nil || after.Revision() != entry.Revision() {
		t.Errorf("the cart after a second create: %v, %v", after, err)
	}
	if got := h.cart(t, created.ID); len(got.Items) != 1 || got.Items[0] != item("mug-nats", 2) {
		t.Errorf("the cart after a second create: %+v", got)
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

// A file from before the bucket kept whole carts: they move to the bucket, with their status
// kept in the file, and read as before.
func TestCartsMoveFromAnOldFileToTheBucket(t *testing.T) {
	h := start(t)
	old := []events.Cart{
		{ID: "cart_old_open", CustomerID: "cus_ada", Currency: "USD", Items: []events.CartItem{item("mug-nats", 1)}, Status: events.CartOpen, CreatedAt: time.Unix(1e9, 0).UTC()},
		{ID: "cart_old_held", CustomerID: "cus_ada", Currency: "EUR", Items: []events.CartItem{item("stickers", 3)}, Status: events.CartCheckingOut, CheckoutID: "co-old", CreatedAt: time.Unix(2e9, 0).UTC()},
	}
	err := h.svc.db.Update(func(tx *bolt.Tx) error {
		for _, c := range old {
			if err := store.Put(tx.Bucket(bucketCarts), c.ID, c); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if n, err := h.svc.MoveCartsToBucket(ctx); err != nil || n != 2 {
		t.Fatalf("moved %d carts: %v; want 2", n, err)
	}
	for _, want := range old {
		got := h.cart(t, want.ID)
		if got.Status != want.Status || got.CheckoutID != want.CheckoutID || got.Currency != want.Currency ||
			len(got.Items) != 1 || got.Items[0] != want.Items[0] || !got.CreatedAt.Equal(want.CreatedAt) {
			t.Errorf("moved cart %+v, want %+v", got, want)
		}
		created, found, err := h.svc.carts.get(ctx, want.ID)
		if err != nil || !found || created.Status != events.CartOpen || created.CheckoutID != "" {
			t.Errorf("%s in the bucket: %+v found=%v err=%v; want it as created", want.ID, created, found, err)
		}
	}
	if n, err := h.svc.MoveCartsToBucket(ctx); err != nil || n != 0 {
		t.Errorf("a second move moved %d carts: %v", n, err)
	}
}

// A cart in the bucket that does not decode, although the catalog signed it, is refused for
// good, not tried again.
func TestUnreadableCartIsRefused(t *testing.T) {
	h := start(t)
	torn := []byte(`{"id":`)
	h.writeCart(t, "cart_torn", torn, h.sign(t, h.svc.carts.keys, "cart_torn", torn))
	h.checkout(t, request("co-torn", "cart_torn", "cus_ada", address("US", "CA")), "")
	h.Refusal(t, "co-torn", events.CartFailed, events.CartValidated)
}

// A cart the catalog did not sign (written with a leaked credential or an operator's, which
// may publish on a cart's subject) is refused: validation fails the checkout with the reason
// (a copy of the request in DEADLETTER) and carts.get does not know it. It is written
// unsigned, signed with another key in the catalog's name, or as a copy of a genuine cart's
// signed bytes under another ID. The genuine cart is as it was and checks out.
func TestForgedCartIsRefused(t *testing.T) {
	h := start(t)
	ctx := context.Background()
	genuine := h.newCart(t, "USD", item("mug-nats", 1))
	stream, err := h.Env.JS.Stream(ctx, events.StreamCarts)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := stream.GetLastMsgForSubject(ctx, events.CartSubject(genuine.ID))
	if err != nil {
		t.Fatal(err)
	}
	rewritten := func(id string) []byte {
		forged := genuine
		forged.ID, forged.Items = id, []events.CartItem{item("tee-jetstream", 50)}
		data, err := json.Marshal(forged)
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	forgeries := []struct{ id, why string }{{"cart_unsigned", "no signature"}, {"cart_other_key", "another key"}, {"cart_copied", "a genuine cart's signature"}}
	h.writeCart(t, "cart_unsigned", rewritten("cart_unsigned"), "")
	h.writeCart(t, "cart_other_key", rewritten("cart_other_key"), h.sign(t, catalogKeys(t), "cart_other_key", rewritten("cart_other_key")))
	h.writeCart(t, "cart_copied", stored.Data, stored.Header.Get(events.SignatureHeader))
	for _, f := range forgeries {
		checkoutID := "co-" + f.id
		h.checkout(t, request(checkoutID, f.id, "cus_ada", address("US", "CA")), "")
		refused := h.Refusal(t, checkoutID, events.CartFailed, events.CartValidated)
		if !strings.Contains(refused.Message, "not signed by the catalog") {
			t.Errorf("%s (%s): refused with %q, want the reason", f.id, f.why, refused.Message)
		}
		msg := h.call(t, events.CartsGet, events.GetCart{CartID: f.id})
		if code := msg.Header.Get(micro.ErrorCodeHeader); code != "404" {
			t.Errorf("carts.get of %s (%s): %q %s, want 404", f.id, f.why, code, msg.Data)
		}
	}
	if after := h.cart(t, genuine.ID); len(after.Items) != 1 || after.Items[0] != item("mug-nats", 1) || after.CustomerID != "cus_ada" {
		t.Errorf("the genuine cart after the forgeries: %+v", after)
	}
	h.checkout(t, request("co-genuine", genuine.ID, "cus_ada", address("US", "CA")), "")
	if q := h.quote(t, "co-genuine"); q.CartID != genuine.ID || len(q.Lines) != 1 || q.Lines[0].ProductID != "mug-nats" || q.Lines[0].Quantity != 1 {
		t.Errorf("the genuine cart's quote: %+v", q)
	}
}

// writeCart publishes a cart message on id's subject as anyone who may publish there could,
// with signature (none when empty).
func (h *harness) writeCart(t *testing.T, id string, data []byte, signature string) {
	t.Helper()
	msg := nats.NewMsg(events.CartSubject(id))
	msg.Data = data
	if signature != "" {
		msg.Header.Set(events.SignatureHeader, signature)
	}
	if _, err := h.Env.JS.PublishMsg(context.Background(), msg); err != nil {
		t.Fatal(err)
	}
}

// sign signs a cart message as keys' catalog would.
func (h *harness) sign(t *testing.T, keys *events.Keys, id string, data []byte) string {
	t.Helper()
	sig, err := keys.SignFor(events.ServiceCatalog, events.CartSubject(id), data)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}
