package payments

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/microx"
	"github.com/jetcheckout/jetcheckout/internal/money"
	"github.com/jetcheckout/jetcheckout/runner"
	"github.com/stripe/stripe-go/v76"
	bolt "go.etcd.io/bbolt"
)

// begin decodes the event's payload into v and reads the checkout's record, with no
// transaction open: the calls to Stripe that follow hold no lock. The handler that records
// their outcome checks that the record is still the one read (commitRecord).
func (s *Service) begin(in events.Envelope, v any) (*slog.Logger, Record, bool, error) {
	if err := in.DecodePayload(v); err != nil {
		return nil, Record{}, false, err
	}
	rec, found, err := s.Payment(in.CheckoutID)
	return s.log.With("checkout_id", in.CheckoutID, "event_id", in.ID), rec, found, err
}

// processPayment charges the quote's total once per checkout.
func (s *Service) processPayment(ctx context.Context, in events.Envelope) (runner.Handler, error) {
	var quote events.Quote
	log, seen, found, err := s.begin(in, &quote)
	if err != nil {
		return nil, err
	}
	if found {
		// Another event for a checkout already paid, or waiting (copies of this one never
		// get here): one payment per checkout, never a second call to Stripe.
		log.Info("payment already under way or settled, reporting it again", "status", seen.Status, "payment_intent", seen.PaymentIntentID)
		return report(seen.outcome()), nil
	}
	if refused, err := s.unasked(ctx, log, in); refused != nil || err != nil {
		return report(refused...), err
	}
	rec := Record{CheckoutID: in.CheckoutID, Amount: quote.Total, Currency: quote.Currency, Quote: quote}
	if err := s.pay(ctx, log, &rec, quote); err != nil {
		return nil, err
	}
	outs := []events.Envelope{rec.outcome()}
	switch rec.Status {
	case Captured:
		log.Info("payment captured", "payment_intent", rec.PaymentIntentID, "amount", rec.Amount, "currency", rec.Currency)
	case AwaitingAction:
		// The wait and the first look at the intent are timed alike, the look due from the
		// wait's time: a rebuild gives the look again from the wait alone (firstLook).
		outs[0].Time = time.Now().UTC()
		outs = append(outs, s.firstLook(in, outs)...)
		rec.scheduled(0)
		// Not the page's URL: it carries the intent's client secret.
		log.Info("payment waits for the customer's 3-D Secure authentication", "payment_intent", rec.PaymentIntentID,
			"until", rec.AuthUntil, "redirect", rec.NextAction != "")
	default:
		log.Info("payment failed", "payment_intent", rec.PaymentIntentID, "code", rec.FailureCode, "reason", rec.FailureMessage)
	}
	return commitRecord(seen, found, rec, outs...), nil
}

// commitRecord is the handler that saves what a call to Stripe did (rec) and emits outs, if the
// checkout's record is still the one the call began from (seen, or none). Nothing else
// writes it while the call is made (a checkout's events are handled one at a time); were
// it changed, the event is tried again from the new record, with the same idempotency keys.
func commitRecord(seen Record, found bool, rec Record, outs ...events.Envelope) runner.Handler {
	return func(_ context.Context, tx *bolt.Tx, in events.Envelope) ([]events.Envelope, error) {
		now, stillFound, err := loadRecord(tx, rec.CheckoutID)
		if err != nil {
			return nil, err
		}
		if stillFound != found || found && !sameRecord(now, seen) {
			return nil, fmt.Errorf("the payment record of %s changed while Stripe was called; trying again", rec.CheckoutID)
		}
		return outs, saveRecord(tx, rec, in)
	}
}

// sameRecord reports whether a and b hold the same, both read from the store (a field that
// older versions stored and a Record no longer has is in neither).
func sameRecord(a, b Record) bool {
	x, errA := json.Marshal(a)
	y, errB := json.Marshal(b)
	return errA == nil && errB == nil && bytes.Equal(x, y)
}

