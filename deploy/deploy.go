// Package deploy carries the demo data the binaries start with, embedded so that a binary
// needs no files beside it:
//
//   - demo/catalog.json: the products, each with its prices by currency (decimal strings)
//     and its initial stock. The catalog seeds its products from it and the inventory its
//     stock, each only into an empty store (first start). "hoodie-saga" has 3 units, to show
//     checkouts competing for the last ones; "poster-route66" is sold in USD only, to show
//     a currency mismatch.
//   - demo/rates.json: tax rates by country with optional per-state overrides ("states";
//     "regions", its old name, is still read), and
//     shipping rates by currency with optional per-country overrides. A destination
//     country without a tax rate is not shipped to.
//
// The parsers live with their services: catalog.LoadSeed, catalog.LoadRates and
// inventory.LoadStock.
package deploy

import "embed"

// Demo holds the demo directory; open files with the paths below.
//
//go:embed demo
var Demo embed.FS

// Paths of the demo files inside Demo.
const (
	CatalogFile = "demo/catalog.json"
	RatesFile   = "demo/rates.json"
)
