package catalog

import (
	"strings"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/shopspring/decimal"
)

// totalsOf is each line's total: what is left of the lines before any promotion.
func totalsOf(lines []events.Line) []decimal.Decimal {
	out := make([]decimal.Decimal, len(lines))
	for i, l := range lines {
		out[i] = l.Total
	}
	return out
}

// priced gives each line its total.
func priced(ls ...events.Line) []events.Line {
	for i := range ls {
		ls[i].Total = ls[i].UnitPrice.Mul(decimal.NewFromInt(int64(ls[i].Quantity)))
	}
	return ls
}

// The demo promotions load, and name only what the demo catalog sells.
func TestDemoPromotions(t *testing.T) {
	ps := demoPromotions(t)
	if len(ps) != 2 || ps[0].ID != "STICKERS-3FOR2" || ps[0].Bundle == nil || ps[1].ID != "MUG-VOLUME" || len(ps[1].Tiers) != 2 {
		t.Fatalf("demo promotions %+v", ps)
	}
	bad := Promotions{{ID: "P", Bundle: &Bundle{Buy: 2, Pay: 1}, Scope: Scope{Categories: []string{"shoes"}}}}
	if err := bad.Resolve(demoSeed(t)); err == nil || !strings.Contains(err.Error(), `promotion "P": category "shoes" has no product`) {
		t.Errorf("a promotion for a category not sold: %v", err)
	}
}

// A promotion that cannot work is refused at start, naming it and why.
func TestLoadPromotionsNamesTheBadRule(t *testing.T) {
	for body, want := range map[string]string{
		`[{"id":"BOTH","bundle":{"buy":3,"pay":2},"tiers":[{"min_quantity":2,"percent_off":"5"}]}]`: `("BOTH"): set exactly one`,
		`[{"id":"NONE"}]`: `("NONE"): set exactly one`,
		`[{"id":"FREE","bundle":{"buy":3,"pay":0}}]`:                                                                           `("FREE"): bundle buy 3 pay 0`,
		`[{"id":"SAME","bundle":{"buy":2,"pay":2}}]`:                                                                           `("SAME"): bundle buy 2 pay 2`,
		`[{"id":"ONE","bundle":{"buy":1,"pay":1}}]`:                                                                            `("ONE"): bundle buy 1`,
		`[{"id":"PCT","tiers":[{"min_quantity":2,"percent_off":"0"}]}]`:                                                        `("PCT"): tier 0: percent_off 0`,
		`[{"id":"ZERO","tiers":[{"min_quantity":0,"percent_off":"5"}]}]`:                                                       `("ZERO"): tier 0: min_quantity 0`,
		`[{"id":"ORDER","tiers":[{"min_quantity":5,"percent_off":"5"},{"min_quantity":5,"percent_off":"10"}]}]`:                `("ORDER"): tier 1: min_quantity 5 must be above`,
		`[{"id":"DATES","bundle":{"buy":3,"pay":2},"valid_from":"2026-02-01T00:00:00Z","valid_until":"2026-01-01T00:00:00Z"}]`: `("DATES"): valid_until`,
		`[{"id":"bad id","bundle":{"buy":3,"pay":2}}]`:                                                                         `("bad id"): id must be`,
		`[{"id":"TWICE","bundle":{"buy":3,"pay":2}},{"id":"twice","bundle":{"buy":3,"pay":2}}]`:                                `"twice" is listed twice`,
		`[{"id":"TYPO","bundel":{"buy":3,"pay":2}}]`:                                                                           `unknown field "bundel"`,
	} {
		_, err := LoadPromotions(strings.NewReader(body))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want an error with %q", body, err, want)
		}
	}
}

