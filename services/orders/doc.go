// Package orders runs the create_order step: exactly one order per checkout, numbered
// JC-000001, JC-000002, ... in the order they are created.
//
// Consumes: checkout.payment.captured (events.Payment).
// Emits: checkout.order.created (events.Order), again with the same order when the
// checkout already has one.
package orders
