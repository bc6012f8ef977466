package catalog

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/money"
	"github.com/jetcheckout/jetcheckout/internal/store"
	"github.com/jetcheckout/jetcheckout/runner"
	"github.com/shopspring/decimal"
	bolt "go.etcd.io/bbolt"
)

// failure is a business reason the cart cannot be checked out: it becomes a
// checkout.cart.failed event, not an error of the handler.
type failure struct {
	code    string
	message string
}

func (f *failure) Error() string { return f.code + ": " + f.message }

func fail(code, format string, args ...any) error {
	return &failure{code: code, message: fmt.Sprintf(format, args...)}
}

// validateCart is validate_cart_items: it prices the requested cart and holds it for
// the checkout, or reports why it cannot. The cart as created is read from its bucket first,
// with no transaction open: a network round trip inside bbolt's one write transaction would
// hold up every other checkout the catalog commits meanwhile. Its status, which decides
// whether this checkout may hold it, is read in the transaction that holds it.
func (s *Service) validateCart(ctx context.Context, in events.Envelope) (runner.Handler, error) {
	var created cartRead
	if req, err := events.ParseRequest(in); err == nil && s.returnURLs.Check(req.ReturnURL) == nil {
		if created.cart, created.found, err = s.carts.get(ctx, req.CartID); err != nil {
			return nil, err // the bucket unreachable: tried again; a cart that does not decode: permanent
		}
	} // else quote says what is wrong with the request

	return func(_ context.Context, tx *bolt.Tx, in events.Envelope) ([]events.Envelope, error) {
		return s.validated(tx, in, created)
	}, nil
}

// cartRead is a cart as created, read before the transaction.
type cartRead struct {
	cart  events.Cart
	found bool
}

// validated is validate_cart_items' outcome, in the transaction: the quote, or the failure.
func (s *Service) validated(tx *bolt.Tx, in events.Envelope, created cartRead) ([]events.Envelope, error) {
	log := s.log.With("checkout_id", in.CheckoutID, "event_id", in.ID)
	quote, err := s.quote(tx, in, created)
	var f *failure
	if errors.As(err, &f) {
		log.Info("cart not accepted", "code", f.code, "reason", f.message)
		return []events.Envelope{events.Must(in.CheckoutID, events.CartFailed, events.StepFailure{
			Step: events.StepValidateCart, Code: f.code, Message: f.message,
		})}, nil
	}
	if err != nil {
		return nil, err
	}
	log.Info("cart validated", "cart_id", quote.CartID, "total", money.Format(quote.Total, quote.Currency))
	return []events.Envelope{events.Must(in.CheckoutID, events.CartValidated, quote)}, nil
}

