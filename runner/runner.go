package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/topology"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"
	"go.opentelemetry.io/otel/trace"
)

// Handler handles one event inside the service's bbolt transaction and returns the events
// to emit. It never acks or publishes: the runner commits tx with the outputs, publishes
// them, then acks. A returned error rolls the transaction back.
type Handler func(ctx context.Context, tx *bolt.Tx, in events.Envelope) ([]events.Envelope, error)

// Middleware wraps every route's handler, inside its transaction: a fault injected in tests,
// say, without touching the steps. For a Call route it wraps the handler the call returns,
// so it runs after the call to the outside world was made. The runner's own behaviour
// (retries, giving up, deadlines, metrics, tracing) is middleware around the whole delivery
// instead: its policies (policies.go).
type Middleware func(route events.Subject, next Handler) Handler

// Decoder turns a raw message into an envelope; from identifies the message.
type Decoder func(subject string, data []byte, from events.Origin) (events.Envelope, error)

// DecodeRequest is the Decoder of the public checkout.requested, which is not an
// envelope: whatever it holds becomes one, and the step reports what is wrong with it.
func DecodeRequest(_ string, data []byte, from events.Origin) (events.Envelope, error) {
	return events.RequestEnvelope(data, from), nil
}

// Route binds a subject to its handler.
type Route struct {
	Subject events.Subject
	Handle  Handler
	// Call, set instead of Handle, is for a step that calls the outside world (Stripe,
	// SMTP): it makes its calls with no transaction open and returns the handler that
	// records what they did. In the transaction a call would hold bbolt's one writer lock,
	// and every lane of the service would wait behind it: with Stripe answering in 300 ms,
	// three payments a second. Call runs only for an event not handled yet, and its
	// checkout's other events wait in its lane meanwhile; it may run again for the same
	// event (a retry, a crash before the commit), so its calls carry idempotency keys.
	// Middleware wraps the handler it returns.
	Call   func(ctx context.Context, in events.Envelope) (Handler, error)
	Decode Decoder // nil: events.Decode
	// Outcomes and Replay make what the route decided a fact of the stream, for a view
	// that is rebuilt (Config.Rebuild) although its handler's answer does not follow from
	// the input and the view alone: it called the outside world (Stripe, SMTP), or it depends
	// on the order in which concurrent checkouts committed (the last unit of stock). A
	// rebuild does not run such a route's handler: it finds the input's outputs on the
	// Outcomes subjects in the stream and gives them to Replay, which changes the view as
	// the handler did when it decided that (see rebuild.go).
	Outcomes []events.Subject
	Replay   Replayer
	// Scheduled, with Replay, gives the scheduled outputs (a timer set or cancelled,
	// Envelope.Schedule) that the handler emitted together with the recorded outcomes: the
	// stream holds those in the producer's timer stream, where a rebuild cannot look them
	// up, so it records them with the outcomes and a redelivery after the rebuild publishes
	// what live handling did. They must follow from the input and the outcomes alone.
	Scheduled func(in events.Envelope, recorded []events.Envelope) []events.Envelope
}

// Replayer applies to the view, in tx, the outcome that live handling recorded for in:
// recorded are the input's outputs found in the stream (caused by in), in the order of
// Outcomes; nil when the input was acknowledged with none stored: it had none, or the
// stream dropped them as copies of earlier events with the same IDs (a handler that
// reports an outcome again), so a Replayer changes the view only as far as it has not
// changed already, as the handler would. Scheduled outputs are not in the stream, and not
// in the replayed record of the input's outputs either.
type Replayer func(ctx context.Context, tx *bolt.Tx, in events.Envelope, recorded []events.Envelope) error

// CommitFunc applies an event to a store of state exactly once and returns the events to
// publish: the outputs of a first application, the recorded outputs again when seq is the
// stream sequence that was recorded (a redelivery), nothing for a later copy of the event.
type CommitFunc func(ctx context.Context, in events.Envelope, seq uint64) ([]events.Envelope, error)

