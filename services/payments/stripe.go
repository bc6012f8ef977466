package payments

import (
	"context"
	"strconv"
	"strings"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/stripe/stripe-go/v76"
)

// Every request the service makes to Stripe is built here, in one place, so that the
// stripe-mock test checks the very shapes the service sends.

// idempotencyKey names one Stripe operation of a checkout, the same on every retry.
func idempotencyKey(checkoutID, operation string) string {
	return "jetcheckout:" + checkoutID + ":" + operation
}

// createIntent creates and confirms the checkout's PaymentIntent for amount minor units. A
// subscription's renewal is paid off-session with the card saved on its Stripe customer:
// the bank cannot ask the absent customer to authenticate, so Stripe declines instead.
func (s *Service) createIntent(ctx context.Context, checkoutID string, quote events.Quote, amount int64) (*stripe.PaymentIntent, error) {
	p := &stripe.PaymentIntentParams{
		Amount:        stripe.Int64(amount),
		Currency:      stripe.String(strings.ToLower(quote.Currency)),
		PaymentMethod: stripe.String(quote.PaymentMethodID),
		Confirm:       stripe.Bool(true),
		Description:   stripe.String("Checkout " + checkoutID),
		Metadata: map[string]string{
			"checkout_id": checkoutID, "cart_id": quote.CartID, "customer_id": quote.CustomerID,
		},
	}
	if r := quote.Renewal; r != nil {
		p.Customer, p.OffSession = stripe.String(r.StripeCustomer), stripe.Bool(true)
		p.Metadata["subscription_id"], p.Metadata["period"] = r.SubscriptionID, strconv.Itoa(r.Period)
	}
	if quote.ReturnURL != "" && quote.Renewal == nil {
		p.ReturnURL = stripe.String(quote.ReturnURL)
	} else {
		// Nobody could follow a redirect: accept only payment methods that need none.
		p.AutomaticPaymentMethods = &stripe.PaymentIntentAutomaticPaymentMethodsParams{
			Enabled: stripe.Bool(true), AllowRedirects: stripe.String("never"),
		}
	}
	p.Context = ctx
	p.SetIdempotencyKey(idempotencyKey(checkoutID, "payment"))
	return s.stripe.PaymentIntents.New(p)
}

// getIntent reads a PaymentIntent as it is now.
func (s *Service) getIntent(ctx context.Context, id string) (*stripe.PaymentIntent, error) {
	return s.stripe.PaymentIntents.Get(id, &stripe.PaymentIntentParams{Params: stripe.Params{Context: ctx}})
}

// cancelIntent cancels a PaymentIntent that could still be paid.
func (s *Service) cancelIntent(ctx context.Context, checkoutID, id string) (*stripe.PaymentIntent, error) {
	p := &stripe.PaymentIntentCancelParams{CancellationReason: stripe.String("abandoned")}
	p.Context = ctx
	p.SetIdempotencyKey(idempotencyKey(checkoutID, "cancel:"+id))
	return s.stripe.PaymentIntents.Cancel(id, p)
}

// refundIntent refunds what is left of a succeeded PaymentIntent.
func (s *Service) refundIntent(ctx context.Context, checkoutID, id, reason string) (*stripe.Refund, error) {
	p := &stripe.RefundParams{PaymentIntent: stripe.String(id)}
	p.Context = ctx
	p.AddMetadata("checkout_id", checkoutID)
	p.AddMetadata("compensation_reason", truncate(reason, 500))
	p.SetIdempotencyKey(idempotencyKey(checkoutID, "refund:"+id))
	return s.stripe.Refunds.New(p)
}

// refunds lists a PaymentIntent's refunds, newest first.
func (s *Service) refunds(ctx context.Context, id string) ([]*stripe.Refund, error) {
	p := &stripe.RefundListParams{PaymentIntent: stripe.String(id)}
	p.Context = ctx
	var out []*stripe.Refund
	it := s.stripe.Refunds.List(p)
	for it.Next() {
		out = append(out, it.Refund())
	}
	return out, it.Err()
}

// checkoutIntents finds every PaymentIntent created for a checkout, by its metadata.
// Stripe's search index lags behind writes (under a minute, it says); see refund.go.
func (s *Service) checkoutIntents(ctx context.Context, checkoutID string) ([]*stripe.PaymentIntent, error) {
	p := &stripe.PaymentIntentSearchParams{}
	p.Context = ctx
	p.Query = "metadata['checkout_id']:'" + checkoutID + "'" // checkout IDs need no escaping
	p.Limit = stripe.Int64(100)
	var out []*stripe.PaymentIntent
	it := s.stripe.PaymentIntents.Search(p)
	for it.Next() {
		out = append(out, it.PaymentIntent())
	}
	return out, it.Err()
}
