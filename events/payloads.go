package events

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"
)

// Address is a postal address in Stripe's Address shape. Country is an ISO 3166-1 alpha-2
// code; tax and shipping rates are looked up by Country and State (a state, province or
// region). Events written before State was named so say "region": UnmarshalJSON reads
// both spellings.
type Address struct {
	Name       string `json:"name,omitempty"`
	Line1      string `json:"line1"`
	Line2      string `json:"line2,omitempty"`
	City       string `json:"city"`
	State      string `json:"state,omitempty"`
	PostalCode string `json:"postal_code"`
	Country    string `json:"country"`
	// spelledRegion: decoded from the old spelling, and encoded back in it, so that a
	// replay re-encodes an old event byte for byte (rebuilds compare the bytes).
	spelledRegion bool
}

// addressFields are the fields an address may have, as UnknownFieldsError lists them.
var addressFields = []string{"name", "line1", "line2", "city", "state", "region", "postal_code", "country"}

// addressIn is every spelling an address is read in.
type addressIn struct {
	Name       string `json:"name"`
	Line1      string `json:"line1"`
	Line2      string `json:"line2"`
	City       string `json:"city"`
	State      string `json:"state"`
	Region     string `json:"region"` // the old name of state
	PostalCode string `json:"postal_code"`
	Country    string `json:"country"`
}

// addressWithRegion is an address encoded in the old spelling, field for field.
type addressWithRegion struct {
	Name       string `json:"name,omitempty"`
	Line1      string `json:"line1"`
	Line2      string `json:"line2,omitempty"`
	City       string `json:"city"`
	Region     string `json:"region,omitempty"`
	PostalCode string `json:"postal_code"`
	Country    string `json:"country"`
}

// UnmarshalJSON reads an address strictly: unknown fields are an *UnknownFieldsError
// naming them all, and "region" is read as State when "state" is absent (both, differing,
// are an error).
func (a *Address) UnmarshalJSON(data []byte) error {
	if string(data) == "null" {
		return nil
	}
	var in addressIn
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		if unknown := unknownKeys(data, addressFields); len(unknown) > 0 {
			return &UnknownFieldsError{Fields: unknown}
		}
		return err
	}
	if in.State != "" && in.Region != "" && in.State != in.Region {
		return fmt.Errorf("address has state %q and region %q: region is the old name of state, send state only", in.State, in.Region)
	}
	*a = Address{Name: in.Name, Line1: in.Line1, Line2: in.Line2, City: in.City, State: in.State,
		PostalCode: in.PostalCode, Country: in.Country}
	if in.State == "" && in.Region != "" {
		a.State, a.spelledRegion = in.Region, true
	}
	return nil
}

// MarshalJSON writes "state", or "region" for an address read in that spelling.
func (a Address) MarshalJSON() ([]byte, error) {
	if a.spelledRegion {
		return json.Marshal(addressWithRegion{Name: a.Name, Line1: a.Line1, Line2: a.Line2, City: a.City,
			Region: a.State, PostalCode: a.PostalCode, Country: a.Country})
	}
	type plain Address // without the methods
	return json.Marshal(plain(a))
}

// Canonical is the address in today's spelling: equal addresses are equal structs.
func (a Address) Canonical() Address {
	a.spelledRegion = false
	return a
}

// UnknownFieldsError names the fields of an address that no address has.
type UnknownFieldsError struct {
	Fields []string // with their path when known: shipping_address.county
}

func (e *UnknownFieldsError) Error() string {
	quoted := make([]string, len(e.Fields))
	for i, f := range e.Fields {
		quoted[i] = strconv.Quote(f)
	}
	noun := "field"
	if len(quoted) > 1 {
		noun = "fields"
	}
	return fmt.Sprintf("unknown address %s %s (an address has name, line1, line2, city, state, postal_code and country)",
		noun, strings.Join(quoted, ", "))
}

