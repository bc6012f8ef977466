package fraud

import (
	"context"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/runner"
	bolt "go.etcd.io/bbolt"
)

// replayCheck applies to a rebuilt view the answer check_fraud recorded for a validated cart
// (runner.Replayer): the checkout's attempt counted, its assessment as the outcome carries
// it, and its review. It does not score again: the velocity rules' counts depended on which
// checkouts the service had handled first.
func (s *Service) replayCheck(_ context.Context, tx *bolt.Tx, in events.Envelope, recorded []events.Envelope) error {
	if len(recorded) == 0 {
		return nil // acknowledged with no outcome: the checkout had been answered already
	}
	var q events.Quote
	if err := in.DecodePayload(&q); err != nil {
		return err
	}
	if _, found, err := s.assessmentIn(tx, in.CheckoutID); err != nil || found {
		return err
	}
	at, ids := runner.EventTime(in), identities(q)
	risk, until, known, err := s.recordedAssessment(q, recorded[0], at)
	if err != nil || !known {
		return err
	}
	if _, err := s.cfg.record(tx, CountAttempts, ids, in.CheckoutID, at); err != nil {
		return err
	}
	a := s.judged(in.CheckoutID, risk, recorded[0].Type == events.FraudFailed, recorded[0].Type == events.FraudReviewPending, at, ids)
	return s.save(tx, q, a, until)
}

// recordedAssessment is the assessment an outcome of check_fraud carries, and the end of
// its review's window; known is false for a failure the runner recorded (no assessment was
// stored). An outcome written before the velocity rules carries none: its assessment is
// scored again as its version's writer scored it (scoreAt).
func (s *Service) recordedAssessment(q events.Quote, outcome events.Envelope, at time.Time) (risk events.RiskAssessment, until time.Time, known bool, err error) {
	until = at.Add(s.cfg.ReviewWindow)
	var carried *events.RiskAssessment
	switch outcome.Type {
	case events.FraudCleared:
		err = outcome.DecodePayload(&risk)
		return risk, until, err == nil, err
	case events.FraudFailed:
		var f events.StepFailure
		if err = outcome.DecodePayload(&f); err != nil || f.Code != events.CodeFraudRejected {
			return risk, until, false, err
		}
		carried = f.Assessment
	case events.FraudReviewPending:
		var w events.Waiting
		if err = outcome.DecodePayload(&w); err != nil {
			return risk, until, false, err
		}
		carried, until = w.Assessment, w.Until
	default:
		return risk, until, false, nil
	}
	if carried != nil {
		return *carried, until, true, nil
	}
	return s.cfg.scoreAt(q, nil, outcome.SchemaVersion), until, true, nil
}
