package payments

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/money"
	"github.com/jetcheckout/jetcheckout/runner"
	"github.com/stripe/stripe-go/v76"
)

// refundPayment gives back whatever the checkout's payment took, once. The coordinator
// asks for it when the payment succeeded, and also when the step gave up not knowing
// whether Stripe charged (a timeout after the charge, retries run out, a deadline): then
// there is no record of a capture, and Stripe is searched for the checkout's intents. It
// needs the confirmation whether or not there was anything to refund.
func (s *Service) refundPayment(ctx context.Context, in events.Envelope) (runner.Handler, error) {
	var comp events.Compensation
	log, seen, found, err := s.begin(in, &comp)
	if err != nil {
		return nil, err
	}
	rec := seen
	switch {
	case found && rec.Status == Captured:
		refund, err := s.refundAll(ctx, rec.CheckoutID, rec.PaymentIntentID, comp.Reason)
		if err != nil {
			return nil, err
		}
		if err := rec.refunded(refund.ID, refund.Amount); err != nil {
			return nil, err
		}
		log.Info("payment refunded", "payment_intent", rec.PaymentIntentID, "refund", rec.RefundID,
			"amount", rec.RefundedAmount, "currency", rec.Currency, "reason", comp.Reason)
	case found && rec.Status == AwaitingAction:
		// The checkout is undone while the customer authenticates: close that intent.
		pi, err := s.getIntent(ctx, rec.PaymentIntentID)
		if err != nil {
			return nil, fmt.Errorf("read payment intent %s: %w", rec.PaymentIntentID, short(err))
		}
		if err := s.sweep(ctx, log, &rec, []*stripe.PaymentIntent{pi}, comp.Reason); err != nil {
			return nil, err
		}
	case !found:
		// No payment recorded: none was made, or the step gave up not knowing. Stripe
		// knows; its search finds the checkout's intents by their metadata.
		intents, err := s.checkoutIntents(ctx, in.CheckoutID)
		if err != nil {
			return nil, fmt.Errorf("search the checkout's payment intents: %w", short(err))
		}
		if len(intents) == 0 && !in.Time.IsZero() && time.Since(in.Time) < s.cfg.SearchLag {
			// Not believed yet: a charge made moments ago may not be searchable. The runner
			// asks again with backoff until the index has caught up.
			return nil, fmt.Errorf("no payment intent found for %s yet; looking again until %s after the refund was asked",
				in.CheckoutID, s.cfg.SearchLag)
		}
		rec = Record{CheckoutID: in.CheckoutID}
		if err := s.sweep(ctx, log, &rec, intents, comp.Reason); err != nil {
			return nil, err
		}
	default:
		log.Info("nothing to refund", "status", rec.Status, "refund", rec.RefundID)
		return report(rec.refund()), nil
	}
	return commitRecord(seen, found, rec, rec.refund()), nil
}

// sweep refunds every intent that succeeded and cancels every one that could still be
// paid, then leaves the record Voided: a payment requested later is refused.
func (s *Service) sweep(ctx context.Context, log *slog.Logger, rec *Record, intents []*stripe.PaymentIntent, reason string) error {
	var swept []SweptIntent
	currency := rec.Currency
	for _, pi := range intents {
		if c := strings.ToUpper(string(pi.Currency)); currency == "" {
			currency = c
		} else if c != currency {
			// One checkout is charged in one currency: a person must look at this one.
			return runner.Permanent(fmt.Errorf("payment intent %s is in %s, not %s", pi.ID, c, currency))
		}
		found := string(pi.Status)
		pi, err := s.closeIntent(ctx, rec.CheckoutID, pi)
		if err != nil {
			return err
		}
		done := SweptIntent{PaymentIntentID: pi.ID, Found: found, Action: Untouched}
		switch {
		case pi.Status == stripe.PaymentIntentStatusSucceeded:
			refund, err := s.refundAll(ctx, rec.CheckoutID, pi.ID, reason)
			if err != nil {
				return err
			}
			done.Action, done.RefundID = Refunded, refund.ID
			if done.Refunded, err = money.FromMinor(refund.Amount, currency); err != nil {
				return runner.Permanent(err)
			}
			if done.Received, err = money.FromMinor(pi.AmountReceived, currency); err != nil {
				return runner.Permanent(err)
			}
		case stillWaiting(pi.Status):
			return fmt.Errorf("payment intent %s is %s and cannot be cancelled yet; will check again", pi.ID, pi.Status)
		case string(pi.Status) != found:
			done.Action = Canceled
		}
		log.Info("payment intent swept", "payment_intent", pi.ID, "found", found, "action", done.Action,
			"refund", done.RefundID, "refunded", done.Refunded, "reason", reason)
		swept = append(swept, done)
	}
	rec.voided(swept, currency)
	log.Info("payment voided", "intents", len(intents), "refunded", rec.RefundedAmount, "currency", currency, "reason", reason)
	return nil
}

// refundAll refunds what is left of a succeeded intent. A refund made meanwhile (from the
// Dashboard, say) counts: the answer then sums the intent's refunds.
func (s *Service) refundAll(ctx context.Context, checkoutID, intentID, reason string) (*stripe.Refund, error) {
	r, err := s.refundIntent(ctx, checkoutID, intentID, reason)
	var se *stripe.Error
	switch {
	case err == nil:
		return r, nil
	case isTransient(err):
		return nil, fmt.Errorf("refund payment intent %s: %w", intentID, short(err))
	case errors.As(err, &se) && se.Code == stripe.ErrorCodeChargeAlreadyRefunded:
		refunds, err := s.refunds(ctx, intentID)
		if err != nil {
			return nil, fmt.Errorf("list refunds of %s: %w", intentID, short(err))
		}
		sum := &stripe.Refund{}
		for _, r := range refunds {
			if sum.ID == "" {
				sum.ID = r.ID // the newest
			}
			sum.Amount += r.Amount
		}
		return sum, nil
	default:
		// Stripe will not refund a payment that was captured: a person must look at it.
		return nil, runner.Permanent(fmt.Errorf("refund payment intent %s: %w", intentID, short(err)))
	}
}

func (r *Record) refunded(refundID string, minor int64) error {
	amount, err := money.FromMinor(minor, r.Currency)
	if err != nil {
		return runner.Permanent(err)
	}
	r.Status, r.RefundID, r.RefundedAmount = Refunded, refundID, amount
	return nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "")
}
