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
//
// The front door (auth.go, ratelimit.go): customers' data needs the reader or admin token
// (a checkout's own URL answers anyone, redacted); checkouts started without a token are
// rate-limited per client and per email; the UI's forms refuse other origins and the
// review form needs its CSRF token.
package httpapi
