package httpapi_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/httpapi"
)

// These tests try the front door as an attacker (or an unlucky client) would.

// answer is one HTTP answer.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// TestIdempotencyKeyRaceHasOneWinner: requests racing with one Idempotency-Key and two
// different bodies both got 202 (the check and the publish were two steps), and the read
// model then showed the cart that did not run. Now the stream picks one request: every
// copy of it gets 202 for the same checkout, every copy of the other 422, and the
// checkout that runs is the winner's.
func TestIdempotencyKeyRaceHasOneWinner(t *testing.T) {
	e := start(t)
	for round := range 3 {
		carts := []events.Cart{e.cart(t, events.CartItem{ProductID: "tee-jetstream", Quantity: 1}), e.cart(t, events.CartItem{ProductID: "mug-nats", Quantity: 1})}
		key := fmt.Sprintf("race-%d", round)
		answers := make([]answer, 6) // bodies A, B, A, B, A, B
		var wg sync.WaitGroup
		ready := make(chan struct{})
		for i := range answers {
			wg.Go(func() {
				<-ready
				status, hdr, raw := e.do(t, "POST", "/checkout/process", request(carts[i%2].ID, "ada@example.com", "pm_card_visa"), "Idempotency-Key", key)
				answers[i] = answer{status, hdr, raw}
			})
		}
		close(ready)
		wg.Wait()
		winners := map[string]string{} // cart → checkout
		for i, a := range answers {
			switch a.status {
			case http.StatusAccepted:
				var got httpapi.Accepted202
				if err := json.Unmarshal(a.body, &got); err != nil {
					t.Fatal(err)
				}
				winners[carts[i%2].ID] = got.CheckoutID
			case http.StatusUnprocessableEntity:
			default:
				t.Fatalf("round %d request %d: %d %s", round, i, a.status, a.body)
			}
		}
		if len(winners) != 1 {
			t.Fatalf("round %d: 202 for %d different requests with one key: %v", round, len(winners), answers)
		}
		for i, a := range answers {
			if _, won := winners[carts[i%2].ID]; won != (a.status == http.StatusAccepted) {
				t.Fatalf("round %d: request %d (cart %s) answered %d %s; winners %v", round, i, carts[i%2].ID, a.status, a.body, winners)
			}
		}
		for cart, id := range winners {
			c := e.ended(t, id)
			if c.CartID != cart || c.Status != httpapi.StatusCompleted {
				t.Errorf("round %d: checkout %s ran cart %s and %s, want the winner's %s completed", round, id, c.CartID, c.Status, cart)
			}
			// A retry after it ended says where it is now, not "accepted".
			again := ok[httpapi.Accepted202](t, e, http.StatusAccepted, "POST", "/checkout/process", request(cart, "ada@example.com", "pm_card_visa"), "Idempotency-Key", key)
			if again.CheckoutID != id || again.Status != httpapi.StatusCompleted {
				t.Errorf("round %d: retry answered %+v, want %s completed", round, again, id)
			}
		}
	}
}
