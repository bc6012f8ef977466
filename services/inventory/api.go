package inventory

import (
	"errors"
	"fmt"
	"strings"

	"github.com/jetcheckout/jetcheckout/events"
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
	err = svc.AddEndpoint("stock", micro.HandlerFunc(s.serveStock), micro.WithEndpointSubject(string(events.InventoryList)))
	if err != nil {
		return nil, errors.Join(fmt.Errorf("inventory: endpoint %s: %w", events.InventoryList, err), svc.Stop())
	}
	return svc, nil
}

func (s *Service) serveStock(req micro.Request) {
	code, reply, err := s.stock(req.Data())
	switch {
	case code == "500":
		s.log.Error("request failed", "subject", req.Subject(), "err", err)
		err = req.Error(code, "internal error, please retry", nil)
	case err != nil:
		err = req.Error(code, err.Error(), nil)
	default:
		err = req.RespondJSON(reply)
	}
	if err != nil {
		s.log.Warn("reply failed", "subject", req.Subject(), "err", err)
	}
}

// stock answers a query, or says why not with a micro error code.
func (s *Service) stock(data []byte) (code string, reply []events.Stock, err error) {
	var q StockQuery
	if len(data) > 0 {
		// The contract's strict decoder: a misspelt field is refused, not ignored.
		if err := (events.Envelope{Type: events.InventoryList, Payload: data}).DecodePayload(&q); err != nil {
			return "400", nil, err
		}
	}
	if strings.TrimSpace(q.ProductID) == "" {
		all, err := s.AllStock()
		if err != nil {
			return "500", nil, err
		}
		return "", all, nil
	}
	st, err := s.Stock(q.ProductID)
	switch {
	case errors.Is(err, ErrUnknownProduct):
		return "404", nil, fmt.Errorf("product %q is not stocked", q.ProductID)
	case err != nil:
		return "500", nil, err
	}
	return "", []events.Stock{st}, nil
}
