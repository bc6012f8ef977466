// Package stripeemu is a stateful, in-memory emulator of the part of the Stripe API the
// checkout uses, in test mode: PaymentIntents (create, retrieve, list, search, confirm,
// capture, cancel), Refunds (create, retrieve, list), Customers (create, retrieve) and
// PaymentMethods (retrieve, attach). It answers the real stripe-go client
// with Stripe's JSON shapes and errors, so the payments service and every test talk to it
// exactly as they would talk to api.stripe.com.
//
// What it reproduces, because our code depends on it:
//   - the test payment methods (pm_card_visa succeeds, pm_card_chargeDeclined* decline with
//     a 402 card_error carrying the PaymentIntent, pm_card_authenticationRequired and
//     pm_card_threeDSecure2Required need 3D Secure: the intent requires_action until the
//     customer completes or fails it, see CompleteAuthentication);
//   - saved cards and off-session payments: attaching a test token to a customer saves a
//     new PaymentMethod (pm_...) with the token's card, as setup_future_usage does once an
//     intent with a customer has paid; a saved card pays only with its customer. The card
//     check made on attaching declines the declining cards, except
//     pm_card_chargeCustomerFail, which declines its charges. Confirmed with off_session,
//     a card that needs authentication declines with a 402 authentication_required (the
//     customer is not there to give it), except pm_card_authenticationRequiredOnSetup once
//     saved: it asks for authentication only when it is set up;
//   - the API version's rules: automatic payment methods are on by default and confirming
//     without a return_url is refused unless redirects are disabled;
//   - idempotency keys: a request that ran is saved with its key and replayed byte for byte,
//     a request refused for bad parameters is not, and two requests with one key never run
//     at the same time;
//   - strict parameters: an unknown one is a 400, as in Stripe;
//   - search (GET /v1/payment_intents/search) with the part of Stripe's query language a
//     search by field needs: exact clauses metadata['key']:'value' (single or double
//     quotes), status:"...", currency:"...", all joined by AND or all by OR; the answer is
//     a search_result list, newest first, paged by next_page. Unlike Stripe's, the index
//     has no delay: an intent is found as soon as it exists.
//
// # Faults
//
// Chosen requests can be made slow, fail with a 5xx or 429, hang, or run and then lose
// their answer (the card is charged, the client never hears it), to test retries against
// real idempotency semantics. In Go: a FaultFunc given to WithFault (When builds one that
// matches by method, path or payment method), or rules switched on and off while the
// emulator runs with AddFault, RemoveFault and ClearFaults. A rule can fault only its
// first Count matching requests, or each with a Probability.
//
// # Control surface
//
// An emulator running as its own process (ListenAndServe) is driven over HTTP, beside the
// API, under /_emulator/. These endpoints take the same Authorization: Bearer sk_test_...
// key as the API, JSON bodies, and are never faulted:
//
//	POST   /_emulator/faults      switch a fault rule on; answers 201 with it and its id
//	       {"match": {"method": "POST", "path": "/v1/payment_intents", "payment_method": "pm_card_visa"},
//	        "kind": "latency" | "status" | "timeout" | "charge_then_timeout",
//	        "delay": "2s", "status": 503, "after_run": false, "count": 3, "probability": 0.5}
//	       match fields are optional (path is a path.Match pattern, e.g.
//	       "/v1/payment_intents/*/confirm"; payment_method also matches requests on an intent
//	       paid with it); latency needs delay, status needs status (after_run: the request
//	       runs first); delay adds latency to any kind; count 0 is every matching request,
//	       probability 0 is 1.
//	GET    /_emulator/faults      the rules in force, with what is left of their counts
//	DELETE /_emulator/faults      switch every rule off
//	DELETE /_emulator/faults/{id} switch one rule off
//	POST   /_emulator/payment_intents/{id}/authenticate   {"result": "complete" | "fail", "checkout_id": optional: must be the intent's metadata.checkout_id}
//	       plays the customer on the 3D Secure page, as CompleteAuthentication; answers
//	       with the PaymentIntent.
//
// For example:
//
//	curl -H "Authorization: Bearer sk_test_x" -d '{"kind":"charge_then_timeout","count":1}' \
//	    http://127.0.0.1:12111/_emulator/faults
package stripeemu
