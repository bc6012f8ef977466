package app

import (
	"strings"
	"testing"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/money"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
)

// The shop's promotions through the whole checkout: a 3-for-2 and a volume price come off a
// cart in yen, whose prices include Japan's consumption tax; the order, the charge and the
// confirmation email all say the same.
func TestCheckoutWithPromotions(t *testing.T) {
	sys := startSystem(t, t.TempDir())
	w := (&natstest.Env{NC: sys.NC}).Watch(t, "checkout.>")
	cart := createCart(t, sys, "JPY", events.CartItem{ProductID: "stickers", Quantity: 3}, events.CartItem{ProductID: "mug-nats", Quantity: 4})

	publishCheckout(t, sys, checkoutRequest("co-promotions", cart.ID, "pm_card_visa", tokyo))
	if done := w.Wait(t, "co-promotions", wait, events.Completed, events.Failed); done.Type != events.Completed {
		t.Fatalf("checkout ended in %s: %s", done.Type, done.Payload)
	}

	// Stickers 3 × 550 with the third free (550), mugs 4 × 1400 = 5600 less 10% (560):
	// 7250 − 1110 = 6140, plus shipping 800 + 7 × 100 = 7640, of which 7640 × 10/110 = 694.55
	// → 695 is consumption tax.
	order, found, err := sys.Orders.OrderByCheckout("co-promotions")
	if err != nil || !found {
		t.Fatalf("no order for the checkout (%v)", err)
	}
	if len(order.Discounts) != 2 || !order.Discount().Equal(dec("1110")) || !order.Total.Equal(dec("7640")) || !order.Tax.Equal(dec("695")) || !order.TaxIncluded {
		t.Errorf("order: %s − %+v + %s = %s (tax %s included %v), want 7250 − 1110 + 1500 = 7640 (tax 695 included)",
			order.Subtotal, order.Discounts, order.Shipping, order.Total, order.Tax, order.TaxIncluded)
	}
	if pis := intents(sys, "co-promotions"); len(pis) != 1 || pis[0].AmountReceived != 7640 || pis[0].Currency != "jpy" {
		t.Errorf("payment intents %+v, want one of 7640 jpy received", pis)
	}
	body := readEmail(t, sys.Config.Outbox(), "co-promotions").body
	for _, want := range []string{"Promotion: Sticker packs: 3 for the price of 2", money.Format(dec("550"), "JPY"),
		"Promotion: Mugs: 10% off 4 or more, 20% off 10 or more", money.Format(dec("560"), "JPY"), money.Format(dec("7640"), "JPY")} {
		if !strings.Contains(body, want) {
			t.Errorf("confirmation email lacks %q:\n%s", want, body)
		}
	}
}
