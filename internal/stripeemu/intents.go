package stripeemu

import (
	"net/http"
	"net/url"
	"slices"
)

// returnURLRequired is Stripe's refusal to confirm, without a return_url, an intent whose
// automatic payment methods may redirect.
const returnURLRequired = "A `return_url` must be specified because this Payment Intent is configured to automatically accept the payment methods enabled in the Dashboard, some of which may require a full page redirect to succeed. If you do not want to accept redirect-based payment methods, set `automatic_payment_methods[enabled]` to `true` and `automatic_payment_methods[allow_redirects]` to `never` when creating Setup Intents and Payment Intents."

var createIntentParams = []string{
	"amount", "currency", "payment_method", "confirm", "return_url",
	"automatic_payment_methods[enabled]", "automatic_payment_methods[allow_redirects]",
	"payment_method_types[]", "capture_method", "description", "metadata[*]", "expand[]",
	"customer", "off_session", "setup_future_usage",
}

// confirmation is what a confirmation needs besides the intent.
type confirmation struct {
	returnURL string
	expand    map[string]bool
	host      string
}

// POST /v1/payment_intents
func (e *Emulator) createIntent(c apiCall) response {
	pi, confirm, conf, err := e.parseNewIntent(c.params)
	if err != nil {
		return refuse(err)
	}
	if confirm {
		if err := checkConfirmable(pi, conf.returnURL); err != nil {
			return refuse(err)
		}
	}
	conf.host = c.host
	e.addIntent(pi)
	if !confirm {
		return ok(pi.render(conf.expand))
	}
	return e.confirm(pi, conf)
}

// parseNewIntent validates the parameters of a new intent.
func (e *Emulator) parseNewIntent(p params) (pi *intent, confirm bool, conf confirmation, err error) {
	if err := p.checkKnown(createIntentParams...); err != nil {
		return nil, false, conf, err
	}
	amount, given, err := p.integer("amount")
	if err != nil {
		return nil, false, conf, err
	}
	if !given {
		return nil, false, conf, missingParam("amount")
	}
	pi = &intent{amount: amount, currency: p.str("currency"), customer: p.str("customer"), description: p.str("description")}
	if err := checkCurrency(pi.currency); err != nil {
		return nil, false, conf, err
	}
	if err := checkAmount(amount, pi.currency); err != nil {
		return nil, false, conf, err
	}
	if confirm, err = p.boolean("confirm"); err != nil {
		return nil, false, conf, err
	}
	if err := parseMethodTypes(p, pi); err != nil {
		return nil, false, conf, err
	}
	if pi.captureMethod, err = p.oneOf("capture_method", "automatic", "automatic_async", "manual"); err != nil {
		return nil, false, conf, err
	}
	if pi.captureMethod == "" {
		pi.captureMethod = "automatic"
	}
	if pi.method, err = e.methodParam(p.str("payment_method")); err != nil {
		return nil, false, conf, err
	}
	if _, found := e.customers[pi.customer]; pi.customer != "" && !found {
		return nil, false, conf, noSuch(http.StatusBadRequest, "customer", "customer", pi.customer)
	}
	if err := checkOwner(pi.method, pi.customer); err != nil {
		return nil, false, conf, err
	}
	if pi.offSession, err = parseOffSession(p); err != nil {
		return nil, false, conf, err
	}
	if pi.offSession && !confirm {
		return nil, false, conf, invalid("", "off_session", "You can only pass in `off_session` when `confirm` is `true`.")
	}
	if pi.setupFutureUsage, err = p.oneOf("setup_future_usage", "on_session", "off_session"); err != nil {
		return nil, false, conf, err
	}
	if pi.metadata, err = p.metadata(); err != nil {
		return nil, false, conf, err
	}
	if conf.returnURL, err = parseReturnURL(p); err != nil {
		return nil, false, conf, err
	}
	if conf.returnURL != "" && !confirm {
		return nil, false, conf, invalid("", "return_url", "You can only pass in a `return_url` when `confirm` is `true`.")
	}
	if conf.expand, err = p.expand(expandCharge, expandMethod); err != nil {
		return nil, false, conf, err
	}
	return pi, confirm, conf, nil
}

