package catalog

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/microx"
	"github.com/jetcheckout/jetcheckout/internal/store"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	bolt "go.etcd.io/bbolt"
)

// Version of the catalog's micro service.
const Version = "1.0.0"

// MaxQuantity is the most units of one product a cart may hold.
const MaxQuantity = 999

// cartTimeout bounds carts.create's and carts.get's calls to the carts bucket.
const cartTimeout = 5 * time.Second

// Serve starts the "catalog" micro service: carts.create (events.CreateCart →
// events.Cart), carts.get (events.GetCart → events.Cart) and catalog.list (→
// []events.ListedProduct, the stock asked of inventory.stock on nc). A bad request gets an error reply with code "400" or "404" and a
// description saying what is wrong. Stop the returned service to stop serving.
func (s *Service) Serve(nc *nats.Conn) (micro.Service, error) {
	return microx.AddService(nc, s.log, micro.Config{
		Name:        "catalog",
		Version:     Version,
		Description: "Products and carts: create and read carts, list the catalog.",
	},
		microx.Endpoint{Name: "create_cart", Subject: events.CartsCreate, Handle: s.createCart},
		microx.Endpoint{Name: "get_cart", Subject: events.CartsGet, Handle: s.getCart},
		microx.Endpoint{Name: "list_products", Subject: events.CatalogList, Handle: func([]byte) (any, error) { return s.listProducts(nc) }},
	)
}

// listProducts is the catalog with each product's units available now, asked of the
// inventory, which owns the stock. An inventory that does not answer within the stock
// timeout leaves the stock unknown (null), not the list failed.
func (s *Service) listProducts(nc *nats.Conn) ([]events.ListedProduct, error) {
	products, err := s.Products()
	if err != nil {
		return nil, err
	}
	available, err := s.available(nc)
	if err != nil {
		s.log.Warn("catalog.list: stock unknown", "err", err)
	}
	listed := make([]events.ListedProduct, len(products))
	for i, p := range products {
		listed[i].Product = p
		if available != nil {
			n := available[p.ID] // a product inventory does not stock has none
			listed[i].Available = &n
		}
	}
	return listed, nil
}

// available asks inventory.stock for every product's available units.
func (s *Service) available(nc *nats.Conn) (map[string]int, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.stockTimeout)
	defer cancel()
	var stock []events.Stock
	if err := microx.Request(ctx, nc, events.InventoryStock, nil, &stock); err != nil {
		return nil, err
	}
	available := make(map[string]int, len(stock))
	for _, st := range stock {
		available[st.ProductID] = st.Available
	}
	return available, nil
}

func (s *Service) createCart(data []byte) (any, error) {
	var req events.CreateCart
	if err := microx.Decode(events.CartsCreate, data, &req); err != nil {
		return nil, err
	}
	customer := strings.TrimSpace(req.CustomerID)
	if customer == "" {
		return nil, microx.BadRequest("customer_id is required")
	}
	currency := strings.ToUpper(strings.TrimSpace(req.Currency))
	if _, ships := s.rates.Shipping[currency]; !ships {
		return nil, microx.BadRequest("currency %q is not supported; use one of %s", req.Currency,
			strings.Join(slices.Sorted(maps.Keys(s.rates.Shipping)), ", "))
	}
	items, err := mergeItems(req.Items)
	if err != nil {
		return nil, err
	}
	id := newCartID()
	if req.CartID != "" {
		if !events.ValidCheckoutID(req.CartID) {
			return nil, microx.BadRequest("cart_id must be 1 to 64 letters, digits, '-' or '_', got %q", req.CartID)
		}
		id = req.CartID
	}
	cart := events.Cart{
		ID:         id,
		CustomerID: customer,
		Currency:   currency,
		Items:      items,
		Status:     events.CartOpen,
		CreatedAt:  time.Now().UTC(),
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		return checkSold(tx.Bucket(bucketProducts), items, currency)
	})
	if err != nil {
		return nil, err
	}
	// Answered once JetStream holds the cart: the view is no place for a fact made here.
	ctx, cancel := context.WithTimeout(context.Background(), cartTimeout)
	defer cancel()
	err = s.carts.create(ctx, cart)
	if req.CartID != "" && errors.Is(err, jetstream.ErrKeyExists) {
		return s.sameCart(ctx, cart)
	}
	if err != nil {
		return nil, err
	}
	s.log.Info("cart created", "cart_id", cart.ID, "customer_id", customer, "items", len(items))
	return cart, nil
}

