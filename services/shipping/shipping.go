package shipping

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
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
	labelsBucket = []byte("labels") // order ID → events.ShippingLabel
	picksBucket  = []byte("picks")  // order ID → Pick
)

// Config of the shipping service.
type Config struct {
	Carrier string // default "UPS"
}

func (c *Config) setDefaults() {
	if c.Carrier == "" {
		c.Carrier = "UPS"
	}
}

// Validate reports a configuration the service cannot work with.
func (c Config) Validate() error {
	if strings.TrimSpace(c.Carrier) != c.Carrier {
		return fmt.Errorf("shipping: carrier %q has surrounding spaces", c.Carrier)
	}
	return nil
}

// Pick is a stored pick request: what was queued for the warehouse, and under which ID.
type Pick struct {
	ID string `json:"pick_request_id"` // the Nats-Msg-Id it was queued with
	events.PickRequest
	QueuedAt time.Time `json:"queued_at"`
}

// Service runs create_shipping_label and notify_warehouse.
type Service struct {
	db  *bolt.DB
	log *slog.Logger
	cfg Config
}

// New applies defaults to cfg, validates it and creates the service's buckets.
func New(db *bolt.DB, log *slog.Logger, cfg Config) (*Service, error) {
	if db == nil || log == nil {
		return nil, errors.New("shipping: db and log are required")
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := store.EnsureBuckets(db, labelsBucket, picksBucket); err != nil {
		return nil, fmt.Errorf("shipping: %w", err)
	}
	return &Service{db: db, log: log, cfg: cfg}, nil
}

// Routes binds both steps; they share the service's runner and bbolt file. The label's
// trigger at schema version 1 is read too, while events of it may be in flight.
func (s *Service) Routes() []runner.Route {
	return []runner.Route{
		{Subject: events.FulfilmentRequested, Handle: s.createLabel},
		{Subject: events.LabelRequested, Handle: s.createLabel},
		{Subject: events.LabelCreated, Handle: s.notifyWarehouse},
	}
}

func (s *Service) createLabel(_ context.Context, tx *bolt.Tx, in events.Envelope) ([]events.Envelope, error) {
	var order events.Order
	if err := in.DecodePayload(&order); err != nil {
		return nil, err
	}
	if order.ID == "" || order.Number == "" {
		return nil, fmt.Errorf("%s payload: %w: needs order_id and order_number", in.Type, events.ErrMalformed)
	}
	b := tx.Bucket(labelsBucket)
	var label events.ShippingLabel
	found, err := store.Get(b, order.ID, &label)
	if err != nil {
		return nil, err
	}
	if !found {
		label = events.ShippingLabel{
			OrderID:        order.ID,
			Carrier:        s.cfg.Carrier,
			TrackingNumber: TrackingNumber(order.ID),
			Address:        order.ShippingAddress,
			CreatedAt:      runner.EventTime(in),
		}
		if err := store.Put(b, order.ID, label); err != nil {
			return nil, err
		}
		s.log.Info("label created", "checkout_id", in.CheckoutID, "order_id", order.ID, "tracking_number", label.TrackingNumber)
	}
	return []events.Envelope{events.Must(in.CheckoutID, events.LabelCreated, events.Shipment{Label: label, Order: order})}, nil
}

// TrackingNumber is the label's tracking number: UPS-shaped, and the same for an order
// however often its label is made.
func TrackingNumber(orderID string) string {
	sum := sha256.Sum256([]byte("label:" + orderID))
	return "1Z" + strings.ToUpper(hex.EncodeToString(sum[:8]))
}

func (s *Service) notifyWarehouse(_ context.Context, tx *bolt.Tx, in events.Envelope) ([]events.Envelope, error) {
	var sh events.Shipment
	if err := in.DecodePayload(&sh); err != nil {
		return nil, err
	}
	if sh.Order.ID == "" || sh.Label.OrderID != sh.Order.ID || sh.Label.TrackingNumber == "" {
		return nil, fmt.Errorf("%s payload: %w: needs a label for order %q", in.Type, events.ErrMalformed, sh.Order.ID)
	}
	b := tx.Bucket(picksBucket)
	var pick Pick
	found, err := store.Get(b, sh.Order.ID, &pick)
	if err != nil {
		return nil, err
	}
	if found {
		// Queued by an earlier label event (a re-drive brings the label again): that one's
		// handling published the pick, or will publish it again on its redelivery. The
		// warehouse never gets two picks of one order.
		return []events.Envelope{events.Must(in.CheckoutID, events.WarehouseNotified, events.PickQueued{OrderID: sh.Order.ID, PickRequestID: pick.ID})}, nil
	}
	// The pick's ID is the ID of the envelope that carries it, which the WAREHOUSE stream
	// dedupes on: the warehouse can quote it back.
	pick = Pick{ID: events.ID(in.CheckoutID, events.WarehousePick), PickRequest: pickRequest(sh), QueuedAt: runner.EventTime(in)}
	if err := store.Put(b, sh.Order.ID, pick); err != nil {
		return nil, err
	}
	s.log.Info("pick request queued", "checkout_id", in.CheckoutID, "order_id", sh.Order.ID, "pick_request_id", pick.ID)
	return []events.Envelope{
		events.Must(in.CheckoutID, events.WarehousePick, pick.PickRequest),
		events.Must(in.CheckoutID, events.WarehouseNotified, events.PickQueued{OrderID: sh.Order.ID, PickRequestID: pick.ID}),
	}, nil
}

func pickRequest(sh events.Shipment) events.PickRequest {
	items := make([]events.ReservedItem, 0, len(sh.Order.Lines))
	for _, l := range sh.Order.Lines {
		items = append(items, events.ReservedItem{ProductID: l.ProductID, Quantity: l.Quantity})
	}
	return events.PickRequest{
		OrderID:        sh.Order.ID,
		OrderNumber:    sh.Order.Number,
		Carrier:        sh.Label.Carrier,
		TrackingNumber: sh.Label.TrackingNumber,
		Items:          items,
		ShipTo:         sh.Label.Address,
	}
}

// Label returns an order's label; found is false when it has none.
func (s *Service) Label(orderID string) (label events.ShippingLabel, found bool, err error) {
	found, err = store.View(s.db, labelsBucket, orderID, &label)
	return label, found, err
}

// PickRequest returns the pick request queued for an order; found is false when none was.
func (s *Service) PickRequest(orderID string) (pick Pick, found bool, err error) {
	found, err = store.View(s.db, picksBucket, orderID, &pick)
	return pick, found, err
}
