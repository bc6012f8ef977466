package catalog

import (
	"errors"
	"testing"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/shopspring/decimal"
)

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func decp(s string) *decimal.Decimal { d := dec(s); return &d }

func line(id, unit string, qty int) events.Line {
	return events.Line{ProductID: id, Name: id, Quantity: qty, UnitPrice: dec(unit)}
}

func testRates() Rates {
	return Rates{
		Tax: map[string]TaxRate{
			"US": {Rate: dec("0"), States: map[string]decimal.Decimal{"CA": dec("0.0725"), "NY": dec("0.04")}},
			"DE": {Rate: dec("0.19")},
			"JP": {Rate: dec("0.10")},
			"GB": {Rate: dec("0.20")},
		},
		Shipping: map[string]ShippingRates{
			"USD": {
				ShippingRate: ShippingRate{Base: dec("5.00"), PerItem: dec("1.00"), FreeOver: decp("100.00")},
				Countries:    map[string]ShippingRate{"GB": {Base: dec("15.00"), PerItem: dec("2.00")}},
			},
			"EUR": {ShippingRate: ShippingRate{Base: dec("4.90"), PerItem: dec("0.90"), FreeOver: decp("80.00")}},
			"JPY": {ShippingRate: ShippingRate{Base: dec("800"), PerItem: dec("100"), FreeOver: decp("10000")}},
		},
	}
}

func TestPrice(t *testing.T) {
	tests := []struct {
		name     string
		lines    []events.Line
		currency string
		country  string
		state    string
		// want subtotal, tax, shipping, total
		subtotal, tax, shipping, total string
	}{
		{"JPY has no decimals: 2800 × 3 with 10% tax", []events.Line{line("tee", "2800", 3)}, "JPY", "JP", "",
			"8400", "840", "1100", "10340"},
		{"JPY tax rounds to whole yen, half away from zero", []events.Line{line("sticker", "555", 1)}, "JPY", "JP", "",
			"555", "56", "900", "1511"}, // 55.5 → 56
		{"half a cent rounds away from zero", []events.Line{line("mug", "10.00", 1)}, "USD", "US", "CA",
			"10.00", "0.73", "6.00", "16.73"}, // 0.725 → 0.73 (banker's rounding would give 0.72)
		{"below half a cent rounds down", []events.Line{line("mug", "10.01", 1)}, "USD", "US", "NY",
			"10.01", "0.40", "6.00", "16.41"}, // 0.4004 → 0.40
		{"state override", []events.Line{line("tee", "25.00", 2), line("mug", "12.50", 1)}, "USD", "US", "CA",
			"62.50", "4.53", "8.00", "75.03"}, // 4.53125 → 4.53
		{"state matched whatever its case", []events.Line{line("tee", "25.00", 2), line("mug", "12.50", 1)}, "USD", "US", " ca ",
			"62.50", "4.53", "8.00", "75.03"},
		{"state without override uses the country's rate", []events.Line{line("tee", "25.00", 2)}, "USD", "US", "TX",
			"50.00", "0", "7.00", "57.00"},
		{"shipping free at the threshold", []events.Line{line("kbd", "100.00", 1)}, "USD", "US", "",
			"100.00", "0", "0", "100.00"},
		{"shipping charged just below it", []events.Line{line("kbd", "99.99", 1)}, "USD", "US", "",
			"99.99", "0", "6.00", "105.99"},
		{"country shipping override, never free", []events.Line{line("kbd", "129.00", 1)}, "USD", "GB", "",
			"129.00", "25.80", "17.00", "171.80"},
		{"EUR with VAT", []events.Line{line("tee", "23.00", 1), line("sticker", "4.49", 2)}, "EUR", "DE", "",
			"31.98", "6.08", "7.60", "45.66"}, // 6.0762 → 6.08
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Price(tt.lines, tt.currency, events.Address{Country: tt.country, State: tt.state}, testRates(), TaxOnTop)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				field     string
				got, want decimal.Decimal
			}{
				{"subtotal", got.Subtotal, dec(tt.subtotal)},
				{"tax", got.Tax, dec(tt.tax)},
				{"shipping", got.Shipping, dec(tt.shipping)},
				{"total", got.Total, dec(tt.total)},
			} {
				if !c.got.Equal(c.want) {
					t.Errorf("%s = %s, want %s", c.field, c.got, c.want)
				}
			}
			for i, l := range got.Lines {
				if want := l.UnitPrice.Mul(decimal.NewFromInt(int64(l.Quantity))); !l.Total.Equal(want) {
					t.Errorf("line %d total = %s, want %s", i, l.Total, want)
				}
			}
		})
	}
}

