package fraud

import (
	"strings"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/jetcheckout/jetcheckout/internal/steptest"
	"github.com/shopspring/decimal"
)

func velocityRule(name, by, count string, limit int) VelocityRule {
	return VelocityRule{Name: name, By: by, Count: count, Window: Duration{Duration: 10 * time.Minute}, Limit: limit, Weight: dec("0.8")}
}

// velocityConfig: more than 2 checkouts by a customer in 10 minutes is rejected, as is one
// after more than 1 declined payment in an hour; more than 4 by one email in an hour is
// reviewed.
func velocityConfig() Config {
	cfg := DefaultConfig()
	burst := velocityRule("customer_burst", ByCustomer, CountAttempts, 2)
	testing := velocityRule("card_testing", ByCustomer, CountDeclines, 1)
	testing.Window.Duration = time.Hour
	email := velocityRule("email_watch", ByEmail, CountAttempts, 4)
	email.Window.Duration, email.Weight = time.Hour, dec("0.5")
	cfg.Velocity = []VelocityRule{burst, testing, email}
	return cfg
}

// at is a checkout event of customer at minute m after t0.
func at(t0 time.Time, m int, e events.Envelope) events.Envelope {
	e.Time = t0.Add(time.Duration(m) * time.Minute)
	return e
}

func customerQuote(customer, email string) events.Quote {
	q := testQuote()
	q.CustomerID, q.CustomerEmail = customer, email
	return q
}

func declined(id, code string) events.Envelope {
	return events.Must(id, events.Failed, events.CheckoutFailed{Step: events.StepProcessPayment, Code: code, Message: "the card was declined"})
}

// ruleOf finds a rule's result in an assessment.
func ruleOf(t *testing.T, a *events.RiskAssessment, name string) events.RuleResult {
	t.Helper()
	if a == nil {
		t.Fatalf("no assessment carried")
	}
	for _, r := range a.Rules {
		if r.Rule == name {
			return r
		}
	}
	t.Fatalf("rule %s not in the assessment: %+v", name, a.Rules)
	return events.RuleResult{}
}

func wantRule(t *testing.T, a *events.RiskAssessment, name, outcome, contribution, detail string) {
	t.Helper()
	r := ruleOf(t, a, name)
	if r.Outcome != outcome || !r.Contribution.Equal(decimal.RequireFromString(contribution)) || !strings.Contains(r.Detail, detail) {
		t.Errorf("rule %s = %+v, want outcome %s, contribution %s, detail with %q", name, r, outcome, contribution, detail)
	}
}

// Velocity rules judge a checkout by the customer's others: a burst of checkouts is
// rejected, the window forgets them, declined payments count against the next checkout
// (card testing), another customer is not touched, and a decline by another code than a
// card's is not one. Every outcome carries every rule's part. A lost view is rebuilt equal
// to the live one from the outcomes, and judges the next checkout as the live one would.
func TestVelocityRulesJudgeByOtherCheckouts(t *testing.T) {
	h := startWith(t, velocityConfig())
	t0 := time.Now().UTC() // later events are in the future: the runner fails a trigger older than its deadline
	ada := customerQuote("cus_v", "ada@example.com")

	for i, id := range []string{"co_v1", "co_v2"} {
		h.Env.Publish(t, at(t0, i, events.Must(id, events.CartValidated, ada)))
		var got events.RiskAssessment
		h.Expect(t, id, events.FraudCleared, &got, events.FraudFailed)
		wantRule(t, &got, "customer_burst", events.RuleClear, "0", "checkouts for this customer in the last 10m0s (limit 2)")
	}
	h.Env.Publish(t, at(t0, 2, events.Must("co_v3", events.CartValidated, ada)))
	h.Env.Publish(t, at(t0, 2, events.Must("co_other", events.CartValidated, customerQuote("cus_w", "wes@example.com"))))
	var f events.StepFailure
	h.Expect(t, "co_v3", events.FraudFailed, &f, events.FraudCleared)
	if f.Code != events.CodeFraudRejected || !strings.Contains(f.Message, "3 checkouts for this customer in the last 10m0s (limit 2)") {
		t.Errorf("the third checkout in 10 minutes: %+v", f)
	}
	wantRule(t, f.Assessment, "customer_burst", events.RuleReject, "0.8", "3 checkouts")
	wantRule(t, f.Assessment, "card_testing", events.RuleClear, "0", "0 declined payments")
	wantRule(t, f.Assessment, "high_value", events.RuleClear, "0", "")
	h.Expect(t, "co_other", events.FraudCleared, nil, events.FraudFailed)

	// 13 minutes in, the first three are out of the burst's window.
	h.Env.Publish(t, at(t0, 13, events.Must("co_v4", events.CartValidated, ada)))
	h.Expect(t, "co_v4", events.FraudCleared, nil, events.FraudFailed)

	// Two declined payments, and a checkout failed for want of stock, which is not one.
	h.Env.Publish(t, at(t0, 14, declined("co_v4", events.CodeCardDeclined)))
	h.Env.Publish(t, at(t0, 14, declined("co_v2", events.CodeInsufficientFunds)))
	h.Env.Publish(t, at(t0, 14, declined("co_v1", events.CodeInsufficientStock)))
	h.Idle(t)
	h.Env.Publish(t, at(t0, 15, events.Must("co_v5", events.CartValidated, ada)))
	h.Expect(t, "co_v5", events.FraudFailed, &f, events.FraudCleared)
	wantRule(t, f.Assessment, "card_testing", events.RuleReject, "0.8", "2 declined payments for this customer in the last 1h0m0s (limit 1)")
	wantRule(t, f.Assessment, "customer_burst", events.RuleClear, "0", "2 checkouts")
	wantRule(t, f.Assessment, "email_watch", events.RuleReview, "0.5", "5 checkouts for this email address in the last 1h0m0s (limit 4)")
	if !f.Assessment.Risk.Equal(dec("1")) {
		t.Errorf("risk %s, want 1 (capped)", f.Assessment.Risk)
	}
	stored, _, err := h.svc.Assessment("co_v5")
	if err != nil || !stored.Rejected || len(stored.Rules) != len(f.Assessment.Rules) {
		t.Fatalf("stored assessment %+v (%v), want the rejection with its rules", stored, err)
	}

	h.Idle(t)
	live := steptest.DumpDB(t, h.DB)
	h.svc = steptest.LoseView(t, h.Harness, h.build)
	natstest.Eventually(t, steptest.Timeout, func() bool { return strings.Contains(h.Logs(), "view rebuilt from the stream") },
		"the view was not rebuilt")
	steptest.SameView(t, live, steptest.DumpDB(t, h.DB))

	h.Env.Publish(t, at(t0, 16, events.Must("co_v6", events.CartValidated, ada)))
	h.Expect(t, "co_v6", events.FraudFailed, &f, events.FraudCleared)
	wantRule(t, f.Assessment, "card_testing", events.RuleReject, "0.8", "2 declined payments")
}

