package fraud

import (
	"errors"
	"fmt"
	"strings"
	"time"

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
	ReviewDomain    decimal.Decimal // added when the customer's email domain is on the review list

	// HighValueThresholds by ISO 4217 currency; a currency without one never counts as
	// high value.
	HighValueThresholds map[string]decimal.Decimal
	// BlockedDomains are email domains; a subdomain of a listed domain is blocked too.
	BlockedDomains []string
	// ReviewDomains are email domains whose checkouts an operator should look at; a
	// subdomain of a listed domain counts too.
	ReviewDomains []string

	// RejectAt: a risk at or over it fails the step.
	RejectAt decimal.Decimal
	// ReviewAt: a risk at or over it, and under RejectAt, is held for an operator to
	// approve or deny. Zero disables review.
	ReviewAt decimal.Decimal
	// ReviewWindow is how long an operator has to decide; a checkout not decided by then
	// fails (the coordinator's deadline for the step moves to the end of the window).
	ReviewWindow time.Duration
}

// DefaultConfig is the production rule set. "fraud.test" is blocklisted so that tests and
// demos can trigger a rejection with an ordinary-looking address, and "review.test" is on
// the review list so that they can trigger a review: ada@review.test scores 0.52.
// A risk from 0.5 is reviewed: two rules together (a billing country that differs from the
// shipping country on a high-value order, say) are enough.
func DefaultConfig() Config {
	return Config{
		Base:            decimal.RequireFromString("0.02"),
		CountryMismatch: decimal.RequireFromString("0.3"),
		HighValue:       decimal.RequireFromString("0.3"),
		// A blocklisted domain alone is enough to reject (0.02 + 0.8 >= 0.75).
		BlockedDomain: decimal.RequireFromString("0.8"),
		// A review-listed domain alone lands in the review band (0.5 <= 0.02 + 0.5 < 0.75).
		ReviewDomain: decimal.RequireFromString("0.5"),
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
		ReviewDomains:  []string{"review.test"},
		RejectAt:       decimal.RequireFromString("0.75"),
		ReviewAt:       decimal.RequireFromString("0.5"),
		ReviewWindow:   30 * time.Minute,
	}
}

// Validate reports the first rule that cannot work.
func (c Config) Validate() error {
	one := decimal.NewFromInt(1)
	weights := []struct {
		name string
		v    decimal.Decimal
	}{{"Base", c.Base}, {"CountryMismatch", c.CountryMismatch}, {"HighValue", c.HighValue}, {"BlockedDomain", c.BlockedDomain},
		{"ReviewDomain", c.ReviewDomain}}
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
	if !c.ReviewAt.IsZero() && c.ReviewWindow <= 0 {
		return fmt.Errorf("fraud: ReviewWindow must be positive when ReviewAt is set, got %s", c.ReviewWindow)
	}
	for _, list := range []struct {
		name    string
		domains []string
	}{{"blocked", c.BlockedDomains}, {"review", c.ReviewDomains}} {
		for _, d := range list.domains {
			if d == "" || strings.ContainsAny(d, "@ ") || d != strings.ToLower(d) {
				return fmt.Errorf("fraud: %s domain %q must be a lower-case domain like \"fraud.test\"", list.name, d)
			}
		}
	}
	if c.Base.GreaterThanOrEqual(c.RejectAt) {
		return errors.New("fraud: Base is at or over RejectAt, so every checkout would be rejected")
	}
	if !c.ReviewAt.IsZero() && c.Base.GreaterThanOrEqual(c.ReviewAt) {
		return errors.New("fraud: Base is at or over ReviewAt, so every checkout would be held for review")
	}
	return nil
}
