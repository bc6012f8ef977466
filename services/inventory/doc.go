// Package inventory owns the stock and runs the reserve_inventory step and its
// compensation.
//
// Consumes:
//   - checkout.cart.validated (events.Quote): reserves every line, all or nothing. Emits
//     checkout.inventory.reserved (events.Reservation), or checkout.inventory.failed
//     (events.StepFailure, code insufficient_stock) when any product is short, or code
//     hold_limit_exceeded when the customer would hold more than Config.MaxHoldPerCustomer
//     units of a product in unfinished checkouts (counted by email, customer ID and payment
//     method, each). A reservation also schedules its own checkout.inventory.expire
//     (events.Expiry) for Config.ReservationTTL later.
//   - checkout.inventory.release (events.Compensation): gives a reservation's units back.
//     Emits checkout.inventory.released (events.Release), also when nothing was held.
//   - checkout.completed: the reservation becomes a sale. Emits
//     checkout.inventory.committed (events.Sale).
//   - checkout.inventory.expire (events.Expiry), delivered by the server at its time: a
//     reservation still held is released (status expired) and checkout.inventory.expired
//     (events.Release) tells the coordinator; a committed or released one is left alone.
//     So a crash or a lost compensation cannot hold stock forever.
//
// Serves (nats micro service "inventory"): inventory.stock.
//
// State (bbolt): stock (product ID → events.Stock), reservations (checkout ID →
// Reservation) and holds (customer identity and product → units held by reservations still
// reserved, changed in the same transaction as the reservation). Available stock never
// goes below zero. The file is a view (events.Rebuildable): a new one is seeded from the
// initial stock recorded once in the STOCK stream (RecordedSeed), and a rebuild applies each
// reservation, refusal and sale as the stream recorded it (replay.go).
package inventory
