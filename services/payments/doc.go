// Package payments runs the process_payment step and its compensation against Stripe
// (or the test-mode emulator, internal/stripeemu), with the stripe-go client.
//
// Consumes:
//   - checkout.payment.requested (events.Quote): charges the quote's total with a confirmed
//     PaymentIntent whose idempotency key is derived from the checkout, so a redelivery or
//     a retry after a lost answer never charges twice. Emits checkout.payment.captured
//     (events.Payment) when the intent succeeded, or checkout.payment.failed
//     (events.StepFailure, code card_declined, insufficient_funds or payment_failed, the
//     intent as its Reference).
//     A subscription's renewal (Quote.Renewal) is charged off-session, with the card saved
//     on its Stripe customer and no redirect: when the bank asks for authentication, Stripe
//     declines, and the payment fails with code authentication_required (never a wait for
//     3-D Secure: the customer is not there).
//     Network errors, timeouts, 5xx and 429 are returned as errors: the runner retries with
//     the same key. Before the first charge it asks the coordinator whether it asked for the
//     payment (checkouts.step.active, answered from its bucket's leader): a request it did not
//     ask for (forged, stray, or of a checkout it has failed) fails with not_requested before
//     Stripe is called; one the coordinator does not answer is retried, never charged.
//     When the bank asks for 3-D Secure (the intent requires_action) it emits
//     checkout.payment.action_required (events.Waiting: until now + Config.AuthWindow, and
//     the page where the customer authenticates) and schedules checkout.payment.recheck.
//   - checkout.payment.recheck (events.Recheck), scheduled for itself every
//     Config.RecheckEvery while the customer authenticates: reads the intent and emits
//     checkout.payment.captured once it succeeded; checkout.payment.failed with code
//     authentication_failed when the authentication failed, or authentication_abandoned
//     (after cancelling the intent) when it was not finished by Until; otherwise schedules
//     the next recheck (never later than Until).
//   - checkout.payment.refund (events.Compensation): refunds the captured intent in full.
//     When no capture is recorded (the step gave up not knowing whether Stripe charged, or
//     never ran), it searches Stripe for the checkout's intents by metadata, refunds those
//     that succeeded and cancels those that could still be paid. Emits
//     checkout.payment.refunded (events.Refund, a zero amount when nothing was taken, with
//     what was done to each intent found); a payment requested after that fails
//     (checkout_cancelled) instead of charging.
//
// Stripe's search index can lag behind a payment by up to a minute, Stripe says; the
// emulator's does not. The intent is created by the step's first attempt and the
// compensation comes after its retries ran out or its deadline passed, which makes the
// window in which a search misses a charge small, not empty.
//
// Every call to Stripe is made outside the bbolt transaction (runner.Route.Call), so a
// slow answer holds up its own checkout only; the handler it returns saves the Record if
// it is still the one the call began from.
//
// State (bbolt): payments (checkout ID → Record), read with Service.Payment. It is a view:
// every change of a record is recorded by the outcome event that reported it, and a lost
// file is rebuilt from the stream without calling Stripe (replay.go).
package payments
