// Package orders runs the create_order step: exactly one order per checkout, numbered
// JC- and the stream sequence of its order request (JC-000042): unique, growing in the order
// the requests were made, not consecutive, and the same when the view is rebuilt from the
// stream. Order times are their events' times.
//
// Consumes: checkout.order.requested (events.Payment, the coordinator's go-ahead once the
// payment is captured); checkout.order.cancel (events.Compensation).
// Emits: checkout.order.created (events.Order), again with the same order when the
// checkout already has one; checkout.order.cancelled (events.Cancellation) once the order
// is cancelled, or marked never to be created when there is none yet.
package orders
