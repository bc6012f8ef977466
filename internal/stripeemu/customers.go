package stripeemu

import (
	"maps"
	"net/http"
	"regexp"
)

// customer is a Customer: whom saved payment methods belong to.
type customer struct {
	id, email, name, description string
	created                      int64
	metadata                     map[string]string
}

type customerJSON struct {
	ID               string              `json:"id"`
	Object           string              `json:"object"`
	Address          *struct{}           `json:"address"`
	Balance          int64               `json:"balance"`
	Created          int64               `json:"created"`
	Currency         *string             `json:"currency"`
	DefaultSource    *string             `json:"default_source"`
	Delinquent       bool                `json:"delinquent"`
	Description      *string             `json:"description"`
	Email            *string             `json:"email"`
	InvoiceSettings  invoiceSettingsJSON `json:"invoice_settings"`
	Livemode         bool                `json:"livemode"`
	Metadata         map[string]string   `json:"metadata"`
	Name             *string             `json:"name"`
	Phone            *string             `json:"phone"`
	PreferredLocales []string            `json:"preferred_locales"`
	Shipping         *struct{}           `json:"shipping"`
	TaxExempt        string              `json:"tax_exempt"`
}

type invoiceSettingsJSON struct {
	CustomFields         []any   `json:"custom_fields"`
	DefaultPaymentMethod *string `json:"default_payment_method"`
	Footer               *string `json:"footer"`
}

func (c *customer) render() *customerJSON {
	return &customerJSON{
		ID: c.id, Object: "customer", Created: c.created, Description: optional(c.description),
		Email: optional(c.email), Metadata: maps.Clone(c.metadata), Name: optional(c.name),
		PreferredLocales: []string{}, TaxExempt: "none",
	}
}

// emailAddress is the loose shape Stripe accepts: something@host.tld.
var emailAddress = regexp.MustCompile(`^[^@\s]+@[^@\s]+\.[^@\s]+$`)

// POST /v1/customers
func (e *Emulator) createCustomer(c apiCall) response {
	p := c.params
	if err := p.checkKnown("email", "name", "description", "metadata[*]", "expand[]"); err != nil {
		return refuse(err)
	}
	if _, err := p.expand(); err != nil {
		return refuse(err)
	}
	email := p.str("email")
	if email != "" && (len(email) > 512 || !emailAddress.MatchString(email)) {
		return refuse(invalid("email_invalid", "email", "Invalid email address: %s", email))
	}
	metadata, err := p.metadata()
	if err != nil {
		return refuse(err)
	}
	cus := &customer{id: "cus_" + randomID(14), email: email, name: p.str("name"), description: p.str("description"),
		created: e.now().Unix(), metadata: metadata}
	e.customers[cus.id] = cus
	return ok(cus.render())
}

// GET /v1/customers/{id}
func (e *Emulator) getCustomer(c apiCall) response {
	if err := c.params.checkKnown("expand[]"); err != nil {
		return refuse(err)
	}
	if _, err := c.params.expand(); err != nil {
		return refuse(err)
	}
	cus, found := e.customers[c.id]
	if !found {
		return refuse(noSuch(http.StatusNotFound, "customer", "id", c.id))
	}
	return ok(cus.render())
}