// parseMethodTypes applies automatic_payment_methods and payment_method_types. At this API
// version automatic payment methods are on when payment_method_types is not given.
func parseMethodTypes(p params, pi *intent) error {
	types := p.list("payment_method_types")
	for _, t := range types {
		if t != "card" {
			return invalid("", "payment_method_types", "The payment method type %q is invalid. Please ensure the provided type is activated in your dashboard (https://dashboard.stripe.com/account/payments/settings) and your account is enabled for any preview features that you are trying to use.", t)
		}
	}
	automatic := len(types) == 0
	allowRedirects := "always"
	if p.has("automatic_payment_methods") {
		if p.str("automatic_payment_methods[enabled]") == "" {
			return missingParam("automatic_payment_methods[enabled]")
		}
		enabled, err := p.boolean("automatic_payment_methods[enabled]")
		if err != nil {
			return err
		}
		if enabled && len(types) > 0 {
			return invalid("", "", "You may only specify one of these parameters: automatic_payment_methods, payment_method_types.")
		}
		automatic = enabled
		if r, err := p.oneOf("automatic_payment_methods[allow_redirects]", "always", "never"); err != nil {
			return err
		} else if r != "" {
			allowRedirects = r
		}
	}
	pi.methodTypes = []string{"card"}
	if automatic {
		pi.automatic = &automaticMethods{allowRedirects: allowRedirects}
	}
	return nil
}

// parseOffSession reads off_session: a boolean, or "one_off" or "recurring", which Stripe
// also takes for true.
func parseOffSession(p params) (bool, error) {
	switch s := p.str("off_session"); s {
	case "", "false":
		return false, nil
	case "true", "one_off", "recurring":
		return true, nil
	default:
		return false, invalid("parameter_invalid_boolean", "off_session", "Invalid boolean: %s", s)
	}
}

func parseReturnURL(p params) (string, error) {
	s := p.str("return_url")
	if s == "" {
		return "", nil
	}
	if u, err := url.Parse(s); err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", invalid("url_invalid", "return_url", "Not a valid URL")
	}
	return s, nil
}

// checkConfirmable applies the rules every confirmation follows.
func checkConfirmable(pi *intent, returnURL string) error {
	if pi.method == nil {
		return unexpectedState("You cannot confirm this PaymentIntent because it's missing a payment method. You can either update the PaymentIntent with a payment method and then confirm it again, or confirm it again directly with a payment method.")
	}
	if pi.automatic != nil && pi.automatic.allowRedirects != "never" && returnURL == "" {
		return invalid("", "", returnURLRequired)
	}
	return nil
}

func (e *Emulator) addIntent(pi *intent) {
	pi.id = "pi_" + randomID(24)
	pi.clientSecret = pi.id + "_secret_" + randomID(25)
	pi.created = e.now().Unix()
	pi.status = statusRequiresPaymentMethod
	if pi.method != nil {
		pi.status = statusRequiresConfirmation
	}
	e.intents[pi.id] = pi
	e.intentOrder = append(e.intentOrder, pi)
}

// confirm attempts the payment with the intent's test card.
func (e *Emulator) confirm(pi *intent, conf confirmation) response {
	card := pi.method.card
	pi.lastError, pi.nextAction = nil, nil
	switch {
	case card.outcome == declines:
		return e.decline(pi, card.decline, conf)
	case card.outcome == authenticate && pi.offSession && !(card.setUpForOffSession && pi.method.customer != ""):
		// Nobody is there to authenticate: the bank's request for it is a decline.
		return e.decline(pi, authenticationRequired, conf)
	case card.outcome == authenticate && !pi.offSession:
		pi.status = statusRequiresAction
		pi.nextAction = authenticationAction(pi, conf)
		return ok(pi.render(conf.expand))
	default:
		e.charge(pi)
		return ok(pi.render(conf.expand))
	}
}