func TestPriceRejects(t *testing.T) {
	lines := []events.Line{line("tee", "25.00", 1)}
	tests := []struct {
		name     string
		currency string
		country  string
		want     error
	}{
		{"country without a tax rate", "USD", "BR", ErrUnsupportedDestination},
		{"currency without shipping", "GBP", "GB", ErrUnsupportedCurrency},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Price(lines, tt.currency, events.Address{Country: tt.country}, testRates(), TaxOnTop)
			if !errors.Is(err, tt.want) {
				t.Fatalf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

// Where the destination's prices include tax, the total is what the lines (less discounts)
// and shipping cost, and the tax is the part of it that is tax; TaxOnTop adds it instead, as
// a writer held before schema version 3 must.
func TestPriceTaxIncluded(t *testing.T) {
	rates := testRates()
	for _, c := range []string{"DE", "JP", "GB"} {
		r := rates.Tax[c]
		r.Included = true
		rates.Tax[c] = r
	}
	for _, tc := range []struct {
		name           string
		lines          []events.Line
		currency, to   string
		mode           TaxMode
		tax, total     string
		included       bool
		discount, ship string
	}{
		{"VAT included: 119.00 is 100.00 and 19.00 of VAT", []events.Line{line("kbd", "119.00", 1)}, "EUR", "DE", TaxAsTheLawSays, "19", "119", true, "", "0"},
		{"shipping is in the VAT base: 28.80 × 19/119 = 4.598", []events.Line{line("tee", "23.00", 1)}, "EUR", "DE", TaxAsTheLawSays, "4.60", "28.80", true, "", "5.80"},
		{"after a discount: 26.80 × 19/119 = 4.279", []events.Line{line("tee", "23.00", 1)}, "EUR", "DE", TaxAsTheLawSays, "4.28", "26.80", true, "2.00", "5.80"},
		{"whole yen: 1455 × 10/110 = 132.27", []events.Line{line("sticker", "555", 1)}, "JPY", "JP", TaxAsTheLawSays, "132", "1455", true, "", "900"},
		{"dollars to the UK: 42.00 × 20/120", []events.Line{line("tee", "25.00", 1)}, "USD", "GB", TaxAsTheLawSays, "7", "42", true, "", "17"},
		{"US sales tax stays on top", []events.Line{line("mug", "10.00", 1)}, "USD", "US", TaxAsTheLawSays, "0", "16", false, "", "6"},
		{"on top when held back", []events.Line{line("kbd", "119.00", 1)}, "EUR", "DE", TaxOnTop, "22.61", "141.61", false, "", "0"},
	} {
		var discounts []events.Discount
		if tc.discount != "" {
			discounts = append(discounts, events.Discount{Code: "X", Amount: dec(tc.discount)})
		}
		got, err := Price(tc.lines, tc.currency, events.Address{Country: tc.to}, rates, tc.mode, discounts...)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !got.Tax.Equal(dec(tc.tax)) || !got.Total.Equal(dec(tc.total)) || got.TaxIncluded != tc.included || !got.Shipping.Equal(dec(tc.ship)) {
			t.Errorf("%s: total %s tax %s included %v shipping %s; want %s, %s, %v, %s", tc.name, got.Total, got.Tax, got.TaxIncluded, got.Shipping, tc.total, tc.tax, tc.included, tc.ship)
		}
		q := events.Quote{CartID: "c", CustomerEmail: "a@b.c", PaymentMethodID: "pm_x", Currency: tc.currency, Lines: got.Lines,
			Subtotal: got.Subtotal, Discounts: discounts, Tax: got.Tax, Shipping: got.Shipping, Total: got.Total, TaxIncluded: got.TaxIncluded}
		if err := q.Validate(); err != nil {
			t.Errorf("%s: the quote does not add up: %v", tc.name, err)
		}
	}
}
