package notifications

import (
	"bytes"
	"fmt"
	"html/template"
	"net/mail"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
)

// explanation is what a failure notice says about one kind of failure, in plain words:
// what happened, and what the customer can do about it.
type explanation struct {
	what, todo string
}

var technicalProblem = explanation{
	what: "We could not complete your order because of a technical problem on our side.",
	todo: "Please try again in a few minutes. If it happens again, contact us and we will sort it out.",
}

var checkAgain = explanation{
	what: "Some of the details of your order were missing or could not be accepted.",
	todo: "Please check your cart, your email address and your shipping address, then try again.",
}

// explanations maps failure codes to what the notice says. A code not in it is shown as
// it is, since nothing better can be said.
var explanations = map[string]explanation{
	events.CodeCardDeclined: {
		what: "Your card was declined by your bank.",
		todo: "Please try again with another card, or ask your bank why the payment was declined.",
	},
	events.CodeInsufficientFunds: {
		what: "Your card was declined because there were not enough funds available on it.",
		todo: "Please try again with another card or payment method.",
	},
	events.CodePaymentFailed: {
		what: "We could not take the payment with the card you gave.",
		todo: "Please check your card details and try again, or use another card.",
	},
	events.CodeAuthenticationFailed: {
		what: "Your bank asked you to confirm the payment (for example with a code or in your banking app), and the confirmation did not succeed.",
		todo: "Please try again and complete your bank's confirmation when it is shown, or use another card.",
	},
	events.CodeAuthenticationAbandoned: {
		what: "Your bank asked you to confirm the payment (for example with a code or in your banking app), and the confirmation was not completed in time.",
		todo: "Please try again and complete your bank's confirmation when it is shown, or use another card.",
	},
	events.CodeAuthenticationRequired: {
		what: "Your bank asked you to confirm this renewal of your subscription yourself, which we cannot do for you while you are away, so it was not charged.",
		todo: "Please save on your subscription a card that your bank lets us charge while you are away, or contact us.",
	},
	events.CodeFraudRejected: {
		what: "Our automatic security checks could not approve this order.",
		todo: "If you believe this is a mistake, please contact us; you can also try another card.",
	},
	events.CodeFraudReviewDenied: {
		what: "Our team reviewed this order and could not approve it.",
		todo: "If you believe this is a mistake, please contact us.",
	},
	events.CodeInsufficientStock: {
		what: "Some items in your cart are no longer in stock in the quantity you asked for.",
		todo: "Please lower the quantities in your cart or remove the items that are sold out, then check out again.",
	},
	events.CodeReservationExpired: {
		what: "The items we were holding for you were released because the checkout took too long to finish.",
		todo: "Please check out again; the items may well still be available.",
	},
	events.CodeCartNotFound: {
		what: "We could not find your cart.",
		todo: "Please add the items to your cart again and check out.",
	},
	events.CodeCartEmpty: {
		what: "Your cart was empty.",
		todo: "Please add the items you want to your cart and check out again.",
	},
	events.CodeCartCheckedOut: {
		what: "This cart has already been checked out.",
		todo: "Look for the confirmation of your earlier order in your inbox; to buy more, start a new cart.",
	},
	events.CodeCartInCheckout: {
		what: "Another checkout of the same cart was already in progress.",
		todo: "Please wait a few minutes for it to finish, and look for its confirmation before trying again.",
	},
	events.CodeProductNotFound: {
		what: "An item in your cart is no longer sold.",
		todo: "Please remove it from your cart and check out again.",
	},
	events.CodeInvalidQuantity: {
		what: "An item in your cart has a quantity we cannot accept.",
		todo: "Please correct the quantities in your cart and check out again.",
	},
	events.CodeCurrencyMismatch: {
		what: "The prices in your cart are not all in the same currency.",
		todo: "Please refresh your cart so that every item is priced in one currency, then check out again.",
	},
	events.CodeUnsupportedCountry: {
		what: "We do not deliver to the shipping address you gave.",
		todo: "Please check out again with a shipping address in a country we deliver to.",
	},
	events.CodeCheckoutCancelled: {
		what: "The checkout was cancelled before it could finish.",
		todo: "Please check out again when you are ready.",
	},
	events.CodeHoldLimitExceeded: {
		what: "You already have as many of some items held in unfinished checkouts as we hold for one customer.",
		todo: "Please complete your other checkouts, or wait until they end and release their items, then check out again; or lower the quantity.",
	},
	events.CodeCouponNotApplicable: {
		what: "The coupon you entered could not be applied to this order: it may have expired, or not cover these items, this currency or this amount.",
		todo: "Please check out again without the coupon, or with one that applies.",
	},
	events.CodeCouponUsedUp: {
		what: "The coupon you entered has already been used as many times as it allows.",
		todo: "Please check out again without it.",
	},
	events.CodeInvalidRequest:      checkAgain,
	events.CodeReturnURLNotAllowed: checkAgain,
	events.CodeDeadlineExceeded:    technicalProblem,
	events.CodeRetriesExhausted:    technicalProblem,
	events.CodeStepFailed:          technicalProblem,
	events.CodeOrderFailed:         technicalProblem,
}

