package stripeemu

// outcome is what confirming a PaymentIntent with a test card does.
type outcome int

const (
	succeeds     outcome = iota
	declines             // 402 card_error, the intent back to requires_payment_method
	authenticate         // requires_action: the customer must complete 3D Secure
)

// testCard is one of Stripe's test PaymentMethods (https://stripe.com/docs/testing).
type testCard struct {
	brand, last4, funding string
	outcome               outcome
	decline               decline // for declines
	// declinesCheck: the card check Stripe makes when the card is attached to a customer
	// declines it too, so only pm_card_chargeCustomerFail can be saved and decline later.
	declinesCheck bool
	// setUpForOffSession: once saved to a customer the card pays off-session without
	// authentication (it asks for it only when it is set up); other cards that authenticate
	// decline off-session.
	setUpForOffSession bool
}

// decline is a card_error: the error code, the issuer's decline code, Stripe's message and
// the parameter it blames.
type decline struct {
	code, declineCode, message, param string
}

func card(brand, last4 string) testCard {
	return testCard{brand: brand, last4: last4, funding: "credit", outcome: succeeds}
}

func declined(last4, code, declineCode, message, param string) testCard {
	return testCard{brand: "visa", last4: last4, funding: "credit", outcome: declines, declinesCheck: true,
		decline: decline{code: code, declineCode: declineCode, message: message, param: param}}
}

func authenticates(last4 string) testCard {
	return testCard{brand: "visa", last4: last4, funding: "credit", outcome: authenticate}
}

// authenticationRequired is the decline of a card whose bank asks for authentication while
// the customer is not there to give it (off_session).
var authenticationRequired = decline{code: "authentication_required", declineCode: "authentication_required",
	message: "Your card was declined. This transaction requires authentication."}

const genericDeclineMessage = "Your card was declined."

var (
	genericDecline    = declined("0002", "card_declined", "generic_decline", genericDeclineMessage, "")
	insufficientFunds = declined("9995", "card_declined", "insufficient_funds", "Your card has insufficient funds.", "")
	lostCard          = declined("9987", "card_declined", "lost_card", genericDeclineMessage, "")
	stolenCard        = declined("9979", "card_declined", "stolen_card", genericDeclineMessage, "")
	fraudulent        = declined("0019", "card_declined", "fraudulent", genericDeclineMessage, "")
	expiredCard       = declined("0069", "expired_card", "expired_card", "Your card has expired.", "exp_month")
	incorrectCVC      = declined("0127", "incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect.", "cvc")
	processingError   = declined("0119", "processing_error", "processing_error", "An error occurred while processing your card. Try again in a little bit.", "")
	// Attaches, then declines every charge.
	customerFail = testCard{brand: "visa", last4: "0341", funding: "credit", outcome: declines,
		decline: genericDecline.decline}
	setUpOffSession = testCard{brand: "visa", last4: "3155", funding: "credit", outcome: authenticate, setUpForOffSession: true}
)

// testCards are the test payment methods the emulator knows. Any other ID is a
// resource_missing error, as in Stripe.
var testCards = map[string]testCard{
	"pm_card_visa":               card("visa", "4242"),
	"pm_card_visa_debit":         {brand: "visa", last4: "5556", funding: "debit"},
	"pm_card_mastercard":         card("mastercard", "4444"),
	"pm_card_mastercard_debit":   {brand: "mastercard", last4: "8210", funding: "debit"},
	"pm_card_mastercard_prepaid": {brand: "mastercard", last4: "5100", funding: "prepaid"},
	"pm_card_amex":               card("amex", "8431"),
	"pm_card_discover":           card("discover", "1117"),
	"pm_card_diners":             card("diners", "0004"),
	"pm_card_jcb":                card("jcb", "0505"),
	"pm_card_unionpay":           card("unionpay", "0005"),
	"pm_card_us":                 card("visa", "4242"),
	"pm_card_gb":                 card("visa", "0002"),
	"pm_card_jp":                 card("visa", "0003"),

	"pm_card_chargeDeclined":                       genericDecline,
	"pm_card_visa_chargeDeclined":                  genericDecline,
	"pm_card_chargeDeclinedInsufficientFunds":      insufficientFunds,
	"pm_card_visa_chargeDeclinedInsufficientFunds": insufficientFunds,
	"pm_card_chargeDeclinedLostCard":               lostCard,
	"pm_card_visa_chargeDeclinedLostCard":          lostCard,
	"pm_card_chargeDeclinedStolenCard":             stolenCard,
	"pm_card_visa_chargeDeclinedStolenCard":        stolenCard,
	"pm_card_chargeDeclinedFraudulent":             fraudulent,
	"pm_card_visa_chargeDeclinedFraudulent":        fraudulent,
	"pm_card_chargeDeclinedExpiredCard":            expiredCard,
	"pm_card_visa_chargeDeclinedExpiredCard":       expiredCard,
	"pm_card_chargeDeclinedIncorrectCvc":           incorrectCVC,
	"pm_card_visa_chargeDeclinedIncorrectCvc":      incorrectCVC,
	"pm_card_chargeDeclinedProcessingError":        processingError,
	"pm_card_visa_chargeDeclinedProcessingError":   processingError,
	"pm_card_chargeCustomerFail":                   customerFail,
	"pm_card_authenticationRequired":               authenticates("3184"),
	"pm_card_authenticationRequiredOnSetup":        setUpOffSession,
	"pm_card_threeDSecure2Required":                authenticates("3220"),
}
