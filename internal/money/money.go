// Package money holds the rules for amounts: decimal.Decimal everywhere in code, integer
// minor units only at the payment edge, with each currency's ISO 4217 exponent.
package money

import (
	"fmt"
	"strings"

	"github.com/shopspring/decimal"
)

type currency struct {
	exponent int32
	symbol   string
}

// currencies we price in. An unknown currency is an error, never a guessed exponent.
var currencies = map[string]currency{
	"USD": {2, "$"},
	"EUR": {2, "€"},
	"GBP": {2, "£"},
	"CAD": {2, "CA$"},
	"AUD": {2, "A$"},
	"CHF": {2, "CHF "},
	"JPY": {0, "¥"},
	"KRW": {0, "₩"},
}

// Supported reports whether code (upper-case ISO 4217) is a currency we price in.
func Supported(code string) bool {
	_, ok := currencies[code]
	return ok
}

// Exponent is the number of decimal places of the currency's minor unit (USD 2, JPY 0).
func Exponent(code string) (int32, error) {
	c, ok := currencies[code]
	if !ok {
		return 0, fmt.Errorf("unsupported currency %q", code)
	}
	return c.exponent, nil
}

// Round rounds amount to the currency's minor unit, half away from zero.
func Round(amount decimal.Decimal, code string) (decimal.Decimal, error) {
	exp, err := Exponent(code)
	if err != nil {
		return decimal.Decimal{}, err
	}
	return amount.Round(exp), nil
}

// ToMinor converts an amount to integer minor units (12.34 USD → 1234, 1200 JPY → 1200).
// An amount finer than the minor unit is an error: round it first, deliberately.
func ToMinor(amount decimal.Decimal, code string) (int64, error) {
	exp, err := Exponent(code)
	if err != nil {
		return 0, err
	}
	if !amount.Equal(amount.Round(exp)) {
		return 0, fmt.Errorf("%s %s has more than %d decimal places", amount, code, exp)
	}
	minor := amount.Shift(exp)
	if !minor.IsInteger() || minor.GreaterThan(decimal.NewFromInt(1<<53)) || minor.LessThan(decimal.NewFromInt(-(1 << 53))) {
		return 0, fmt.Errorf("%s %s is out of range", amount, code)
	}
	return minor.IntPart(), nil
}

// FromMinor converts integer minor units back to an amount.
func FromMinor(minor int64, code string) (decimal.Decimal, error) {
	exp, err := Exponent(code)
	if err != nil {
		return decimal.Decimal{}, err
	}
	return decimal.New(minor, -exp), nil
}

// Format renders an amount for people: "$1,234.50", "¥1,200", "€0.99".
func Format(amount decimal.Decimal, code string) string {
	c, ok := currencies[code]
	if !ok {
		return amount.String() + " " + code
	}
	s := amount.Abs().StringFixed(c.exponent)
	whole, frac, _ := strings.Cut(s, ".")
	var b strings.Builder
	if amount.IsNegative() {
		b.WriteByte('-')
	}
	b.WriteString(c.symbol)
	for i, d := range whole {
		if i > 0 && (len(whole)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(d)
	}
	if frac != "" {
		b.WriteByte('.')
		b.WriteString(frac)
	}
	return b.String()
}
