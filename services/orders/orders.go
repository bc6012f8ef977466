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
	"github.com/jetcheckout/jetcheckout/runner"
	bolt "go.etcd.io/bbolt"
)

var (
	ordersBucket     = []byte("orders")             // order ID → events.Order
	byCheckoutBucket = []byte("orders.by_checkout") // checkout ID → order ID
	cancelledBucket  = []byte("orders.cancelled")   // checkout ID → when its create_order was undone
)

// Order statuses.
const (
	StatusConfirmed = "confirmed" // paid and standing
	StatusCancelled = "cancelled" // its checkout gave up on it; the payment is refunded
)

// Service runs create_order.
type Service struct {
	db  *bolt.DB
	log *slog.Logger
}

// New creates the service's buckets.
func New(db *bolt.DB, log *slog.Logger) (*Service, error) {
	if db == nil || log == nil {
		return nil, errors.New("orders: db and log are required")
	}
	if err := store.EnsureBuckets(db, ordersBucket, byCheckoutBucket, cancelledBucket); err != nil {
		return nil, fmt.Errorf("orders: %w", err)
	}
	return &Service{db: db, log: log}, nil
}

// Routes binds create_order to its trigger, and its undo.
func (s *Service) Routes() []runner.Route {
	return []runner.Route{
		{Subject: events.OrderRequested, Handle: s.createOrder},
		{Subject: events.OrderCancel, Handle: s.cancelOrder},
	}
}

func (s *Service) createOrder(ctx context.Context, tx *bolt.Tx, in events.Envelope) ([]events.Envelope, error) {
	var p events.Payment
	if err := in.DecodePayload(&p); err != nil {
		return nil, err
	}
	if tx.Bucket(cancelledBucket).Get([]byte(in.CheckoutID)) != nil {
		// The checkout gave up on this step before it ran: it must never get an order.
		return []events.Envelope{events.Must(in.CheckoutID, events.OrderFailed, events.StepFailure{
			Step: events.StepCreateOrder, Code: events.CodeCheckoutCancelled,
			Message: "the checkout was cancelled before its order could be created",
		})}, nil
	}
	order, err := orderFor(tx, s.log, in, runner.Sequence(ctx), p)
	if err != nil {
		return nil, err
	}
	return []events.Envelope{events.Must(in.CheckoutID, events.OrderCreated, order)}, nil
}

// cancelOrder undoes create_order: the checkout's order, created after its checkout gave up
// waiting for it, is cancelled; or, when there is none yet, the checkout is marked so that
// none is ever created. Either way it answers checkout.order.cancelled.
func (s *Service) cancelOrder(_ context.Context, tx *bolt.Tx, in events.Envelope) ([]events.Envelope, error) {
	var c events.Compensation
	if err := in.DecodePayload(&c); err != nil {
		return nil, err
	}
	if err := tx.Bucket(cancelledBucket).Put([]byte(in.CheckoutID), []byte(runner.EventTime(in).Format(time.RFC3339Nano))); err != nil {
		return nil, err
	}
	var out events.Cancellation
	orders, index := tx.Bucket(ordersBucket), tx.Bucket(byCheckoutBucket)
	if id := index.Get([]byte(in.CheckoutID)); id != nil {
		var order events.Order
		if _, err := store.Get(orders, string(id), &order); err != nil {
			return nil, err
		}
		order.Status = StatusCancelled
		if err := store.Put(orders, order.ID, order); err != nil {
			return nil, err
		}
		out = events.Cancellation{OrderID: order.ID, OrderNumber: order.Number}
		s.log.Warn("order cancelled", "checkout_id", in.CheckoutID, "order_id", order.ID, "reason", c.Reason)
	}
	return []events.Envelope{events.Must(in.CheckoutID, events.OrderCancelled, out)}, nil
}

// orderFor returns the checkout's order, creating it the first time, numbered with the
// stream sequence of its request: unique, growing in the order requests were made, and the
// same when the view is rebuilt from the stream (a counter would follow the order in which
// concurrent checkouts happened to commit).
func orderFor(tx *bolt.Tx, log *slog.Logger, in events.Envelope, seq uint64, p events.Payment) (events.Order, error) {
	checkoutID := in.CheckoutID
	orders, index := tx.Bucket(ordersBucket), tx.Bucket(byCheckoutBucket)
	var order events.Order
	if id := index.Get([]byte(checkoutID)); id != nil {
		found, err := store.Get(orders, string(id), &order)
		if err == nil && !found {
			err = fmt.Errorf("orders: index names missing order %s", id)
		}
		return order, err
	}
	if seq == 0 {
		return order, errors.New("orders: an order is numbered by its request's stream sequence, and this one has none")
	}
	order = events.Order{
		ID:              "ord_" + checkoutID,
		Number:          fmt.Sprintf("JC-%06d", seq),
		CheckoutID:      checkoutID,
		PaymentIntentID: p.PaymentIntentID,
		Status:          StatusConfirmed,
		CreatedAt:       runner.EventTime(in),
		Quote:           p.Quote,
	}
	if err := store.Put(orders, order.ID, order); err != nil {
		return order, err
	}
	if err := index.Put([]byte(checkoutID), []byte(order.ID)); err != nil {
		return order, err
	}
	log.Info("order created", "checkout_id", checkoutID, "order_id", order.ID, "order_number", order.Number)
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
