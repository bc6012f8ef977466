package fraud

import (
	"fmt"
	"slices"
	"strings"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/money"
	"github.com/shopspring/decimal"
)

// staticRules are the rules that judge a checkout alone, by the names its assessment lists
// them under, in the order they apply; the velocity rules follow.
var staticRules = []string{"country_mismatch", "high_value", "blocked_domain", "review_domain"}

// Score assesses a quote. count says how many of what a velocity rule counts were seen
// within its window (velocity.go); nil leaves the velocity rules out. Given the counts it is
// a pure function of the quote and the rules.
func (c Config) Score(q events.Quote, count func(VelocityRule) int) events.RiskAssessment {
	a := events.RiskAssessment{Risk: c.Base}
	judge := func(rule string, weight decimal.Decimal, fired bool, detail string) {
		if weight.IsZero() {
			return // switched off
		}
		r := events.RuleResult{Rule: rule, Outcome: events.RuleClear, Contribution: decimal.Zero, Detail: detail}
		if fired {
			r.Contribution = weight
			r.Outcome = c.decides(c.Base.Add(weight))
			a.Risk = a.Risk.Add(weight)
			a.Reasons = append(a.Reasons, detail)
		} else if slices.Contains(staticRules, rule) {
			r.Detail = "" // a velocity rule says what it counted; the others have nothing to say
		}
		a.Rules = append(a.Rules, r)
	}
	bill, ship := q.BillingAddress.Country, q.ShippingAddress.Country
	mismatch := fmt.Sprintf("billing country %s differs from shipping country %s", bill, ship)
	if from, ok := c.CountryMismatchFrom[q.Currency]; ok {
		mismatch += fmt.Sprintf(" on a total of %s or more", money.Format(from, q.Currency))
	}
	judge(staticRules[0], c.CountryMismatch, bill != ship && c.mismatchCounts(q), mismatch)
	limit, ok := c.HighValueThresholds[q.Currency]
	judge(staticRules[1], c.HighValue, ok && q.Total.GreaterThanOrEqual(limit),
		fmt.Sprintf("total %s is at or over the high-value threshold %s", money.Format(q.Total, q.Currency), money.Format(limit, q.Currency)))
	domain, blocked := listedDomain(q.CustomerEmail, c.BlockedDomains)
	judge(staticRules[2], c.BlockedDomain, blocked, fmt.Sprintf("email domain %s is blocklisted", domain))
	domain, listed := listedDomain(q.CustomerEmail, c.ReviewDomains)
	judge(staticRules[3], c.ReviewDomain, listed, fmt.Sprintf("email domain %s is on the review list", domain))
	if count != nil {
		for _, r := range c.Velocity {
			n := count(r)
			judge(r.Name, r.Weight, n > r.Limit, r.describe(n))
		}
	}
	a.Risk = decimal.Min(a.Risk, decimal.NewFromInt(1))
	return a
}

// scoreAt is the assessment a writer at schema version v publishes: before VelocitySince
// its outcome cannot carry the rules, so none that counts other checkouts applies, and the
// rules are left out, as a rebuild will find them.
func (c Config) scoreAt(q events.Quote, count func(VelocityRule) int, v int) events.RiskAssessment {
	if v >= events.VelocitySince {
		return c.Score(q, count)
	}
	a := c.Score(q, nil)
	a.Rules = nil
	return a
}

// mismatchCounts reports whether the quote's total is one at which differing countries count.
func (c Config) mismatchCounts(q events.Quote) bool {
	from, ok := c.CountryMismatchFrom[q.Currency]
	return !ok || q.Total.GreaterThanOrEqual(from)
}

// decides is the outcome a risk alone leads to.
func (c Config) decides(risk decimal.Decimal) string {
	a := events.RiskAssessment{Risk: risk}
	switch {
	case c.Rejects(a):
		return events.RuleReject
	case c.Reviews(a):
		return events.RuleReview
	}
	return events.RuleClear
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
