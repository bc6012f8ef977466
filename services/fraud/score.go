package fraud

import (
	"fmt"
	"strings"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/money"
	"github.com/shopspring/decimal"
)

// Score assesses a quote. It is a pure function of the quote and the rules, so the same
// checkout always gets the same answer.
func (c Config) Score(q events.Quote) events.RiskAssessment {
	risk := c.Base
	var reasons []string
	add := func(weight decimal.Decimal, reason string) {
		risk = risk.Add(weight)
		reasons = append(reasons, reason)
	}
	if bill, ship := q.BillingAddress.Country, q.ShippingAddress.Country; bill != ship {
		add(c.CountryMismatch, fmt.Sprintf("billing country %s differs from shipping country %s", bill, ship))
	}
	if limit, ok := c.HighValueThresholds[q.Currency]; ok && q.Total.GreaterThanOrEqual(limit) {
		add(c.HighValue, fmt.Sprintf("total %s is at or over the high-value threshold %s",
			money.Format(q.Total, q.Currency), money.Format(limit, q.Currency)))
	}
	if domain, ok := listedDomain(q.CustomerEmail, c.BlockedDomains); ok {
		add(c.BlockedDomain, fmt.Sprintf("email domain %s is blocklisted", domain))
	}
	if domain, ok := listedDomain(q.CustomerEmail, c.ReviewDomains); ok {
		add(c.ReviewDomain, fmt.Sprintf("email domain %s is on the review list", domain))
	}
	return events.RiskAssessment{Risk: decimal.Min(risk, decimal.NewFromInt(1)), Reasons: reasons}
}

// Rejects reports whether an assessment fails the step.
func (c Config) Rejects(a events.RiskAssessment) bool {
	return a.Risk.GreaterThanOrEqual(c.RejectAt)
}

// Reviews reports whether an assessment is held for an operator: at or over ReviewAt (when
// review is on) and under RejectAt.
func (c Config) Reviews(a events.RiskAssessment) bool {
	return !c.ReviewAt.IsZero() && a.Risk.GreaterThanOrEqual(c.ReviewAt) && !c.Rejects(a)
}

// listedDomain returns the email's domain when it, or a domain it is under, is in domains.
func listedDomain(email string, domains []string) (string, bool) {
	at := strings.LastIndexByte(email, '@')
	if at < 0 {
		return "", false
	}
	domain := strings.ToLower(strings.TrimSuffix(email[at+1:], "."))
	for _, d := range domains {
		if domain == d || strings.HasSuffix(domain, "."+d) {
			return domain, true
		}
	}
	return "", false
}