// unknownKeys lists, sorted, the keys of the JSON object data that match none of known (as
// the decoder matches them: ignoring case); none when data is no object.
func unknownKeys(data []byte, known []string) []string {
	var obj map[string]json.RawMessage
	if json.Unmarshal(data, &obj) != nil {
		return nil
	}
	var unknown []string
	for k := range obj {
		if !slices.ContainsFunc(known, func(f string) bool { return strings.EqualFold(f, k) }) {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown)
	return unknown
}

func (a Address) validate(field string) error {
	switch {
	case strings.TrimSpace(a.Line1) == "":
		return fmt.Errorf("%s.line1 is required", field)
	case strings.TrimSpace(a.City) == "":
		return fmt.Errorf("%s.city is required", field)
	case strings.TrimSpace(a.PostalCode) == "":
		return fmt.Errorf("%s.postal_code is required", field)
	case !countryCode.MatchString(a.Country):
		return fmt.Errorf("%s.country must be a two-letter ISO code like \"US\", got %q", field, a.Country)
	}
	return nil
}

var countryCode = regexp.MustCompile(`^[A-Z]{2}$`)

// Line is a priced cart line.
type Line struct {
	ProductID string          `json:"product_id"`
	Name      string          `json:"name"`
	Quantity  int             `json:"quantity"`
	UnitPrice decimal.Decimal `json:"unit_price"`
	Total     decimal.Decimal `json:"total"`
}

// Quote is a validated, priced checkout: what the customer asked for and what it costs.
// It is the payload of checkout.cart.validated and travels on to payment and the order.
type Quote struct {
	CartID          string          `json:"cart_id"`
	CustomerID      string          `json:"customer_id"`
	CustomerEmail   string          `json:"customer_email"`
	PaymentMethodID string          `json:"payment_method_id"`
	ShippingAddress Address         `json:"shipping_address"`
	BillingAddress  Address         `json:"billing_address"`
	ReturnURL       string          `json:"return_url,omitempty"`
	Currency        string          `json:"currency"`
	Lines           []Line          `json:"lines"`
	Subtotal        decimal.Decimal `json:"subtotal"`
	Tax             decimal.Decimal `json:"tax"`
	// TaxRate is the rate applied to the subtotal (0.19 for 19%), which an invoice must
	// state; absent in a quote written before version 2, whose rate was not recorded.
	TaxRate  *decimal.Decimal `json:"tax_rate,omitempty" since:"2"`
	Shipping decimal.Decimal  `json:"shipping"`
	Total    decimal.Decimal  `json:"total"`
	// Discounts are the promotions taken off the subtotal, before tax and shipping; absent in
	// a quote written before version 3, which had none.
	Discounts []Discount `json:"discounts,omitempty" since:"3"`
	// TaxIncluded: the prices include the tax (the destination's consumer prices do, as VAT
	// in the EU): Tax is the part of the total that is tax, not added to it. Absent before
	// version 3, whose tax was always added.
	TaxIncluded bool `json:"tax_included,omitempty" since:"3"`
	// Renewal: the checkout pays a subscription's period off-session, with the payment
	// method saved on the Stripe customer. Absent before version 3, which had no subscriptions.
	Renewal *Renewal `json:"renewal,omitempty" since:"3"`
}

// Discount is a promotion applied to a quote: which, why, and how much it takes off.
type Discount struct {
	Code        string          `json:"code"` // the coupon's code, or the promotion's ID
	Description string          `json:"description"`
	Amount      decimal.Decimal `json:"amount"` // positive: what is taken off
	// Automatic: a promotion the shop applies to every cart it fits (a bundle, a volume
	// price), not a coupon the customer asked for, so nothing counts its uses.
	Automatic bool `json:"automatic,omitempty"`
}

// Discount is the sum of the quote's discounts.
func (q Quote) Discount() decimal.Decimal {
	sum := decimal.Zero
	for _, d := range q.Discounts {
		sum = sum.Add(d.Amount)
	}
	return sum
}

// Validate checks what every consumer of a quote relies on.
func (q Quote) Validate() error {
	switch {
	case q.CartID == "" || q.CustomerEmail == "" || q.PaymentMethodID == "":
		return fmt.Errorf("quote needs cart_id, customer_email and payment_method_id")
	case q.Currency == "":
		return fmt.Errorf("quote needs a currency")
	case len(q.Lines) == 0:
		return fmt.Errorf("quote has no lines")
	case !q.Total.IsPositive():
		return fmt.Errorf("quote total must be positive, got %s", q.Total)
	}
	subtotal := decimal.Zero
	for _, l := range q.Lines {
		if l.ProductID == "" || l.Quantity <= 0 {
			return fmt.Errorf("quote line %q has quantity %d", l.ProductID, l.Quantity)
		}
		if want := l.UnitPrice.Mul(decimal.NewFromInt(int64(l.Quantity))); !l.Total.Equal(want) {
			return fmt.Errorf("quote line %q: %d × %s is %s, not %s", l.ProductID, l.Quantity, l.UnitPrice, want, l.Total)
		}
		subtotal = subtotal.Add(l.Total)
	}
	// The amounts add up, so that what is charged is what the lines say.
	switch {
	case !q.Subtotal.Equal(subtotal):
		return fmt.Errorf("quote subtotal %s is not the lines' %s", q.Subtotal, subtotal)
	case q.Tax.IsNegative() || q.Shipping.IsNegative():
		return fmt.Errorf("quote tax %s and shipping %s must not be negative", q.Tax, q.Shipping)
	case q.TaxRate != nil && (q.TaxRate.IsNegative() || q.TaxRate.GreaterThanOrEqual(decimal.NewFromInt(1))):
		return fmt.Errorf("quote tax_rate %s is not a rate from 0 to below 1", q.TaxRate)
	case q.TaxIncluded && !q.Total.Equal(q.Subtotal.Sub(q.Discount()).Add(q.Shipping)):
		return fmt.Errorf("quote total %s is not subtotal %s - discounts %s + shipping %s (tax %s included)", q.Total, q.Subtotal, q.Discount(), q.Shipping, q.Tax)
	case q.TaxIncluded && q.Tax.GreaterThan(q.Total):
		return fmt.Errorf("quote tax %s is more than the total %s it is included in", q.Tax, q.Total)
	case !q.TaxIncluded && !q.Total.Equal(q.Subtotal.Sub(q.Discount()).Add(q.Tax).Add(q.Shipping)):
		return fmt.Errorf("quote total %s is not subtotal %s - discounts %s + tax %s + shipping %s", q.Total, q.Subtotal, q.Discount(), q.Tax, q.Shipping)
	}
	for _, d := range q.Discounts {
		if d.Code == "" || !d.Amount.IsPositive() {
			return fmt.Errorf("quote discount %q of %s: a discount names its code and takes off a positive amount", d.Code, d.Amount)
		}
	}
	if q.Discount().GreaterThan(q.Subtotal) {
		return fmt.Errorf("quote discounts %s are more than the subtotal %s", q.Discount(), q.Subtotal)
	}
	return nil
}

// StepFailure is the payload of every step's ".failed" event.
type StepFailure struct {
	Step    StepName `json:"step"`
	Code    string   `json:"code"`    // machine-readable, e.g. "insufficient_stock"
	Message string   `json:"message"` // for people
	// Uncertain is set when the step gave up without knowing whether its effect happened
	// (a deadline, retries run out): the step is undone as if it had succeeded.
	Uncertain bool `json:"uncertain,omitempty"`
	// Products names, as the catalog does, the products the failure is about (those short
	// of stock, say), for the customer's failure notice. Never the customer's own text.
	Products []string `json:"products,omitempty"`
	// Reference is what the failure is about outside the shop (the PaymentIntent Stripe
	// declined), so that a view rebuilt from the event holds it.
	Reference string `json:"reference,omitempty"`
	// Assessment is the fraud check's, on its rejection: what a view rebuilt from the event
	// holds, since rules that count other checkouts cannot judge it again the same way.
	Assessment *RiskAssessment `json:"assessment,omitempty" since:"3"`
}

// Failure codes a step reports. Services may add their own; these are the common ones.
const (
	CodeInvalidRequest     = "invalid_request"
	CodeCartNotFound       = "cart_not_found"
	CodeCartEmpty          = "cart_empty"
	CodeCartCheckedOut     = "cart_already_checked_out"
	CodeCartInCheckout     = "cart_in_checkout"
	CodeProductNotFound    = "product_not_found"
	CodeCurrencyMismatch   = "currency_mismatch"
	CodeInvalidQuantity    = "invalid_quantity"
	CodeUnsupportedCountry = "unsupported_destination"
	CodeInsufficientStock  = "insufficient_stock"
	CodeFraudRejected      = "fraud_rejected"
	CodeCardDeclined       = "card_declined"
	CodeInsufficientFunds  = "insufficient_funds"
	CodePaymentFailed      = "payment_failed"
	CodeOrderFailed        = "order_failed"
	// CodeAuthenticationFailed: the customer's bank refused the 3-D Secure authentication.
	CodeAuthenticationFailed = "authentication_failed"
	// CodeAuthenticationAbandoned: the customer did not authenticate before the deadline.
	CodeAuthenticationAbandoned = "authentication_abandoned"
	// CodeCheckoutCancelled: the step was asked for after its compensation (a release, a
	// refund) had already come; the checkout is being undone.
	CodeCheckoutCancelled  = "checkout_cancelled"
	CodeDeadlineExceeded   = "deadline_exceeded"   // the step did not finish in time
	CodeRetriesExhausted   = "retries_exhausted"   // the step kept failing; its input is in DEADLETTER
	CodeStepFailed         = "step_failed"         // the step refused its input for good; see DEADLETTER
	CodeFraudReviewDenied  = "fraud_review_denied" // an operator denied the checkout
	CodeReservationExpired = "reservation_expired"
	// CodeNotRequested: a step refused work the coordinator did not ask for (forged or stray).
	CodeNotRequested = "not_requested"
	// CodeHoldLimitExceeded: the reservation would have the customer (by email, customer ID
	// or payment method) hold more of a product in unfinished checkouts than the inventory
	// allows one customer.
	CodeHoldLimitExceeded = "hold_limit_exceeded"
	// CodeReturnURLNotAllowed: the request's return_url is not https, or not on the shop's
	// allow-list of return origins.
	CodeReturnURLNotAllowed = "return_url_not_allowed"
	// CodeCouponNotApplicable: the request's coupon is unknown, outside its dates, or does
	// not apply to this cart (its products, currency or minimum spend).
	CodeCouponNotApplicable = "coupon_not_applicable"
	// CodeCouponUsedUp: the coupon reached its redemption limit, in all or for this customer.
	CodeCouponUsedUp = "coupon_used_up"
	// CodeAuthenticationRequired: the bank asks for the customer's authentication (3-D
	// Secure) for a payment made without them present (a subscription's renewal).
	CodeAuthenticationRequired = "authentication_required"
)

// Reservation reports a reservation of every line of a quote.
type Reservation struct {
	ReservationID string         `json:"reservation_id"`
	Items         []ReservedItem `json:"items"`
}

// Validate: a reservation names itself and holds at least one unit of each line.
func (r Reservation) Validate() error {
	if r.ReservationID == "" || len(r.Items) == 0 {
		return fmt.Errorf("reservation_id and items are required")
	}
	for _, it := range r.Items {
		if it.ProductID == "" || it.Quantity < 1 {
			return fmt.Errorf("item %q: a product and a positive quantity are required, got %d", it.ProductID, it.Quantity)
		}
	}
	return nil
}

// ReservedItem is one product's reserved quantity.
type ReservedItem struct {
	ProductID string `json:"product_id"`
	Quantity  int    `json:"quantity"`
}

// RiskAssessment is how the fraud check judged a checkout: its risk, why, and rule by rule.
type RiskAssessment struct {
	Risk    decimal.Decimal `json:"risk"`              // 0 (none) to 1 (certain fraud)
	Reasons []string        `json:"reasons,omitempty"` // the rules that added to the risk, for people
	// Rules are every rule the checkout was judged by, in the order they apply; absent before
	// version 3, whose assessments listed the reasons only.
	Rules []RuleResult `json:"rules,omitempty" since:"3"`
}

// RuleResult is one fraud rule's part in an assessment.
type RuleResult struct {
	Rule string `json:"rule"` // its name in the rules (fraud.json)
	// Outcome is what the rule alone would decide, on top of the base risk: RuleClear,
	// RuleReview or RuleReject.
	Outcome      string          `json:"outcome"`
	Contribution decimal.Decimal `json:"contribution"` // what it added to the risk
	Detail       string          `json:"detail,omitempty"`
}

// A fraud rule's outcome (RuleResult.Outcome).
const (
	RuleClear  = "clear"
	RuleReview = "review"
	RuleReject = "reject"
)

// Payment reports a succeeded PaymentIntent for the quote's total.
type Payment struct {
	PaymentIntentID string          `json:"payment_intent_id"`
	Amount          decimal.Decimal `json:"amount"`
	Currency        string          `json:"currency"`
	Quote           Quote           `json:"quote"`
}

// Validate checks the fields create_order relies on.
func (p Payment) Validate() error {
	if p.PaymentIntentID == "" {
		return fmt.Errorf("payment_intent_id is required")
	}
	if !p.Amount.Equal(p.Quote.Total) || p.Currency != p.Quote.Currency {
		return fmt.Errorf("captured %s %s does not match the quote's %s %s", p.Amount, p.Currency, p.Quote.Total, p.Quote.Currency)
	}
	return p.Quote.Validate()
}

// Order is a stored order, the payload of checkout.order.created.
type Order struct {
	ID              string    `json:"order_id"`
	Number          string    `json:"order_number"`
	CheckoutID      string    `json:"checkout_id"`
	PaymentIntentID string    `json:"payment_intent_id"`
	Status          string    `json:"status"`
	CreatedAt       time.Time `json:"created_at"`
	Quote
}

// Validate: an order has its ID and number, and a sound quote.
func (o Order) Validate() error {
	if o.ID == "" || o.Number == "" {
		return fmt.Errorf("order_id and order_number are required")
	}
	return o.Quote.Validate()
}

// ShippingLabel is a stored label.
type ShippingLabel struct {
	OrderID        string    `json:"order_id"`
	Carrier        string    `json:"carrier"`
	TrackingNumber string    `json:"tracking_number"`
	Address        Address   `json:"address"`
	CreatedAt      time.Time `json:"created_at"`
}

// Shipment carries the label and the order, which notify_warehouse picks from.
type Shipment struct {
	Label ShippingLabel `json:"label"`
	Order Order         `json:"order"`
}

// PickRequest asks the warehouse to pick and pack an order (on the WAREHOUSE work queue).
type PickRequest struct {
	OrderID        string         `json:"order_id"`
	OrderNumber    string         `json:"order_number"`
	Carrier        string         `json:"carrier"`
	TrackingNumber string         `json:"tracking_number"`
	Items          []ReservedItem `json:"items"`
	ShipTo         Address        `json:"ship_to"`
}

// PickQueued reports that the pick request is queued.
type PickQueued struct {
	OrderID       string `json:"order_id"`
	PickRequestID string `json:"pick_request_id"`
}

// EmailSent reports the confirmation email handed to the mail system.
type EmailSent struct {
	OrderID   string `json:"order_id"`
	To        string `json:"to"`
	MessageID string `json:"message_id"`
}

// Release confirms that a checkout's reservation no longer holds stock.
type Release struct {
	ReservationID string         `json:"reservation_id,omitempty"` // empty when nothing was held
	Items         []ReservedItem `json:"items,omitempty"`
}

// Cancellation is the payload of checkout.order.cancelled: the order that was cancelled, or
// empty when none had been created (the checkout can then never create one).
type Cancellation struct {
	OrderID     string `json:"order_id,omitempty"`
	OrderNumber string `json:"order_number,omitempty"`
}

// Compensation is the payload of a compensation command.
type Compensation struct {
	Reason string `json:"reason"`
}

// Validate: an undo says why, so that whoever reads it later knows.
func (c Compensation) Validate() error {
	if strings.TrimSpace(c.Reason) == "" {
		return fmt.Errorf("reason is required")
	}
	return nil
}

// Refund confirms a refund.
type Refund struct {
	PaymentIntentID string          `json:"payment_intent_id"`
	RefundID        string          `json:"refund_id"`
	Amount          decimal.Decimal `json:"amount"`
	Currency        string          `json:"currency"`
	// Swept is what the compensation did to each PaymentIntent Stripe held for the
	// checkout, when it had no capture to refund and had to look them up.
	Swept []SweptIntent `json:"swept,omitempty"`
}

// SweptIntent is what a compensation did to one PaymentIntent of its checkout.
type SweptIntent struct {
	PaymentIntentID string          `json:"payment_intent_id"`
	Found           string          `json:"found"`  // its status when found
	Action          string          `json:"action"` // refunded, canceled or untouched
	RefundID        string          `json:"refund_id,omitempty"`
	Refunded        decimal.Decimal `json:"refunded"`
	Received        decimal.Decimal `json:"received"` // what it had taken
}

// CheckoutCompleted is the terminal success event.
type CheckoutCompleted struct {
	OrderID         string          `json:"order_id"`
	OrderNumber     string          `json:"order_number"`
	PaymentIntentID string          `json:"payment_intent_id"`
	Total           decimal.Decimal `json:"total"`
	Currency        string          `json:"currency"`
	// Warnings are failures of steps after the order that do not undo it (the
	// confirmation email could not be sent, say).
	Warnings []StepFailure `json:"warnings,omitempty"`
	// NeedsAttention is set when an operator must act: the order is paid but, for
	// example, could not be handed to the warehouse.
	NeedsAttention bool `json:"needs_attention,omitempty"`
}

// Validate: a completed checkout names its order and what it cost.
func (c CheckoutCompleted) Validate() error {
	switch {
	case c.OrderID == "":
		return fmt.Errorf("order_id is required")
	case c.Currency == "" || !c.Total.IsPositive():
		return fmt.Errorf("a positive total and its currency are required, got %s %q", c.Total, c.Currency)
	}
	return nil
}

// CheckoutFailed is the terminal failure event.
type CheckoutFailed struct {
	Step        StepName   `json:"step"`
	Code        string     `json:"code"`
	Message     string     `json:"message"`
	Compensated []StepName `json:"compensated,omitempty"` // steps undone, in the order undone
	// AlsoFailed are the other steps that failed, e.g. given up at the same deadline.
	AlsoFailed []StepFailure `json:"also_failed,omitempty"`
	// Whom to tell, when the checkout got far enough to know (for the failure notice).
	CustomerEmail string `json:"customer_email,omitempty"`
	CartID        string `json:"cart_id,omitempty"`
	// Products are the failed step's (StepFailure.Products), for the failure notice.
	Products []string `json:"products,omitempty"`
	// Renewal: the checkout was a subscription's renewal (its request's), so the failure
	// notice says what happens next. Absent before version 3, which had no subscriptions.
	Renewal *Renewal `json:"renewal,omitempty" since:"3"`
}

// Validate: a failed checkout says where and why.
func (f CheckoutFailed) Validate() error {
	if f.Step == "" || f.Code == "" {
		return fmt.Errorf("step and code are required")
	}
	return nil
}

// Waiting is the payload of a step's Waiting event: it waits for a person until Until.
type Waiting struct {
	Reason     string    `json:"reason"`
	Until      time.Time `json:"until"`
	NextAction string    `json:"next_action,omitempty"` // e.g. the URL where the customer authenticates
	Reference  string    `json:"reference,omitempty"`   // what it waits on: the PaymentIntent, the review
	// Assessment is the fraud check's, when it holds the checkout for review (as on a
	// rejection, StepFailure.Assessment).
	Assessment *RiskAssessment `json:"assessment,omitempty" since:"3"`
}

// DeadlineReached is the payload of checkout.deadline, the checkout's timer: it fires at
// Deadline, the earliest deadline of the running steps when it was set (Step's). Every
// step whose deadline has come by then fails, whichever it is.
type DeadlineReached struct {
	Step     StepName  `json:"step"`
	Deadline time.Time `json:"deadline"`
}

// Review decisions an operator can take.
const (
	ReviewApprove = "approve"
	ReviewDeny    = "deny"
)

// ReviewDecision is the payload of checkout.fraud.review_decided.
type ReviewDecision struct {
	Decision string `json:"decision"` // ReviewApprove or ReviewDeny
	Reviewer string `json:"reviewer"`
	Note     string `json:"note,omitempty"`
}

// Validate checks the decision.
func (d ReviewDecision) Validate() error {
	if d.Decision != ReviewApprove && d.Decision != ReviewDeny {
		return fmt.Errorf("decision must be %q or %q, got %q", ReviewApprove, ReviewDeny, d.Decision)
	}
	if strings.TrimSpace(d.Reviewer) == "" {
		return fmt.Errorf("reviewer is required")
	}
	return nil
}

// Recheck is the payload of checkout.payment.recheck, which payments schedules for itself
// while the customer authenticates.
type Recheck struct {
	PaymentIntentID string    `json:"payment_intent_id"`
	Until           time.Time `json:"until"`
	// Number counts the looks at the intent, from 1: the next one is Number+1.
	Number int `json:"number,omitempty"`
}

// Validate: a re-check names the PaymentIntent to look at.
func (r Recheck) Validate() error {
	if r.PaymentIntentID == "" {
		return fmt.Errorf("payment_intent_id is required")
	}
	return nil
}

// Expiry is the payload of checkout.inventory.expire, which inventory schedules for itself
// when it reserves.
type Expiry struct {
	ReservationID string `json:"reservation_id"`
}

// Validate: an expiry names the reservation it ends.
func (e Expiry) Validate() error {
	if e.ReservationID == "" {
		return fmt.Errorf("reservation_id is required")
	}
	return nil
}

// StuckWork is the payload of checkout.stuck: work that keeps failing and is still retried.
type StuckWork struct {
	Subject  string `json:"subject"`
	Consumer string `json:"consumer"`
	Attempts int    `json:"attempts"`
	Error    string `json:"error"`
}

// Sale reports that a completed checkout's reservation became a sale.
type Sale struct {
	ReservationID string `json:"reservation_id"`
}

// RejectedInput is the payload of checkout.rejected.
type RejectedInput struct {
	Subject        string `json:"subject"`
	Consumer       string `json:"consumer"`
	StreamSequence uint64 `json:"stream_sequence"`
	Reason         string `json:"reason"`
}

// Redrive is the payload of checkout.redrive.requested: who asked to run which steps again,
// why, and the how-manyth re-drive of the checkout it is; or, for a failed checkout, the new
// checkout that tries it again.
type Redrive struct {
	By            string     `json:"by"`
	Reason        string     `json:"reason"`
	Steps         []StepName `json:"steps"`
	Attempt       int        `json:"attempt"`
	NewCheckoutID string     `json:"new_checkout_id,omitempty"`
}

// Validate: a re-drive names who asked, why, and what it runs again.
func (r Redrive) Validate() error {
	switch {
	case strings.TrimSpace(r.By) == "" || strings.TrimSpace(r.Reason) == "":
		return fmt.Errorf("by and reason are required")
	case r.Attempt < 1:
		return fmt.Errorf("an attempt from 1 is required")
	case (len(r.Steps) == 0) == (r.NewCheckoutID == ""):
		return fmt.Errorf("either steps or a new_checkout_id is required")
	case r.NewCheckoutID != "" && !ValidCheckoutID(r.NewCheckoutID):
		return fmt.Errorf("new_checkout_id %q is not a checkout ID", r.NewCheckoutID)
	}
	return nil
}

// NextAttemptID is the ID of the checkout that tries failed checkout id again: id-r2, then
// id-r3 for id-r2; false when it would be longer than a checkout ID may be.
func NextAttemptID(id string) (string, bool) {
	base, n := id, 2
	if i := strings.LastIndex(id, "-r"); i > 0 {
		if k, err := strconv.Atoi(id[i+2:]); err == nil && k >= 2 && strconv.Itoa(k) == id[i+2:] {
			base, n = id[:i], k+1
		}
	}
	next := base + "-r" + strconv.Itoa(n)
	return next, ValidCheckoutID(next)
}

// RedriveOutcome is the payload of checkout.redrive.settled: the checkout's warnings and
// flag once the re-driven steps answered (or were given up on again).
type RedriveOutcome struct {
	Attempt        int           `json:"attempt"`
	Warnings       []StepFailure `json:"warnings,omitempty"`
	NeedsAttention bool          `json:"needs_attention,omitempty"`
}

// RedriveRequest is the request of checkouts.redrive.
type RedriveRequest struct {
	CheckoutID string `json:"checkout_id"`
	By         string `json:"by"`
	Reason     string `json:"reason"`
}

// RedriveReply is the reply of checkouts.redrive: the re-drive is in the stream and runs (the
// steps run again, or the new checkout that tries a failed one again).
type RedriveReply struct {
	CheckoutID    string     `json:"checkout_id"`
	Attempt       int        `json:"attempt"`
	Steps         []StepName `json:"steps"`
	NewCheckoutID string     `json:"new_checkout_id,omitempty"`
}

// DeadLetterRedrive is the payload of checkout.deadletter.redriven: which dead letter was
// published again, by whom, why, and where the copy is.
type DeadLetterRedrive struct {
	By      string `json:"by"`
	Reason  string `json:"reason"`
	Service string `json:"service"` // whose dead letter: the consumer that gave it up
	Subject string `json:"subject"`
	// StreamSequence is the original message's sequence in CHECKOUT; the copy's is in the
	// reply (and the copy carries the same event, so its handlers know it as one).
	StreamSequence uint64 `json:"stream_sequence"`
	LetterReason   string `json:"letter_reason"` // why the service gave it up
}

// Validate: a dead letter's re-drive names who asked, why, and which letter.
func (d DeadLetterRedrive) Validate() error {
	switch {
	case strings.TrimSpace(d.By) == "" || strings.TrimSpace(d.Reason) == "":
		return fmt.Errorf("by and reason are required")
	case d.Service == "" || d.Subject == "" || d.StreamSequence == 0:
		return fmt.Errorf("service, subject and stream_sequence are required")
	}
	return nil
}

// DeadLetterRedriveRequest is the request of deadletters.redrive: the dead letter of service
// (deadletter.<service>) for the message at stream_sequence in CHECKOUT, as checkout.rejected
// and the letter's Jetcheckout-Stream-Sequence header name it.
type DeadLetterRedriveRequest struct {
	Service        string `json:"service"`
	StreamSequence uint64 `json:"stream_sequence"`
	By             string `json:"by"`
	Reason         string `json:"reason"`
}

// DeadLetterRedriveReply is the reply of deadletters.redrive: the copy is in the stream at
// sequence, and the letter is gone from DEADLETTER.
type DeadLetterRedriveReply struct {
	CheckoutID string `json:"checkout_id"`
	Subject    string `json:"subject"`
	Sequence   uint64 `json:"sequence"`
}

// StepActiveRequest is the request of checkouts.step.active.
type StepActiveRequest struct {
	CheckoutID string   `json:"checkout_id"`
	Step       StepName `json:"step"`
}

// StepActiveReply is the reply of checkouts.step.active: whether the step is running or
// waiting in the checkout's state as the coordinator's bucket's leader has it (false for a
// checkout it has no state of).
type StepActiveReply struct {
	Active bool `json:"active"`
}

// RedriveSuffix is the part of an event ID that says which re-drive it belongs to ("" for
// none): ":redrive-<attempt>".
func RedriveSuffix(id string) string {
	if i := strings.LastIndex(id, ":redrive-"); i >= 0 {
		return id[i:]
	}
	return ""
}

// RedriveID is the ID of the re-drive request attempt of a checkout.
func RedriveID(checkoutID string, attempt int) string {
	return ID(checkoutID, RedriveRequested) + ":redrive-" + strconv.Itoa(attempt)
}

// OutputID is the ID of an event caused by the event causeID: id, carrying the cause's
// re-drive suffix, so that a step run again answers with new events.
func OutputID(id, causeID string) string {
	if suffix := RedriveSuffix(causeID); suffix != "" && RedriveSuffix(id) == "" {
		return id + suffix
	}
	return id
}