// A writer held at a version before the whole assessment applies no velocity rule: the
// outcome could not carry the counts it was judged by.
func TestNoVelocityWhileHeldBeforeIt(t *testing.T) {
	if err := events.HoldWriteVersion(events.VelocitySince - 1); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = events.HoldWriteVersion(0) })
	h := startWith(t, velocityConfig())
	t0 := time.Now().UTC() // later events are in the future: the runner fails a trigger older than its deadline
	for i, id := range []string{"co_h1", "co_h2", "co_h3"} {
		h.Env.Publish(t, at(t0, i, events.Must(id, events.CartValidated, customerQuote("cus_h", "h@example.com"))))
		var got events.RiskAssessment
		h.Expect(t, id, events.FraudCleared, &got, events.FraudFailed)
		if len(got.Rules) != 0 {
			t.Errorf("%s: rules %+v at version %d", id, got.Rules, events.VelocitySince-1)
		}
	}
}

func TestCountryMismatchFromAnAmount(t *testing.T) {
	cfg := DefaultConfig()
	cfg.CountryMismatchFrom = map[string]decimal.Decimal{"USD": dec("100")}
	q := testQuote()
	q.BillingAddress.Country = "DE"
	if got := cfg.Score(q, nil); !got.Risk.Equal(dec("0.02")) {
		t.Errorf("a $19.98 cart billed abroad: risk %s, want 0.02", got.Risk)
	}
	q.Total = dec("100")
	got := cfg.Score(q, nil)
	if !got.Risk.Equal(dec("0.32")) || len(got.Reasons) != 1 || !strings.Contains(got.Reasons[0], "on a total of $100.00 or more") {
		t.Errorf("a $100 cart billed abroad: %+v", got)
	}
	q.Currency, q.Total = "EUR", dec("5")
	if got := cfg.Score(q, nil); !got.Risk.Equal(dec("0.32")) {
		t.Errorf("a currency without an amount counts at any total: risk %s", got.Risk)
	}
}

func TestLoadConfigNamesTheBadRule(t *testing.T) {
	good := `{"reject_at": "0.8", "high_value_thresholds": {"USD": "500"},
		"velocity": [{"name": "card_testing", "by": "customer", "count": "declines", "window": "1h", "limit": 2, "weight": "0.8"}]}`
	cfg, err := LoadConfig(strings.NewReader(good))
	if err != nil {
		t.Fatal(err)
	}
	if !cfg.RejectAt.Equal(dec("0.8")) || len(cfg.HighValueThresholds) != 1 || cfg.Velocity[0].Window.Duration != time.Hour ||
		!cfg.ReviewAt.Equal(DefaultConfig().ReviewAt) {
		t.Errorf("loaded %+v: the file's fields replace the defaults (a map whole), the others stay", cfg)
	}
	for _, tt := range []struct{ file, want string }{
		{`{"velocity": [{"name": "burst", "by": "ip", "count": "attempts", "window": "1h", "limit": 2, "weight": "0.8"}]}`, "velocity rule burst: by must be"},
		{`{"velocity": [{"name": "burst", "by": "card", "count": "attempts", "window": "soon", "limit": 2, "weight": "0.8"}]}`, "soon"},
		{`{"velocity": [{"name": "burst", "by": "card", "count": "attempts", "window": "1h", "limit": 2, "weight": "2"}]}`, "velocity rule burst: the weight"},
		{`{"reject_at": "0.8", "surprise": true}`, "surprise"},
		{`{"country_mismatch_from": {"XXX": "100"}}`, "country_mismatch_from: unsupported currency \"XXX\""},
	} {
		if _, err := LoadConfig(strings.NewReader(tt.file)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want one naming %q", tt.file, err, tt.want)
		}
	}
}