// decline fails the attempt: a 402 card_error that carries the intent, back in
// requires_payment_method with the error as its last_payment_error.
func (e *Emulator) decline(pi *intent, d decline, conf confirmation) response {
	ch := e.addCharge(pi)
	ch.status, ch.failureCode, ch.failureMessage = "failed", d.code, d.message
	pi.lastError = &apiError{Type: typeCard, Code: d.code, DeclineCode: d.declineCode, Message: d.message,
		Param: d.param, Charge: ch.id, DocURL: docURL(d.code), PaymentMethod: pi.method.render()}
	// As in Stripe, a failed attempt detaches the payment method from the intent.
	pi.method, pi.status = nil, statusRequiresPaymentMethod
	body := *pi.lastError
	body.PaymentIntent = pi.render(conf.expand)
	return response{http.StatusPaymentRequired, errorBody{&body}}
}

// charge takes the money: captured now, or held for a later capture.
func (e *Emulator) charge(pi *intent) {
	if pi.setupFutureUsage != "" && pi.customer != "" && pi.method.customer == "" {
		// setup_future_usage saves the card to the intent's customer once it has paid.
		pi.method = e.save(pi.method.card, pi.customer)
	}
	ch := e.addCharge(pi)
	ch.status = statusSucceeded
	if pi.captureMethod == "manual" {
		pi.status, pi.amountCapturable = statusRequiresCapture, pi.amount
		return
	}
	ch.captured = pi.amount
	pi.status, pi.amountReceived = statusSucceeded, pi.amount
}

func (e *Emulator) addCharge(pi *intent) *charge {
	ch := &charge{id: "ch_" + randomID(24), created: e.now().Unix(), intent: pi, paymentMethod: pi.methodID(),
		amount: pi.amount, currency: pi.currency}
	e.charges[ch.id] = ch
	pi.latestCharge = ch
	return ch
}

// authenticationAction is the 3D Secure step: a page to redirect to when the caller gave a
// return_url, otherwise an action for Stripe.js. The page is the emulator's own
// (/_emulator/3ds/<id>); CompleteAuthentication plays the customer on it.
func authenticationAction(pi *intent, conf confirmation) *nextActionJSON {
	page := "http://" + conf.host + "/_emulator/3ds/" + pi.id + "?client_secret=" + url.QueryEscape(pi.clientSecret)
	if conf.returnURL == "" {
		return &nextActionJSON{Type: "use_stripe_sdk",
			UseStripeSDK: map[string]string{"type": "three_d_secure_redirect", "stripe_js": page}}
	}
	return &nextActionJSON{Type: "redirect_to_url", RedirectToURL: &redirectJSON{ReturnURL: conf.returnURL, URL: page}}
}

// GET /v1/payment_intents/{id}
func (e *Emulator) getIntent(c apiCall) response {
	pi, expand, err := e.intentCall(c, "client_secret")
	if err != nil {
		return refuse(err)
	}
	return ok(pi.render(expand))
}

// intentCall checks the parameters of a call on an existing intent (allowed, plus expand[])
// and finds the intent.
func (e *Emulator) intentCall(c apiCall, allowed ...string) (*intent, map[string]bool, error) {
	if err := c.params.checkKnown(append(allowed, "expand[]")...); err != nil {
		return nil, nil, err
	}
	expand, err := c.params.expand(expandCharge, expandMethod)
	if err != nil {
		return nil, nil, err
	}
	pi, found := e.intents[c.id]
	if !found {
		return nil, nil, noSuch(http.StatusNotFound, "payment_intent", "intent", c.id)
	}
	return pi, expand, nil
}

