// Package fraud runs the check_fraud step: a deterministic, rule-based risk score of a
// validated quote, stored per checkout. A risk in the review band [Config.ReviewAt,
// Config.RejectAt) holds the checkout for an operator, who approves or denies it through
// the "fraud" micro service before the review's window (Config.ReviewWindow) closes; the
// checkout keeps its reservation meanwhile. Demo: an email at review.test is reviewed, one
// at fraud.test rejected.
//
// Consumes: checkout.cart.validated (events.Quote); checkout.fraud.review_decided
// (events.ReviewDecision, published by the fraud.review endpoint); checkout.failed
// (events.CheckoutFailed: a review still pending is closed, nobody needs its decision now).
// Emits: checkout.fraud.cleared (events.RiskAssessment) when the risk is under the review
// band, or an operator approved; checkout.fraud.review_pending (events.Waiting, until the
// window closes) when it is held for review; checkout.fraud.failed (events.StepFailure)
// with code fraud_rejected at or over RejectAt, fraud_review_denied when an operator denied.
// A decision after the window or after another decision emits nothing.
//
// Endpoints (Service.Serve): fraud.reviews lists the pending reviews, newest first;
// fraud.review takes {"checkout_id","decision":"approve"|"deny","reviewer","note"}.
package fraud
