package inventory

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/store"
	"github.com/jetcheckout/jetcheckout/runner"
	bolt "go.etcd.io/bbolt"
)

var (
	bucketStock        = []byte("stock")        // product ID → events.Stock
	bucketReservations = []byte("reservations") // checkout ID → Reservation
)

// Reservation statuses.
const (
	Reserved  = "reserved"  // the units are held for the checkout
	Released  = "released"  // the units went back to available (or the release came first)
	Committed = "committed" // the units are sold
	Refused   = "refused"   // some product was short: nothing was held
	Expired   = "expired"   // nothing settled it in time: the units went back to available
)

// Reservation is a checkout's claim on stock, kept after it ends so that every later
// message about the checkout gets the same answer.
type Reservation struct {
	ID         string                `json:"id,omitempty"` // "res_<checkout_id>"; empty when nothing was ever held
	CheckoutID string                `json:"checkout_id"`
	Items      []events.ReservedItem `json:"items,omitempty"`
	Status     string                `json:"status"`
	Reason     string                `json:"reason,omitempty"`   // why it was refused
	Code       string                `json:"code,omitempty"`     // the refusal's failure code
	Products   []string              `json:"products,omitempty"` // the refusal's products, by name
	// Holders are the customer's identities (see holdersOf) its units count against while
	// it is Reserved.
	Holders []string `json:"holders,omitempty"`
}

// Errors of the read methods.
var (
	ErrUnknownProduct = errors.New("product not stocked")
	ErrNoReservation  = errors.New("no reservation")
)

// Service is the inventory: stock levels and the reserve_inventory step.
type Service struct {
	db  *bolt.DB
	log *slog.Logger
	cfg Config
}

// New is NewWithConfig with the default Config.
func New(db *bolt.DB, log *slog.Logger) (*Service, error) {
	return NewWithConfig(db, log, Config{})
}

// NewWithConfig applies defaults to cfg, validates it and creates the inventory's buckets
// in db.
func NewWithConfig(db *bolt.DB, log *slog.Logger, cfg Config) (*Service, error) {
	if db == nil || log == nil {
		return nil, errors.New("inventory: db and log are required")
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := store.EnsureBuckets(db, bucketStock, bucketReservations, bucketHolds); err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	return &Service{db: db, log: log, cfg: cfg}, nil
}

// LoadStock reads the initial stock from the catalog seed (deploy/demo/catalog.json):
// each product's "id" and "stock". The other fields are the catalog's and not read here.
// It counts only until the first start has recorded its stock (RecordedSeed).
func LoadStock(r io.Reader) (map[string]int, error) {
	var seed []struct {
		ID    string `json:"id"`
		Stock int    `json:"stock"`
	}
	if err := json.NewDecoder(r).Decode(&seed); err != nil {
		return nil, fmt.Errorf("stock seed: %w", err)
	}
	stock := make(map[string]int, len(seed))
	for i, p := range seed {
		if strings.TrimSpace(p.ID) == "" {
			return nil, fmt.Errorf("stock seed: product %d has no id", i)
		}
		if _, dup := stock[p.ID]; dup {
			return nil, fmt.Errorf("stock seed: product %q is listed twice", p.ID)
		}
		stock[p.ID] = p.Stock
	}
	return stock, nil
}

// Seed stores the initial stock when the inventory has none yet (the first start, or a new
// view: see RecordedSeed for where it comes from) and reports whether it did; existing stock
// is never overwritten.
func (s *Service) Seed(stock map[string]int) (seeded bool, err error) {
	if err := checkSeed(stock); err != nil {
		return false, err
	}
	err = s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketStock)
		if k, _ := b.Cursor().First(); k != nil {
			return nil
		}
		for id, n := range stock {
			if err := store.Put(b, id, events.Stock{ProductID: id, Available: n}); err != nil {
				return err
			}
		}
		seeded = true
		return nil
	})
	return seeded, err
}

// Stock returns a product's stock, or an error wrapping ErrUnknownProduct.
func (s *Service) Stock(productID string) (events.Stock, error) {
	var st events.Stock
	found, err := store.View(s.db, bucketStock, productID, &st)
	if err == nil && !found {
		err = fmt.Errorf("%w: %q", ErrUnknownProduct, productID)
	}
	return st, err
}