// Hooks let a test stop the runner at the crash windows: a hook that returns an error
// abandons the message where it is (no publish, no ack) and Run returns that error, as if
// the process had died there.
type Hooks struct {
	// BeforeCommit: the handler ran (its calls to Stripe or SMTP were made), its
	// transaction is not committed and is rolled back.
	BeforeCommit func(in events.Envelope) error
	AfterCommit  func(in events.Envelope) error // state committed, outputs not yet published
	AfterPublish func(in events.Envelope) error // outputs in the stream, input not yet acked
}

// Config of a runner: one durable consumer, and either a bbolt file whose transactions the
// routes' handlers run in (DB), or a CommitFunc of the consumer's own (the coordinator's
// compare-and-swap on its KV bucket).
type Config struct {
	Name       string // durable consumer name, and the runner's name in logs
	Stream     string // default events.StreamCheckout
	Routes     []Route
	JS         jetstream.JetStream
	DB         *bolt.DB
	Commit     CommitFunc // when set, used instead of DB and the routes' handlers
	Log        *slog.Logger
	Middleware []Middleware
	Hooks      Hooks
	// MaxDeliver is how many times a step's trigger is tried before the step is given up
	// (its failure published, the input kept in DEADLETTER). Other inputs (compensations,
	// settlements) are never given up: every MaxDeliver attempts they are announced on
	// checkout.stuck, and retried. Default 20.
	MaxDeliver int
	// AckWait is how long the server waits for an answer to a delivery before it delivers
	// the message again: how soon the messages of a process that died come back. The
	// runner sends heartbeats (InProgress) for the messages it holds, so it bounds no
	// handler. Default topology.DefaultAckWait.
	AckWait time.Duration
	// HandlerTimeout is the longest one message is handled (a step's deadline may end it
	// sooner). Default 30s.
	HandlerTimeout time.Duration
	RetryBase      time.Duration // first redelivery delay of a transient failure, default 200ms
	RetryMax       time.Duration // longest redelivery delay, default 30s
	// StuckAfter is how long an undo fails for (at RetryMax between attempts) before it is
	// announced on checkout.stuck: an undo waiting a moment for Stripe is not news. One
	// that fails for good is announced at once. Default 1 minute.
	StuckAfter time.Duration
	// Flow is the DAG whose steps the routes run and undo; default events.Checkout.
	Flow events.Flow
	// Deadlines override the flow's per-step deadlines, as the coordinator's do.
	Deadlines map[events.StepName]time.Duration
	// Concurrency is how many messages are handled at once, each checkout's events one
	// after the other (see lanes). Default 1: one at a time, in stream order.
	Concurrency int
	// Retention is how long a handled-event record is kept (DefaultRetention, which says
	// why); PruneEvery is how often the expired ones are deleted (default a minute). With a
	// CommitFunc the consumer keeps its own records and neither applies.
	Retention  time.Duration
	PruneEvery time.Duration
	// Rebuild says the service's view is a pure function of the events it consumes: a
	// runner that starts on a new bbolt file while its consumer has handled messages
	// before (the view was lost) replays them into the file first (see rebuild.go).
	// Without it such a start is logged as an error and consuming goes on from where the
	// consumer is. Not with a CommitFunc, nor with a Call route that has no Replay.
	Rebuild bool
	// Snapshots is the Object Store bucket where a rebuildable view is copied every
	// SnapshotEvery (default a minute) when it changed, so that a rebuild restores the copy
	// and replays only what came after it (see snapshot.go). Empty: no snapshots. Needs Rebuild.
	Snapshots     string
	SnapshotEvery time.Duration
	// PinnedTTL, for a rebuildable service (needs Rebuild), lets several instances share its
	// consumer, each with its own file: one at a time gets the messages, and another takes
	// over once it has not pulled for PinnedTTL (see standby.go). Zero: one consumer without
	// a priority group, for one instance (or several on one file, taking turns on its lock).
	PinnedTTL time.Duration
	// WarmEvery is how often an instance that does not hold the pin replays its view up to
	// the consumer's ack floor (default 2s).
	WarmEvery time.Duration
	// Metrics is where the runner counts what it does (metrics.go): the registry of its
	// process, which the runners of one process share. Nil counts for nobody.
	Metrics prometheus.Registerer
	// Tracer makes a span of each delivery (tracing.go). Nil: the global no-op tracer.
	Tracer trace.Tracer
	// Keys sign what the runner publishes with the key of the service it runs for (Name),
	// and refuse every input not signed by its producer (events.Keys.Verify). Nil neither
	// signs nor verifies: for tests of one service alone. The processes always set it.
	Keys *events.Keys
}

