package inventory

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
)

// hoarder's quote: 2 stickers, as customer cus, email email, paying with pm.
func hoarder(cus, email, pm string) events.Quote {
	q := quote(line("stickers", "Sticker Pack", 2))
	q.CustomerID, q.CustomerEmail, q.PaymentMethodID = cus, email, pm
	return q
}

// try has checkoutID reserve q, and checks that it was reserved, or refused for the limit
// of 4 and then holds nothing.
func (h *harness) try(t *testing.T, checkoutID string, q events.Quote, reserved bool) {
	t.Helper()
	h.validated(t, checkoutID, q)
	if reserved {
		h.reservation(t, checkoutID)
		return
	}
	f := h.refusal(t, checkoutID)
	if f.Code != events.CodeHoldLimitExceeded || !strings.Contains(f.Message, "at most 4") || !strings.Contains(f.Message, "Sticker Pack (stickers)") ||
		!slices.Equal(f.Products, []string{"Sticker Pack (stickers)"}) {
		t.Errorf("%s: refusal %+v, want %s naming the limit and the product", checkoutID, f, events.CodeHoldLimitExceeded)
	}
	h.wantStatus(t, checkoutID, Refused)
}

func TestHoldLimitPerCustomer(t *testing.T) {
	h := startWith(t, 1, Config{MaxHoldPerCustomer: 4})
	ada := hoarder("cus_ada", "ada@example.com", "pm_1Ada")
	h.try(t, "co-1", ada, true)
	h.try(t, "co-2", ada, true)
	h.wantStock(t, "stickers", 496, 4, 0)

	// The third checkout would hold 6: refused, and it holds nothing. Each identity alone
	// is enough: the same email spelled otherwise, the same customer ID, the same card.
	h.try(t, "co-3", ada, false)
	h.try(t, "co-3-email", hoarder("cus_other", "ADA+shop@Example.com", "pm_1Other"), false)
	h.try(t, "co-3-customer", hoarder("cus_ada", "someone@example.com", "pm_1Other2"), false)
	h.try(t, "co-3-card", hoarder("cus_other3", "other3@example.com", "pm_1Ada"), false)
	h.wantStock(t, "stickers", 496, 4, 0)

	// The limit is per product: a mug is still fine.
	h.try(t, "co-mug", quote(line("mug-nats", "Mug", 1)), true)

	// A checkout that fails gives its hold back, and so does one that completes.
	h.releaseCmd(t, "co-1")
	h.Wait(t, "co-1", events.InventoryReleased)
	h.try(t, "co-4", ada, true)
	h.completed(t, "co-2")
	h.Wait(t, "co-2", events.InventoryCommitted)
	h.try(t, "co-5", ada, true)
	h.wantStock(t, "stickers", 494, 4, 2)
	h.try(t, "co-6", ada, false)

	// Another customer is not held back by Ada's holds.
	h.try(t, "co-bob", hoarder("cus_bob", "bob@example.com", "pm_1Bob"), true)
}

func TestHoldEndsWhenTheReservationExpires(t *testing.T) {
	h := startWith(t, 1, Config{MaxHoldPerCustomer: 2, ReservationTTL: time.Second})
	h.validated(t, "co-1", hoarder("cus_ada", "ada@example.com", "pm_1Ada"))
	h.reservation(t, "co-1")
	h.validated(t, "co-2", hoarder("cus_ada", "ada@example.com", "pm_1Ada"))
	if f := h.refusal(t, "co-2"); f.Code != events.CodeHoldLimitExceeded {
		t.Fatalf("co-2: %+v", f)
	}
	h.expiryHandled(t, "co-1")
	h.wantStatus(t, "co-1", Expired)
	h.validated(t, "co-3", hoarder("cus_ada", "ada@example.com", "pm_1Ada"))
	h.reservation(t, "co-3")
}

func TestHoldLimitDefaultsAndOff(t *testing.T) {
	h := start(t, 1) // DefaultMaxHoldPerCustomer
	h.validated(t, "co-11", quote(line("stickers", "Sticker Pack", DefaultMaxHoldPerCustomer+1)))
	if f := h.refusal(t, "co-11"); f.Code != events.CodeHoldLimitExceeded {
		t.Errorf("11 stickers with the default limit: %+v", f)
	}
	h.wantStock(t, "stickers", 500, 0, 0)

	off := startWith(t, 1, Config{MaxHoldPerCustomer: -1})
	off.validated(t, "co-50", quote(line("stickers", "Sticker Pack", 50)))
	off.reservation(t, "co-50")
	// Shared Stripe test cards (pm_card_…) are nobody's card: they do not count.
	on := startWith(t, 1, Config{MaxHoldPerCustomer: 2})
	for _, id := range []string{"co-a", "co-b"} {
		on.validated(t, id, hoarder("cus_"+id, id+"@example.com", "pm_card_visa"))
		on.reservation(t, id)
	}
}
