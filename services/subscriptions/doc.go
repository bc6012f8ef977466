// Package subscriptions runs standing orders: a customer's items bought again every
// period, each period a checkout of its own through the whole DAG, paid off-session with the
// payment method saved on the customer's Stripe customer.
//
// Where each fact is durable: a subscription's record (its plan, status, next renewal and
// the periods started with how each ended) is a key of the KV bucket
// events.BucketSubscriptions, changed only by compare-and-swap, so any number of instances
// may serve it; its renewals are a JetStream message schedule (@every one period) in
// events.StreamSubscriptions, fired by the server, not by a ticker of ours.
//
// Exactly one charge per period: period n's checkout is events.RenewalCheckoutID(id, n),
// and the checkout ID is the idempotency key of everything after it, Stripe's payment
// included. A renewal starts period n only when the record's next renewal is less than half a
// period away and the period before it has ended, so a schedule that fires twice, a
// redelivery, or a clock that goes back starts nothing new; a renewal later than a period
// moves the cycle on rather than charging the missed periods in a burst.
//
// Consumes: the renewals fired on subscriptions.due.<id> (consumer "subscriptions" on
// SUBSCRIPTIONS); checkout.completed and checkout.failed of renewal checkouts (consumer
// "subscriptions" on CHECKOUT), which end their period.
// Emits: checkout.requested for each period (a events.CheckoutRequest with Renewal), after
// carts.create made the period's cart (its ID the checkout's).
// Serves: subscriptions.create, .get, .list, .pause, .resume, .cancel.
package subscriptions
