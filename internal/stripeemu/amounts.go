package stripeemu

import (
	"fmt"
	"regexp"
	"slices"
)

var currencyCode = regexp.MustCompile(`^[a-z]{3}$`)

// zeroDecimal are the currencies whose amounts have no minor unit (Stripe's list).
var zeroDecimal = []string{"bif", "clp", "djf", "gnf", "jpy", "kmf", "krw", "mga", "pyg", "rwf", "ugx", "vnd", "vuv", "xaf", "xof", "xpf"}

// minimumCharge is Stripe's smallest chargeable amount in the currencies we price in.
var minimumCharge = map[string]int64{
	"usd": 50, "eur": 50, "gbp": 30, "cad": 50, "aud": 50, "chf": 50, "jpy": 50,
}

// maximumCharge is Stripe's default largest amount: eight digits of minor units.
const maximumCharge = 99_999_999

// formatAmount renders minor units for a message: "0.50 usd", "50 jpy".
func formatAmount(minor int64, currency string) string {
	if slices.Contains(zeroDecimal, currency) {
		return fmt.Sprintf("%d %s", minor, currency)
	}
	return fmt.Sprintf("%d.%02d %s", minor/100, minor%100, currency)
}

// checkAmount validates a charge amount in minor units.
func checkAmount(amount int64, currency string) error {
	switch {
	case amount < 1:
		return invalid("parameter_invalid_integer", "amount", "This value must be greater than or equal to 1.")
	case amount < minimumCharge[currency]:
		return invalid("amount_too_small", "amount", "Amount must be at least %s", formatAmount(minimumCharge[currency], currency))
	case amount > maximumCharge:
		return invalid("amount_too_large", "amount", "Amount must be no more than %s", formatAmount(maximumCharge, currency))
	}
	return nil
}

func checkCurrency(currency string) error {
	if currency == "" {
		return missingParam("currency")
	}
	if !currencyCode.MatchString(currency) {
		return invalid("parameter_invalid_string", "currency",
			"Invalid currency: %s. Currencies are three-letter ISO codes in lower case, like usd.", currency)
	}
	return nil
}
