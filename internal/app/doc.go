// Package app is the one place that wires the checkout together: configuration, the
// embedded nats-server and Stripe emulator of the default set-up, one bbolt file and one
// runner per service, the request-reply endpoints, and graceful shutdown. cmd/jetcheckout
// only calls Main.
package app
