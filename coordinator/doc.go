// Package coordinator joins the checkout's parallel branches, gates the steps that must not
// run for a failing checkout, enforces every step's deadline, and decides the checkout's end.
//
// It keeps one key per checkout in the JetStream KV bucket events.BucketCheckouts, changed
// only by compare-and-swap on the key's revision (a conflict is retried by re-reading, never
// by overwriting). A running checkout's next event starts from the state this coordinator
// wrote last, kept in memory with its revision, rather than from a read: the compare-and-swap
// catches a write by anyone else (the event is then applied again to the state read from the
// bucket stream's leader). An outcome that writes nothing is decided on a read: a refusal, or
// an event of a checkout with no state, only on the leader's, since a replica answering a
// direct get may not have the latest write yet.
// Everything it decides follows from that state and the DAG declared in events.Flow:
//
//   - the triggers of the coordinated steps (process_payment once both branches succeeded;
//     create_order, then the confirmation and the shipping label, while the checkout stands);
//   - a deadline for every running step, as a message the server publishes at that time
//     (JetStream message schedules), moved when the step says it waits for a person;
//   - checkout.completed once every step succeeded or failed without failing the checkout
//     (with warnings, or flagged for attention);
//   - after a failure, once no step with something to undo is still running: the undo of each
//     step that succeeded or may have (it gave up not knowing), one at a time, latest first,
//     then checkout.failed. A step that answers late is still undone.
//
// Each decision is recorded in the same compare-and-swap as the event that caused it, so it
// is published once whatever order, duplication or redelivery the events arrive with.
// An ended checkout's key is written with a TTL (Config.Retention, 30 days by default: as long as the stream keeps events), so
// the bucket does not grow with every checkout ever made; an event that finds no key and is
// older than half that is a late copy of a removed checkout's event, and is dropped, never
// undone.
// Consumes: checkout.requested, every step's outcome, wait and undo confirmation,
// checkout.deadline, checkout.inventory.expired. Emits: the coordinated triggers, the undo
// commands, checkout.deadline (scheduled), checkout.completed, checkout.failed.
package coordinator
