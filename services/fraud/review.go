package fraud

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/store"
	"github.com/jetcheckout/jetcheckout/runner"
	"github.com/shopspring/decimal"
	bolt "go.etcd.io/bbolt"
)

var reviewsBucket = []byte("reviews")

// ReviewStatus is where a review stands.
type ReviewStatus string

const (
	// ReviewPending waits for an operator until the review's Until; after that it has
	// expired (the coordinator fails the checkout) and no decision is taken any more.
	ReviewPending  ReviewStatus = "pending"
	ReviewApproved ReviewStatus = "approved"
	ReviewDenied   ReviewStatus = "denied"
	// ReviewClosed: the checkout failed for another reason while it waited; there is
	// nothing left to decide.
	ReviewClosed ReviewStatus = "closed"
)

// Review is a checkout held for an operator: what they need to decide, and their decision.
type Review struct {
	CheckoutID      string          `json:"checkout_id"`
	Amount          decimal.Decimal `json:"amount"`
	Currency        string          `json:"currency"`
	CustomerID      string          `json:"customer_id"`
	CustomerEmail   string          `json:"customer_email"`
	BillingCountry  string          `json:"billing_country"`
	ShippingCountry string          `json:"shipping_country"`
	Risk            decimal.Decimal `json:"risk"`
	Reasons         []string        `json:"reasons"`
	// Rules are the assessment rule by rule (events.RiskAssessment.Rules).
	Rules       []events.RuleResult `json:"rules,omitempty"`
	RequestedAt time.Time           `json:"requested_at"`
	Until       time.Time           `json:"until"`
	Status      ReviewStatus        `json:"status"`
	// Decision and DecidedAt are set once an operator approved or denied in time.
	Decision  *events.ReviewDecision `json:"decision,omitempty"`
	DecidedAt time.Time              `json:"decided_at,omitzero"`
}

func newReview(checkoutID string, q events.Quote, a Assessment, until time.Time) Review {
	return Review{
		CheckoutID: checkoutID, Amount: q.Total, Currency: q.Currency, CustomerID: q.CustomerID, CustomerEmail: q.CustomerEmail,
		BillingCountry: q.BillingAddress.Country, ShippingCountry: q.ShippingAddress.Country,
		Risk: a.Risk, Reasons: a.Reasons, Rules: a.Rules, RequestedAt: a.AssessedAt, Until: until, Status: ReviewPending,
	}
}

// assessment is the review's assessment, as its outcomes carry it.
func (r Review) assessment() *events.RiskAssessment {
	return &events.RiskAssessment{Risk: r.Risk, Reasons: r.Reasons, Rules: r.Rules}
}

// Open reports whether an operator can still decide the review at now.
func (r Review) Open(now time.Time) bool {
	return r.Status == ReviewPending && !now.After(r.Until)
}

// outcome is the event that reports the review as it stands: waiting, cleared or failed.
// It is the same event every time, so a re-issued trigger gets the same answer.
func (r Review) outcome() events.Envelope {
	summary := fmt.Sprintf("risk %s: %s", r.Risk, strings.Join(r.Reasons, "; "))
	switch r.Status {
	case ReviewApproved:
		approval := "approved in a manual review by " + r.Decision.Reviewer
		if r.Decision.Note != "" {
			approval += ": " + r.Decision.Note
		}
		return events.Must(r.CheckoutID, events.FraudCleared,
			events.RiskAssessment{Risk: r.Risk, Reasons: append(slices.Clone(r.Reasons), approval), Rules: r.Rules})
	case ReviewDenied:
		return events.Must(r.CheckoutID, events.FraudFailed, events.StepFailure{
			Step:       events.StepCheckFraud,
			Code:       events.CodeFraudReviewDenied,
			Message:    "declined after a manual fraud review (" + summary + ")",
			Assessment: r.assessment(),
		})
	}
	return events.Must(r.CheckoutID, events.FraudReviewPending, events.Waiting{
		Reason:     "held for a manual fraud review (" + summary + "); an operator must approve or deny it",
		Until:      r.Until,
		Assessment: r.assessment(),
	})
}

