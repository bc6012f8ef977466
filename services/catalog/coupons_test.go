package catalog

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/shopspring/decimal"
)

// The demo coupons load, and each names only products and categories the demo catalog sells.
func TestDemoCoupons(t *testing.T) {
	coupons := demoCoupons(t)
	if c, ok := coupons["LAUNCH15"]; !ok || c.MaxRedemptions != 10 {
		t.Errorf("LAUNCH15 = %+v, want a coupon for 10 checkouts", c)
	}
	if c := coupons["APPAREL20"]; !c.covers("tee-jetstream") || !c.covers("hoodie-saga") || c.covers("mug-nats") {
		t.Errorf("APPAREL20 covers %v, want the demo's apparel", c.covered)
	}
	for scope, want := range map[string]Scope{
		`product "no-such-thing" is not in the catalog`: {Products: []string{"no-such-thing"}},
		`category "shoes" has no product`:               {Categories: []string{"shoes"}},
	} {
		scoped := Coupons{"X": {Code: "X", Scope: want}}
		if err := scoped.Resolve(demoSeed(t)); err == nil || !strings.Contains(err.Error(), `coupon "X": `+scope) {
			t.Errorf("a coupon for what is not sold: %v, want %q", err, scope)
		}
	}
}

// A coupon that cannot work is refused at start, naming it and why.
func TestLoadCouponsNamesTheBadRule(t *testing.T) {
	for body, want := range map[string]string{
		`[{"code":"BOTH","percent_off":"10","amount_off":{"USD":"1.00"}}]`: `("BOTH"): set exactly one`,
		`[{"code":"NONE"}]`:                                           `("NONE"): set exactly one`,
		`[{"code":"BIG","percent_off":"101"}]`:                        `("BIG"): percent_off 101`,
		`[{"code":"CENTS","amount_off":{"USD":"1.001"}}]`:             `("CENTS"): amount_off: 1.001 USD is finer`,
		`[{"code":"XYZ","amount_off":{"XYZ":"1"}}]`:                   `("XYZ"): amount_off`,
		`[{"code":"MIN","percent_off":"5","min_spend":{"USD":"-1"}}]`: `("MIN"): min_spend -1 USD must be positive`,
		`[{"code":"DATES","percent_off":"5","valid_from":"2026-02-01T00:00:00Z","valid_until":"2026-01-01T00:00:00Z"}]`: `("DATES"): valid_until`,
		`[{"code":"bad code","percent_off":"5"}]`:                                 `("bad code"): code must be`,
		`[{"code":"LIMIT","percent_off":"5","max_redemptions":-1}]`:               `("LIMIT"): max_redemptions`,
		`[{"code":"TWICE","percent_off":"5"},{"code":"twice","percent_off":"5"}]`: `"twice" is listed twice`,
		`[{"code":"TYPO","percent_of":"5"}]`:                                      `unknown field "percent_of"`,
	} {
		_, err := LoadCoupons(strings.NewReader(body))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error with %q", body, err, want)
		}
	}
}

// What a coupon takes off: a percentage of the lines it covers rounded to the currency's
// minor unit, or a fixed amount never more than those lines; nothing outside its dates, under
// its minimum spend, or for a cart without its products.
func TestCouponDiscount(t *testing.T) {
	pct := func(s string) Coupon { p := dec(s); return Coupon{Code: "P", PercentOff: &p} }
	lines := func(_ string, ls ...events.Line) []events.Line {
		for i := range ls {
			ls[i].Total = ls[i].UnitPrice.Mul(dec(fmt.Sprint(ls[i].Quantity)))
		}
		return ls
	}
	tees := events.Line{ProductID: "tee-jetstream", Quantity: 3, UnitPrice: dec("25.00")}
	stickers := events.Line{ProductID: "stickers", Quantity: 1, UnitPrice: dec("4.99")}
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

	for _, tc := range []struct {
		name     string
		coupon   Coupon
		currency string
		lines    []events.Line
		want     string // the amount off, or the failure code
	}{
		{"10% of 79.99 rounds half away from zero", pct("10"), "USD", lines("USD", tees, stickers), "8"},
		{"12.5% of 79.99 is 9.99875", pct("12.5"), "USD", lines("USD", tees, stickers), "10"},
		{"whole yen", pct("15"), "JPY", lines("JPY", events.Line{ProductID: "stickers", Quantity: 3, UnitPrice: dec("550")}), "248"},
		{"only the products it covers", func() Coupon { c := pct("50"); c.Scope = Scope{Products: []string{"stickers"}}; return c }(), "USD", lines("USD", tees, stickers), "2.5"},
		{"a fixed amount, capped at what it covers", Coupon{Code: "F", AmountOff: map[string]decimal.Decimal{"USD": dec("5.00")}, Scope: Scope{Products: []string{"stickers"}}}, "USD", lines("USD", tees, stickers), "4.99"},
		{"a fixed amount in another currency", Coupon{Code: "F", AmountOff: map[string]decimal.Decimal{"USD": dec("5.00")}}, "EUR", lines("EUR", tees), events.CodeCouponNotApplicable},
		{"none of its products", func() Coupon { c := pct("50"); c.Scope = Scope{Products: []string{"mug-nats"}}; return c }(), "USD", lines("USD", tees), events.CodeCouponNotApplicable},
		{"under its minimum spend", func() Coupon { c := pct("10"); c.MinSpend = map[string]decimal.Decimal{"USD": dec("80.00")}; return c }(), "USD", lines("USD", tees, stickers), events.CodeCouponNotApplicable},
		{"at its minimum spend", func() Coupon { c := pct("10"); c.MinSpend = map[string]decimal.Decimal{"USD": dec("79.99")}; return c }(), "USD", lines("USD", tees, stickers), "8"},
		{"before its dates", func() Coupon { c := pct("10"); c.ValidFrom = now.Add(time.Second); return c }(), "USD", lines("USD", tees), events.CodeCouponNotApplicable},
		{"at its end", func() Coupon { c := pct("10"); c.ValidUntil = now; return c }(), "USD", lines("USD", tees), events.CodeCouponNotApplicable},
		{"nothing left after rounding", pct("0.1"), "JPY", lines("JPY", events.Line{ProductID: "stickers", Quantity: 1, UnitPrice: dec("100")}), events.CodeCouponNotApplicable},
	} {
		d, err := tc.coupon.discount(tc.lines, totalsOf(tc.lines), tc.currency, now)
		var f *failure
		switch {
		case err == nil && !d.Amount.Equal(dec(tc.want)):
			t.Errorf("%s: %s off, want %s", tc.name, d.Amount, tc.want)
		case err != nil && (!errors.As(err, &f) || f.code != tc.want):
			t.Errorf("%s: %v, want %s", tc.name, err, tc.want)
		}
	}
	// A cart the promotions took everything off: nothing is left for the coupon, and it says so.
	if _, err := pct("10").discount(lines("USD", stickers), []decimal.Decimal{decimal.Zero}, "USD", now); err == nil ||
		!strings.Contains(err.Error(), "the shop's promotions left nothing of this cart") {
		t.Errorf("a coupon on a cart the promotions emptied: %v", err)
	}
}

