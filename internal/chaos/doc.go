// Package chaos attacks the checkout's claim that it never loses money. It runs
// nats-server (JetStream on disk, fsync on every write), every service and the Stripe
// emulator as separate OS processes, drives a mix of checkouts through them while it
// SIGKILLs services and the nats-server at random moments and switches Stripe faults on
// and off, then stops the faults, waits for every checkout to end and reconciles what the
// stores, the stream, the emulator and an SMTP sink hold (see Reconcile).
//
// Every random choice (the load mix, which process dies when, for how long, which Stripe
// fault) comes from one seed, printed at the start: the same seed replays the same plan.
// The operating system's scheduling is not replayed, so a replay exercises the same
// faults, not necessarily the same interleaving.
//
// The same load and reconciliation run against the three-node compose cluster (RunCluster,
// `make chaos-cluster`): there the faults are docker's (kill, stop, pause, network
// disconnect) on NATS nodes and service replicas, and, for a rebuildable service, the
// destruction of the replica holding its consumer's pin together with its volume (the
// takeover time measured); the stores are copied out of the volumes, and the mail is
// mailpit's. A target is where a run's state comes from.
//
// RunUpgrade (`make upgrade-test`) drives the same load, without faults, through a rolling
// upgrade of that cluster: it starts on the previous release's image, and every container is
// replaced with the current build one at a time, first with the writers held at the old
// schema version, then with the hold lifted; then it reconciles, and lists the dead letters.
//
// It runs from tests behind the chaos build tag: `make chaos` (long), `make chaos-short`
// (CI), `make chaos-cluster` and `make upgrade-test`. The Stripe emulator keeps its state in memory, so it is
// never faulted: real Stripe does not forget PaymentIntents either.
package chaos