// quote checks the request and its cart (created as read before the transaction, its
// status from the view), prices the cart and marks it checking_out by this checkout.
func (s *Service) quote(tx *bolt.Tx, in events.Envelope, created cartRead) (events.Quote, error) {
	req, err := events.ParseRequest(in)
	if err != nil {
		return events.Quote{}, fail(events.CodeInvalidRequest, "%v", err)
	}
	// Before the cart is held and its stock reserved: where the customer is sent back to.
	if err := s.returnURLs.Check(req.ReturnURL); err != nil {
		return events.Quote{}, fail(events.CodeReturnURLNotAllowed, "%v", err)
	}
	// A renewal is paid with a card saved on a Stripe customer: it pays for its period's cart
	// (the subscription's), never another.
	if req.Renewal != nil && req.CartID != in.CheckoutID {
		return events.Quote{}, fail(events.CodeInvalidRequest, "a renewal pays for its period's cart %q, not %q", in.CheckoutID, req.CartID)
	}
	if !created.found {
		return events.Quote{}, fail(events.CodeCartNotFound, "cart %q does not exist", req.CartID)
	}
	cart, err := withStatus(tx, created.cart)
	if err != nil {
		return events.Quote{}, err
	}
	if err := checkCart(cart, req, in.CheckoutID); err != nil {
		return events.Quote{}, err
	}
	lines, err := cartLines(tx.Bucket(bucketProducts), cart)
	if err != nil {
		return events.Quote{}, err
	}
	totals, err := s.price(tx, in, req, lines, cart.Currency)
	if err != nil {
		return events.Quote{}, err
	}

	if err := hold(tx, cart.ID, in.CheckoutID); err != nil {
		return events.Quote{}, err
	}
	if err := redeemCoupons(tx, in.CheckoutID, totals.Discounts, req.CustomerID); err != nil {
		return events.Quote{}, err
	}
	return events.Quote{
		CartID:          cart.ID,
		CustomerID:      req.CustomerID,
		CustomerEmail:   req.CustomerEmail,
		PaymentMethodID: req.PaymentMethodID,
		ShippingAddress: req.ShippingAddress,
		BillingAddress:  req.BillingAddress,
		ReturnURL:       req.ReturnURL,
		Currency:        cart.Currency,
		Lines:           totals.Lines,
		Subtotal:        totals.Subtotal,
		Tax:             totals.Tax,
		TaxRate:         &totals.TaxRate,
		Shipping:        totals.Shipping,
		Total:           totals.Total,
		Discounts:       totals.Discounts,
		TaxIncluded:     totals.TaxIncluded,
		Renewal:         req.Renewal,
	}, nil
}

// price prices the lines for the request: less the shop's promotions, then less the coupon
// it names when it names one.
func (s *Service) price(tx *bolt.Tx, in events.Envelope, req events.CheckoutRequest, lines []events.Line, currency string) (Totals, error) {
	// An older release adds the tax on top, and would read an included tax as a mistake.
	mode := TaxAsTheLawSays
	if events.WriteVersion() < events.TaxIncludedSince {
		mode = TaxOnTop
	}
	totals, err := Price(lines, currency, req.ShippingAddress, s.rates, mode)
	switch {
	case errors.Is(err, ErrUnsupportedDestination):
		return Totals{}, fail(events.CodeUnsupportedCountry, "%v", err)
	case errors.Is(err, ErrUnsupportedCurrency):
		return Totals{}, fail(events.CodeCurrencyMismatch, "%v", err)
	case err != nil:
		return Totals{}, runner.Permanent(err)
	}
	discounts, left, err := s.promote(totals.Lines, currency, runner.EventTime(in))
	if err != nil {
		return Totals{}, runner.Permanent(err)
	}
	if req.CouponCode != "" {
		d, err := s.coupon(tx, in, req, totals.Lines, left, currency)
		if err != nil {
			return Totals{}, err
		}
		discounts = append(discounts, d)
	}
	if len(discounts) == 0 {
		return totals, nil
	}
	if totals, err = Price(lines, currency, req.ShippingAddress, s.rates, mode, discounts...); err != nil {
		return Totals{}, runner.Permanent(err)
	}
	return totals, nil
}

// promote is what the shop's promotions take off lines, and what they leave of each line.
// An older release reads a quote without its discounts, which would not add up: while the
// shop is held at such a version, none applies (the previous release had none).
func (s *Service) promote(lines []events.Line, currency string, at time.Time) ([]events.Discount, []decimal.Decimal, error) {
	promotions := s.promotions
	if events.WriteVersion() < events.DiscountsSince {
		promotions = nil
	}
	return promotions.apply(lines, currency, at)
}

// coupon is the discount of the request's coupon on lines (of which the promotions left
// left), or a failure that says why it does not apply: unknown, outside its dates, not for
// this cart, or used up.
func (s *Service) coupon(tx *bolt.Tx, in events.Envelope, req events.CheckoutRequest, lines []events.Line, left []decimal.Decimal, currency string) (events.Discount, error) {
	c, ok := s.coupons[strings.ToUpper(req.CouponCode)]
	if !ok {
		return events.Discount{}, fail(events.CodeCouponNotApplicable, "there is no coupon %q", req.CouponCode)
	}
	// An older release reads a quote without its discounts, which would not add up.
	if v := events.WriteVersion(); v < events.DiscountsSince {
		return events.Discount{}, fail(events.CodeCouponNotApplicable,
			"coupons are not taken while the shop is being upgraded (events held at schema version %d); try again shortly", v)
	}
	d, err := c.discount(lines, left, currency, runner.EventTime(in))
	if err != nil {
		return events.Discount{}, err
	}
	return d, checkLimits(tx, c, in.CheckoutID, req.CustomerID)
}

