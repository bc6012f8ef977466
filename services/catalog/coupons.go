package catalog

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/money"
	"github.com/jetcheckout/jetcheckout/internal/store"
	"github.com/shopspring/decimal"
	bolt "go.etcd.io/bbolt"
)

// Coupon is a promotion a customer asks for by its code (deploy/demo/coupons.json). It takes
// PercentOff percent, or AmountOff in the cart's currency, off the lines of its Scope, before
// tax and shipping, and after the shop's own promotions (on what they left of each line).
type Coupon struct {
	Code        string `json:"code"`
	Description string `json:"description"`
	// PercentOff (0 to 100) or AmountOff by currency: exactly one is set. A fixed amount never
	// takes off more than the lines it applies to.
	PercentOff *decimal.Decimal           `json:"percent_off,omitempty"`
	AmountOff  map[string]decimal.Decimal `json:"amount_off,omitempty"`
	// MinSpend by currency: the cart's subtotal, less the shop's promotions, must reach it. A
	// currency without one has no minimum.
	MinSpend map[string]decimal.Decimal `json:"min_spend,omitempty"`
	Scope
	// ValidFrom and ValidUntil bound when a checkout may use it (its request's time); zero: no
	// bound.
	ValidFrom  time.Time `json:"valid_from,omitzero"`
	ValidUntil time.Time `json:"valid_until,omitzero"`
	// MaxRedemptions bounds the checkouts that hold it at once or completed with it, all
	// customers together, and MaxPerCustomer per customer; 0: no limit. A failed checkout
	// gives its redemption back.
	MaxRedemptions int `json:"max_redemptions,omitempty"`
	MaxPerCustomer int `json:"max_per_customer,omitempty"`
}

// Coupons are the shop's coupons by code, upper case.
type Coupons map[string]Coupon

// LoadCoupons reads a JSON array of coupons and checks each, naming the first that cannot
// work and why.
func LoadCoupons(r io.Reader) (Coupons, error) {
	var list []Coupon
	if err := decodeFile(r, &list); err != nil {
		return nil, fmt.Errorf("coupons: %w", err)
	}
	out := Coupons{}
	for i, c := range list {
		if err := c.validate(); err != nil {
			return nil, fmt.Errorf("coupons: coupon %d (%q): %w", i, c.Code, err)
		}
		key := strings.ToUpper(c.Code)
		if _, dup := out[key]; dup {
			return nil, fmt.Errorf("coupons: coupon %q is listed twice (codes are case-insensitive)", c.Code)
		}
		out[key] = c
	}
	return out, nil
}

func (c Coupon) validate() error {
	switch {
	case !events.ValidCouponCode(c.Code):
		return fmt.Errorf("code must be 1 to 32 letters, digits, '-' or '_'")
	case (c.PercentOff == nil) == (len(c.AmountOff) == 0):
		return fmt.Errorf("set exactly one of percent_off and amount_off")
	case c.PercentOff != nil && (!c.PercentOff.IsPositive() || c.PercentOff.GreaterThan(decimal.NewFromInt(100))):
		return fmt.Errorf("percent_off %s must be above 0 and at most 100", c.PercentOff)
	case !c.ValidFrom.IsZero() && !c.ValidUntil.IsZero() && !c.ValidUntil.After(c.ValidFrom):
		return fmt.Errorf("valid_until %s is not after valid_from %s", c.ValidUntil.Format(time.RFC3339), c.ValidFrom.Format(time.RFC3339))
	case c.MaxRedemptions < 0 || c.MaxPerCustomer < 0:
		return fmt.Errorf("max_redemptions and max_per_customer must not be negative (0: no limit)")
	}
	for field, amounts := range map[string]map[string]decimal.Decimal{"amount_off": c.AmountOff, "min_spend": c.MinSpend} {
		for cur, a := range amounts {
			if !a.IsPositive() {
				return fmt.Errorf("%s %s %s must be positive", field, a, cur)
			}
			if err := exact(a, cur); err != nil {
				return fmt.Errorf("%s: %w", field, err)
			}
		}
	}
	return nil
}

// Resolve checks every coupon's scope against the catalog and turns its categories into the
// products they hold.
func (cs Coupons) Resolve(products []SeedProduct) error {
	for code, c := range cs {
		if err := c.Scope.resolve(products); err != nil {
			return fmt.Errorf("coupons: coupon %q: %w", c.Code, err)
		}
		cs[code] = c
	}
	return nil
}

// discount is what the coupon takes off lines priced in currency for a checkout requested
// at, left being what the shop's promotions left of each line: the discount, or a failure
// that says why it does not apply.
func (c Coupon) discount(lines []events.Line, left []decimal.Decimal, currency string, at time.Time) (events.Discount, error) {
	code := strings.ToUpper(c.Code)
	switch {
	case !c.ValidFrom.IsZero() && at.Before(c.ValidFrom):
		return events.Discount{}, fail(events.CodeCouponNotApplicable, "coupon %s is valid from %s", code, c.ValidFrom.Format(time.RFC3339))
	case !c.ValidUntil.IsZero() && !at.Before(c.ValidUntil):
		return events.Discount{}, fail(events.CodeCouponNotApplicable, "coupon %s expired at %s", code, c.ValidUntil.Format(time.RFC3339))
	}
	subtotal, eligible := decimal.Zero, decimal.Zero
	for i, l := range lines {
		subtotal = subtotal.Add(left[i])
		if c.covers(l.ProductID) {
			eligible = eligible.Add(left[i])
		}
	}
	if min, ok := c.MinSpend[currency]; ok && subtotal.LessThan(min) {
		return events.Discount{}, fail(events.CodeCouponNotApplicable, "coupon %s needs a subtotal of at least %s; this cart's is %s",
			code, money.Format(min, currency), money.Format(subtotal, currency))
	}
	switch {
	case eligible.IsZero() && c.everything():
		return events.Discount{}, fail(events.CodeCouponNotApplicable, "coupon %s: the shop's promotions left nothing of this cart to take it off", code)
	case eligible.IsZero():
		return events.Discount{}, fail(events.CodeCouponNotApplicable, "coupon %s applies to none of this cart's products (%s)", code, c.Scope.describe())
	}
	var amount decimal.Decimal
	if c.PercentOff != nil {
		var err error
		if amount, err = money.Round(eligible.Mul(*c.PercentOff).Div(decimal.NewFromInt(100)), currency); err != nil {
			return events.Discount{}, fail(events.CodeCouponNotApplicable, "coupon %s: %v", code, err)
		}
	} else {
		off, ok := c.AmountOff[currency]
		if !ok {
			return events.Discount{}, fail(events.CodeCouponNotApplicable, "coupon %s takes nothing off in %s", code, currency)
		}
		amount = decimal.Min(off, eligible)
	}
	if !amount.IsPositive() {
		return events.Discount{}, fail(events.CodeCouponNotApplicable, "coupon %s takes nothing off this cart", code)
	}
	return events.Discount{Code: code, Description: c.describe(currency), Amount: amount}, nil
}