// AllStock lists every product's stock, ordered by product ID.
func (s *Service) AllStock() ([]events.Stock, error) {
	return store.List[events.Stock](s.db, bucketStock)
}

// Reservation returns a checkout's reservation, or an error wrapping ErrNoReservation.
func (s *Service) Reservation(checkoutID string) (Reservation, error) {
	var res Reservation
	found, err := store.View(s.db, bucketReservations, checkoutID, &res)
	if err == nil && !found {
		err = fmt.Errorf("%w for checkout %q", ErrNoReservation, checkoutID)
	}
	return res, err
}

// Routes are reserve_inventory on checkout.cart.validated, its compensation on
// checkout.inventory.release, the sale on checkout.completed and the expiry on
// checkout.inventory.expire. A reservation and a sale depend on what was available when they
// committed, and so on the order of concurrent checkouts, which the stream does not keep: a
// rebuild takes them as recorded (replay.go). The release and the expiry follow from the
// reservation alone.
func (s *Service) Routes() []runner.Route {
	return []runner.Route{
		{Subject: events.CartValidated, Handle: s.reserve,
			Outcomes: []events.Subject{events.InventoryReserved, events.InventoryFailed}, Replay: replayReserve, Scheduled: s.reserveTimer},
		{Subject: events.InventoryRelease, Handle: s.release},
		{Subject: events.Completed, Handle: s.commit,
			Outcomes: []events.Subject{events.InventoryCommitted}, Replay: replayCommit, Scheduled: commitTimer},
		{Subject: events.InventoryExpire, Handle: s.expire},
	}
}

// loadReservation reads the checkout's reservation in the transaction.
func loadReservation(tx *bolt.Tx, checkoutID string) (res Reservation, found bool, err error) {
	found, err = store.Get(tx.Bucket(bucketReservations), checkoutID, &res)
	if err != nil {
		return Reservation{}, false, runner.Permanent(err)
	}
	return res, found, nil
}

func saveReservation(tx *bolt.Tx, res Reservation) error {
	return store.Put(tx.Bucket(bucketReservations), res.CheckoutID, res)
}

// moveStock applies move to the stock of each item, with the item's quantity. A move
// that would take a count it lowers below zero is refused, whatever the caller checked
// before.
func moveStock(tx *bolt.Tx, items []events.ReservedItem, move func(st *events.Stock, n int)) error {
	return moveUnits(tx, items, move, true)
}

// moveRecorded applies a move that live handling made and the stream recorded: never
// refused, because part-way through a rebuild, which applies the moves in stream order
// rather than in the order they committed, a count may be below zero for a while (see
// replayReserve).
func moveRecorded(tx *bolt.Tx, items []events.ReservedItem, move func(st *events.Stock, n int)) error {
	return moveUnits(tx, items, move, false)
}

func moveUnits(tx *bolt.Tx, items []events.ReservedItem, move func(st *events.Stock, n int), guarded bool) error {
	b := tx.Bucket(bucketStock)
	for _, it := range items {
		var st events.Stock
		found, err := store.Get(b, it.ProductID, &st)
		if err != nil {
			return runner.Permanent(err)
		}
		if !found {
			return runner.Permanent(fmt.Errorf("%w: %q", ErrUnknownProduct, it.ProductID))
		}
		before := st
		move(&st, it.Quantity)
		if guarded && lowersBelowZero(before, st) {
			return runner.Permanent(fmt.Errorf("stock of %s would become available %d, reserved %d, sold %d",
				it.ProductID, st.Available, st.Reserved, st.Sold))
		}
		if err := store.Put(b, it.ProductID, st); err != nil {
			return err
		}
	}
	return nil
}

// lowersBelowZero reports a count that went down, to below zero.
func lowersBelowZero(before, after events.Stock) bool {
	below := func(was, is int) bool { return is < 0 && is < was }
	return below(before.Available, after.Available) || below(before.Reserved, after.Reserved) || below(before.Sold, after.Sold)
}

// The moves of a reservation's life.
func reserveUnits(st *events.Stock, n int) { st.Available -= n; st.Reserved += n }
func releaseUnits(st *events.Stock, n int) { st.Available += n; st.Reserved -= n }
func sellUnits(st *events.Stock, n int)    { st.Reserved -= n; st.Sold += n }

// sellAvailableUnits sells units that were never reserved, or no longer are.
func sellAvailableUnits(st *events.Stock, n int) { st.Available -= n; st.Sold += n }
