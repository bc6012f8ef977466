package catalog

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/store"
	"github.com/jetcheckout/jetcheckout/runner"
	bolt "go.etcd.io/bbolt"
)

var (
	bucketProducts = []byte("products") // product ID → events.Product, seeded from a file
	// bucketCarts holds, for each cart a checkout took, what the checkouts made of it
	// (cart ID → cartState); a cart no checkout took is as it was created, in Carts.
	bucketCarts = []byte("carts")
	// bucketCheckouts maps a checkout ID to the cart it holds, so that the terminal
	// events, which carry no cart ID, can settle the cart.
	bucketCheckouts = []byte("checkouts")
)

// cartState is a cart's status as the checkout events made it. Its fields are named as
// events.Cart's, so a file that kept whole carts reads the same.
type cartState struct {
	Status     string `json:"status"`
	CheckoutID string `json:"checkout_id,omitempty"`
}

// ErrCartNotFound is returned by Cart for an unknown cart ID.
var ErrCartNotFound = errors.New("cart not found")

// ErrProductNotFound is returned for a product the catalog does not have.
var ErrProductNotFound = errors.New("product not found")

// Service is the catalog: products, carts and the validate_cart_items step.
type Service struct {
	db         *bolt.DB
	carts      *Carts
	log        *slog.Logger
	rates      Rates
	returnURLs events.ReturnURLRule
	coupons    Coupons
	promotions Promotions
	// stockTimeout bounds catalog.list's wait for inventory.stock.
	stockTimeout time.Duration
}

// DefaultStockTimeout is how long catalog.list waits for the inventory's stock before it
// answers with the stock unknown.
const DefaultStockTimeout = time.Second

// WithStockTimeout changes DefaultStockTimeout.
func WithStockTimeout(d time.Duration) Option {
	return func(s *Service) { s.stockTimeout = d }
}

// Option changes a setting of New.
type Option func(*Service)

// WithCoupons sets the coupons a checkout may ask for (see LoadCoupons); without it, none.
func WithCoupons(c Coupons) Option {
	return func(s *Service) { s.coupons = c }
}

// WithPromotions sets the promotions applied to every cart they fit, in their order (see
// LoadPromotions); without it, none.
func WithPromotions(p Promotions) Option {
	return func(s *Service) { s.promotions = p }
}

// WithReturnURLs sets where a checkout may send its customer back to after 3-D Secure;
// without it, any https URL (the zero events.ReturnURLRule).
func WithReturnURLs(rule events.ReturnURLRule) Option {
	return func(s *Service) { s.returnURLs = rule }
}

// New creates the catalog's buckets in db, its view: products and what checkouts made of
// the carts, which are stored in carts. Carts are priced with rates (see LoadRates); they
// are sold only in the currencies rates has shipping for.
func New(db *bolt.DB, carts *Carts, log *slog.Logger, rates Rates, opts ...Option) (*Service, error) {
	if db == nil || carts == nil || log == nil {
		return nil, errors.New("catalog: db, carts and log are required")
	}
	if err := rates.validate(); err != nil {
		return nil, fmt.Errorf("catalog: rates: %w", err)
	}
	if err := store.EnsureBuckets(db, bucketProducts, bucketCarts, bucketCheckouts, bucketRedemptions, bucketCheckoutCoupons); err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	s := &Service{db: db, carts: carts, log: log, rates: rates, stockTimeout: DefaultStockTimeout}
	for _, o := range opts {
		o(s)
	}
	if err := s.checkRules(); err != nil {
		return nil, fmt.Errorf("catalog: %w", err)
	}
	return s, nil
}

// checkRules refuses a coupon or promotion whose categories were never resolved against the
// catalog (it would apply to nothing), and a promotion named like a coupon (the quote would
// list two discounts under one code).
func (s *Service) checkRules() error {
	for _, c := range s.coupons {
		if !c.resolved() {
			return fmt.Errorf("coupon %q lists categories but was not resolved against the catalog (Coupons.Resolve)", c.Code)
		}
	}
	for _, p := range s.promotions {
		if !p.resolved() {
			return fmt.Errorf("promotion %q lists categories but was not resolved against the catalog (Promotions.Resolve)", p.ID)
		}
		if _, clash := s.coupons[strings.ToUpper(p.ID)]; clash {
			return fmt.Errorf("promotion %q has the code of a coupon", p.ID)
		}
	}
	return nil
}

