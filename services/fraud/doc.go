// Package fraud runs the check_fraud step: a deterministic, rule-based risk score of a
// validated quote, stored per checkout.
//
// Consumes: checkout.cart.validated (events.Quote).
// Emits: checkout.fraud.cleared (events.RiskAssessment) when the risk is under
// Config.RejectAt, checkout.fraud.failed (events.StepFailure, code fraud_rejected) otherwise.
package fraud
