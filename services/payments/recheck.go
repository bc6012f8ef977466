package payments

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/runner"
	"github.com/stripe/stripe-go/v76"
)

// Messages for a 3-D Secure authentication that did not end in a payment.
const (
	authFailedMessage    = "Your bank could not confirm this payment with 3-D Secure, so nothing was charged. Please try again or use another card."
	authAbandonedMessage = "The payment was not confirmed with your bank in time, so it was cancelled and nothing was charged."
)

// recheckPayment looks again at a PaymentIntent that waits for the customer's 3-D Secure
// authentication. It reports the payment captured once the customer completed it, failed
// when the bank refused it, and cancels it when the customer did not finish by AuthUntil;
// until then it schedules the next look.
func (s *Service) recheckPayment(ctx context.Context, in events.Envelope) (runner.Handler, error) {
	var check events.Recheck
	log, seen, found, err := s.begin(in, &check)
	if err != nil {
		return nil, err
	}
	if !found || seen.Status != AwaitingAction || seen.PaymentIntentID != check.PaymentIntentID {
		// Settled meanwhile, or voided by the compensation: nothing waits any more.
		log.Info("recheck of a payment that no longer waits: nothing to do", "status", seen.Status, "payment_intent", check.PaymentIntentID)
		return report(), nil
	}
	rec := seen
	pi, err := s.getIntent(ctx, rec.PaymentIntentID)
	if err != nil {
		return nil, fmt.Errorf("read payment intent %s: %w", rec.PaymentIntentID, short(err))
	}
	now := time.Now()
	if stillWaiting(pi.Status) && now.Before(rec.AuthUntil) {
		next := rec.recheck(s.nextRecheck(rec, now), check.Number)
		log.Debug("still waiting for the customer's authentication", "payment_intent", pi.ID, "intent_status", pi.Status, "until", rec.AuthUntil)
		return commitRecord(seen, found, rec, next), nil
	}
	timedOut := stillWaiting(pi.Status)
	// Out of time, or the authentication failed: make sure the intent cannot be paid later.
	if pi, err = s.closeIntent(ctx, rec.CheckoutID, pi); err != nil {
		return nil, err
	}
	switch {
	case pi.Status == stripe.PaymentIntentStatusSucceeded:
		rec.Status = Captured
		log.Info("payment captured after 3-D Secure", "payment_intent", pi.ID, "amount", rec.Amount, "currency", rec.Currency)
	case stillWaiting(pi.Status):
		return nil, fmt.Errorf("payment intent %s is %s and cannot be cancelled yet; will check again", pi.ID, pi.Status)
	case timedOut:
		rec.fail(events.CodeAuthenticationAbandoned, authAbandonedMessage)
		log.Info("3-D Secure not finished in time: payment cancelled", "payment_intent", pi.ID, "until", rec.AuthUntil)
	default:
		rec.fail(events.CodeAuthenticationFailed, authFailedMessage)
		log.Info("3-D Secure failed: payment cancelled", "payment_intent", pi.ID)
	}
	return commitRecord(seen, found, rec, rec.outcome()), nil
}

// nextRecheck is when to look at a waiting intent again: never after AuthUntil, so that
// the step answers by then.
func (s *Service) nextRecheck(rec Record, now time.Time) time.Time {
	if next := now.Add(s.cfg.RecheckEvery); next.Before(rec.AuthUntil) {
		return next
	}
	return rec.AuthUntil
}

// stillWaiting reports an intent the customer (or the bank) may yet complete.
func stillWaiting(status stripe.PaymentIntentStatus) bool {
	return slices.Contains([]stripe.PaymentIntentStatus{
		stripe.PaymentIntentStatusRequiresAction, stripe.PaymentIntentStatusRequiresConfirmation,
		stripe.PaymentIntentStatusRequiresCapture, stripe.PaymentIntentStatusProcessing,
	}, status)
}

// closeIntent cancels an intent that could still be paid and returns it as it is then:
// canceled, or whatever it had moved on to (succeeded, processing) when Stripe refused.
func (s *Service) closeIntent(ctx context.Context, checkoutID string, pi *stripe.PaymentIntent) (*stripe.PaymentIntent, error) {
	switch pi.Status {
	case stripe.PaymentIntentStatusRequiresPaymentMethod, stripe.PaymentIntentStatusRequiresConfirmation,
		stripe.PaymentIntentStatusRequiresAction, stripe.PaymentIntentStatusRequiresCapture:
	default:
		return pi, nil
	}
	canceled, err := s.cancelIntent(ctx, checkoutID, pi.ID)
	switch {
	case err == nil:
		return canceled, nil
	case isTransient(err):
		return nil, fmt.Errorf("cancel payment intent %s: %w", pi.ID, short(err))
	}
	current, err := s.getIntent(ctx, pi.ID)
	if err != nil {
		return nil, fmt.Errorf("read payment intent %s: %w", pi.ID, short(err))
	}
	return current, nil
}
