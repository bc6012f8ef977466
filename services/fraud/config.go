package fraud

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jetcheckout/jetcheckout/internal/money"
	"github.com/shopspring/decimal"
)

// Config holds the scoring rules. Start from DefaultConfig: a zero weight or threshold is
// meaningful (it switches a rule off), so zero fields are not replaced by defaults.
// LoadConfig reads them from a file (deploy/demo/fraud.json), in these JSON names.
type Config struct {
	Base            decimal.Decimal `json:"base"`             // every checkout starts at this risk
	CountryMismatch decimal.Decimal `json:"country_mismatch"` // added when billing and shipping countries differ
	HighValue       decimal.Decimal `json:"high_value"`       // added when the total reaches the currency's threshold
	BlockedDomain   decimal.Decimal `json:"blocked_domain"`   // added when the customer's email domain is blocklisted
	ReviewDomain    decimal.Decimal `json:"review_domain"`    // added when the customer's email domain is on the review list

	// CountryMismatchFrom is, by ISO 4217 currency, the total from which differing billing
	// and shipping countries count; a currency without one counts at any total.
	CountryMismatchFrom map[string]decimal.Decimal `json:"country_mismatch_from,omitempty"`
	// HighValueThresholds by ISO 4217 currency; a currency without one never counts as
	// high value.
	HighValueThresholds map[string]decimal.Decimal `json:"high_value_thresholds"`
	// BlockedDomains are email domains; a subdomain of a listed domain is blocked too.
	BlockedDomains []string `json:"blocked_domains"`
	// ReviewDomains are email domains whose checkouts an operator should look at; a
	// subdomain of a listed domain counts too.
	ReviewDomains []string `json:"review_domains"`
	// Velocity are the rules that count other checkouts: attempts and declined payments by
	// the same customer, email, card or shipping address in a window (velocity.go).
	Velocity []VelocityRule `json:"velocity,omitempty"`

	// RejectAt: a risk at or over it fails the step.
	RejectAt decimal.Decimal `json:"reject_at"`
	// ReviewAt: a risk at or over it, and under RejectAt, is held for an operator to
	// approve or deny. Zero disables review.
	ReviewAt decimal.Decimal `json:"review_at"`
	// ReviewWindow is how long an operator has to decide; a checkout not decided by then
	// fails (the coordinator's deadline for the step moves to the end of the window).
	// Configured with the other deadlines (FRAUD_REVIEW_WINDOW), not in the rules.
	ReviewWindow time.Duration `json:"-"`
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
	}{{"base", c.Base}, {"country_mismatch", c.CountryMismatch}, {"high_value", c.HighValue}, {"blocked_domain", c.BlockedDomain},
		{"review_domain", c.ReviewDomain}}
	for _, w := range weights {
		if w.v.IsNegative() || w.v.GreaterThan(one) {
			return fmt.Errorf("fraud: %s must be between 0 and 1, got %s", w.name, w.v)
		}
	}
	if !c.RejectAt.IsPositive() || c.RejectAt.GreaterThan(one) {
		return fmt.Errorf("fraud: reject_at must be above 0 and at most 1, got %s", c.RejectAt)
	}
	if !c.ReviewAt.IsZero() && (c.ReviewAt.IsNegative() || c.ReviewAt.GreaterThanOrEqual(c.RejectAt)) {
		return fmt.Errorf("fraud: review_at must be 0 (off) or between 0 and reject_at %s, got %s", c.RejectAt, c.ReviewAt)
	}
	for _, thresholds := range []struct {
		name string
		by   map[string]decimal.Decimal
	}{{"high_value_thresholds", c.HighValueThresholds}, {"country_mismatch_from", c.CountryMismatchFrom}} {
		for cur, limit := range thresholds.by {
			if !money.Supported(cur) {
				return fmt.Errorf("fraud: %s: unsupported currency %q", thresholds.name, cur)
			}
			if !limit.IsPositive() {
				return fmt.Errorf("fraud: %s: %s must be positive, got %s", thresholds.name, cur, limit)
			}
		}
	}
	if err := validateVelocity(c.Velocity); err != nil {
		return err
	}
	if !c.ReviewAt.IsZero() && c.ReviewWindow <= 0 {
		return fmt.Errorf("fraud: the review window (FRAUD_REVIEW_WINDOW) must be positive when review_at is set, got %s", c.ReviewWindow)
	}
	for _, list := range []struct {
		name    string
		domains []string
	}{{"blocked_domains", c.BlockedDomains}, {"review_domains", c.ReviewDomains}} {
		for _, d := range list.domains {
			if d == "" || strings.ContainsAny(d, "@ ") || d != strings.ToLower(d) {
				return fmt.Errorf("fraud: %s: %q must be a lower-case domain like \"fraud.test\"", list.name, d)
			}
		}
	}
	if c.Base.GreaterThanOrEqual(c.RejectAt) {
		return errors.New("fraud: base is at or over reject_at, so every checkout would be rejected")
	}
	if !c.ReviewAt.IsZero() && c.Base.GreaterThanOrEqual(c.ReviewAt) {
		return errors.New("fraud: base is at or over review_at, so every checkout would be held for review")
	}
	return nil
}

// LoadConfig reads the rules from r (JSON, the names of Config's fields) over DefaultConfig:
// a field the file leaves out keeps its default, one it has replaces it (a list or a map
// whole). A field it does not know, or a rule that cannot work, is an error naming it.
func LoadConfig(r io.Reader) (Config, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return Config{}, fmt.Errorf("fraud rules: %w", err)
	}
	var present map[string]json.RawMessage
	if err := json.Unmarshal(data, &present); err != nil {
		return Config{}, fmt.Errorf("fraud rules: %w", err)
	}
	c := DefaultConfig()
	if _, ok := present["high_value_thresholds"]; ok {
		c.HighValueThresholds = nil // decoding into a map would merge
	}
	if _, ok := present["country_mismatch_from"]; ok {
		c.CountryMismatchFrom = nil
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Config{}, fmt.Errorf("fraud rules: %w", err)
	}
	return c, c.Validate()
}
