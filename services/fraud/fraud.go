package fraud

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/store"
	"github.com/jetcheckout/jetcheckout/runner"
	"github.com/shopspring/decimal"
	bolt "go.etcd.io/bbolt"
)

var assessmentsBucket = []byte("assessments")

// Assessment is the stored outcome of check_fraud for one checkout.
type Assessment struct {
	CheckoutID string `json:"checkout_id"`
	events.RiskAssessment
	Rejected bool `json:"rejected"`
	// HeldForReview: the risk was in the review band; the checkout's Review decides.
	HeldForReview bool            `json:"held_for_review,omitempty"`
	RejectAt      decimal.Decimal `json:"reject_at"` // the limits it was judged against
	ReviewAt      decimal.Decimal `json:"review_at"`
	AssessedAt    time.Time       `json:"assessed_at"`
}

// Service runs check_fraud.
type Service struct {
	db  *bolt.DB
	log *slog.Logger
	cfg Config
	now func() time.Time
}

// New validates cfg and creates the service's bucket.
func New(db *bolt.DB, log *slog.Logger, cfg Config) (*Service, error) {
	if db == nil || log == nil {
		return nil, errors.New("fraud: db and log are required")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := store.EnsureBuckets(db, assessmentsBucket, reviewsBucket); err != nil {
		return nil, fmt.Errorf("fraud: %w", err)
	}
	return &Service{db: db, log: log, cfg: cfg, now: time.Now}, nil
}

// Routes binds check_fraud to its trigger, applies operators' review decisions, and closes
// the reviews of checkouts that failed meanwhile.
func (s *Service) Routes() []runner.Route {
	return []runner.Route{
		{Subject: events.CartValidated, Handle: s.checkFraud},
		{Subject: events.FraudReviewDecided, Handle: s.applyDecision},
		{Subject: events.Failed, Handle: s.closeReview},
	}
}

// checkFraud scores a checkout once. The runner drops copies of the same event; this guards
// the checkout's own record against another event for it (a forged or re-issued one), which
// gets the stored answer, even if the rules changed in between: for a checkout held for
// review, the review's answer so far.
func (s *Service) checkFraud(_ context.Context, tx *bolt.Tx, in events.Envelope) ([]events.Envelope, error) {
	var q events.Quote
	if err := in.DecodePayload(&q); err != nil {
		return nil, err
	}
	var a Assessment
	found, err := store.Get(tx.Bucket(assessmentsBucket), in.CheckoutID, &a)
	if err != nil {
		return nil, err
	}
	if !found {
		if a, err = s.assess(tx, in, q); err != nil {
			return nil, err
		}
	}
	switch {
	case a.Rejected:
		return []events.Envelope{events.Must(in.CheckoutID, events.FraudFailed, events.StepFailure{
			Step:    events.StepCheckFraud,
			Code:    events.CodeFraudRejected,
			Message: a.rejection(),
		})}, nil
	case a.HeldForReview:
		r, found, err := loadReview(tx, in.CheckoutID)
		if err != nil {
			return nil, err
		}
		if !found {
			return nil, runner.Permanent(fmt.Errorf("fraud: checkout %s is held for review but its review is missing", in.CheckoutID))
		}
		return []events.Envelope{r.outcome()}, nil
	}
	return []events.Envelope{events.Must(in.CheckoutID, events.FraudCleared, a.RiskAssessment)}, nil
}

// assess scores the quote and stores the assessment, and the review when the risk is in
// the review band.
func (s *Service) assess(tx *bolt.Tx, in events.Envelope, q events.Quote) (Assessment, error) {
	checkoutID, risk := in.CheckoutID, s.cfg.Score(q)
	now := runner.EventTime(in) // the review's window runs from when the cart was validated
	a := Assessment{CheckoutID: checkoutID, RiskAssessment: risk, Rejected: s.cfg.Rejects(risk), HeldForReview: s.cfg.Reviews(risk),
		RejectAt: s.cfg.RejectAt, ReviewAt: s.cfg.ReviewAt, AssessedAt: now}
	if err := store.Put(tx.Bucket(assessmentsBucket), checkoutID, a); err != nil {
		return a, err
	}
	if a.HeldForReview {
		if err := saveReview(tx, newReview(checkoutID, q, a, now.Add(s.cfg.ReviewWindow))); err != nil {
			return a, err
		}
	}
	s.log.Info("fraud assessed", "checkout_id", checkoutID, "risk", a.Risk, "rejected", a.Rejected,
		"held_for_review", a.HeldForReview, "reasons", a.Reasons)
	return a, nil
}

// rejection explains a rejected assessment to a person.
func (a Assessment) rejection() string {
	return fmt.Sprintf("declined by fraud screening (risk %s, limit %s): %s",
		a.Risk, a.RejectAt, strings.Join(a.Reasons, "; "))
}

// Assessment returns the stored assessment of a checkout; found is false when it has none.
func (s *Service) Assessment(checkoutID string) (a Assessment, found bool, err error) {
	found, err = store.View(s.db, assessmentsBucket, checkoutID, &a)
	return a, found, err
}
