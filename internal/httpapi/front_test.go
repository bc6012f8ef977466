package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/httpapi"
	"github.com/nats-io/nats.go/jetstream"
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

// requested counts the checkout requests the stream holds.
func (e *env) requested(t *testing.T) uint64 {
	t.Helper()
	st, err := e.sys.JS.Stream(context.Background(), events.StreamCheckout)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background(), jetstream.WithSubjectFilter(string(events.Requested)))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects[string(events.Requested)]
}

// limited checks a 429: Retry-After in seconds, a problem saying why.
func limited(t *testing.T, status int, hdr http.Header, raw []byte, why string) {
	t.Helper()
	var p httpapi.Problem
	_ = json.Unmarshal(raw, &p)
	if retry, err := strconv.Atoi(hdr.Get("Retry-After")); status != http.StatusTooManyRequests || err != nil || retry < 1 ||
		hdr.Get("Content-Type") != "application/problem+json" || !strings.Contains(p.Detail, why) {
		t.Fatalf("over the limit: %d %v %s, want 429 with Retry-After and a problem about the %s", status, hdr, raw, why)
	}
}

// TestCheckoutRateLimits: 2,000 unauthenticated checkouts in 34 s sent 2,000 emails. Now a
// client, and a customer email, gets so many checkouts, then a 429 with Retry-After, and
// nothing is published for a refused request.
func TestCheckoutRateLimits(t *testing.T) {
	t.Run("client", func(t *testing.T) {
		e := start(t, func(c *httpapi.Config) { c.RateClient = httpapi.Rate{N: 3, Per: time.Hour} })
		for i := range 3 {
			ok[httpapi.Accepted202](t, e, http.StatusAccepted, "POST", "/checkout/process", request(fmt.Sprintf("cart_%d", i), fmt.Sprintf("c%d@example.com", i), "pm_card_visa"))
		}
		before := e.requested(t)
		// Another address in X-Forwarded-For changes nothing: no proxy is trusted.
		status, hdr, raw := e.do(t, "POST", "/checkout/process", request("cart_x", "x@example.com", "pm_card_visa"), "X-Forwarded-For", "192.0.2.7")
		limited(t, status, hdr, raw, "client")
		if after := e.requested(t); after != before || before != 3 {
			t.Errorf("checkout requests in the stream: %d before the refused one, %d after; want 3 and 3", before, after)
		}
	})
	t.Run("email", func(t *testing.T) {
		e := start(t, func(c *httpapi.Config) { c.RateEmail = httpapi.Rate{N: 2, Per: time.Hour} })
		ok[httpapi.Accepted202](t, e, http.StatusAccepted, "POST", "/checkout/process", request("cart_1", "victim@example.com", "pm_card_visa"))
		ok[httpapi.Accepted202](t, e, http.StatusAccepted, "POST", "/checkout/process", request("cart_2", "victim@example.com", "pm_card_visa"))
		status, hdr, raw := e.do(t, "POST", "/checkout/process", request("cart_3", " Victim@Example.COM", "pm_card_visa"))
		limited(t, status, hdr, raw, "customer email")
		if n := e.requested(t); n != 2 {
			t.Errorf("%d checkout requests in the stream, want 2", n)
		}
		ok[httpapi.Accepted202](t, e, http.StatusAccepted, "POST", "/checkout/process", request("cart_4", "other@example.com", "pm_card_visa"))
	})
}