// What promotions take off, in their order: a bundle gives the cheapest of each group of
// units free, the units taken from the dearest down; volume prices take the highest tier
// reached, each line's share rounded to the currency's minor unit; a line takes one promotion
// at most; nothing outside the dates.
func TestPromotionsTakeOff(t *testing.T) {
	seed := demoSeed(t)
	resolved := func(ps ...Promotion) Promotions {
		if err := Promotions(ps).Resolve(seed); err != nil {
			t.Fatal(err)
		}
		return ps
	}
	threeForTwo := func(scope Scope) Promotion { return Promotion{ID: "B", Bundle: &Bundle{Buy: 3, Pay: 2}, Scope: scope} }
	tiers := func(scope Scope, ts ...Tier) Promotion { return Promotion{ID: "T", Tiers: ts, Scope: scope} }
	stickers, mugs, apparel := Scope{Products: []string{"stickers"}}, Scope{Products: []string{"mug-nats"}}, Scope{Categories: []string{"apparel"}}
	volume := []Tier{{MinQuantity: 4, PercentOff: dec("10")}, {MinQuantity: 10, PercentOff: dec("20")}}
	now := time.Date(2026, 12, 7, 12, 0, 0, 0, time.UTC)

	for _, tc := range []struct {
		name     string
		ps       Promotions
		currency string
		lines    []events.Line
		off      []string // by promotion applied
		left     []string // by line
	}{
		{"2 stickers: no group of 3", resolved(threeForTwo(stickers)), "USD", priced(line("stickers", "4.99", 2)), nil, []string{"9.98"}},
		{"3 stickers: one free", resolved(threeForTwo(stickers)), "USD", priced(line("stickers", "4.99", 3)), []string{"4.99"}, []string{"9.98"}},
		{"7 stickers: two free, the seventh paid", resolved(threeForTwo(stickers)), "JPY", priced(line("stickers", "550", 7)), []string{"1100"}, []string{"2750"}},
		{"a category, the cheapest of each group free", resolved(threeForTwo(apparel)), "USD",
			priced(line("hoodie-saga", "59.99", 2), line("tee-jetstream", "25.00", 4)), []string{"50"}, []string{"119.98", "50"}},
		{"a hoodie and two tees: a tee free, not the hoodie", resolved(threeForTwo(apparel)), "EUR",
			priced(line("tee-jetstream", "23.00", 2), line("hoodie-saga", "54.99", 1)), []string{"23"}, []string{"23", "54.99"}},
		{"3 mugs: under the first tier", resolved(tiers(mugs, volume...)), "USD", priced(line("mug-nats", "12.50", 3)), nil, []string{"37.5"}},
		{"4 mugs: 10%", resolved(tiers(mugs, volume...)), "USD", priced(line("mug-nats", "12.50", 4)), []string{"5"}, []string{"45"}},
		{"10 mugs: the highest tier reached", resolved(tiers(mugs, volume...)), "USD", priced(line("mug-nats", "12.50", 10)), []string{"25"}, []string{"100"}},
		{"15% of 13.47 rounds to the cent", resolved(tiers(stickers, Tier{MinQuantity: 3, PercentOff: dec("15")})), "EUR",
			priced(line("stickers", "4.49", 3)), []string{"2.02"}, []string{"11.45"}},
		{"units counted across the scope's lines", resolved(tiers(apparel, Tier{MinQuantity: 3, PercentOff: dec("10")})), "USD",
			priced(line("tee-jetstream", "25.00", 2), line("hoodie-saga", "59.99", 1), line("mug-nats", "12.50", 1)), []string{"11"}, []string{"45", "53.99", "12.5"}},
		{"a line takes the first promotion only", resolved(threeForTwo(stickers), tiers(Scope{}, Tier{MinQuantity: 1, PercentOff: dec("50")})), "USD",
			priced(line("stickers", "4.99", 3), line("mug-nats", "12.50", 1)), []string{"4.99", "6.25"}, []string{"9.98", "6.25"}},
		{"a line paid for in a bundle takes no later promotion", resolved(threeForTwo(apparel), tiers(Scope{}, Tier{MinQuantity: 1, PercentOff: dec("50")})), "USD",
			priced(line("hoodie-saga", "59.99", 1), line("tee-jetstream", "25.00", 2), line("mug-nats", "12.50", 1)), []string{"25", "6.25"}, []string{"59.99", "25", "6.25"}},
		{"outside its dates", Promotions{func() Promotion { p := threeForTwo(Scope{}); p.ValidUntil = now; return p }()}, "USD",
			priced(line("stickers", "4.99", 3)), nil, []string{"14.97"}},
	} {
		discounts, left, err := tc.ps.apply(tc.lines, tc.currency, now)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		var off, rest []string
		for _, d := range discounts {
			if !d.Automatic || d.Description == "" {
				t.Errorf("%s: %+v is not an automatic discount that says what it is", tc.name, d)
			}
			off = append(off, d.Amount.String())
		}
		for _, l := range left {
			rest = append(rest, l.String())
		}
		if strings.Join(off, " ") != strings.Join(tc.off, " ") || strings.Join(rest, " ") != strings.Join(tc.left, " ") {
			t.Errorf("%s: took %v off, leaving %v; want %v, leaving %v", tc.name, off, rest, tc.off, tc.left)
		}
	}
}

