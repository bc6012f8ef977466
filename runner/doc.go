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
// its first copy was acked only after its outputs were stored in the stream. A handler
// whose event changed nothing and would change nothing again (Unchanged: a timer that finds
// its work done) is acked with no record and no commit.
//
// A step that calls the outside world (Stripe, SMTP) is a Call route: its calls are made
// before the transaction, with no lock held, so a slow answer holds up only its own
// checkout, and the handler it returns records what they did.
//
// Errors are sorted. A malformed input (events.ErrMalformed) is terminated, copied to
// DEADLETTER and announced on checkout.rejected. A step's trigger has a deadline: an
// expired one is refused, and a trigger that keeps failing (MaxDeliver attempts), fails for
// good (Permanent) or crashes its process is given up: copied to DEADLETTER, and the step's
// failure, marked uncertain, becomes its outcome so the coordinator undoes it. Everything
// else (undos, settlements) is never given up: retried with growing delays and announced on
// checkout.stuck. A panicking handler is retried like a failing one. Each of these is a
// policy, middleware around the handling of one delivery, composed in the order policies.go
// lists, as are the metrics and the tracing.
//
// Throughput: with Concurrency above 1 the runner handles several messages at once in lanes,
// one lane per checkout (hashed), so a checkout's events are still handled in stream order
// while different checkouts overlap their commits and publish acks.
//
// Held messages: the consumer's AckWait is short (DefaultAckWait, 5s), so the messages of a
// process that dies come back to the next one within seconds, long before a step's deadline.
// Every message the runner holds (being handled, or waiting in its lane) longer than a
// quarter of AckWait gets an InProgress heartbeat every quarter, so a slow handler (a Stripe
// or SMTP call) keeps its message and the ones queued behind it. A heartbeat is not a
// delivery: Attempt and MaxDeliver count only real redeliveries, and one after a crash is
// deduplicated by the handled-event record like any other. HandlerTimeout (30s) bounds a
// handler. Messages the client library has prefetched are not held yet: they wait there
// only while all the lanes' slots are taken, and may then be redelivered (and deduplicated).
//
// A lost view: a runner that starts on a new bbolt file while its consumer has handled
// messages before rebuilds the file from the stream first when Config.Rebuild says the
// service's view is a pure function of its events, and logs an error otherwise (rebuild.go).
// Handlers of such a service take times from their event (EventTime) and numbers from its
// stream sequence (Sequence), never from the process.
//
// Instances of such a service (Config.PinnedTTL) each have their own file and share the
// consumer through a pinned priority group: one handles the messages, the others keep their
// views warm from the stream and take over when it stops pulling (standby.go).
package runner