// A coupon comes off the subtotal before tax and shipping, and the quote lists it.
func TestCouponTakenOffTheQuote(t *testing.T) {
	h := start(t)
	cart := h.newCart(t, "USD", item("tee-jetstream", 2), item("mug-nats", 1))
	req := request("co-welcome", cart.ID, "cus_ada", address("US", "CA"))
	req.CouponCode = "welcome10" // any case
	h.checkout(t, req, "")
	q := h.quote(t, "co-welcome")
	// 62.50 less 10% (6.25) is 56.25; CA tax 7.25% of it 4.078125 → 4.08; shipping 5.00 + 3 × 1.00.
	if len(q.Discounts) != 1 || q.Discounts[0].Code != "WELCOME10" || q.Discounts[0].Description != "10% off your first order" ||
		!q.Discounts[0].Amount.Equal(dec("6.25")) || !q.Subtotal.Equal(dec("62.50")) || !q.Tax.Equal(dec("4.08")) ||
		!q.Shipping.Equal(dec("8.00")) || !q.Total.Equal(dec("68.33")) {
		t.Errorf("quote: %s − %+v + %s + %s = %s, want 62.50 − 6.25 + 4.08 + 8.00 = 68.33", q.Subtotal, q.Discounts, q.Tax, q.Shipping, q.Total)
	}
	if err := q.Validate(); err != nil {
		t.Error(err)
	}

	// Free shipping is judged on what is left after the discount: 82.48 less 8.25 is under 80.
	// Germany's prices include 19% VAT: 74.23 + shipping 4.90 + 3 × 0.90 is 81.83, of which
	// 81.83 × 19/119 = 13.0653 → 13.07 is VAT.
	eur := h.createCart(t, events.CreateCart{CustomerID: "cus_eu", Currency: "EUR", Items: []events.CartItem{
		item("hoodie-saga", 1), item("tee-jetstream", 1), item("stickers", 1)}})
	req = request("co-eu", eur.ID, "cus_eu", address("DE", ""))
	req.CouponCode = "WELCOME10"
	h.checkout(t, req, "")
	q = h.quote(t, "co-eu")
	if !q.Discount().Equal(dec("8.25")) || !q.Tax.Equal(dec("13.07")) || !q.TaxIncluded || !q.Shipping.Equal(dec("7.60")) || !q.Total.Equal(dec("81.83")) {
		t.Errorf("EUR quote: %s − %s + %s = %s (VAT %s included %v), want 82.48 − 8.25 + 7.60 = 81.83 (VAT 13.07 included)",
			q.Subtotal, q.Discount(), q.Shipping, q.Total, q.Tax, q.TaxIncluded)
	}
	if err := q.Validate(); err != nil {
		t.Error(err)
	}
}

