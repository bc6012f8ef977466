// Package httpapi is the HTTP API and the run UI: start a checkout over HTTP
// (POST /checkout/process publishes checkout.requested with a JetStream ack before it
// answers), follow it (GET /checkouts/{id}, its events, server-sent events), the demo
// store's carts and products and the fraud review queue (over NATS request-reply to the
// catalog and fraud services), and server-rendered pages under /ui/.
//
// Its read model is its own: a durable consumer "api" on checkout.> folds every event into
// a bbolt file (api.db), one view per checkout computed from that checkout's events and
// the DAG in events.Checkout (Fold). It consumes: every checkout event. It emits:
// checkout.requested.
package httpapi
