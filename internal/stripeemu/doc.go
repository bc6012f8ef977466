// Package stripeemu is a stateful, in-memory emulator of the part of the Stripe API the
// checkout uses, in test mode: PaymentIntents (create, retrieve, list, confirm, capture,
// cancel) and Refunds (create, retrieve, list). It answers the real stripe-go client with
// Stripe's JSON shapes and errors, so the payments service and every test talk to it exactly
// as they would talk to api.stripe.com.
//
// What it reproduces, because our code depends on it:
//   - the test payment methods (pm_card_visa succeeds, pm_card_chargeDeclined* decline with
//     a 402 card_error carrying the PaymentIntent, pm_card_authenticationRequired needs 3DS);
//   - the API version's rules: automatic payment methods are on by default and confirming
//     without a return_url is refused unless redirects are disabled;
//   - idempotency keys: a request that ran is saved with its key and replayed byte for byte,
//     a request refused for bad parameters is not, and two requests with one key never run
//     at the same time;
//   - strict parameters: an unknown one is a 400, as in Stripe.
//
// A FaultFunc (WithFault) makes chosen requests slow, fail with a 5xx or 429, or run and
// then lose their answer, to test retries against real idempotency semantics.
package stripeemu