// cartProven are the codes with which validate_cart refuses a cart it found, owned by the
// customer ID of the request: the only failures of validate_cart that tell anybody. Any
// other (a malformed request, a cart that does not exist or is someone else's, a refused
// return_url, a technical failure) came from a request nothing vouches for: its email
// address and cart ID are anybody's text, so the shop does not write to that address.
// The client learns of the failure from the checkout's status (GET /checkouts/{id}).
var cartProven = map[string]bool{
	events.CodeCartEmpty: true, events.CodeCartCheckedOut: true, events.CodeCartInCheckout: true,
	events.CodeProductNotFound: true, events.CodeCurrencyMismatch: true, events.CodeInvalidQuantity: true,
	events.CodeUnsupportedCountry: true, events.CodeCouponNotApplicable: true, events.CodeCouponUsedUp: true,
}

// Notifies reports whether a failed checkout gets a failure notice.
func Notifies(f events.CheckoutFailed) bool { return noticeRefusal(f) == "" }

// noticeRefusal says why a failed checkout gets no notice, or "" when it gets one.
func noticeRefusal(f events.CheckoutFailed) string {
	switch {
	case f.CustomerEmail == "":
		return "the checkout failed before its customer's email address was known"
	case f.Step == events.StepValidateCart && !cartProven[f.Code]:
		return "the request was not tied to a cart of its customer, so its email address is not trusted"
	}
	return ""
}

// maxProducts is how many products a notice names; a cart rarely has more short at once.
const maxProducts = 10

// productList names the products a failure is about: " (Saga Hoodie, Mug)", or "".
func productList(products []string) string {
	var names []string
	for _, p := range products[:min(len(products), maxProducts)] {
		if p = clean(p); p != "" {
			names = append(names, p)
		}
	}
	if len(names) == 0 {
		return ""
	}
	return ": " + strings.Join(names, ", ")
}

// explain says what a failure code means for the customer.
func explain(code string) explanation {
	if e, ok := explanations[code]; ok {
		return e
	}
	e := explanation{
		what: "We could not complete your order.",
		todo: "Please try again later. If it happens again, contact us and we will sort it out.",
	}
	if c := clean(code); c != "" {
		e.what = fmt.Sprintf("We could not complete your order (reason: %s).", c)
	}
	return e
}

// Whether the customer's money was touched: a compensated process_payment is a refund.
const (
	refundedSentence   = "Any amount charged for this order has been refunded to your card. Your bank may take a few business days to show it."
	notChargedSentence = "You have not been charged."
)

// failureView is what both bodies of the failure notice show.
type failureView struct {
	Intro, What, Money, Todo, Subscription, Reference string
}

