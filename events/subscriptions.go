package events

import (
	"errors"
	"fmt"
	"net/mail"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// A subscription is a standing order: its items are bought again every period, each period
// a checkout of its own through the same DAG, paid off-session with the payment method the
// customer saved on a Stripe customer. Its record lives in the KV bucket BucketSubscriptions
// (changed by compare-and-swap only); its renewals are fired by a JetStream message schedule
// (@every) in StreamSubscriptions, never by a ticker of ours.
const (
	BucketSubscriptions = "subscriptions"
	// StreamSubscriptions holds each active subscription's schedule on
	// SubscriptionScheduleSubject and the renewals the server fires from it on
	// SubscriptionDueSubject.
	StreamSubscriptions = "SUBSCRIPTIONS"
)

// SubscriptionsSubjects are StreamSubscriptions' subjects: not subscriptions.>, which would
// take the service's requests (subscriptions.create, ...) as messages to store.
var SubscriptionsSubjects = []string{"subscriptions.schedule.*", "subscriptions.retry.*", SubscriptionsDue}

// SubscriptionScheduleSubject is where subscription id's renewal schedule waits.
func SubscriptionScheduleSubject(id string) string { return "subscriptions.schedule." + id }

// SubscriptionRetrySubject is where the retry of subscription id's declined period waits.
func SubscriptionRetrySubject(id string) string { return "subscriptions.retry." + id }

// SubscriptionDueSubject is where the server fires subscription id's renewals and retries.
func SubscriptionDueSubject(id string) string { return "subscriptions.due." + id }

// SubscriptionsDue are the subjects of every fired renewal.
const SubscriptionsDue = "subscriptions.due.*"

// The subscriptions service's request-reply endpoints (nats micro), for the HTTP API and
// the nats CLI.
const (
	SubscriptionsCreate Subject = "subscriptions.create" // CreateSubscription → Subscription
	SubscriptionsGet    Subject = "subscriptions.get"    // SubscriptionRef → Subscription
	SubscriptionsList   Subject = "subscriptions.list"   // → []Subscription
	SubscriptionsPause  Subject = "subscriptions.pause"  // SubscriptionRef → Subscription
	SubscriptionsResume Subject = "subscriptions.resume" // SubscriptionRef → Subscription
	SubscriptionsCancel Subject = "subscriptions.cancel" // SubscriptionRef → Subscription
	SubscriptionsChange Subject = "subscriptions.change" // ChangeSubscription → Subscription
)

// ChangeSubscription is the request of subscriptions.change: a new plan from the next
// period on (the one being paid for keeps its own). What it leaves out stays as it is.
type ChangeSubscription struct {
	ID           string     `json:"id"`
	Items        []CartItem `json:"items,omitempty"`
	IntervalDays int        `json:"interval_days,omitempty"`
}

// Validate explains the first thing wrong with the change.
func (c ChangeSubscription) Validate() error {
	switch {
	case len(c.Items) == 0 && c.IntervalDays == 0:
		return errors.New("a change needs items, interval_days or both")
	case c.IntervalDays != 0 && (c.IntervalDays < 1 || c.IntervalDays > MaxIntervalDays):
		return fmt.Errorf("interval_days must be 1 to %d, got %d", MaxIntervalDays, c.IntervalDays)
	}
	for _, it := range c.Items {
		if strings.TrimSpace(it.ProductID) == "" || it.Quantity < 1 {
			return fmt.Errorf("each item needs a product_id and a quantity of at least 1, got %+v", it)
		}
	}
	return nil
}

// Plan is what a subscription buys, and how often.
type Plan struct {
	Items        []CartItem `json:"items"`
	IntervalDays int        `json:"interval_days"`
	Interval     Duration   `json:"interval"`
}

// Subscription statuses.
const (
	SubscriptionActive = "active"
	// SubscriptionPastDue: its latest period's payment was declined and is being tried
	// again (dunning); no later period starts meanwhile.
	SubscriptionPastDue   = "past_due"
	SubscriptionPaused    = "paused"
	SubscriptionCancelled = "cancelled"
)

// CreateSubscription is the request of subscriptions.create.
type CreateSubscription struct {
	// ID names the subscription, chosen by the shop: creating it again is safe, so a create
	// whose answer was lost is asked again, never made twice.
	ID              string     `json:"id"`
	CustomerID      string     `json:"customer_id"`
	CustomerEmail   string     `json:"customer_email"`
	StripeCustomer  string     `json:"stripe_customer"`   // cus_..., holding the saved payment method
	PaymentMethodID string     `json:"payment_method_id"` // pm_..., attached to StripeCustomer
	ShippingAddress Address    `json:"shipping_address"`
	BillingAddress  Address    `json:"billing_address"`
	Currency        string     `json:"currency"`
	Items           []CartItem `json:"items"`
	// IntervalDays is the length of a period: every N days, 1 to 366.
	IntervalDays int `json:"interval_days"`
}

// MaxIntervalDays is the longest period: a year.
const MaxIntervalDays = 366

// Validate explains the first thing wrong with the request; the catalog judges the items
// and the currency when the first period's cart is made.
func (c CreateSubscription) Validate() error {
	switch {
	case !ValidSubscriptionID(c.ID):
		return fmt.Errorf("id is required: sub_ and 1 to 40 letters, digits or '_' of your choosing (a create asked again is then the same subscription), got %q", c.ID)
	case strings.TrimSpace(c.CustomerID) == "":
		return errors.New("customer_id is required")
	case !strings.HasPrefix(c.StripeCustomer, "cus_"):
		return fmt.Errorf("stripe_customer must be a Stripe customer ID (cus_...), got %q", c.StripeCustomer)
	case !strings.HasPrefix(c.PaymentMethodID, "pm_"):
		return fmt.Errorf("payment_method_id must be a Stripe payment method ID (pm_...) saved on the customer, got %q", c.PaymentMethodID)
	case c.IntervalDays < 1 || c.IntervalDays > MaxIntervalDays:
		return fmt.Errorf("interval_days must be 1 to %d, got %d", MaxIntervalDays, c.IntervalDays)
	case len(c.Items) == 0:
		return errors.New("items must hold at least one product")
	case strings.TrimSpace(c.Currency) == "":
		return errors.New("currency is required")
	}
	if addr, err := mail.ParseAddress(c.CustomerEmail); err != nil || addr.Address != c.CustomerEmail {
		return fmt.Errorf("customer_email must be a plain email address like ada@example.com, got %q", c.CustomerEmail)
	}
	if err := c.ShippingAddress.validate("shipping_address"); err != nil {
		return err
	}
	return c.BillingAddress.validate("billing_address")
}

// SubscriptionRef names a subscription: the request of subscriptions.get, pause, resume and
// cancel. Reason, for a cancel, says why (kept on the record).
type SubscriptionRef struct {
	ID     string `json:"id"`
	Reason string `json:"reason,omitempty"`
}

// Subscription is a subscription's record, as subscriptions.get answers it.
type Subscription struct {
	CreateSubscription
	Status string `json:"status"`
	// Interval is the period's length as the service runs it: IntervalDays days of the
	// service's day (a day is shortened by configuration in tests and demos, never slept).
	Interval  Duration  `json:"interval"`
	CreatedAt time.Time `json:"created_at"`
	// NextRenewal is when the next period is due: a renewal fired earlier than half a period
	// before it starts nothing (a schedule firing twice, a clock that went back).
	NextRenewal time.Time `json:"next_renewal"`
	// Periods are the periods started, oldest first (the last MaxPeriodsKept).
	Periods []Period `json:"periods"`
	// CancelReason says why a cancelled subscription was.
	CancelReason string `json:"cancel_reason,omitempty"`
	// NextPlan, after a change, is the plan from the next period on; the period it starts
	// restarts the cycle.
	NextPlan *Plan `json:"next_plan,omitempty"`
}

// MaxPeriodsKept bounds the periods a record lists; older ones are in the checkouts' history.
const MaxPeriodsKept = 120

// Period is one period of a subscription: its checkout (the latest attempt's), and how that
// ended.
type Period struct {
	N          int       `json:"n"`
	CheckoutID string    `json:"checkout_id"`
	StartedAt  time.Time `json:"started_at"`
	// Attempts counts its checkouts; RetryAt, while it is being tried again after a declined
	// payment, says when the next one starts (Code and Reason say why the last failed).
	Attempts int        `json:"attempts,omitempty"`
	RetryAt  *time.Time `json:"retry_at,omitempty"`
	// Outcome is "" while the checkout runs, then PeriodPaid or PeriodFailed.
	Outcome string `json:"outcome,omitempty"`
	// Code and Reason say why a failed period failed (the checkout's failure).
	Code   string `json:"code,omitempty"`
	Reason string `json:"reason,omitempty"`
}

// Period outcomes.
const (
	PeriodPaid   = "paid"
	PeriodFailed = "failed"
)

// Open is the latest period if it has not ended: being paid for, or waiting for its retry.
func (s *Subscription) Open() *Period {
	if len(s.Periods) == 0 || s.Periods[len(s.Periods)-1].Outcome != "" {
		return nil
	}
	return &s.Periods[len(s.Periods)-1]
}

// Last is the latest period started; ok is false before the first.
func (s Subscription) Last() (p Period, ok bool) {
	if len(s.Periods) == 0 {
		return Period{}, false
	}
	return s.Periods[len(s.Periods)-1], true
}

var subscriptionIDPattern = regexp.MustCompile(`^sub_[A-Za-z0-9_]{1,40}$`)

// ValidSubscriptionID reports whether id can name a subscription: sub_ and letters, digits
// or '_', so that "<id>-<period>" is a checkout ID that parses back.
func ValidSubscriptionID(id string) bool { return subscriptionIDPattern.MatchString(id) }

// RenewalCheckoutID is the checkout ID of a subscription's period's attempt: sub_x-3 for the
// first, sub_x-3-2 for the second (a subscription ID has no '-').
func RenewalCheckoutID(subscriptionID string, period, attempt int) string {
	id := subscriptionID + "-" + strconv.Itoa(period)
	if attempt > 1 {
		id += "-" + strconv.Itoa(attempt)
	}
	return id
}

// ParseRenewalCheckoutID is RenewalCheckoutID's inverse; ok is false for any other checkout.
func ParseRenewalCheckoutID(checkoutID string) (subscriptionID string, period, attempt int, ok bool) {
	parts := strings.Split(checkoutID, "-")
	if len(parts) < 2 || len(parts) > 3 || !ValidSubscriptionID(parts[0]) {
		return "", 0, 0, false
	}
	nums := make([]int, 0, 2)
	for _, p := range parts[1:] {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || strconv.Itoa(n) != p {
			return "", 0, 0, false
		}
		nums = append(nums, n)
	}
	attempt = 1
	if len(nums) == 2 {
		if nums[1] < 2 {
			return "", 0, 0, false // the first attempt has no suffix
		}
		attempt = nums[1]
	}
	return parts[0], nums[0], attempt, true
}

// RetriedRenewalCodes are the failures of a renewal that its subscription tries again
// (dunning): the payment was declined, or needs the customer. Any other (out of stock, a
// product withdrawn, a fraud rejection) fails the period alone; the next one renews.
var RetriedRenewalCodes = []string{CodeCardDeclined, CodeInsufficientFunds, CodeAuthenticationRequired, CodePaymentFailed}
