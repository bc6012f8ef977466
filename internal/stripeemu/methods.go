package stripeemu

import "net/http"

// method is a PaymentMethod: a test token used as it is (pm_card_visa), or a card saved to
// a customer. As in Stripe's test mode, saving a token saves a new PaymentMethod (pm_...)
// with the token's card, so the token stays usable by anyone.
type method struct {
	id       string
	card     testCard
	customer string // "" when not saved to a customer
	created  int64
}

// findMethod looks a payment method up: saved ones first, then the test tokens.
func (e *Emulator) findMethod(id string) (*method, bool) {
	if m, found := e.methods[id]; found {
		return m, true
	}
	if c, found := testCards[id]; found {
		return &method{id: id, card: c, created: e.now().Unix()}, true
	}
	return nil, false
}

// methodParam resolves the payment_method parameter of a PaymentIntent request: nil when
// it is absent, resource_missing when unknown.
func (e *Emulator) methodParam(id string) (*method, error) {
	if id == "" {
		return nil, nil
	}
	m, found := e.findMethod(id)
	if !found {
		return nil, noSuch(http.StatusBadRequest, "PaymentMethod", "payment_method", id)
	}
	return m, nil
}

// save attaches a copy of card to a customer.
func (e *Emulator) save(card testCard, customerID string) *method {
	m := &method{id: "pm_" + randomID(24), card: card, customer: customerID, created: e.now().Unix()}
	e.methods[m.id] = m
	return m
}

// checkOwner applies Stripe's rule that a payment method saved to a customer pays only for
// that customer. A test token belongs to nobody, so any customer may use it (Stripe's test
// mode uses a fresh copy of it each time).
func checkOwner(m *method, customerID string) error {
	switch {
	case m == nil || m.customer == "" || m.customer == customerID:
		return nil
	case customerID == "":
		return invalid("", "payment_method", "The `payment_method` parameter supplied %s belongs to the Customer %s. Please include the Customer in the `customer` parameter on the PaymentIntent.", m.id, m.customer)
	default:
		return invalid("", "payment_method", "The customer does not have a payment method with the ID %s. The payment method must be attached to the customer.", m.id)
	}
}

// POST /v1/payment_methods/{id}/attach
func (e *Emulator) attachMethod(c apiCall) response {
	p := c.params
	if err := p.checkKnown("customer", "expand[]"); err != nil {
		return refuse(err)
	}
	if _, err := p.expand(); err != nil {
		return refuse(err)
	}
	customerID := p.str("customer")
	if customerID == "" {
		return refuse(missingParam("customer"))
	}
	m, found := e.findMethod(c.id)
	if !found {
		return refuse(noSuch(http.StatusNotFound, "PaymentMethod", "payment_method", c.id))
	}
	if _, found := e.customers[customerID]; !found {
		return refuse(noSuch(http.StatusBadRequest, "customer", "customer", customerID))
	}
	switch {
	case m.customer == customerID:
		return ok(m.render())
	case m.customer != "":
		return refuse(invalid("", "", "The payment method you provided has already been attached to a customer."))
	case m.card.declinesCheck:
		// Stripe checks the card with its bank before saving it: a card that declines
		// charges declines that check (pm_card_chargeCustomerFail is the exception).
		d := m.card.decline
		return response{http.StatusPaymentRequired, errorBody{&apiError{Type: typeCard, Code: d.code,
			DeclineCode: d.declineCode, Message: d.message, Param: d.param, DocURL: docURL(d.code)}}}
	}
	return ok(e.save(m.card, customerID).render())
}

// GET /v1/payment_methods/{id}: a saved payment method, or a test token (saved to nobody).
func (e *Emulator) getMethod(c apiCall) response {
	if err := c.params.checkKnown("expand[]"); err != nil {
		return refuse(err)
	}
	if _, err := c.params.expand(); err != nil {
		return refuse(err)
	}
	m, found := e.findMethod(c.id)
	if !found {
		return refuse(noSuch(http.StatusNotFound, "PaymentMethod", "payment_method", c.id))
	}
	return ok(m.render())
}

// render is the PaymentMethod object.
func (m *method) render() *methodJSON {
	c := m.card
	return &methodJSON{
		ID: m.id, Object: "payment_method", Created: m.created, Customer: optional(m.customer),
		Metadata: map[string]string{}, Type: "card",
		Card: cardJSON{Brand: c.brand, Country: "US", ExpMonth: 12, ExpYear: 2034, Funding: c.funding, Last4: c.last4},
	}
}