// POST /v1/payment_intents/{id}/confirm
func (e *Emulator) confirmIntent(c apiCall) response {
	p := c.params
	pi, expand, err := e.intentCall(c, "payment_method", "return_url", "capture_method", "off_session")
	if err != nil {
		return refuse(err)
	}
	conf := confirmation{host: c.host, expand: expand}
	method, err := e.methodParam(p.str("payment_method"))
	if err != nil {
		return refuse(err)
	}
	if err := checkOwner(method, pi.customer); err != nil {
		return refuse(err)
	}
	offSession, err := parseOffSession(p)
	if err != nil {
		return refuse(err)
	}
	capture, err := p.oneOf("capture_method", "automatic", "automatic_async", "manual")
	if err != nil {
		return refuse(err)
	}
	if conf.returnURL, err = parseReturnURL(p); err != nil {
		return refuse(err)
	}
	switch pi.status {
	case statusRequiresPaymentMethod, statusRequiresConfirmation, statusRequiresAction:
	case statusSucceeded:
		return refuse(unexpectedState("You cannot confirm this PaymentIntent because it has already succeeded after being previously confirmed."))
	default:
		return refuse(unexpectedState("You cannot confirm this PaymentIntent because it has a status of %s. Only a PaymentIntent with one of the following statuses may be confirmed: requires_payment_method, requires_confirmation, requires_action.", pi.status))
	}
	attempt := *pi
	if method != nil {
		attempt.method = method
	}
	if err := checkConfirmable(&attempt, conf.returnURL); err != nil {
		return refuse(err)
	}
	pi.method, pi.offSession = attempt.method, offSession
	if capture != "" {
		pi.captureMethod = capture
	}
	return e.confirm(pi, conf)
}

// POST /v1/payment_intents/{id}/capture
func (e *Emulator) captureIntent(c apiCall) response {
	pi, expand, err := e.intentCall(c, "amount_to_capture")
	if err != nil {
		return refuse(err)
	}
	amount, given, err := c.params.integer("amount_to_capture")
	if err != nil {
		return refuse(err)
	}
	if pi.status != statusRequiresCapture {
		return refuse(unexpectedState("This PaymentIntent could not be captured because it has a status of %s. Only a PaymentIntent with one of the following statuses may be captured: requires_capture.", pi.status))
	}
	if !given {
		amount = pi.amountCapturable
	}
	if amount < 1 || amount > pi.amountCapturable {
		return refuse(invalid("amount_too_large", "amount_to_capture", "The amount to capture must be between 1 and the amount capturable (%s).", formatAmount(pi.amountCapturable, pi.currency)))
	}
	pi.latestCharge.captured = amount
	pi.status, pi.amountReceived, pi.amountCapturable = statusSucceeded, amount, 0
	return ok(pi.render(expand))
}

// POST /v1/payment_intents/{id}/cancel
func (e *Emulator) cancelIntent(c apiCall) response {
	pi, expand, err := e.intentCall(c, "cancellation_reason")
	if err != nil {
		return refuse(err)
	}
	reason, err := c.params.oneOf("cancellation_reason", "duplicate", "fraudulent", "requested_by_customer", "abandoned")
	if err != nil {
		return refuse(err)
	}
	cancelable := []string{statusRequiresPaymentMethod, statusRequiresCapture, statusRequiresConfirmation, statusRequiresAction}
	if !slices.Contains(cancelable, pi.status) {
		return refuse(unexpectedState("You cannot cancel this PaymentIntent because it has a status of %s. Only a PaymentIntent with one of the following statuses may be canceled: requires_payment_method, requires_capture, requires_confirmation, requires_action, processing.", pi.status))
	}
	pi.status, pi.canceledAt, pi.cancellationReason = statusCanceled, e.now().Unix(), reason
	pi.amountCapturable, pi.nextAction = 0, nil
	return ok(pi.render(expand))
}

// GET /v1/payment_intents
func (e *Emulator) listIntents(c apiCall) response {
	p := c.params
	if err := p.checkKnown("limit", "starting_after", "ending_before", "expand[]"); err != nil {
		return refuse(err)
	}
	expand, err := p.expand("data."+expandCharge, "data."+expandMethod)
	if err != nil {
		return refuse(err)
	}
	items, hasMore, err := page(p, newestFirst(e.intentOrder), func(pi *intent) string { return pi.id }, "payment_intent")
	if err != nil {
		return refuse(err)
	}
	itemExpand := map[string]bool{expandCharge: expand["data."+expandCharge], expandMethod: expand["data."+expandMethod]}
	list := listJSON{Object: "list", Data: []any{}, HasMore: hasMore, URL: "/v1/payment_intents"}
	for _, pi := range items {
		list.Data = append(list.Data, pi.render(itemExpand))
	}
	return ok(list)
}
