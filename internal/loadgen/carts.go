package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/nats-io/nats.go"
)

// cartWorkers create carts concurrently; the catalog answers one at a time, each cart
// stored in JetStream (one fsync) before its reply, so more would only queue.
const cartWorkers = 8

// createCarts creates n carts through the catalog's carts.create, before the measured
// window: a cart is made once per customer, a checkout is what the run measures.
func createCarts(ctx context.Context, nc *nats.Conn, runID string, items []events.CartItem, n int) ([]string, error) {
	ids := make([]string, n)
	next := make(chan int)
	errs := make(chan error, cartWorkers)
	var wg sync.WaitGroup
	for range cartWorkers {
		wg.Go(func() {
			for i := range next {
				id, err := createCart(nc, customerOf(runID, i), items)
				if err != nil {
					errs <- err
					return
				}
				ids[i] = id
			}
		})
	}
	var err error
feed:
	for i := range n {
		select {
		case next <- i:
		case err = <-errs:
			break feed
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	return ids, err
}

func createCart(nc *nats.Conn, customer string, items []events.CartItem) (string, error) {
	body, _ := json.Marshal(events.CreateCart{CustomerID: customer, Currency: "USD", Items: items})
	msg, err := nc.Request(string(events.CartsCreate), body, 10*time.Second)
	if err != nil {
		return "", fmt.Errorf("create a cart: %w", err)
	}
	if code := msg.Header.Get("Nats-Service-Error-Code"); code != "" {
		return "", fmt.Errorf("create a cart: %s %s", code, msg.Header.Get("Nats-Service-Error"))
	}
	var cart events.Cart
	if err := json.Unmarshal(msg.Data, &cart); err != nil || cart.ID == "" {
		return "", fmt.Errorf("create a cart: reply %q: %v", msg.Data, err)
	}
	return cart.ID, nil
}
