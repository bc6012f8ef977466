// Package notifications runs the send_order_confirmation step: it renders the order
// confirmation email and hands it to a Sender, the outbox directory or an SMTP server,
// retrying briefly inside the step before leaving it to the runner's redelivery.
//
// Consumes: checkout.order.created (events.Order).
// Emits: checkout.confirmation.sent (events.EmailSent).
//
// A checkout's email is recorded once sent, so a redelivered event does not send it
// again. A crash between the send and that record sends it once more on redelivery: the
// message is byte-for-byte the same (its Date is the order's time and its Message-ID
// comes from the checkout), so the outbox overwrites the same file and a mail system can
// drop the copy by its Message-ID.
package notifications
