package inventory

import (
	"errors"
	"fmt"
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
	svc, err := micro.AddService(nc, micro.Config{
		Name:        "inventory",
		Version:     Version,
		Description: "Stock levels: available, reserved by checkouts in progress, and sold.",
	})
	if err != nil {
		return nil, fmt.Errorf("inventory: start service: %w", err)
	}
	err = svc.AddEndpoint("stock", microx.Handler(s.log, s.stock), micro.WithEndpointSubject(string(events.InventoryStock)))
	if err != nil {
		return nil, errors.Join(fmt.Errorf("inventory: endpoint %s: %w", events.InventoryStock, err), svc.Stop())
	}
	return svc, nil
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