// The demo's 3 for 2 and volume prices come off a quote in euros and in yen, where the prices
// include the tax, before the coupon, which applies to what they leave; they are not counted
// as a coupon's uses.
func TestPromotionsOnTheQuote(t *testing.T) {
	h := start(t)

	// Stickers 3 × 4.49 = 13.47, mugs 4 × 11.50 = 46.00: 59.47. The third sticker is free
	// (4.49), the mugs 10% off (4.60), and STICKERS5 takes 5.00 off the 8.98 left of the
	// stickers: 45.38, plus shipping 4.90 + 7 × 0.90 = 11.20, is 56.58, of which
	// 56.58 × 19/119 = 9.0338 → 9.03 is German VAT.
	eur := h.createCart(t, events.CreateCart{CustomerID: "cus_eu", Currency: "EUR", Items: []events.CartItem{item("stickers", 3), item("mug-nats", 4)}})
	req := request("co-promo-eur", eur.ID, "cus_eu", address("DE", ""))
	req.CouponCode = "STICKERS5"
	h.checkout(t, req, "")
	q := h.quote(t, "co-promo-eur")
	wantDiscounts(t, q, "STICKERS-3FOR2 4.49 automatic", "MUG-VOLUME 4.6 automatic", "STICKERS5 5 coupon")
	if !q.Subtotal.Equal(dec("59.47")) || !q.Shipping.Equal(dec("11.20")) || !q.Total.Equal(dec("56.58")) || !q.Tax.Equal(dec("9.03")) || !q.TaxIncluded {
		t.Errorf("EUR quote: %s − %s + %s = %s (VAT %s included %v), want 59.47 − 14.09 + 11.20 = 56.58 (VAT 9.03 included)",
			q.Subtotal, q.Discount(), q.Shipping, q.Total, q.Tax, q.TaxIncluded)
	}
	if err := q.Validate(); err != nil {
		t.Error(err)
	}

	// Stickers 7 × 550 = 3850, two free (1100); mugs 10 × 1400 = 14000, 20% off (2800):
	// 13950, shipped free (over 10000), of which 13950 × 10/110 = 1268.18 → 1268 is
	// consumption tax.
	jpy := h.createCart(t, events.CreateCart{CustomerID: "cus_jp", Currency: "JPY", Items: []events.CartItem{item("stickers", 7), item("mug-nats", 10)}})
	h.checkout(t, request("co-promo-jpy", jpy.ID, "cus_jp", address("JP", "")), "")
	q = h.quote(t, "co-promo-jpy")
	wantDiscounts(t, q, "STICKERS-3FOR2 1100 automatic", "MUG-VOLUME 2800 automatic")
	if !q.Subtotal.Equal(dec("17850")) || !q.Shipping.IsZero() || !q.Total.Equal(dec("13950")) || !q.Tax.Equal(dec("1268")) || !q.TaxIncluded {
		t.Errorf("JPY quote: %s − %s + %s = %s (tax %s included %v), want 17850 − 3900 + 0 = 13950 (tax 1268 included)",
			q.Subtotal, q.Discount(), q.Shipping, q.Total, q.Tax, q.TaxIncluded)
	}

	for code, want := range map[string]int{"STICKERS5": 1, "STICKERS-3FOR2": 0, "MUG-VOLUME": 0} {
		if n, err := h.svc.Redemptions(code); err != nil || n != want {
			t.Errorf("%s counted %d uses (%v), want %d", code, n, err, want)
		}
	}

	// A coupon's minimum spend is judged on what the promotions leave: 6 stickers are
	// 26.94, 17.96 once two are free, under WELCOME10's 20.00.
	six := h.createCart(t, events.CreateCart{CustomerID: "cus_eu2", Currency: "EUR", Items: []events.CartItem{item("stickers", 6)}})
	req = request("co-promo-min", six.ID, "cus_eu2", address("DE", ""))
	req.CouponCode = "WELCOME10"
	h.checkout(t, req, "")
	if f := h.failure(t, "co-promo-min"); f.Code != events.CodeCouponNotApplicable || !strings.Contains(f.Message, "17.96") {
		t.Errorf("WELCOME10 on 17.96 after promotions: %+v", f)
	}

	// A coupon for a category: APPAREL20 takes 20% off the tee, not the mug.
	mixed := h.newCart(t, "USD", item("tee-jetstream", 1), item("mug-nats", 1))
	req = request("co-apparel", mixed.ID, "cus_ada", address("US", "CA"))
	req.CouponCode = "APPAREL20"
	h.checkout(t, req, "")
	wantDiscounts(t, h.quote(t, "co-apparel"), "APPAREL20 5 coupon")
}

