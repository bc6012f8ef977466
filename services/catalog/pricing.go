package catalog

import (
	"errors"
	"fmt"
	"strings"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/money"
	"github.com/shopspring/decimal"
)

// Rates are the tax and shipping rates a cart is priced with (see LoadRates).
type Rates struct {
	Tax      map[string]TaxRate       `json:"tax"`      // by country code
	Shipping map[string]ShippingRates `json:"shipping"` // by currency
}

// TaxRate is a country's tax rate, with overrides for some of its states (an address's
// State: a state, province or region). Included: the country's consumer prices include the
// tax (VAT in the EU and the UK, consumption tax in Japan), so a price is what the customer
// pays and the tax is the part of it that is tax; otherwise (sales tax in the US) the tax is
// added on top.
type TaxRate struct {
	Rate     decimal.Decimal            `json:"rate"`
	Included bool                       `json:"included,omitempty"`
	States   map[string]decimal.Decimal `json:"states,omitempty"`
	// Regions is the old name of States, still read: LoadRates moves it into States.
	Regions map[string]decimal.Decimal `json:"regions,omitempty"`
}

// ShippingRate prices a delivery: Base plus PerItem for each unit, nothing once the
// subtotal reaches FreeOver (never free when FreeOver is nil).
type ShippingRate struct {
	Base     decimal.Decimal  `json:"base"`
	PerItem  decimal.Decimal  `json:"per_item"`
	FreeOver *decimal.Decimal `json:"free_over,omitempty"`
}

// ShippingRates are a currency's shipping rate and its overrides for some countries.
type ShippingRates struct {
	ShippingRate
	Countries map[string]ShippingRate `json:"countries,omitempty"`
}

// Pricing errors, for the caller to turn into failure codes.
var (
	ErrUnsupportedDestination = errors.New("unsupported destination")
	ErrUnsupportedCurrency    = errors.New("unsupported currency")
)

// Totals is what a cart costs delivered to an address.
type Totals struct {
	Lines       []events.Line // the lines given, each with its Total
	Subtotal    decimal.Decimal
	Discounts   []events.Discount
	Tax         decimal.Decimal
	TaxRate     decimal.Decimal // the rate Tax is of what it taxes
	TaxIncluded bool            // Tax is part of the prices, not added to them
	Shipping    decimal.Decimal
	Total       decimal.Decimal
}

// TaxMode is how a price is taxed: on top (US sales tax), or included where the
// destination's consumer prices include it and the quote can say so.
type TaxMode int

const (
	TaxOnTop TaxMode = iota
	TaxAsTheLawSays
)

// Price prices lines (with Quantity and UnitPrice set) in currency for delivery to dest:
// the subtotal is the sum of unit price × quantity; the discounts come off it; shipping
// follows the currency's rate for the destination country (free once what is left reaches
// its threshold). Where the destination's prices include tax (and mode allows it), what is
// left plus shipping is the total, and the tax is the part of it that is tax: total × rate /
// (1 + rate). Otherwise the tax is what is left × the rate, added on top (shipping is not
// taxed). Tax is rounded to the currency's minor unit, half away from zero.
// A country without a tax rate is ErrUnsupportedDestination; a currency without a
// shipping rate is ErrUnsupportedCurrency.
func Price(lines []events.Line, currency string, dest events.Address, rates Rates, mode TaxMode, discounts ...events.Discount) (Totals, error) {
	taxRate, included, err := rates.taxRate(dest.Country, dest.State)
	if err != nil {
		return Totals{}, err
	}
	shipping, err := rates.shippingRate(currency, dest.Country)
	if err != nil {
		return Totals{}, err
	}
	t := Totals{Lines: make([]events.Line, len(lines)), Discounts: discounts, TaxRate: taxRate}
	items := 0
	for i, l := range lines {
		l.Total = l.UnitPrice.Mul(decimal.NewFromInt(int64(l.Quantity)))
		t.Lines[i] = l
		t.Subtotal = t.Subtotal.Add(l.Total)
		items += l.Quantity
	}
	net := t.Subtotal
	for _, d := range discounts {
		net = net.Sub(d.Amount)
	}
	if net.IsNegative() {
		return Totals{}, fmt.Errorf("discounts take %s off a subtotal of %s", t.Subtotal.Sub(net), t.Subtotal)
	}
	t.Shipping = shipping.cost(net, items)
	t.TaxIncluded = included && mode == TaxAsTheLawSays
	tax := net.Mul(taxRate)
	if t.TaxIncluded {
		t.Total = net.Add(t.Shipping)
		tax = t.Total.Mul(taxRate).Div(decimal.NewFromInt(1).Add(taxRate))
	}
	if t.Tax, err = money.Round(tax, currency); err != nil {
		return Totals{}, fmt.Errorf("%w: %v", ErrUnsupportedCurrency, err)
	}
	if !t.TaxIncluded {
		t.Total = net.Add(t.Tax).Add(t.Shipping)
	}
	return t, nil
}

// taxRate is the state's rate when it has one, else the country's, and whether the
// country's prices include it.
func (r Rates) taxRate(country, state string) (decimal.Decimal, bool, error) {
	tax, ok := r.Tax[country]
	if !ok {
		return decimal.Decimal{}, false, fmt.Errorf("%w: we do not ship to country %q", ErrUnsupportedDestination, country)
	}
	if rate, ok := tax.States[strings.ToUpper(strings.TrimSpace(state))]; ok {
		return rate, tax.Included, nil
	}
	return tax.Rate, tax.Included, nil
}

// shippingRate is the country's override when it has one, else the currency's rate.
func (r Rates) shippingRate(currency, country string) (ShippingRate, error) {
	s, ok := r.Shipping[currency]
	if !ok {
		return ShippingRate{}, fmt.Errorf("%w: we do not take orders in %s", ErrUnsupportedCurrency, currency)
	}
	if c, ok := s.Countries[country]; ok {
		return c, nil
	}
	return s.ShippingRate, nil
}

func (s ShippingRate) cost(subtotal decimal.Decimal, items int) decimal.Decimal {
	if s.FreeOver != nil && subtotal.GreaterThanOrEqual(*s.FreeOver) {
		return decimal.Zero
	}
	return s.Base.Add(s.PerItem.Mul(decimal.NewFromInt(int64(items))))
}