// replayValidation applies validate_cart_items' recorded outcome to a view being rebuilt:
// a cart validated by this input was held for its checkout; a failure changed nothing. A
// validation caused by another input (a copy of the request) was applied by that one's.
func (s *Service) replayValidation(_ context.Context, tx *bolt.Tx, in events.Envelope, recorded []events.Envelope) error {
	for _, out := range recorded {
		if out.Type != events.CartValidated || out.CausationID != in.ID {
			continue
		}
		var q events.Quote
		if err := out.DecodePayload(&q); err != nil {
			return runner.Permanent(err)
		}
		if err := hold(tx, q.CartID, in.CheckoutID); err != nil {
			return err
		}
		return redeemCoupons(tx, in.CheckoutID, q.Discounts, q.CustomerID)
	}
	return nil
}

// hold marks the cart checking_out by the checkout, and maps the checkout to it.
func hold(tx *bolt.Tx, cartID, checkoutID string) error {
	err := store.Put(tx.Bucket(bucketCarts), cartID, cartState{Status: events.CartCheckingOut, CheckoutID: checkoutID})
	if err != nil {
		return err
	}
	return tx.Bucket(bucketCheckouts).Put([]byte(checkoutID), []byte(cartID))
}

// checkCart checks that the requester owns the cart and that it is free to check out.
// The owner is checked first so that nobody learns the state of another's cart.
func checkCart(cart events.Cart, req events.CheckoutRequest, checkoutID string) error {
	switch {
	case cart.CustomerID != req.CustomerID:
		return fail(events.CodeInvalidRequest, "cart %q does not belong to customer %q", cart.ID, req.CustomerID)
	case cart.Status == events.CartCheckedOut:
		return fail(events.CodeCartCheckedOut, "cart %q was already checked out", cart.ID)
	case cart.Status == events.CartCheckingOut && cart.CheckoutID != checkoutID:
		// The same checkout arriving again proceeds: it already holds the cart.
		return fail(events.CodeCartInCheckout, "cart %q is in another checkout (%s); wait for it to finish", cart.ID, cart.CheckoutID)
	case len(cart.Items) == 0:
		return fail(events.CodeCartEmpty, "cart %q has no items", cart.ID)
	}
	return nil
}

// cartLines looks up each item's product as it is now: it may have been withdrawn or
// lost its price in the cart's currency since the cart was created.
func cartLines(products *bolt.Bucket, cart events.Cart) ([]events.Line, error) {
	lines := make([]events.Line, 0, len(cart.Items))
	for _, item := range cart.Items {
		var p events.Product
		found, err := store.Get(products, item.ProductID, &p)
		if err != nil {
			return nil, runner.Permanent(err)
		}
		if !found {
			return nil, fail(events.CodeProductNotFound, "product %q is no longer sold", item.ProductID)
		}
		price, ok := p.Prices[cart.Currency]
		if !ok {
			return nil, fail(events.CodeCurrencyMismatch, "%s (%s) is not sold in %s, the cart's currency", p.Name, p.ID, cart.Currency)
		}
		if item.Quantity <= 0 {
			return nil, fail(events.CodeInvalidQuantity, "%s (%s) has quantity %d; it must be at least 1", p.Name, p.ID, item.Quantity)
		}
		lines = append(lines, events.Line{ProductID: p.ID, Name: p.Name, Quantity: item.Quantity, UnitPrice: price})
	}
	return lines, nil
}