// applyDecision applies an operator's decision to a pending review. A decision that comes
// too late, or after another one, changes nothing: the checkout's deadline has failed the
// step (or will), or the first decision stands.
func (s *Service) applyDecision(_ context.Context, tx *bolt.Tx, in events.Envelope) ([]events.Envelope, error) {
	var d events.ReviewDecision
	if err := in.DecodePayload(&d); err != nil {
		return nil, err
	}
	r, found, err := loadReview(tx, in.CheckoutID)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, runner.Permanent(fmt.Errorf("checkout %s is not held for a fraud review", in.CheckoutID))
	}
	log := s.log.With("checkout_id", in.CheckoutID, "event_id", in.ID, "decision", d.Decision, "reviewer", d.Reviewer)
	at := decidedAt(in, s.now().UTC())
	switch {
	case r.Status != ReviewPending:
		log.Warn("review decision ignored: the review was already decided", "status", r.Status, "decided_by", r.Decision.Reviewer)
		return nil, nil
	case !r.Open(at):
		log.Warn("review decision ignored: it came after the review window closed", "until", r.Until, "decided_at", at)
		return nil, nil
	}
	r.Decision, r.DecidedAt = &d, at
	r.Status = ReviewDenied
	if d.Decision == events.ReviewApprove {
		r.Status = ReviewApproved
	}
	if err := saveReview(tx, r); err != nil {
		return nil, err
	}
	log.Info("fraud review decided", "status", r.Status, "note", d.Note)
	return []events.Envelope{r.outcome()}, nil
}

// decidedAt is when the operator decided: the time the fraud.review endpoint stamped on
// the event, which checked the window then. A decision taken in time still counts when its
// event is handled a little later; the coordinator's grace after Until covers that.
func decidedAt(in events.Envelope, now time.Time) time.Time {
	if in.Time.IsZero() || in.Time.After(now) {
		return now
	}
	return in.Time.UTC()
}

// checkoutFailed counts a declined payment against the checkout's customer, email, card and
// address, and closes its pending review.
func (s *Service) checkoutFailed(_ context.Context, tx *bolt.Tx, in events.Envelope) ([]events.Envelope, error) {
	var f events.CheckoutFailed
	if err := in.DecodePayload(&f); err != nil {
		return nil, err
	}
	declined, err := s.countDecline(tx, in, f)
	if err != nil {
		return nil, err
	}
	closed, err := s.closeReview(tx, in, f)
	if err != nil || declined || closed {
		return nil, err
	}
	return nil, runner.Unchanged // most failed checkouts were never held for review, nor declined
}

// countDecline counts the payment of a checkout that failed declined, when a rule counts
// declines.
func (s *Service) countDecline(tx *bolt.Tx, in events.Envelope, f events.CheckoutFailed) (bool, error) {
	if f.Step != events.StepProcessPayment || !slices.Contains(declinedCodes, f.Code) {
		return false, nil
	}
	a, found, err := s.assessmentIn(tx, in.CheckoutID)
	if err != nil || !found {
		return false, err
	}
	return s.cfg.record(tx, CountDeclines, a.Identities, in.CheckoutID, runner.EventTime(in))
}

// closeReview closes a pending review when its checkout failed for another reason (no
// stock, say): it leaves the operators' queue and can no longer be decided.
func (s *Service) closeReview(tx *bolt.Tx, in events.Envelope, f events.CheckoutFailed) (bool, error) {
	r, found, err := loadReview(tx, in.CheckoutID)
	if err != nil || !found || r.Status != ReviewPending {
		return false, err
	}
	r.Status = ReviewClosed
	s.log.Info("fraud review closed: the checkout failed", "checkout_id", in.CheckoutID, "code", f.Code)
	return true, saveReview(tx, r)
}

func loadReview(tx *bolt.Tx, checkoutID string) (r Review, found bool, err error) {
	found, err = store.Get(tx.Bucket(reviewsBucket), checkoutID, &r)
	return r, found, err
}

func saveReview(tx *bolt.Tx, r Review) error {
	return store.Put(tx.Bucket(reviewsBucket), r.CheckoutID, r)
}

// Review returns the review of a checkout; found is false when it was never held for one.
func (s *Service) Review(checkoutID string) (r Review, found bool, err error) {
	found, err = store.View(s.db, reviewsBucket, checkoutID, &r)
	return r, found, err
}

// PendingReviews lists the reviews an operator can still decide, newest first.
func (s *Service) PendingReviews() ([]Review, error) {
	all, err := store.List[Review](s.db, reviewsBucket)
	if err != nil {
		return nil, err
	}
	now := s.now()
	open := slices.DeleteFunc(all, func(r Review) bool { return !r.Open(now) })
	slices.SortFunc(open, func(a, b Review) int {
		return cmp.Or(b.RequestedAt.Compare(a.RequestedAt), cmp.Compare(a.CheckoutID, b.CheckoutID))
	})
	return open, nil
}