func (c *Config) setDefaults() {
	if c.Stream == "" {
		c.Stream = events.StreamCheckout
	}
	if len(c.Flow.Steps) == 0 {
		c.Flow = events.Checkout
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = 20
	}
	if c.AckWait == 0 {
		c.AckWait = topology.DefaultAckWait
	}
	if c.HandlerTimeout == 0 {
		c.HandlerTimeout = 30 * time.Second
	}
	if c.RetryBase == 0 {
		c.RetryBase = 200 * time.Millisecond
	}
	if c.RetryMax == 0 {
		c.RetryMax = 30 * time.Second
	}
	if c.StuckAfter == 0 {
		c.StuckAfter = time.Minute
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Retention == 0 {
		c.Retention = DefaultRetention
	}
	if c.PruneEvery == 0 {
		c.PruneEvery = time.Minute
	}
	if c.SnapshotEvery == 0 {
		c.SnapshotEvery = time.Minute
	}
	if c.WarmEvery == 0 {
		c.WarmEvery = defaultWarmEvery
	}
}

// Validate reports a configuration the runner cannot work with.
func (c Config) Validate() error {
	switch {
	case c.Name == "":
		return errors.New("runner: Name is required")
	case len(c.Routes) == 0:
		return fmt.Errorf("runner %s: no routes", c.Name)
	case c.JS == nil:
		return fmt.Errorf("runner %s: JS is required", c.Name)
	case (c.DB == nil) == (c.Commit == nil):
		return fmt.Errorf("runner %s: set exactly one of DB and Commit", c.Name)
	case c.Retention < 0 || c.PruneEvery < 0:
		return fmt.Errorf("runner %s: Retention and PruneEvery must not be negative", c.Name)
	case c.AckWait < 100*time.Millisecond:
		return fmt.Errorf("runner %s: AckWait %v: want at least 100ms (heartbeats go every quarter of it)", c.Name, c.AckWait)
	case c.Snapshots != "" && !c.Rebuild:
		return fmt.Errorf("runner %s: Snapshots need Rebuild: only a rebuildable view can be restored from one", c.Name)
	case c.SnapshotEvery < 0:
		return fmt.Errorf("runner %s: SnapshotEvery must not be negative", c.Name)
	case c.Rebuild && c.Commit != nil:
		return fmt.Errorf("runner %s: Rebuild needs DB, not Commit", c.Name)
	case c.PinnedTTL != 0 && (!c.Rebuild || c.PinnedTTL < 2*time.Second):
		return fmt.Errorf("runner %s: PinnedTTL %v: needs Rebuild (each instance rebuilds its own view) and at least 2s (pulls expire in half of it)", c.Name, c.PinnedTTL)
	case c.WarmEvery < 0:
		return fmt.Errorf("runner %s: WarmEvery must not be negative", c.Name)
	case c.Keys != nil && !c.Keys.Signs(c.Name):
		return fmt.Errorf("runner %s: Keys hold no signing key of %s", c.Name, c.Name)
	}
	if len(c.Flow.Steps) > 0 {
		if err := c.Flow.Validate(); err != nil {
			return fmt.Errorf("runner %s: flow: %w", c.Name, err)
		}
	}
	for _, r := range c.Routes {
		if r.Subject == "" || (r.Handle == nil && r.Call == nil && c.Commit == nil) {
			return fmt.Errorf("runner %s: a route needs a subject and a handler", c.Name)
		}
		if r.Handle != nil && r.Call != nil {
			return fmt.Errorf("runner %s: route %s: set Handle or Call, not both", c.Name, r.Subject)
		}
		if (r.Replay == nil) != (len(r.Outcomes) == 0) || (r.Scheduled != nil && r.Replay == nil) {
			return fmt.Errorf("runner %s: route %s: Replay and Outcomes go together, and Scheduled with them", c.Name, r.Subject)
		}
		if r.Call != nil && c.Rebuild && r.Replay == nil {
			return fmt.Errorf("runner %s: route %s calls the outside world and has no Replay: its view cannot be rebuilt from the stream", c.Name, r.Subject)
		}
		if r.Call != nil && c.Commit != nil {
			return fmt.Errorf("runner %s: route %s: Call needs DB, not Commit", c.Name, r.Subject)
		}
	}
	return nil
}

// Runner consumes one durable consumer and drives its handlers.
type Runner struct {
	cfg    Config
	routes map[string]Route
	steps  map[string]stepRoute // the routes that trigger a step of the flow
	undos  map[string]bool      // the routes that undo a step: never given up
	// retried: stream sequences this process has asked to redeliver; a message delivered
	// again without being in it was being handled when a process died.
	retried   map[uint64]bool
	retriedMu sync.Mutex
	// ownDecoder: the routes whose Decoder makes the envelope (and may derive its checkout ID)
	ownDecoder map[string]bool
	// timers is the runner's own timer stream, looked up at its first cancel.
	timers   jetstream.Stream
	timersMu sync.Mutex
	log      *slog.Logger
	// fresh: New found no runner buckets in the file; if the consumer handled messages
	// before, the view is lost (recoverView).
	fresh bool
	// pin: the pin this instance caught its view up for; warming: the warm replay under way
	// (standby.go)
	pin     pin
	warming interruptible
	meters  *meters
	handle  deliveryHandler // every delivery, through the policies
}

// stepRoute is a route that triggers a step: it has a deadline, and giving up on it fails
// the step.
type stepRoute struct {
	events.Step
	deadline time.Duration
}

var processedBucket = []byte("runner.processed")

// prefetch is how many messages the consumer buffers ahead of the one being handled.
const prefetch = 8

// New checks the configuration and prepares the runner's bucket.
func New(cfg Config) (*Runner, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	r := &Runner{cfg: cfg, routes: map[string]Route{}, steps: map[string]stepRoute{}, undos: map[string]bool{}, retried: map[uint64]bool{}, ownDecoder: map[string]bool{}, log: cfg.Log.With("runner", cfg.Name),
		meters: newMeters(cfg.Metrics, cfg.Flow, cfg.Name, cfg.Routes)}
	for _, rt := range cfg.Routes {
		if rt.Decode != nil {
			r.ownDecoder[string(rt.Subject)] = true
		} else {
			rt.Decode = func(subject string, data []byte, _ events.Origin) (events.Envelope, error) {
				return events.Decode(subject, data)
			}
		}
		if rt.Handle != nil {
			rt.Handle = r.wrap(rt.Subject, rt.Handle)
		}
		r.routes[string(rt.Subject)] = rt
		if step, ok := cfg.Flow.TriggeredBy(cfg.Name, rt.Subject); ok {
			d := step.DeadlineOf()
			if o, ok := cfg.Deadlines[step.Name]; ok && o > 0 {
				d = o
			}
			r.steps[string(rt.Subject)] = stepRoute{Step: step, deadline: d}
		}
		for _, step := range cfg.Flow.Steps {
			if step.Service == cfg.Name && step.Compensate == rt.Subject {
				r.undos[string(rt.Subject)] = true
			}
		}
	}
	r.handle = r.deliveries()
	if cfg.Commit != nil {
		return r, nil
	}
	err := cfg.DB.Update(func(tx *bolt.Tx) error {
		r.fresh = tx.Bucket(processedBucket) == nil || tx.Bucket(rebuildingBucket) != nil
		if tx.Bucket(processedBucket) == nil {
			// Marked in the transaction that makes the file's buckets: a process that stops
			// before recoverView decided still finds the view to be recovered.
			if _, err := tx.CreateBucket(rebuildingBucket); err != nil {
				return err
			}
		}
		if _, err := tx.CreateBucketIfNotExists(processedBucket); err != nil {
			return err
		}
		if tx.Bucket(handledAtBucket) != nil {
			return nil
		}
		if _, err := tx.CreateBucket(handledAtBucket); err != nil {
			return err
		}
		return indexLegacy(tx, time.Now())
	})
	return r, err
}

// Subjects are the subjects the runner routes, sorted.
func (r *Runner) Subjects() []string { return slices.Sorted(maps.Keys(r.routes)) }

// Run consumes until ctx is cancelled, then stops fetching, finishes the messages already
// delivered to it and returns.
func (r *Runner) Run(ctx context.Context) error {
	cons, err := topology.Bind(ctx, r.cfg.JS, r.cfg.Stream, r.consumerConfig())
	if ctx.Err() != nil {
		return nil // stopped before it started
	}
	if err != nil {
		return fmt.Errorf("runner %s: consumer: %w", r.cfg.Name, err)
	}
	recoverView := r.recoverView
	if r.pinned() {
		recoverView = r.recoverPinnedView
	}
	if err := recoverView(ctx, cons); err != nil {
		if ctx.Err() != nil {
			return nil // stopped while it rebuilt: the next start goes on with it
		}
		return err
	}
	it, err := cons.Messages(r.pullOptions()...)
	if err != nil {
		return fmt.Errorf("runner %s: consume: %w", r.cfg.Name, err)
	}
	stop := context.AfterFunc(ctx, it.Drain)
	defer stop()
	if r.cfg.DB != nil {
		pruneCtx, stopPruning := context.WithCancel(ctx)
		var pruning sync.WaitGroup
		pruning.Go(func() { r.pruneLoop(pruneCtx, cons) })
		if r.cfg.Snapshots != "" {
			pruning.Go(func() { r.snapshotLoop(pruneCtx, cons) })
		}
		defer pruning.Wait()
		defer stopPruning()
	}
	r.log.Info("consuming", "subjects", r.Subjects())
	// In-flight work finishes even when shutdown has begun.
	lanes := r.startLanes(context.WithoutCancel(ctx), it.Stop)
	defer lanes.close()
	if r.pinned() {
		warmCtx, stopWarming := context.WithCancel(ctx)
		var warming sync.WaitGroup
		warming.Go(func() { r.warmLoop(warmCtx, cons, lanes) })
		defer r.stopPinned(ctx, cons, lanes)
		defer warming.Wait()
		defer stopWarming() // also when Run returns on its own (a crash, the consumer gone)
	}
	var lastErr error
	for {
		msg, err := it.Next()
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			if crash := lanes.close(); crash != nil {
				return crash
			}
			if ctx.Err() == nil {
				// Nobody asked it to stop (the consumer was deleted, say): fail loudly
				// rather than stay up without consuming.
				return fmt.Errorf("runner %s: stopped consuming: %v", r.cfg.Name, lastErr)
			}
			r.log.Info("stopped")
			return nil
		}
		if err != nil {
			if gone(ctx, cons, err) {
				it.Stop()
				return fmt.Errorf("runner %s: stopped consuming: %w", r.cfg.Name, err)
			}
			lastErr = err
			r.log.Warn("fetch", "err", err)
			continue
		}
		if err := lanes.sendAfter(msg, r.takeover(ctx, cons, msg)); err != nil {
			it.Stop()
			return err
		}
	}
}