// A coupon that does not apply fails the checkout with the reason, and holds nothing.
func TestCouponThatDoesNotApply(t *testing.T) {
	h := start(t)
	for code, want := range map[string]string{
		"NOPE":      `there is no coupon "NOPE"`,
		"SUMMER25":  "coupon SUMMER25 expired at 2026-09-01T00:00:00Z",
		"STICKERS5": "coupon STICKERS5 applies to none of this cart's products (stickers)",
	} {
		cart := h.newCart(t, "USD", item("mug-nats", 2))
		req := request("co-"+code, cart.ID, "cus_ada", address("US", "NY"))
		req.CouponCode = code
		h.checkout(t, req, "")
		if f := h.failure(t, "co-"+code); f.Code != events.CodeCouponNotApplicable || f.Message != want {
			t.Errorf("%s: %+v, want %s: %s", code, f, events.CodeCouponNotApplicable, want)
		}
		h.wantCart(t, cart.ID, events.CartOpen, "")
	}
}

// A limited coupon is never used more than its limit, in all or by one customer, and a
// failed checkout gives its use back.
func TestCouponLimits(t *testing.T) {
	h := start(t)
	checkout := func(id, customer, code string) {
		t.Helper()
		cart := h.createCart(t, events.CreateCart{CustomerID: customer, Currency: "USD", Items: []events.CartItem{item("tee-jetstream", 1)}})
		req := request(id, cart.ID, customer, address("US", "NY"))
		req.CouponCode = code
		h.checkout(t, req, "")
	}
	for i := range 10 {
		id := fmt.Sprintf("co-launch-%d", i)
		checkout(id, fmt.Sprintf("cus_%d", i), "LAUNCH15")
		if q := h.quote(t, id); !q.Discount().Equal(dec("3.75")) {
			t.Errorf("%s: %s off, want 15%% of 25.00", id, q.Discount())
		}
	}
	checkout("co-launch-late", "cus_late", "LAUNCH15")
	if f := h.failure(t, "co-launch-late"); f.Code != events.CodeCouponUsedUp || !strings.Contains(f.Message, "10 times in all") {
		t.Errorf("the 11th: %+v", f)
	}
	h.settle(t, "co-launch-3", events.Failed) // gives its use back
	checkout("co-launch-again", "cus_again", "LAUNCH15")
	h.quote(t, "co-launch-again")
	h.settle(t, "co-launch-4", events.Completed) // keeps it
	checkout("co-launch-last", "cus_last", "LAUNCH15")
	h.failure(t, "co-launch-last")
	if n, err := h.svc.Redemptions("launch15"); err != nil || n != 10 {
		t.Errorf("LAUNCH15 used %d times (%v), want 10", n, err)
	}

	// Once per customer: a second checkout of one customer is refused until the first fails.
	checkout("co-ada-1", "cus_ada", "WELCOME10")
	h.quote(t, "co-ada-1")
	checkout("co-ada-2", "cus_ada", "WELCOME10")
	if f := h.failure(t, "co-ada-2"); f.Code != events.CodeCouponUsedUp || !strings.Contains(f.Message, "by this customer") {
		t.Errorf("a second use by one customer: %+v", f)
	}
	checkout("co-bob-1", "cus_bob", "WELCOME10")
	h.quote(t, "co-bob-1")
	h.settle(t, "co-ada-1", events.Failed)
	h.settle(t, "co-ada-1", events.Failed) // a copy gives nothing back twice
	checkout("co-ada-3", "cus_ada", "WELCOME10")
	h.quote(t, "co-ada-3")
	if n, err := h.svc.Redemptions("WELCOME10"); err != nil || n != 2 {
		t.Errorf("WELCOME10 used %d times (%v), want 2 (bob's and ada's third)", n, err)
	}
}

// While writers are held at a version before discounts (a rolling upgrade), a coupon is
// refused with the reason, and tax is added on top: an older reader would take either
// quote's total for a mistake.
func TestCouponRefusedWhileHeldBeforeDiscounts(t *testing.T) {
	h := start(t)
	if err := events.HoldWriteVersion(events.DiscountsSince - 1); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = events.HoldWriteVersion(0) })
	cart := h.newCart(t, "USD", item("tee-jetstream", 1))
	req := request("co-held", cart.ID, "cus_ada", address("US", "NY"))
	req.CouponCode = "LAUNCH15"
	h.checkout(t, req, "")
	if f := h.failure(t, "co-held"); f.Code != events.CodeCouponNotApplicable || !strings.Contains(f.Message, "being upgraded") {
		t.Errorf("held: %+v", f)
	}
	if n, _ := h.svc.Redemptions("LAUNCH15"); n != 0 {
		t.Errorf("LAUNCH15 counted %d uses while refused", n)
	}
	// And the tax goes on top, as the previous release priced it: its readers would take an
	// included tax for a total that does not add up.
	eur := h.newCart(t, "EUR", item("keyboard-bbolt", 1))
	h.checkout(t, request("co-held-eu", eur.ID, "cus_ada", address("DE", "")), "")
	if q := h.quote(t, "co-held-eu"); q.TaxIncluded || !q.Tax.Equal(dec("22.61")) || !q.Total.Equal(dec("141.61")) {
		t.Errorf("held: EUR quote total %s tax %s included %v, want 119.00 + 22.61 on top", q.Total, q.Tax, q.TaxIncluded)
	}
}