func wantDiscounts(t *testing.T, q events.Quote, want ...string) {
	t.Helper()
	var got []string
	for _, d := range q.Discounts {
		kind := "coupon"
		if d.Automatic {
			kind = "automatic"
		}
		got = append(got, d.Code+" "+d.Amount.String()+" "+kind)
	}
	if strings.Join(got, ", ") != strings.Join(want, ", ") {
		t.Errorf("quote's discounts %v, want %v", got, want)
	}
}

// While the shop is held at a version whose quotes cannot list discounts, no promotion
// applies: the previous release has none, and its readers would find the total wrong.
func TestNoPromotionWhileHeldBeforeDiscounts(t *testing.T) {
	if err := events.HoldWriteVersion(events.DiscountsSince - 1); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = events.HoldWriteVersion(0) })
	h := start(t)
	cart := h.newCart(t, "USD", item("stickers", 3))
	h.checkout(t, request("co-held-promo", cart.ID, "cus_ada", address("US", "CA")), "")
	if q := h.quote(t, "co-held-promo"); len(q.Discounts) != 0 || !q.Subtotal.Equal(dec("14.97")) {
		t.Errorf("held at version %d: %s with discounts %+v, want the list price and none", events.DiscountsSince-1, q.Subtotal, q.Discounts)
	}
}

// A rule whose categories were never resolved would apply to nothing, and a promotion named
// like a coupon would list two discounts under one code: the catalog refuses both.
func TestRulesCheckedAtStart(t *testing.T) {
	apparel := Scope{Categories: []string{"apparel"}}
	for want, s := range map[string]*Service{
		`coupon "C" lists categories but was not resolved`:    {coupons: Coupons{"C": {Code: "C", Scope: apparel}}},
		`promotion "P" lists categories but was not resolved`: {promotions: Promotions{{ID: "P", Bundle: &Bundle{Buy: 3, Pay: 2}, Scope: apparel}}},
		`promotion "welcome10" has the code of a coupon`:      {coupons: demoCoupons(t), promotions: Promotions{{ID: "welcome10", Bundle: &Bundle{Buy: 3, Pay: 2}}}},
	} {
		if err := s.checkRules(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%v, want an error with %q", err, want)
		}
	}
	if err := (&Service{coupons: demoCoupons(t), promotions: demoPromotions(t)}).checkRules(); err != nil {
		t.Errorf("the demo's rules: %v", err)
	}
}