func failureViewOf(checkoutID string, f events.CheckoutFailed, date time.Time) failureView {
	e := explain(f.Code)
	if list := productList(f.Products); list != "" {
		e.what = strings.TrimSuffix(e.what, ".") + list + "."
	}
	v := failureView{Intro: "we could not complete your order", What: e.what, Todo: e.todo, Money: notChargedSentence,
		Reference: reference(checkoutID, f.CartID)}
	if slices.Contains(f.Compensated, events.StepProcessPayment) {
		v.Money = refundedSentence
	}
	if f.Renewal != nil {
		v.Intro, v.Subscription = "we could not renew your subscription", whatNext(*f.Renewal, f.Code, date)
	}
	return v
}

// whatNext tells a subscriber what comes after a renewal failed: the retry and when, the end
// of the subscription after the last one, or, for a failure no retry mends, the next period.
func whatNext(r events.Renewal, code string, failed time.Time) string {
	switch {
	case !slices.Contains(events.RetriedRenewalCodes, code):
		return "This period of your subscription was not charged and will not be retried; your subscription carries on, and the next renewal comes as planned."
	case r.RetryIn != nil:
		return fmt.Sprintf("We will try to charge your saved card again on %s. If your card can pay by then, there is nothing for you to do.",
			failed.Add(r.RetryIn.Duration).UTC().Format("Monday 2 January 2006 at 15:04 UTC"))
	case r.FinalAction == events.SubscriptionPaused:
		return "This was our last attempt: your subscription is paused, and nothing more will be charged until you resume it."
	}
	return "This was our last attempt: your subscription has been cancelled, and nothing more will be charged."
}

// shopMadeID is the form of the checkout IDs the shop makes (co_ and 96 bits in hex).
var shopMadeID = regexp.MustCompile(`^co_[0-9a-f]{24}$`)

// reference quotes only identifiers the shop made: the cart's (a notice goes out only for a
// cart found and tied to its customer), and the checkout ID when the shop made it. A client
// may choose its checkout ID, 64 characters of its own words ("ACCOUNT-LOCKED-call-..."):
// that one is never quoted in shop-branded mail.
func reference(checkoutID, cartID string) string {
	var parts []string
	if shopMadeID.MatchString(checkoutID) {
		parts = append(parts, checkoutID)
	}
	if cart := clean(cartID); cart != "" {
		parts = append(parts, "cart "+cart)
	}
	if len(parts) == 0 {
		return ""
	}
	return "Your reference: " + strings.Join(parts, ", ") + "."
}

const failureSubject = "We could not complete your order"

func (v failureView) text() []byte {
	subscription := ""
	if v.Subscription != "" {
		subscription = "Your subscription: " + v.Subscription + "\n\n"
	}
	return fmt.Appendf(nil, "Hello,\n\nWe are sorry: %s.\n\n"+
		"What happened: %s\n\n%s\n\nWhat you can do: %s\n\n%s%s Please mention it if you contact us.\n",
		v.Intro, v.What, v.Money, v.Todo, subscription, v.Reference)
}

var failureHTML = template.Must(template.New("failure").Parse(`<!DOCTYPE html>
<html><body>
<p>Hello,</p>
<p>We are sorry: {{.Intro}}.</p>
<p><strong>What happened:</strong> {{.What}}</p>
<p>{{.Money}}</p>
<p><strong>What you can do:</strong> {{.Todo}}</p>
{{if .Subscription}}<p><strong>Your subscription:</strong> {{.Subscription}}</p>
{{end}}
<p>{{.Reference}} Please mention it if you contact us.</p>
</body></html>
`))

// renderFailure builds the failure notice of a checkout. Like render it is a pure
// function of its arguments, so a resend is the same message.
func renderFailure(checkoutID string, f events.CheckoutFailed, from *mail.Address, date time.Time) (Message, error) {
	v := failureViewOf(checkoutID, f, date)
	var html bytes.Buffer
	if err := failureHTML.Execute(&html, v); err != nil {
		return Message{}, fmt.Errorf("render html: %w", err)
	}
	// "." never occurs in a checkout ID, so the notice's name is never a confirmation's.
	name := fileName(checkoutID) + ".failure"
	return compose(email{
		name: name, idLocal: name, boundarySeed: name,
		from: from, to: f.CustomerEmail, subject: failureSubject, date: date,
		text: v.text(), html: html.Bytes(),
	})
}
