// Package events is the checkout's contract: the envelope every event travels in, one
// payload type per event, every subject, stream, consumer and bucket name, and the checkout
// DAG declared once as data (Flow), and who signs each event (signing.go). It imports no NATS
// client (nkeys only, for the signatures): services, the coordinator, the docs'
// event catalog and the tests all read the same declarations from here.
package events
