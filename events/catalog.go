package events

import (
	"time"

	"github.com/shopspring/decimal"
)

// The request-reply contract of carts.create, carts.get, catalog.list and inventory.stock.

// Product is a catalog entry with a price in each currency it is sold in.
type Product struct {
	ID     string                     `json:"id"`
	Name   string                     `json:"name"`
	Prices map[string]decimal.Decimal `json:"prices"`
}

// ListedProduct is a product as catalog.list answers it: with the units available now,
// which the catalog asks inventory.stock for at each request (inventory owns the stock; a
// copy would drift). Available is null when inventory did not answer in time: stock unknown.
type ListedProduct struct {
	Product
	Available *int `json:"available"`
}

// CartItem is one line of a cart.
type CartItem struct {
	ProductID string `json:"product_id"`
	Quantity  int    `json:"quantity"`
}

// CreateCart is the request of carts.create.
type CreateCart struct {
	// CartID, when set, names the cart and makes creating it safe to repeat: the same ID
	// again gives the cart it made, if it holds the same; otherwise a new ID is drawn.
	CartID     string     `json:"cart_id,omitempty"`
	CustomerID string     `json:"customer_id"`
	Currency   string     `json:"currency"`
	Items      []CartItem `json:"items"`
}

// GetCart is the request of carts.get.
type GetCart struct {
	CartID string `json:"cart_id"`
}

// Cart statuses.
const (
	CartOpen        = "open"
	CartCheckingOut = "checking_out"
	CartCheckedOut  = "checked_out"
)

// Cart is the reply of carts.create and carts.get.
type Cart struct {
	ID         string     `json:"id"`
	CustomerID string     `json:"customer_id"`
	Currency   string     `json:"currency"`
	Items      []CartItem `json:"items"`
	Status     string     `json:"status"`
	CheckoutID string     `json:"checkout_id,omitempty"` // the checkout holding or that took the cart
	CreatedAt  time.Time  `json:"created_at"`
}

// Stock is one product's inventory, the reply items of inventory.stock.
type Stock struct {
	ProductID string `json:"product_id"`
	Available int    `json:"available"`
	Reserved  int    `json:"reserved"`
	Sold      int    `json:"sold"`
}
