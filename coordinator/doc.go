// Package coordinator joins the checkout's parallel branches and decides its end.
//
// It keeps one key per checkout in the JetStream KV bucket events.BucketCheckouts, changed
// only by compare-and-swap on the key's revision (a conflict is retried by re-reading,
// never by overwriting). Everything it decides follows from that state and the DAG declared
// in events.Flow:
//
//   - a join step's trigger (checkout.payment.requested) once all its dependencies succeeded;
//   - checkout.completed once every sink of the DAG succeeded;
//   - after a failure, once no step is still running: the compensation commands of the
//     succeeded steps, one at a time in reverse order of the DAG, then checkout.failed.
//
// Each decision is recorded in the state in the same compare-and-swap that applied the event
// causing it, so it is published once whatever order, duplication or redelivery the events
// arrive with. Consumes: every step's Done and Failed subject and every Compensated subject.
// Emits: checkout.payment.requested, checkout.inventory.release, checkout.payment.refund,
// checkout.completed, checkout.failed.
package coordinator
