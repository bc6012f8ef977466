// Package shipping runs two steps on one runner: create_shipping_label, which buys (here:
// makes) a label with a deterministic tracking number, and notify_warehouse, which queues
// a pick request on the WAREHOUSE work-queue stream.
//
// Consumes: checkout.fulfilment.requested (events.Order), for the label;
// checkout.shipping.requested (events.Order), the same go-ahead as schema version 1 asked
// for it; checkout.shipping.labeled (events.Shipment), for the pick.
// Emits: checkout.shipping.labeled (events.Shipment); warehouse.pick (events.PickRequest)
// together with checkout.warehouse.notified (events.PickQueued).
package shipping