// gone reports whether a fetch error means the consumer no longer exists.
func gone(ctx context.Context, cons jetstream.Consumer, err error) bool {
	if errors.Is(err, jetstream.ErrConsumerDeleted) || errors.Is(err, jetstream.ErrConsumerNotFound) {
		return true
	}
	if ctx.Err() != nil {
		return false
	}
	_, infoErr := cons.Info(ctx)
	return errors.Is(infoErr, jetstream.ErrConsumerNotFound)
}

// process handles one message through the policies (policies.go). It returns an error only
// when the runner must stop: a hook simulates a crash, or an event is of a schema version
// this release cannot read.
func (r *Runner) process(ctx context.Context, msg *heldMsg) error {
	err := r.handle(ctx, &delivery{msg: msg})
	if s := (*stop)(nil); errors.As(err, &s) {
		return s.err
	}
	return err
}

// tooOld gives back an event of a schema version newer than this release reads (a writer
// not held back during a rolling upgrade), for an upgraded instance to take, and stops the
// runner: kept consuming, it would hold more such events until the consumer's limit of
// unacknowledged messages stalls every checkout, and keep the pin an upgraded replica needs.
// Nothing is lost or dead-lettered; the process fails, saying to upgrade it.
func (r *Runner) tooOld(d *delivery, err error) error {
	r.log.Error("an event of a newer schema version: this instance must be upgraded; it stops consuming", "subject", d.msg.Subject(), "stream_seq", d.seq(), "err", err)
	if nerr := d.msg.Nak(); nerr != nil {
		r.log.Warn("nak", "err", nerr)
	}
	return &stop{fmt.Errorf("%s stops: %w", r.cfg.Name, err)}
}