// Seed stores products when the catalog has none yet (the first start, or a view lost and
// rebuilt: the file is where products come from) and reports whether it did; a catalog
// that has products is left as it is.
func (s *Service) Seed(products []SeedProduct) (seeded bool, err error) {
	if err := validateSeed(products); err != nil {
		return false, fmt.Errorf("catalog seed: %w", err)
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketProducts)
		if k, _ := b.Cursor().First(); k != nil {
			return nil
		}
		for _, p := range products {
			if err := store.Put(b, p.ID, p.Product); err != nil {
				return err
			}
		}
		seeded = true
		return nil
	})
	return seeded, err
}

// Discontinue takes a product off the catalog, or only its price in one currency when
// currency is not empty. Carts that hold it can no longer check out (product_not_found,
// currency_mismatch). It changes the view only: a view rebuilt is seeded from the file
// again, so a product withdrawn for good is taken out of the file too.
func (s *Service) Discontinue(productID, currency string) error {
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketProducts)
		var p events.Product
		found, err := store.Get(b, productID, &p)
		if err != nil {
			return err
		}
		if !found {
			return ErrProductNotFound
		}
		if currency == "" {
			return b.Delete([]byte(productID))
		}
		delete(p.Prices, currency)
		return store.Put(b, productID, p)
	})
}

// Products lists the catalog, ordered by product ID.
func (s *Service) Products() ([]events.Product, error) {
	return store.List[events.Product](s.db, bucketProducts)
}

// Cart returns a cart as it is now (its status from the checkouts that took it), or an
// error wrapping ErrCartNotFound.
func (s *Service) Cart(ctx context.Context, id string) (events.Cart, error) {
	var cart events.Cart
	err := s.db.View(func(tx *bolt.Tx) error {
		var err error
		cart, err = s.cart(ctx, tx, id)
		return err
	})
	return cart, err
}

// cart reads the cart as created from Carts and its status from the view, or returns an
// error wrapping ErrCartNotFound.
func (s *Service) cart(ctx context.Context, tx *bolt.Tx, id string) (events.Cart, error) {
	cart, found, err := s.carts.get(ctx, id)
	if err != nil {
		return cart, err
	}
	if !found {
		return cart, fmt.Errorf("%w: %q", ErrCartNotFound, id)
	}
	return withStatus(tx, cart)
}

// withStatus is the cart as created with its status from the view: what the checkouts that
// took it left it as.
func withStatus(tx *bolt.Tx, cart events.Cart) (events.Cart, error) {
	var st cartState
	found, err := store.Get(tx.Bucket(bucketCarts), cart.ID, &st)
	if found {
		cart.Status, cart.CheckoutID = st.Status, st.CheckoutID
	}
	return cart, err
}

// Routes are the catalog's steps: validate_cart_items on checkout.requested, and the
// settling of the held cart on checkout.completed and checkout.failed. Whether a cart was
// free for a checkout depends on the order in which concurrent checkouts of it committed,
// so a rebuild of the view takes validation's outcome from the stream (replayValidation).
func (s *Service) Routes() []runner.Route {
	return []runner.Route{
		{Subject: events.Requested, Call: s.validateCart, Decode: decodeRequested,
			Outcomes: []events.Subject{events.CartValidated, events.CartFailed}, Replay: s.replayValidation},
		{Subject: events.Completed, Handle: s.checkOutCart},
		{Subject: events.Failed, Handle: s.reopenCart},
	}
}

// decodeRequested wraps the public request, which is not an envelope, whatever it holds:
// validateCart reports what is wrong with it as a failure of the checkout.
func decodeRequested(_ string, data []byte, from events.Origin) (events.Envelope, error) {
	return events.RequestEnvelope(data, from), nil
}