// mergeItems adds up the lines of the same product, keeping the order in which products
// first appear, and checks the quantities.
func mergeItems(items []events.CartItem) ([]events.CartItem, error) {
	if len(items) == 0 {
		return nil, microx.BadRequest("items must list at least one product")
	}
	var merged []events.CartItem
	at := map[string]int{}
	for _, it := range items {
		it.ProductID = strings.TrimSpace(it.ProductID)
		if it.ProductID == "" {
			return nil, microx.BadRequest("every item needs a product_id")
		}
		if it.Quantity <= 0 {
			return nil, microx.BadRequest("quantity of %s must be at least 1, got %d", it.ProductID, it.Quantity)
		}
		i, seen := at[it.ProductID]
		if !seen {
			i = len(merged)
			at[it.ProductID] = i
			merged = append(merged, events.CartItem{ProductID: it.ProductID})
		}
		if it.Quantity > MaxQuantity-merged[i].Quantity {
			return nil, microx.BadRequest("at most %d units of %s fit in a cart", MaxQuantity, it.ProductID)
		}
		merged[i].Quantity += it.Quantity
	}
	return merged, nil
}

// checkSold checks that every item is a product sold in currency.
func checkSold(products *bolt.Bucket, items []events.CartItem, currency string) error {
	for _, it := range items {
		var p events.Product
		found, err := store.Get(products, it.ProductID, &p)
		if err != nil {
			return err
		}
		if !found {
			return microx.NotFound("product %q does not exist", it.ProductID)
		}
		if _, ok := p.Prices[currency]; !ok {
			return microx.BadRequest("%s (%s) is not sold in %s", p.Name, p.ID, currency)
		}
	}
	return nil
}

// sameCart answers a repeated create of a named cart with the cart it made, if that holds
// what was asked again (its owner, currency and items), else a conflict.
func (s *Service) sameCart(ctx context.Context, asked events.Cart) (any, error) {
	had, err := s.Cart(ctx, asked.ID)
	if err != nil {
		return nil, err
	}
	if had.CustomerID != asked.CustomerID || had.Currency != asked.Currency || !slices.Equal(had.Items, asked.Items) {
		return nil, microx.Conflict("cart %q exists and holds another cart", asked.ID)
	}
	return had, nil
}

func (s *Service) getCart(data []byte) (any, error) {
	var req events.GetCart
	if err := microx.Decode(events.CartsGet, data, &req); err != nil {
		return nil, err
	}
	if strings.TrimSpace(req.CartID) == "" {
		return nil, microx.BadRequest("cart_id is required")
	}
	ctx, cancel := context.WithTimeout(context.Background(), cartTimeout)
	defer cancel()
	cart, err := s.Cart(ctx, req.CartID)
	if errors.Is(err, events.ErrForged) {
		s.log.Warn("carts.get: a cart the catalog did not sign is refused", "cart_id", req.CartID, "err", err)
	}
	if errors.Is(err, ErrCartNotFound) || errors.Is(err, events.ErrForged) {
		return nil, microx.NotFound("cart %q does not exist", req.CartID)
	}
	return cart, err
}

// newCartID is a random, unguessable cart ID: knowing one cart's ID tells nothing of
// another's.
func newCartID() string {
	b := make([]byte, 16)
	rand.Read(b) // never fails (crypto/rand, Go 1.24+)
	return "cart_" + hex.EncodeToString(b)
}
