package fraud

import (
	"errors"
	"fmt"
	"strings"

	"github.com/jetcheckout/jetcheckout/internal/money"
	"github.com/shopspring/decimal"
)

// Config holds the scoring rules. Start from DefaultConfig: a zero weight or threshold is
// meaningful (it switches a rule off), so zero fields are not replaced by defaults.
type Config struct {
	Base            decimal.Decimal // every checkout starts at this risk
	CountryMismatch decimal.Decimal // added when billing and shipping countries differ
	HighValue       decimal.Decimal // added when the total reaches the currency's threshold
	BlockedDomain   decimal.Decimal // added when the customer's email domain is blocklisted

	// HighValueThresholds by ISO 4217 currency; a currency without one never counts as
	// high value.
	HighValueThresholds map[string]decimal.Decimal
	// BlockedDomains are email domains; a subdomain of a listed domain is blocked too.
	BlockedDomains []string

	// RejectAt: a risk at or over it fails the step.
	RejectAt decimal.Decimal
	// ReviewAt is reserved for manual review, which a later issue adds: risks in
	// [ReviewAt, RejectAt) will be held for a person instead of cleared. Zero disables it,
	// and nothing reads it yet beyond Validate.
	ReviewAt decimal.Decimal
}

// DefaultConfig is the production rule set. "fraud.test" is blocklisted so that tests and
// demos can trigger a rejection with an ordinary-looking address.
func DefaultConfig() Config {
	return Config{
		Base:            decimal.RequireFromString("0.02"),
		CountryMismatch: decimal.RequireFromString("0.3"),
		HighValue:       decimal.RequireFromString("0.3"),
		// A blocklisted domain alone is enough to reject (0.02 + 0.8 >= 0.75).
		BlockedDomain: decimal.RequireFromString("0.8"),
		HighValueThresholds: map[string]decimal.Decimal{
			"USD": decimal.NewFromInt(1000),
			"EUR": decimal.NewFromInt(1000),
			"GBP": decimal.NewFromInt(800),
			"CAD": decimal.NewFromInt(1400),
			"AUD": decimal.NewFromInt(1500),
			"CHF": decimal.NewFromInt(900),
			"JPY": decimal.NewFromInt(150000),
			"KRW": decimal.NewFromInt(1300000),
		},
		BlockedDomains: []string{"fraud.test"},
		RejectAt:       decimal.RequireFromString("0.75"),
	}
}

// Validate reports the first rule that cannot work.
func (c Config) Validate() error {
	one := decimal.NewFromInt(1)
	weights := []struct {
		name string
		v    decimal.Decimal
	}{{"Base", c.Base}, {"CountryMismatch", c.CountryMismatch}, {"HighValue", c.HighValue}, {"BlockedDomain", c.BlockedDomain}}
	for _, w := range weights {
		if w.v.IsNegative() || w.v.GreaterThan(one) {
			return fmt.Errorf("fraud: %s must be between 0 and 1, got %s", w.name, w.v)
		}
	}
	if !c.RejectAt.IsPositive() || c.RejectAt.GreaterThan(one) {
		return fmt.Errorf("fraud: RejectAt must be above 0 and at most 1, got %s", c.RejectAt)
	}
	if !c.ReviewAt.IsZero() && (c.ReviewAt.IsNegative() || c.ReviewAt.GreaterThanOrEqual(c.RejectAt)) {
		return fmt.Errorf("fraud: ReviewAt must be 0 (off) or between 0 and RejectAt %s, got %s", c.RejectAt, c.ReviewAt)
	}
	for cur, limit := range c.HighValueThresholds {
		if !money.Supported(cur) {
			return fmt.Errorf("fraud: high-value threshold for unsupported currency %q", cur)
		}
		if !limit.IsPositive() {
			return fmt.Errorf("fraud: high-value threshold for %s must be positive, got %s", cur, limit)
		}
	}
	for _, d := range c.BlockedDomains {
		if d == "" || strings.ContainsAny(d, "@ ") || d != strings.ToLower(d) {
			return fmt.Errorf("fraud: blocked domain %q must be a lower-case domain like \"fraud.test\"", d)
		}
	}
	if c.Base.GreaterThanOrEqual(c.RejectAt) {
		return errors.New("fraud: Base is at or over RejectAt, so every checkout would be rejected")
	}
	return nil
}