// report is the handler that emits outs and saves nothing.
func report(outs ...events.Envelope) runner.Handler {
	return func(context.Context, *bolt.Tx, events.Envelope) ([]events.Envelope, error) { return outs, nil }
}

// askedAttempts is how many deliveries a payment request the coordinator says it has no
// payment running for is retried before it is refused. The coordinator reads its bucket's
// leader, which has every write it acknowledged; the retries cover a leader that has just
// changed.
const askedAttempts = 3

// askTimeout bounds the question to the coordinator. A request sent as the NATS server dies
// is never answered; without a bound of its own it would wait out the step's deadline and
// the payment would fail (seen in make chaos while nats-server was being killed).
const askTimeout = 5 * time.Second

// unasked returns the refusal of a payment the coordinator did not ask for, or nothing. No
// answer (the coordinator down, or slow) is an error: the request is retried, and nothing is
// charged until the coordinator says yes.
func (s *Service) unasked(ctx context.Context, log *slog.Logger, in events.Envelope) ([]events.Envelope, error) {
	if s.cfg.NC == nil {
		return nil, nil
	}
	askCtx, cancel := context.WithTimeout(ctx, askTimeout)
	defer cancel()
	var reply events.StepActiveReply
	err := microx.Request(askCtx, s.cfg.NC, events.CheckoutsStepActive,
		events.StepActiveRequest{CheckoutID: in.CheckoutID, Step: events.StepProcessPayment}, &reply)
	switch {
	case err != nil:
		return nil, fmt.Errorf("ask the coordinator about checkout %s: %w", in.CheckoutID, err)
	case reply.Active:
		return nil, nil
	case runner.Attempt(ctx) < askedAttempts:
		return nil, fmt.Errorf("checkout %s: the coordinator has no payment running yet", in.CheckoutID)
	}
	log.Warn("payment refused: the coordinator did not ask for it")
	return []events.Envelope{events.Must(in.CheckoutID, events.PaymentFailed, events.StepFailure{
		Step: events.StepProcessPayment, Code: events.CodeNotRequested,
		Message: "the coordinator has no payment running for this checkout: nothing was charged",
	})}, nil
}

// pay creates and confirms the PaymentIntent and records how it ended. Its error is
// transient (retry with the same key) or runner.Permanent.
func (s *Service) pay(ctx context.Context, log *slog.Logger, rec *Record, quote events.Quote) error {
	amount, err := money.ToMinor(quote.Total, quote.Currency)
	if err != nil {
		rec.fail(events.CodePaymentFailed, fmt.Sprintf("The total %s %s cannot be charged: %v.", quote.Total, quote.Currency, err))
		return nil
	}
	pi, err := s.createIntent(ctx, rec.CheckoutID, quote, amount)
	if err != nil {
		return refused(log, rec, err)
	}
	return s.settle(ctx, rec, pi)
}

// settle records a confirmed intent by its status.
func (s *Service) settle(ctx context.Context, rec *Record, pi *stripe.PaymentIntent) error {
	rec.PaymentIntentID = pi.ID
	switch pi.Status {
	case stripe.PaymentIntentStatusSucceeded:
		rec.Status = Captured
	case stripe.PaymentIntentStatusRequiresAction:
		// The customer must authenticate with their bank: wait for it, up to AuthWindow.
		var page string
		if na := pi.NextAction; na != nil && na.RedirectToURL != nil {
			page = na.RedirectToURL.URL
		}
		rec.awaitAction(pi.ID, page, time.Now().Add(s.cfg.AuthWindow).UTC())
	case stripe.PaymentIntentStatusRequiresPaymentMethod, stripe.PaymentIntentStatusRequiresConfirmation,
		stripe.PaymentIntentStatusCanceled:
		message := "The payment was not completed."
		if pi.LastPaymentError != nil && pi.LastPaymentError.Msg != "" {
			message = pi.LastPaymentError.Msg
		}
		rec.fail(events.CodePaymentFailed, message)
	default:
		// processing (or requires_capture, which we never ask for): the outcome is not
		// known yet. A retry replays this same answer, so read the intent as it is now.
		current, err := s.getIntent(ctx, pi.ID)
		if err != nil {
			return fmt.Errorf("read payment intent %s: %w", pi.ID, short(err))
		}
		if current.Status == pi.Status {
			return fmt.Errorf("payment intent %s is %s; will check again", pi.ID, pi.Status)
		}
		return s.settle(ctx, rec, current)
	}
	return nil
}

