package catalog

import (
	"io"
	"slices"
	"strings"
	"testing"

	"github.com/jetcheckout/jetcheckout/deploy"
	"github.com/jetcheckout/jetcheckout/events"
	"github.com/shopspring/decimal"
)

// loadDemo parses a file of the demo data the binaries ship with.
func loadDemo[T any](t *testing.T, name string, parse func(io.Reader) (T, error)) T {
	t.Helper()
	f, err := deploy.Demo.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v, err := parse(f)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func demoSeed(t *testing.T) []SeedProduct { return loadDemo(t, deploy.CatalogFile, LoadSeed) }

// demoCoupons and demoPromotions are the demo's, resolved against the demo catalog.
func demoCoupons(t *testing.T) Coupons {
	c := loadDemo(t, deploy.CouponsFile, LoadCoupons)
	if err := c.Resolve(demoSeed(t)); err != nil {
		t.Fatal(err)
	}
	return c
}

func demoPromotions(t *testing.T) Promotions {
	p := loadDemo(t, deploy.PromotionsFile, LoadPromotions)
	if err := p.Resolve(demoSeed(t)); err != nil {
		t.Fatal(err)
	}
	return p
}

func demoRates(t *testing.T) Rates { return loadDemo(t, deploy.RatesFile, LoadRates) }

// The demo data must show what deploy's doc promises: a product with little stock, one
// sold only in USD, and the rates the examples use.
func TestDemoData(t *testing.T) {
	seed := demoSeed(t)
	if len(seed) < 5 {
		t.Fatalf("demo catalog has %d products", len(seed))
	}
	var lowStock, usdOnly bool
	for _, p := range seed {
		lowStock = lowStock || (p.Stock > 0 && p.Stock <= 3)
		_, usd := p.Prices["USD"]
		usdOnly = usdOnly || (usd && len(p.Prices) == 1)
	}
	if !lowStock || !usdOnly {
		t.Errorf("demo catalog needs a low-stock product (%v) and a USD-only one (%v)", lowStock, usdOnly)
	}

	rates := demoRates(t)
	for _, c := range []struct {
		country, state, want string
		included             bool
	}{
		{"US", "CA", "0.0725", false}, {"US", "NY", "0.04", false}, {"US", "TX", "0", false},
		{"DE", "", "0.19", true}, {"FR", "", "0.20", true}, {"GB", "", "0.20", true}, {"JP", "", "0.10", true},
	} {
		got, included, err := rates.taxRate(c.country, c.state)
		if err != nil || !got.Equal(dec(c.want)) || included != c.included {
			t.Errorf("tax %s-%s = %s included %v, %v; want %s included %v", c.country, c.state, got, included, err, c.want, c.included)
		}
	}
	// A rates file from before "states" still loads: "regions" is its old name.
	old, err := LoadRates(strings.NewReader(`{"tax":{"US":{"rate":"0","regions":{"CA":"0.0725"}}}}`))
	if got, _, _ := old.taxRate("US", "CA"); err != nil || !got.Equal(dec("0.0725")) {
		t.Errorf("old rates file: tax US-CA = %s, %v; want 0.0725", got, err)
	}
	for _, cur := range []string{"USD", "EUR", "JPY"} {
		if _, err := rates.shippingRate(cur, "US"); err != nil {
			t.Errorf("no shipping in %s: %v", cur, err)
		}
	}
}

func TestLoadSeedRejects(t *testing.T) {
	tests := []struct{ name, json, want string }{
		{"unknown field", `[{"id":"a","name":"A","prices":{"USD":"1.00"},"stok":1}]`, "unknown field"},
		{"float price with too many digits", `[{"id":"a","name":"A","prices":{"USD":"1.005"},"stock":1}]`, "finer than"},
		{"JPY with decimals", `[{"id":"a","name":"A","prices":{"JPY":"100.5"},"stock":1}]`, "finer than"},
		{"unsupported currency", `[{"id":"a","name":"A","prices":{"XYZ":"1"},"stock":1}]`, "unsupported currency"},
		{"zero price", `[{"id":"a","name":"A","prices":{"USD":"0"},"stock":1}]`, "must be positive"},
		{"no prices", `[{"id":"a","name":"A","prices":{},"stock":1}]`, "no price"},
		{"duplicate", `[{"id":"a","name":"A","prices":{"USD":"1"}},{"id":"a","name":"B","prices":{"USD":"1"}}]`, "twice"},
		{"negative stock", `[{"id":"a","name":"A","prices":{"USD":"1"},"stock":-1}]`, "negative stock"},
		{"no name", `[{"id":"a","prices":{"USD":"1"}}]`, "no name"},
		{"trailing data", `[] []`, "trailing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadSeed(strings.NewReader(tt.json))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestLoadRatesRejects(t *testing.T) {
	tests := []struct{ name, json, want string }{
		{"lower-case country", `{"tax":{"us":{"rate":"0"}}}`, "country code"},
		{"rate above 1", `{"tax":{"DE":{"rate":"19"}}}`, "between 0 and 1"},
		{"lower-case state", `{"tax":{"US":{"rate":"0","states":{"ca":"0.07"}}}}`, "upper-case"},
		{"lower-case state under its old name", `{"tax":{"US":{"rate":"0","regions":{"ca":"0.07"}}}}`, "upper-case"},
		{"a state under both names", `{"tax":{"US":{"rate":"0","states":{"CA":"0.07"},"regions":{"CA":"0.07"}}}}`, "both"},
		{"negative shipping", `{"shipping":{"USD":{"base":"-1","per_item":"0"}}}`, "negative"},
		{"shipping finer than cents", `{"shipping":{"USD":{"base":"4.999","per_item":"0"}}}`, "finer than"},
		{"unsupported currency", `{"shipping":{"XYZ":{"base":"1","per_item":"0"}}}`, "unsupported currency"},
		{"bad override country", `{"shipping":{"USD":{"base":"1","per_item":"0","countries":{"UK1":{"base":"1","per_item":"1"}}}}}`, "country code"},
		{"misspelt key", `{"shipping":{"USD":{"base":"1","peritem":"0"}}}`, "unknown field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadRates(strings.NewReader(tt.json))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

// The seed goes in only once: a catalog that has products keeps them.
func TestSeedOnlyWhenEmpty(t *testing.T) {
	svc := newService(t)
	seeded, err := svc.Seed(demoSeed(t))
	if err != nil || !seeded {
		t.Fatalf("first seed: %v, %v", seeded, err)
	}
	other := []SeedProduct{{Product: events.Product{ID: "other", Name: "Other", Prices: map[string]decimal.Decimal{"USD": dec("1")}}}}
	seeded, err = svc.Seed(other)
	if err != nil || seeded {
		t.Fatalf("second seed: %v, %v", seeded, err)
	}
	products, err := svc.Products()
	if err != nil {
		t.Fatal(err)
	}
	if len(products) != len(demoSeed(t)) || slices.ContainsFunc(products, func(p events.Product) bool { return p.ID == "other" }) {
		t.Fatalf("products after a second seed: %+v", products)
	}
}
