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
	"github.com/jetcheckout/jetcheckout/services/runner"
	"github.com/shopspring/decimal"
	bolt "go.etcd.io/bbolt"
)

var assessmentsBucket = []byte("assessments")

// Assessment is the stored outcome of check_fraud for one checkout.
type Assessment struct {
	CheckoutID string `json:"checkout_id"`
	events.RiskAssessment
	Rejected   bool            `json:"rejected"`
	RejectAt   decimal.Decimal `json:"reject_at"` // the limit it was judged against
	AssessedAt time.Time       `json:"assessed_at"`
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
	if err := store.EnsureBuckets(db, assessmentsBucket); err != nil {
		return nil, fmt.Errorf("fraud: %w", err)
	}
	return &Service{db: db, log: log, cfg: cfg, now: time.Now}, nil
}

// Routes binds check_fraud to its trigger.
func (s *Service) Routes() []runner.Route {
	return []runner.Route{{Subject: events.CartValidated, Handle: s.checkFraud}}
}

// checkFraud scores a checkout once. The runner drops copies of the same event; this guards
// the checkout's own record against another event for it (a forged or re-issued one), which
// gets the stored answer, even if the rules changed in between.
func (s *Service) checkFraud(_ context.Context, tx *bolt.Tx, in events.Envelope) ([]events.Envelope, error) {
	var q events.Quote
	if err := in.DecodePayload(&q); err != nil {
		return nil, err
	}
	b := tx.Bucket(assessmentsBucket)
	var a Assessment
	found, err := store.Get(b, in.CheckoutID, &a)
	if err != nil {
		return nil, err
	}
	if !found {
		risk := s.cfg.Score(q)
		a = Assessment{CheckoutID: in.CheckoutID, RiskAssessment: risk, Rejected: s.cfg.Rejects(risk), RejectAt: s.cfg.RejectAt, AssessedAt: s.now().UTC()}
		if err := store.Put(b, in.CheckoutID, a); err != nil {
			return nil, err
		}
		s.log.Info("fraud assessed", "checkout_id", in.CheckoutID, "risk", a.Risk, "rejected", a.Rejected, "reasons", a.Reasons)
	}
	if a.Rejected {
		return []events.Envelope{events.Must(in.CheckoutID, events.FraudFailed, events.StepFailure{
			Step:    events.StepCheckFraud,
			Code:    events.CodeFraudRejected,
			Message: a.rejection(),
		})}, nil
	}
	return []events.Envelope{events.Must(in.CheckoutID, events.FraudCleared, a.RiskAssessment)}, nil
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
