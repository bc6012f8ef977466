package orders

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/store"
	"github.com/jetcheckout/jetcheckout/services/runner"
	bolt "go.etcd.io/bbolt"
)

var (
	ordersBucket     = []byte("orders")             // order ID → events.Order
	byCheckoutBucket = []byte("orders.by_checkout") // checkout ID → order ID
)

// StatusConfirmed is the status of an order whose payment is captured.
const StatusConfirmed = "confirmed"

// Service runs create_order.
type Service struct {
	db  *bolt.DB
	log *slog.Logger
	now func() time.Time
}

// New creates the service's buckets.
func New(db *bolt.DB, log *slog.Logger) (*Service, error) {
	if db == nil || log == nil {
		return nil, errors.New("orders: db and log are required")
	}
	if err := store.EnsureBuckets(db, ordersBucket, byCheckoutBucket); err != nil {
		return nil, fmt.Errorf("orders: %w", err)
	}
	return &Service{db: db, log: log, now: time.Now}, nil
}

// Routes binds create_order to its trigger.
func (s *Service) Routes() []runner.Route {
	return []runner.Route{{Subject: events.OrderRequested, Handle: s.createOrder}}
}

func (s *Service) createOrder(_ context.Context, tx *bolt.Tx, in events.Envelope) ([]events.Envelope, error) {
	var p events.Payment
	if err := in.DecodePayload(&p); err != nil {
		return nil, err
	}
	order, err := s.orderFor(tx, in.CheckoutID, p)
	if err != nil {
		return nil, err
	}
	return []events.Envelope{events.Must(in.CheckoutID, events.OrderCreated, order)}, nil
}

// orderFor returns the checkout's order, creating it the first time.
func (s *Service) orderFor(tx *bolt.Tx, checkoutID string, p events.Payment) (events.Order, error) {
	orders, index := tx.Bucket(ordersBucket), tx.Bucket(byCheckoutBucket)
	var order events.Order
	if id := index.Get([]byte(checkoutID)); id != nil {
		found, err := store.Get(orders, string(id), &order)
		if err == nil && !found {
			err = fmt.Errorf("orders: index names missing order %s", id)
		}
		return order, err
	}
	seq, err := orders.NextSequence()
	if err != nil {
		return order, err
	}
	order = events.Order{
		ID:              "ord_" + checkoutID,
		Number:          fmt.Sprintf("JC-%06d", seq),
		CheckoutID:      checkoutID,
		PaymentIntentID: p.PaymentIntentID,
		Status:          StatusConfirmed,
		CreatedAt:       s.now().UTC(),
		Quote:           p.Quote,
	}
	if err := store.Put(orders, order.ID, order); err != nil {
		return order, err
	}
	if err := index.Put([]byte(checkoutID), []byte(order.ID)); err != nil {
		return order, err
	}
	s.log.Info("order created", "checkout_id", checkoutID, "order_id", order.ID, "order_number", order.Number)
	return order, nil
}

// Order returns an order by ID; found is false when there is none.
func (s *Service) Order(id string) (order events.Order, found bool, err error) {
	found, err = store.View(s.db, ordersBucket, id, &order)
	return order, found, err
}

// OrderByCheckout returns the order of a checkout; found is false when it has none.
func (s *Service) OrderByCheckout(checkoutID string) (order events.Order, found bool, err error) {
	err = s.db.View(func(tx *bolt.Tx) error {
		id := tx.Bucket(byCheckoutBucket).Get([]byte(checkoutID))
		if id == nil {
			return nil
		}
		found, err = store.Get(tx.Bucket(ordersBucket), string(id), &order)
		return err
	})
	return order, found, err
}

// Orders returns every order, oldest number first.
func (s *Service) Orders() ([]events.Order, error) {
	out, err := store.List[events.Order](s.db, ordersBucket)
	// Numbers are zero-padded to six digits but may grow longer: compare lengths first.
	slices.SortFunc(out, func(a, b events.Order) int {
		return cmp.Or(cmp.Compare(len(a.Number), len(b.Number)), cmp.Compare(a.Number, b.Number))
	})
	return out, err
}