// refused sorts a failed Stripe request: a decline or a refusal fails the payment; a
// network error, timeout, 5xx, 429 or a rejected API key is transient.
func refused(log *slog.Logger, rec *Record, err error) error {
	var se *stripe.Error
	if !errors.As(err, &se) {
		return fmt.Errorf("create payment intent: %w", err)
	}
	if se.PaymentIntent != nil {
		rec.PaymentIntentID = se.PaymentIntent.ID
	}
	switch {
	case isTransient(err):
		if se.HTTPStatusCode == 401 || se.HTTPStatusCode == 403 {
			log.Error("Stripe refused the API key; payments wait until it is fixed", "status", se.HTTPStatusCode)
		}
		return fmt.Errorf("create payment intent: %w", short(err))
	case se.Type == stripe.ErrorTypeCard:
		rec.fail(declineCode(se), declineMessage(se))
	case se.Type == stripe.ErrorTypeIdempotency:
		// The same key with other parameters: the quote changed under the checkout, or the
		// code that builds the request did. Charging again could charge twice.
		return runner.Permanent(fmt.Errorf("stripe idempotency error: %s", se.Msg))
	default:
		rec.fail(events.CodePaymentFailed, se.Msg)
	}
	return nil
}

// isTransient reports a failure that a retry with the same idempotency key may cure.
func isTransient(err error) bool {
	var se *stripe.Error
	if !errors.As(err, &se) {
		return true // network error or timeout
	}
	switch code := se.HTTPStatusCode; {
	case code >= 500, code == 429, code == 409, code == 401, code == 403:
		return true
	}
	return se.Type == stripe.ErrorTypeAPI
}

// short shortens a Stripe error for logs (its Error() is the whole JSON object).
func short(err error) error {
	var se *stripe.Error
	if errors.As(err, &se) {
		return fmt.Errorf("stripe answered %d %s: %s", se.HTTPStatusCode, se.Type, se.Msg)
	}
	return err
}

// declineCode is the failure code of a card error.
func declineCode(se *stripe.Error) string {
	switch {
	case se.DeclineCode == stripe.DeclineCodeInsufficientFunds:
		return events.CodeInsufficientFunds
	case authenticationRequired(se):
		return events.CodeAuthenticationRequired
	}
	return events.CodeCardDeclined
}

// authenticationRequired reports the decline of an off-session payment whose bank asks for
// the customer's authentication: Stripe's answer instead of 3-D Secure when the customer
// is not there, so it ends the payment; nothing waits for an authentication.
func authenticationRequired(se *stripe.Error) bool {
	return se.Code == stripe.ErrorCodeAuthenticationRequired || se.DeclineCode == stripe.DeclineCodeAuthenticationRequired
}

// authenticationRequiredMessage says why an off-session payment failed.
const authenticationRequiredMessage = "Your bank asks you to confirm this payment (3-D Secure), which could not be done because you were not present when it was made, so nothing was charged."

// declineMessage says why the card was declined, in plain words.
func declineMessage(se *stripe.Error) string {
	if authenticationRequired(se) {
		return authenticationRequiredMessage
	}
	reason := string(se.DeclineCode)
	if reason == "" {
		reason = string(se.Code)
	}
	switch reason {
	case "", "generic_decline", "card_declined":
		return "Your card was declined."
	}
	return fmt.Sprintf("Your card was declined (%s).", strings.ReplaceAll(reason, "_", " "))
}
