// Package notifications runs the send_order_confirmation step, and tells the customer of
// a failed checkout why it failed. It renders the email and hands it to a Sender, the
// outbox directory or an SMTP server, retrying briefly inside the handler before leaving
// it to the runner's redelivery.
//
// Consumes:
//   - checkout.fulfilment.requested (events.Order): the order confirmation. Emits
//     checkout.confirmation.sent (events.EmailSent).
//   - checkout.confirmation.requested (events.Order): the same, as schema version 1 asked
//     for it (a coordinator held at version 1 during an upgrade).
//   - checkout.failed (events.CheckoutFailed): the failure notice, in plain words: what
//     happened (by failure code), that nothing was charged or that the charge was refunded
//     (process_payment among the compensated steps), and what the customer can do. Emits
//     checkout.notice.sent (events.EmailSent, without an order ID). The notice quotes
//     nothing the request's sender wrote except what was checked against a real cart: a
//     checkout that failed before its customer's address was known, or whose request
//     validate_cart could not tie to a cart of its customer (malformed, unknown or someone
//     else's cart, refused return_url), gets no notice and emits nothing. This is
//     not a step: a send that keeps failing is retried for good and announced on
//     checkout.stuck by the runner.
//
// Each email of a checkout is recorded once sent, so a redelivered event does not send it
// again. The record is a view: the event that announces the email holds it (timed when
// sent), and a lost file is rebuilt from the stream without sending anything again. A crash between the send and that record sends it once more on redelivery: the
// message is byte-for-byte the same (its Date is the order's or the failure's time and its
// Message-ID comes from the checkout: <checkout>.confirmation@… or <checkout>.failure@…),
// so the outbox overwrites the same file and a mail system can drop the copy by its
// Message-ID.
package notifications
