// Package shipping runs two steps on one runner: create_shipping_label, which buys (here:
// makes) a label with a deterministic tracking number, and notify_warehouse, which queues
// a pick request on the WAREHOUSE work-queue stream.
//
// Consumes: checkout.order.created (events.Order), checkout.shipping.labeled (events.Shipment).
// Emits: checkout.shipping.labeled (events.Shipment); warehouse.pick (events.PickRequest)
// together with checkout.warehouse.notified (events.PickQueued).
package shipping
