package payments

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/money"
	"github.com/jetcheckout/jetcheckout/services/runner"
	"github.com/stripe/stripe-go/v76"
	bolt "go.etcd.io/bbolt"
)

// refundPayment refunds a checkout's captured payment in full, once. The coordinator
// needs the confirmation whether or not there was anything to refund.
func (s *Service) refundPayment(ctx context.Context, tx *bolt.Tx, in events.Envelope) ([]events.Envelope, error) {
	var comp events.Compensation
	log, rec, found, err := s.begin(tx, in, &comp)
	if err != nil {
		return nil, err
	}
	switch {
	case !found:
		// The compensation overtook the payment: make sure no payment follows it.
		rec = Record{CheckoutID: in.CheckoutID, Status: Voided, FailureCode: events.CodeCheckoutCancelled,
			FailureMessage: "The checkout was cancelled before its payment."}
		if err := saveRecord(tx, rec); err != nil {
			return nil, err
		}
		log.Info("nothing to refund: no payment was made, and none will be", "reason", comp.Reason)
	case rec.Status == Captured:
		if err := s.refund(ctx, &rec, comp); err != nil {
			return nil, err
		}
		if err := saveRecord(tx, rec); err != nil {
			return nil, err
		}
		log.Info("payment refunded", "payment_intent", rec.PaymentIntentID, "refund", rec.RefundID,
			"amount", rec.RefundedAmount, "currency", rec.Currency, "reason", comp.Reason)
	default:
		log.Info("nothing to refund", "status", rec.Status, "refund", rec.RefundID)
	}
	return []events.Envelope{rec.refund()}, nil
}

// refund refunds the whole captured amount and records it.
func (s *Service) refund(ctx context.Context, rec *Record, comp events.Compensation) error {
	params := &stripe.RefundParams{PaymentIntent: stripe.String(rec.PaymentIntentID)}
	params.Context = ctx
	params.AddMetadata("checkout_id", rec.CheckoutID)
	params.AddMetadata("compensation_reason", truncate(comp.Reason, 500))
	params.SetIdempotencyKey(idempotencyKey(rec.CheckoutID, "refund"))
	r, err := s.stripe.Refunds.New(params)
	var se *stripe.Error
	switch {
	case err == nil:
		return rec.refunded(r.ID, r.Amount)
	case isTransient(err):
		return fmt.Errorf("refund payment intent %s: %w", rec.PaymentIntentID, short(err))
	case errors.As(err, &se) && se.Code == stripe.ErrorCodeChargeAlreadyRefunded:
		return s.alreadyRefunded(ctx, rec)
	default:
		// Stripe will not refund a payment we captured: a person must look at it.
		return runner.Permanent(fmt.Errorf("refund payment intent %s: %w", rec.PaymentIntentID, short(err)))
	}
}

// alreadyRefunded records refunds made outside this service (say, from the Dashboard).
func (s *Service) alreadyRefunded(ctx context.Context, rec *Record) error {
	list := &stripe.RefundListParams{PaymentIntent: stripe.String(rec.PaymentIntentID)}
	list.Context = ctx
	var (
		newest string
		total  int64
	)
	it := s.stripe.Refunds.List(list)
	for it.Next() {
		if newest == "" {
			newest = it.Refund().ID
		}
		total += it.Refund().Amount
	}
	if err := it.Err(); err != nil {
		return fmt.Errorf("list refunds of %s: %w", rec.PaymentIntentID, short(err))
	}
	return rec.refunded(newest, total)
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