// describe says what the coupon is, for the quote, the run page and the email.
func (c Coupon) describe(currency string) string {
	if c.Description != "" {
		return c.Description
	}
	off := ""
	if c.PercentOff != nil {
		off = c.PercentOff.String() + "% off"
	} else {
		off = money.Format(c.AmountOff[currency], currency) + " off"
	}
	return strings.TrimSpace(off + " " + c.Scope.describe())
}

// Redemptions in the view: how many checkouts hold or used each coupon, in all and per
// customer, and which coupon each checkout holds. A checkout's redemption is counted when its
// cart is validated with the coupon and given back when it fails.
var (
	bucketRedemptions     = []byte("redemptions")      // "<CODE>" and "<CODE>/<customer ID>" → count
	bucketCheckoutCoupons = []byte("checkout_coupons") // checkout ID → redemption
)

// redemption is a checkout's use of a coupon.
type redemption struct {
	Code       string `json:"code"`
	CustomerID string `json:"customer_id"`
	GivenBack  bool   `json:"given_back,omitempty"`
}

// checkLimits reports a coupon used up, in all or for this customer, by other checkouts:
// the checkout's own redemption (its request handled again) does not count against it.
func checkLimits(tx *bolt.Tx, c Coupon, checkoutID, customerID string) error {
	if _, found, err := heldRedemption(tx, checkoutID); err != nil || found {
		return err
	}
	code := strings.ToUpper(c.Code)
	for _, limit := range []struct {
		key, who string
		max      int
	}{{code, "in all", c.MaxRedemptions}, {customerKey(code, customerID), "by this customer", c.MaxPerCustomer}} {
		used, err := redemptions(tx, limit.key)
		if err != nil {
			return err
		}
		if limit.max > 0 && used >= limit.max {
			return fail(events.CodeCouponUsedUp, "coupon %s may be used %d times %s and has been", code, limit.max, limit.who)
		}
	}
	return nil
}

// redeemCoupons counts the checkout's use of the coupons among its discounts (the shop's
// own promotions are not counted).
func redeemCoupons(tx *bolt.Tx, checkoutID string, discounts []events.Discount, customerID string) error {
	for _, d := range discounts {
		if d.Automatic {
			continue
		}
		if err := redeem(tx, checkoutID, d.Code, customerID); err != nil {
			return err
		}
	}
	return nil
}

// redeem counts the checkout's use of code, once however often it is applied.
func redeem(tx *bolt.Tx, checkoutID, code, customerID string) error {
	if _, found, err := heldRedemption(tx, checkoutID); err != nil || found {
		return err
	}
	if err := store.Put(tx.Bucket(bucketCheckoutCoupons), checkoutID, redemption{Code: code, CustomerID: customerID}); err != nil {
		return err
	}
	return addRedemptions(tx, code, customerID, 1)
}

// giveBack returns a failed checkout's redemption, once.
func giveBack(tx *bolt.Tx, checkoutID string) error {
	r, found, err := heldRedemption(tx, checkoutID)
	if err != nil || !found || r.GivenBack {
		return err
	}
	r.GivenBack = true
	if err := store.Put(tx.Bucket(bucketCheckoutCoupons), checkoutID, r); err != nil {
		return err
	}
	return addRedemptions(tx, r.Code, r.CustomerID, -1)
}

func heldRedemption(tx *bolt.Tx, checkoutID string) (redemption, bool, error) {
	var r redemption
	found, err := store.Get(tx.Bucket(bucketCheckoutCoupons), checkoutID, &r)
	return r, found, err
}

func addRedemptions(tx *bolt.Tx, code, customerID string, delta int) error {
	for _, key := range []string{code, customerKey(code, customerID)} {
		n, err := redemptions(tx, key)
		if err != nil {
			return err
		}
		if err := store.Put(tx.Bucket(bucketRedemptions), key, n+delta); err != nil {
			return err
		}
	}
	return nil
}

// customerKey is where a customer's uses of code are counted.
func customerKey(code, customerID string) string { return code + "/" + customerID }

func redemptions(tx *bolt.Tx, key string) (int, error) {
	var n int
	_, err := store.Get(tx.Bucket(bucketRedemptions), key, &n)
	return n, err
}

// Redemptions returns how many checkouts hold or used a coupon (code, any case), in all.
func (s *Service) Redemptions(code string) (n int, err error) {
	_, err = store.View(s.db, bucketRedemptions, strings.ToUpper(code), &n)
	return n, err
}
