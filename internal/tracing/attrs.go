package tracing

import "go.opentelemetry.io/otel/attribute"

// Attributes more than one kind of span carries (docs/OPERATIONS.md, "Traces").
const (
	CheckoutID = attribute.Key("jetcheckout.checkout_id")
	EventID    = attribute.Key("jetcheckout.event_id") // the event handled, caused, or published
	Step       = attribute.Key("jetcheckout.step")
	Subject    = attribute.Key("messaging.destination.name") // the subject a message came on or goes to
	System     = attribute.Key("messaging.system")
)
