package inventory

import (
	"errors"
	"strings"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/microx"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// Version of the inventory's micro service.
const Version = "1.0.0"

// StockQuery is the request of inventory.stock; an empty request lists every product.
type StockQuery struct {
	ProductID string `json:"product_id,omitempty"`
}

// Serve starts the "inventory" micro service: inventory.stock (StockQuery →
// []events.Stock). An unknown product gets error code "404", a malformed query "400".
// Stop the returned service to stop serving.
func (s *Service) Serve(nc *nats.Conn) (micro.Service, error) {
	return microx.AddService(nc, s.log, micro.Config{
		Name:        "inventory",
		Version:     Version,
		Description: "Stock levels: available, reserved by checkouts in progress, and sold.",
	}, microx.Endpoint{Name: "stock", Subject: events.InventoryStock, Handle: s.stock})
}

// stock answers a query: one product's stock, or every product's for an empty query.
func (s *Service) stock(data []byte) (any, error) {
	var q StockQuery
	if len(data) > 0 {
		if err := microx.Decode(events.InventoryStock, data, &q); err != nil {
			return nil, err
		}
	}
	if strings.TrimSpace(q.ProductID) == "" {
		return s.AllStock()
	}
	st, err := s.Stock(q.ProductID)
	switch {
	case errors.Is(err, ErrUnknownProduct):
		return nil, microx.NotFound("product %q is not stocked", q.ProductID)
	case err != nil:
		return nil, err
	}
	return []events.Stock{st}, nil
}
