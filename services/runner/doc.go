// Package runner is the plumbing every checkout step shares, so that a step is only its
// handler. For each message on the step's durable consumer the runner decodes the event,
// opens the service's bbolt transaction, calls the handler, records the event ID with the
// handler's outputs in the same transaction, commits (fsync), publishes the outputs with
// their IDs as Nats-Msg-Id, waits for the stream's acks, and only then acks the input.
//
// Exactly-once effects on at-least-once delivery: an event whose ID is already recorded is
// not handled again. If it is a redelivery of the very message that was recorded (same
// stream sequence) its outputs may never have reached the stream, so they are published
// again; a second copy of the event published later is acknowledged and dropped, because
// its first copy was acked only after its outputs were stored in the stream.
//
// Errors are sorted: a malformed input (events.ErrMalformed) or a Permanent error
// terminates the message and announces it on checkout.rejected; any other error is
// transient and the message is redelivered after a growing delay.
package runner
