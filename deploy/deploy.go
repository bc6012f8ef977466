// Package deploy carries the demo data the binaries start with, embedded so that a binary
// needs no files beside it:
//
//   - demo/catalog.json: the products, each with its prices by currency (decimal strings)
//     and its initial stock. The catalog seeds its products from it and the inventory its
//     stock, each only into an empty store (first start). "hoodie-saga" has 3 units, to show
//     checkouts competing for the last ones; "poster-route66" is sold in USD only, to show
//     a currency mismatch.
//   - demo/rates.json: tax rates by country with optional per-state overrides ("states";
//     "regions", its old name, is still read) and whether the country's prices include the
//     tax ("included": the EU's and the UK's VAT, Japan's consumption tax), and
//     shipping rates by currency with optional per-country overrides. A destination
//     country without a tax rate is not shipped to.
//   - demo/coupons.json: the coupons a checkout may name (coupon_code): percent or amount off,
//     for some products or all, a minimum spend, dates, and limits in all and per customer.
//     "LAUNCH15" may be used by 10 checkouts, to show a limited coupon raced for.
//   - demo/promotions.json: what the shop takes off every cart they fit, in order: sticker
//     packs 3 for 2, and volume prices on mugs. A line takes at most one promotion; a coupon
//     applies to what they leave.
//   - demo/fraud.json: the fraud check's rules over its defaults (fraud.DefaultConfig), or
//     FRAUD_RULES's file instead: after 3 declined payments in an hour a customer's next
//     checkout is rejected (card testing). No rule counts attempts here: the tests and the
//     demo run many checkouts as one customer, and the test payment methods (pm_card_visa)
//     and the load tools' addresses are every customer's.
//
// A product's "category" in catalog.json lets a coupon or a promotion cover a category
// ("categories") instead of listing products. The parsers live with their services:
// catalog.LoadSeed, catalog.LoadRates, catalog.LoadCoupons, catalog.LoadPromotions,
// inventory.LoadStock and fraud.LoadConfig.
package deploy

import "embed"

// Demo holds the demo directory; open files with the paths below.
//
//go:embed demo
var Demo embed.FS

// Paths of the demo files inside Demo.
const (
	CatalogFile    = "demo/catalog.json"
	RatesFile      = "demo/rates.json"
	CouponsFile    = "demo/coupons.json"
	PromotionsFile = "demo/promotions.json"
	FraudFile      = "demo/fraud.json"
)
