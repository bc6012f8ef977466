// Package catalog owns the products and the carts, and runs the first checkout step,
// validate_cart_items.
//
// Consumes:
//   - checkout.requested: checks the request (its return_url against the shop's rule,
//     WithReturnURLs: code return_url_not_allowed), the cart (its owner, status and items) and
//     the products, prices the cart (the shop's promotions, WithPromotions, then the coupon it
//     names, WithCoupons, then shipping and tax for the address: see Price) and holds the
//     cart for the checkout. Emits checkout.cart.validated with an events.Quote, or
//     checkout.cart.failed with an events.StepFailure.
//   - checkout.completed: the held cart becomes checked_out. Emits nothing.
//   - checkout.failed: the held cart is open again, so the customer can retry. Emits nothing.
//
// Serves (nats micro service "catalog"): carts.create, carts.get and catalog.list.
//
// State: each cart as created, one key of the KV bucket events.BucketCarts, signed by the
// catalog and written once before carts.create answers (the bucket's stream keeps it as
// written; a cart the catalog did not sign is refused when read). The bbolt file is a view
// (events.Rebuildable): products, seeded from the catalog file; each cart's status as the
// checkouts left it; and checkouts (checkout ID → the cart it holds). A rebuild takes validate_cart_items' outcome from the
// stream (Route.Replay), since which checkout got a cart depends on commit order.
package catalog