// decode believes a message only from its producer (signed by it, fired from its own
// schedule) and turns it into an envelope.
func (r *Runner) decode(msg jetstream.Msg, meta *jetstream.MsgMetadata, route Route) (events.Envelope, error) {
	return r.decodeRaw(route, msg.Subject(), msg.Headers(), msg.Data(), meta.Sequence.Stream, meta.Timestamp)
}

// decodeRaw is decode for a message as the stream stored it (a live delivery, or a replay).
func (r *Runner) decodeRaw(route Route, subject string, h nats.Header, data []byte, seq uint64, stored time.Time) (events.Envelope, error) {
	if r.cfg.Keys != nil {
		if err := r.cfg.Keys.Verify(events.Subject(subject), h.Get(events.SignerHeader), h.Get(events.SignatureHeader), data); err != nil {
			return events.Envelope{}, err
		}
	}
	in, err := route.Decode(subject, data, events.Origin{MsgID: h.Get(jetstream.MsgIDHeader), StreamSeq: seq, Stored: stored})
	if err != nil {
		return in, err
	}
	return in, events.CheckScheduler(in, h.Get(events.SchedulerHeader))
}

// stuckAttempt is the attempt of an undo that comes StuckAfter after its first at the
// earliest: the undo's retries are RetryMax apart (at least; the server never redelivers
// sooner).
func (r *Runner) stuckAttempt() int {
	return 1 + int((r.cfg.StuckAfter+r.cfg.RetryMax-1)/r.cfg.RetryMax)
}

// markRetried notes that this process asked for seq to be redelivered.
func (r *Runner) markRetried(seq uint64) {
	r.retriedMu.Lock()
	defer r.retriedMu.Unlock()
	r.retried[seq] = true
}

// takeRetried reports whether this process asked for seq to be redelivered, and forgets it.
func (r *Runner) takeRetried(seq uint64) bool {
	r.retriedMu.Lock()
	defer r.retriedMu.Unlock()
	retried := r.retried[seq]
	delete(r.retried, seq)
	return retried
}

// expired reports a trigger older than the step's deadline: the step must not start.
func (s stepRoute) expired(in events.Envelope, now time.Time) bool {
	return !in.Time.IsZero() && now.After(in.Time.Add(s.deadline))
}

// failure is the step's failure event payload.
func (s stepRoute) failure(code, message string, uncertain bool) events.StepFailure {
	return events.StepFailure{Step: s.Name, Code: code, Message: message, Uncertain: uncertain}
}
