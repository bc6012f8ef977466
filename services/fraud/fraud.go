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
	// Identities are what the checkout is counted by (velocity.go), for its declines.
	Identities map[string]string `json:"identities,omitempty"`
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
	if err := store.EnsureBuckets(db, assessmentsBucket, reviewsBucket, velocityBucket); err != nil {
		return nil, fmt.Errorf("fraud: %w", err)
	}
	return &Service{db: db, log: log, cfg: cfg, now: time.Now}, nil
}

// Routes binds check_fraud to its trigger, applies operators' review decisions, and closes
// the reviews of checkouts that failed meanwhile.
func (s *Service) Routes() []runner.Route {
	return []runner.Route{
		{Subject: events.CartValidated, Handle: s.checkFraud,
			Outcomes: []events.Subject{events.FraudCleared, events.FraudFailed, events.FraudReviewPending}, Replay: s.replayCheck},
		{Subject: events.FraudReviewDecided, Handle: s.applyDecision},
		{Subject: events.Failed, Handle: s.checkoutFailed},
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
	a, found, err := s.assessmentIn(tx, in.CheckoutID)
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
			Step:       events.StepCheckFraud,
			Code:       events.CodeFraudRejected,
			Message:    a.rejection(),
			Assessment: &a.RiskAssessment,
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

// assess counts the checkout's attempt, scores the quote and stores the assessment, and the
// review when the risk is in the review band.
func (s *Service) assess(tx *bolt.Tx, in events.Envelope, q events.Quote) (Assessment, error) {
	at, ids := runner.EventTime(in), identities(q) // the review's window runs from when the cart was validated
	if _, err := s.cfg.record(tx, CountAttempts, ids, in.CheckoutID, at); err != nil {
		return Assessment{}, err
	}
	risk := s.cfg.scoreAt(q, func(r VelocityRule) int { return seen(tx, r, ids, at) }, events.WriteVersion())
	a := s.judged(in.CheckoutID, risk, s.cfg.Rejects(risk), s.cfg.Reviews(risk), at, ids)
	if err := s.save(tx, q, a, at.Add(s.cfg.ReviewWindow)); err != nil {
		return a, err
	}
	s.log.Info("fraud assessed", "checkout_id", a.CheckoutID, "risk", a.Risk, "rejected", a.Rejected,
		"held_for_review", a.HeldForReview, "reasons", a.Reasons)
	return a, nil
}

// judged is the assessment of a checkout judged at at against today's limits.
func (s *Service) judged(checkoutID string, risk events.RiskAssessment, rejected, held bool, at time.Time, ids map[string]string) Assessment {
	return Assessment{CheckoutID: checkoutID, RiskAssessment: risk, Rejected: rejected, HeldForReview: held,
		RejectAt: s.cfg.RejectAt, ReviewAt: s.cfg.ReviewAt, AssessedAt: at, Identities: ids}
}

// save stores a checkout's assessment, and its review, open until until, when it is held
// for one.
func (s *Service) save(tx *bolt.Tx, q events.Quote, a Assessment, until time.Time) error {
	if err := store.Put(tx.Bucket(assessmentsBucket), a.CheckoutID, a); err != nil {
		return err
	}
	if !a.HeldForReview {
		return nil
	}
	return saveReview(tx, newReview(a.CheckoutID, q, a, until))
}

// rejection explains a rejected assessment to a person.
func (a Assessment) rejection() string {
	return fmt.Sprintf("declined by fraud screening (risk %s, limit %s): %s",
		a.Risk, a.RejectAt, strings.Join(a.Reasons, "; "))
}

func (s *Service) assessmentIn(tx *bolt.Tx, checkoutID string) (a Assessment, found bool, err error) {
	found, err = store.Get(tx.Bucket(assessmentsBucket), checkoutID, &a)
	return a, found, err
}

// Assessment returns the stored assessment of a checkout; found is false when it has none.
func (s *Service) Assessment(checkoutID string) (a Assessment, found bool, err error) {
	found, err = store.View(s.db, assessmentsBucket, checkoutID, &a)
	return a, found, err
}
