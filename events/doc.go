// Package events is the checkout's contract: the envelope every event travels in, one
// payload type per event, every subject, stream, consumer and bucket name, and the checkout
// DAG declared once as data (Flow). It imports no NATS: services, the coordinator, the docs'
// event catalog and the tests all read the same declarations from here.
package events
