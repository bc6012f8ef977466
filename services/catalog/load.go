package catalog

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/money"
	"github.com/shopspring/decimal"
)

// SeedProduct is a product of the seed file (deploy/demo/catalog.json) with its initial
// stock, which the inventory seeds from.
type SeedProduct struct {
	events.Product
	Stock int `json:"stock"`
	// Category groups products for pricing rules (a coupon or promotion for "apparel").
	Category string `json:"category,omitempty"`
}

// LoadSeed reads a JSON array of seed products and checks it: unique IDs, names, and
// positive prices in supported currencies, exact to the currency's minor unit.
func LoadSeed(r io.Reader) ([]SeedProduct, error) {
	var seed []SeedProduct
	if err := decodeFile(r, &seed); err != nil {
		return nil, fmt.Errorf("catalog seed: %w", err)
	}
	if err := validateSeed(seed); err != nil {
		return nil, fmt.Errorf("catalog seed: %w", err)
	}
	return seed, nil
}

func validateSeed(seed []SeedProduct) error {
	seen := map[string]bool{}
	for i, p := range seed {
		switch {
		case strings.TrimSpace(p.ID) == "":
			return fmt.Errorf("product %d has no id", i)
		case seen[p.ID]:
			return fmt.Errorf("product %q is listed twice", p.ID)
		case strings.TrimSpace(p.Name) == "":
			return fmt.Errorf("product %q has no name", p.ID)
		case len(p.Prices) == 0:
			return fmt.Errorf("product %q has no price", p.ID)
		case p.Stock < 0:
			return fmt.Errorf("product %q has negative stock %d", p.ID, p.Stock)
		}
		seen[p.ID] = true
		for cur, price := range p.Prices {
			if !price.IsPositive() {
				return fmt.Errorf("product %q: price %s %s must be positive", p.ID, price, cur)
			}
			if err := exact(price, cur); err != nil {
				return fmt.Errorf("product %q: %w", p.ID, err)
			}
		}
	}
	return nil
}

// LoadRates reads the tax and shipping rates (deploy/demo/rates.json) and checks them:
// country codes, tax rates between 0 and 1, and shipping amounts in supported currencies,
// not negative and exact to the currency's minor unit.
func LoadRates(r io.Reader) (Rates, error) {
	var rates Rates
	if err := decodeFile(r, &rates); err != nil {
		return Rates{}, fmt.Errorf("rates: %w", err)
	}
	for country, tax := range rates.Tax {
		for state, rate := range tax.Regions { // the old name of states
			if _, both := tax.States[state]; both {
				return Rates{}, fmt.Errorf("rates: tax %s: %s is in both states and regions (its old name): keep states", country, state)
			}
			if tax.States == nil {
				tax.States = map[string]decimal.Decimal{}
			}
			tax.States[state] = rate
		}
		tax.Regions = nil
		rates.Tax[country] = tax
	}
	if err := rates.validate(); err != nil {
		return Rates{}, fmt.Errorf("rates: %w", err)
	}
	return rates, nil
}

var countryCode = regexp.MustCompile(`^[A-Z]{2}$`)

func (r Rates) validate() error {
	for country, tax := range r.Tax {
		if !countryCode.MatchString(country) {
			return fmt.Errorf("tax: %q is not a two-letter country code like \"US\"", country)
		}
		if err := validTaxRate(tax.Rate); err != nil {
			return fmt.Errorf("tax %s: %w", country, err)
		}
		for state, rate := range tax.States {
			if state == "" || state != strings.ToUpper(strings.TrimSpace(state)) {
				return fmt.Errorf("tax %s: state %q must be upper-case, like \"CA\"", country, state)
			}
			if err := validTaxRate(rate); err != nil {
				return fmt.Errorf("tax %s-%s: %w", country, state, err)
			}
		}
	}
	for cur, s := range r.Shipping {
		if err := s.validate(cur); err != nil {
			return fmt.Errorf("shipping %s: %w", cur, err)
		}
		for country, c := range s.Countries {
			if !countryCode.MatchString(country) {
				return fmt.Errorf("shipping %s: %q is not a two-letter country code", cur, country)
			}
			if err := c.validate(cur); err != nil {
				return fmt.Errorf("shipping %s to %s: %w", cur, country, err)
			}
		}
	}
	return nil
}

func validTaxRate(rate decimal.Decimal) error {
	if rate.IsNegative() || rate.GreaterThan(decimal.NewFromInt(1)) {
		return fmt.Errorf("rate %s must be between 0 and 1", rate)
	}
	return nil
}

func (s ShippingRate) validate(currency string) error {
	amounts := []decimal.Decimal{s.Base, s.PerItem}
	if s.FreeOver != nil {
		amounts = append(amounts, *s.FreeOver)
	}
	for _, a := range amounts {
		if a.IsNegative() {
			return fmt.Errorf("amount %s must not be negative", a)
		}
		if err := exact(a, currency); err != nil {
			return err
		}
	}
	return nil
}

// exact checks that amount is in a supported currency and has no digits below its
// minor unit: prices and rates are data, and a typo there must not be rounded away.
func exact(amount decimal.Decimal, currency string) error {
	rounded, err := money.Round(amount, currency)
	if err != nil {
		return err
	}
	if !rounded.Equal(amount) {
		return fmt.Errorf("%s %s is finer than the currency's minor unit", amount, currency)
	}
	return nil
}

// decodeFile decodes a whole JSON document strictly: a misspelt key in a data file is an
// error, not a silently missing value.
func decodeFile(r io.Reader, v any) error {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("trailing data after the JSON document")
	}
	return nil
}
