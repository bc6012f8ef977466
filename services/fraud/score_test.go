package fraud

import (
	"strings"
	"testing"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/shopspring/decimal"
)

func TestScore(t *testing.T) {
	tests := []struct {
		name    string
		change  func(q *events.Quote)
		risk    string
		reasons []string // substrings, one per reason, in order
		reject  bool
		review  bool
	}{
		{name: "clean", change: func(*events.Quote) {}, risk: "0.02"},
		{name: "countries differ", change: func(q *events.Quote) { q.BillingAddress.Country = "DE" },
			risk: "0.32", reasons: []string{"billing country DE differs from shipping country US"}},
		{name: "just under the USD threshold", change: func(q *events.Quote) { q.Total = dec("999.99") }, risk: "0.02"},
		{name: "at the USD threshold", change: func(q *events.Quote) { q.Total = dec("1000") },
			risk: "0.32", reasons: []string{"total $1,000.00 is at or over the high-value threshold $1,000.00"}},
		{name: "JPY threshold", change: func(q *events.Quote) { q.Currency, q.Total = "JPY", dec("150000") },
			risk: "0.32", reasons: []string{"¥150,000"}},
		{name: "1000 JPY is not high value", change: func(q *events.Quote) { q.Currency, q.Total = "JPY", dec("1000") }, risk: "0.02"},
		{name: "blocklisted domain", change: func(q *events.Quote) { q.CustomerEmail = "mallory@fraud.test" },
			risk: "0.82", reasons: []string{"email domain fraud.test is blocklisted"}, reject: true},
		{name: "blocklisted parent domain, any case", change: func(q *events.Quote) { q.CustomerEmail = "m@Mail.FRAUD.test" },
			risk: "0.82", reasons: []string{"email domain mail.fraud.test is blocklisted"}, reject: true},
		{name: "lookalike domain is not blocked", change: func(q *events.Quote) { q.CustomerEmail = "m@notfraud.test" }, risk: "0.02"},
		{name: "countries differ and high value are reviewed", change: func(q *events.Quote) {
			q.BillingAddress.Country, q.Total = "FR", dec("2500")
		}, risk: "0.62", reasons: []string{"billing country", "high-value"}, review: true},
		{name: "review-listed domain", change: func(q *events.Quote) { q.CustomerEmail = "ada@review.test" },
			risk: "0.52", reasons: []string{"email domain review.test is on the review list"}, review: true},
		{name: "review-listed parent domain", change: func(q *events.Quote) { q.CustomerEmail = "ada@eu.Review.test" },
			risk: "0.52", reasons: []string{"eu.review.test is on the review list"}, review: true},
		{name: "review-listed domain and countries differ reject", change: func(q *events.Quote) {
			q.CustomerEmail, q.BillingAddress.Country = "ada@review.test", "DE"
		}, risk: "0.82", reasons: []string{"billing country", "review list"}, reject: true},
		{name: "every rule, capped at 1", change: func(q *events.Quote) {
			q.BillingAddress.Country, q.Total, q.CustomerEmail = "FR", dec("2500"), "x@fraud.test"
		}, risk: "1", reasons: []string{"billing country", "high-value", "blocklisted"}, reject: true},
	}
	cfg := DefaultConfig()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := testQuote()
			tt.change(&q)
			got := cfg.Score(q, nil)
			if !got.Risk.Equal(dec(tt.risk)) {
				t.Errorf("risk = %s, want %s", got.Risk, tt.risk)
			}
			if len(got.Reasons) != len(tt.reasons) {
				t.Fatalf("reasons = %q, want %d matching %q", got.Reasons, len(tt.reasons), tt.reasons)
			}
			for i, want := range tt.reasons {
				if !strings.Contains(got.Reasons[i], want) {
					t.Errorf("reason %d = %q, want it to contain %q", i, got.Reasons[i], want)
				}
			}
			if cfg.Rejects(got) != tt.reject {
				t.Errorf("rejects = %v, want %v", !tt.reject, tt.reject)
			}
			if cfg.Reviews(got) != tt.review {
				t.Errorf("reviews = %v, want %v", !tt.review, tt.review)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(c *Config)
		want   string // "" when valid
	}{
		{name: "defaults", change: func(*Config) {}},
		{name: "review below reject", change: func(c *Config) { c.ReviewAt = dec("0.7") }},
		{name: "review at reject", change: func(c *Config) { c.ReviewAt = c.RejectAt }, want: "review_at"},
		{name: "review off needs no window", change: func(c *Config) { c.ReviewAt, c.ReviewWindow = decimal.Zero, 0 }},
		{name: "review without a window", change: func(c *Config) { c.ReviewWindow = 0 }, want: "FRAUD_REVIEW_WINDOW"},
		{name: "base reviews everything", change: func(c *Config) { c.Base = dec("0.5") }, want: "held for review"},
		{name: "review domain with upper case", change: func(c *Config) { c.ReviewDomains = []string{"Review.test"} }, want: "review_domains"},
		{name: "review weight over 1", change: func(c *Config) { c.ReviewDomain = dec("1.1") }, want: "review_domain"},
		{name: "zero reject", change: func(c *Config) { c.RejectAt = decimal.Zero }, want: "reject_at"},
		{name: "reject over 1", change: func(c *Config) { c.RejectAt = dec("1.5") }, want: "reject_at"},
		{name: "negative weight", change: func(c *Config) { c.HighValue = dec("-0.1") }, want: "high_value"},
		{name: "base rejects everything", change: func(c *Config) { c.Base = dec("0.8") }, want: "every checkout"},
		{name: "unknown currency", change: func(c *Config) { c.HighValueThresholds["XXX"] = dec("1") }, want: "XXX"},
		{name: "zero threshold", change: func(c *Config) { c.HighValueThresholds["USD"] = decimal.Zero }, want: "positive"},
		{name: "email as domain", change: func(c *Config) { c.BlockedDomains = []string{"a@b.test"} }, want: "a@b.test"},
		{name: "mismatch from an unknown currency", change: func(c *Config) { c.CountryMismatchFrom = map[string]decimal.Decimal{"XXX": dec("1")} },
			want: "country_mismatch_from: unsupported currency"},
		{name: "velocity rule", change: func(c *Config) { c.Velocity = []VelocityRule{velocityRule("r", ByCustomer, CountAttempts, 3)} }},
		{name: "velocity rule without a name", change: func(c *Config) { c.Velocity = []VelocityRule{velocityRule("", ByCustomer, CountAttempts, 3)} },
			want: "velocity rule 1: a name"},
		{name: "velocity rule named like another", change: func(c *Config) {
			c.Velocity = []VelocityRule{velocityRule("high_value", ByCustomer, CountAttempts, 3)}
		}, want: "velocity rule high_value: the name is taken"},
		{name: "velocity rule by phone", change: func(c *Config) { c.Velocity = []VelocityRule{velocityRule("r", "phone", CountAttempts, 3)} },
			want: "velocity rule r: by must be"},
		{name: "velocity rule counting refunds", change: func(c *Config) { c.Velocity = []VelocityRule{velocityRule("r", ByCard, "refunds", 3)} },
			want: "velocity rule r: count must be"},
		{name: "velocity rule of no attempts", change: func(c *Config) { c.Velocity = []VelocityRule{velocityRule("r", ByCard, CountAttempts, 0)} },
			want: "velocity rule r: the limit"},
		{name: "velocity rule without a window", change: func(c *Config) {
			r := velocityRule("r", ByCard, CountDeclines, 0)
			r.Window.Duration = 0
			c.Velocity = []VelocityRule{r}
		}, want: "velocity rule r: the window"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := DefaultConfig()
			tt.change(&cfg)
			err := cfg.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("unexpected error: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("error = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func testQuote() events.Quote {
	home := events.Address{Name: "Ada Lovelace", Line1: "1 Main St", City: "Springfield", State: "IL", PostalCode: "62701", Country: "US"}
	return events.Quote{
		CartID: "cart_1", CustomerID: "cus_1", CustomerEmail: "ada@example.com", PaymentMethodID: "pm_card_visa",
		ShippingAddress: home, BillingAddress: home, Currency: "USD",
		Lines:    []events.Line{{ProductID: "tea", Name: "Green tea", Quantity: 2, UnitPrice: dec("9.99"), Total: dec("19.98")}},
		Subtotal: dec("19.98"), Tax: dec("0"), Shipping: dec("0"), Total: dec("19.98"),
	}
}
