// Package payments runs the process_payment step and its compensation against Stripe
// (or the test-mode emulator, internal/stripeemu), with the stripe-go client.
//
// Consumes:
//   - checkout.payment.requested (events.Quote): charges the quote's total with a confirmed
//     PaymentIntent whose idempotency key is derived from the checkout, so a redelivery or
//     a retry after a lost answer never charges twice. Emits checkout.payment.captured
//     (events.Payment) when the intent succeeded, or checkout.payment.failed
//     (events.StepFailure, code card_declined, insufficient_funds, authentication_required
//     or payment_failed). Network errors, timeouts, 5xx and 429 are returned as errors: the
//     runner retries with the same key.
//   - checkout.payment.refund (events.Compensation): refunds the captured intent in full.
//     Emits checkout.payment.refunded (events.Refund), with no refund ID and a zero amount
//     when nothing was captured; a payment requested after that fails instead of charging.
//
// State (bbolt): payments (checkout ID → Record), read with Service.Payment.
package payments
