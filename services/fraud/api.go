package fraud

import (
	"context"
	"fmt"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/microx"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
)

// Version of the fraud service's micro service.
const Version = "1.0.0"

// publishTimeout bounds the wait for the stream's ack of a decision.
const publishTimeout = 5 * time.Second

// ReviewRequest is the request of fraud.review: an operator's decision on a checkout.
type ReviewRequest struct {
	CheckoutID string `json:"checkout_id"`
	events.ReviewDecision
}

// ReviewReply is the reply of fraud.review: the decision is in the stream and will be
// applied.
type ReviewReply struct {
	CheckoutID string `json:"checkout_id"`
	Decision   string `json:"decision"`
	Accepted   bool   `json:"accepted"`
}

// Serve starts the "fraud" micro service for operators: fraud.reviews (empty request →
// []Review, the pending ones, newest first) and fraud.review (ReviewRequest → ReviewReply).
// A decision is published to js as checkout.fraud.review_decided and replied to once the
// stream has it. Error codes: "400" malformed, "404" no review for the checkout, "409"
// already decided or expired. Stop the returned service to stop serving.
func (s *Service) Serve(nc *nats.Conn, js jetstream.JetStream, keys *events.Keys) (micro.Service, error) {
	return microx.AddService(nc, s.log, micro.Config{
		Name:        events.ServiceFraud,
		Version:     Version,
		Description: "Fraud reviews: checkouts held for an operator to approve or deny.",
	},
		microx.Endpoint{Name: "reviews", Subject: events.FraudReviews, Handle: s.listReviews},
		microx.Endpoint{Name: "review", Subject: events.FraudReview, Handle: func(data []byte) (any, error) { return s.decide(js, keys, data) }},
	)
}

// listReviews answers fraud.reviews, which takes no parameters.
func (s *Service) listReviews(data []byte) (any, error) {
	if len(data) > 0 {
		if err := microx.Decode(events.FraudReviews, data, &struct{}{}); err != nil {
			return nil, err
		}
	}
	return s.PendingReviews()
}

// decide checks an operator's decision against the review and publishes it; the review
// changes when the runner applies the event (applyDecision), which checks again.
func (s *Service) decide(js jetstream.JetStream, keys *events.Keys, data []byte) (any, error) {
	var req ReviewRequest
	if err := microx.Decode(events.FraudReview, data, &req); err != nil {
		return nil, err
	}
	if !events.ValidCheckoutID(req.CheckoutID) {
		return nil, microx.BadRequest("checkout_id must be 1 to 64 letters, digits, '-' or '_', got %q", req.CheckoutID)
	}
	if err := req.ReviewDecision.Validate(); err != nil {
		return nil, microx.BadRequest("%s request: %v", events.FraudReview, err)
	}
	r, found, err := s.Review(req.CheckoutID)
	if err != nil {
		return nil, err
	}
	now := s.now().UTC()
	switch {
	case !found:
		return nil, microx.NotFound("checkout %s is not held for a fraud review", req.CheckoutID)
	case r.Status != ReviewPending:
		return nil, microx.Conflict("checkout %s was already %s by %s", req.CheckoutID, r.Status, r.Decision.Reviewer)
	case !r.Open(now):
		return nil, microx.Conflict("the review of checkout %s expired at %s: the checkout fails", req.CheckoutID, r.Until.Format(time.RFC3339))
	}

	e := events.Must(req.CheckoutID, events.FraudReviewDecided, req.ReviewDecision)
	e.CausationID, e.Time = events.ID(req.CheckoutID, events.FraudReviewPending), now
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	ack, err := microx.Publish(ctx, js, keys, events.ServiceFraud, e) // a second decision must be a duplicate: see decide
	if err != nil {
		return nil, fmt.Errorf("checkout %s: publish %s: %w", req.CheckoutID, e.Type, err)
	}
	if ack.Duplicate {
		// Another decision was published a moment ago and is not applied yet; it stands.
		return nil, microx.Conflict("a decision on checkout %s was already submitted", req.CheckoutID)
	}
	s.log.Info("fraud review decision submitted", "checkout_id", req.CheckoutID, "decision", req.Decision, "reviewer", req.Reviewer)
	return ReviewReply{CheckoutID: req.CheckoutID, Decision: req.Decision, Accepted: true}, nil
}
