package coordinator

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/runner"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// maxConflicts bounds the re-read-and-retry loop on a contended key; past it the event is
// redelivered later rather than spinning.
const maxConflicts = 64

// Config of the coordinator's timing.
type Config struct {
	// Grace is how long after a step's own deadline the coordinator gives up on it: at
	// least the runner's HandlerTimeout, the longest a handler runs. A step's answer can
	// still come later (its publish was lost and is retried); such a late success is undone.
	// Default 30s. A trigger held by a process that died comes back after the runner's
	// AckWait (5s), well inside the step's own deadline (30s or more): neither needs to grow.
	Grace time.Duration
	// Deadlines override the flow's per-step deadlines (tests use short ones).
	Deadlines map[events.StepName]time.Duration
	// Retention is how long an ended checkout's key stays after its last change, before the
	// server removes it (a per-message TTL). Default DefaultRetention.
	Retention time.Duration
	// HandledRetention is how long the services keep the record of an event they handled
	// (runner.Config.Retention): a dead letter's copy is dropped by the others only while
	// they keep the original's. Default events.CheckoutRetention.
	HandledRetention time.Duration
	// Metrics is where the coordinator counts its decisions (metrics.go); nil: nowhere.
	Metrics prometheus.Registerer
	// Flow is the DAG it runs; default events.Checkout. Everything it decides follows from
	// the flow's declarations: another step needs no change here. (Who may sign which
	// event, with Keys, still follows events.Checkout: declare a real step there.)
	Flow events.Flow
}

// DefaultRetention keeps an ended checkout's key as long as the stream keeps its events
// (events.CheckoutRetention, 30 days after its last change): any copy of one of its events,
// even from a consumer reading the stream from its start, finds the key and is dropped as a
// copy, and a checkout_id published again is refused or dropped, never run a second time.
// With a shorter retention one that comes later finds no key, and then its own time tells it
// from a step done for a checkout never requested (see orphan).
const DefaultRetention = events.CheckoutRetention

// Coordinator applies step events to the checkouts' KV state and publishes its decisions.
type Coordinator struct {
	rules     rules
	js        jetstream.JetStream
	kv        jetstream.KeyValue
	retention time.Duration
	// redriveWithin is how old a dead letter's original may be to be re-driven.
	redriveWithin time.Duration
	log           *slog.Logger
	states        *stateCache
	meters        *meters
	kinds         map[events.Subject]string // what each decision is, for its span
	// readReplica is a direct get of a checkout's state (loadState), answered by any replica
	// of the bucket; tests make it lag as a replica can.
	readReplica func(ctx context.Context, id string) (*State, uint64, error)
}

// New opens the checkouts bucket (topology.Ensure creates it).
func New(ctx context.Context, js jetstream.JetStream, log *slog.Logger, cfg Config) (*Coordinator, error) {
	kv, err := js.KeyValue(ctx, events.BucketCheckouts)
	if err != nil {
		return nil, fmt.Errorf("coordinator: bucket %s: %w", events.BucketCheckouts, err)
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 30 * time.Second
	}
	if cfg.Retention <= 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.HandledRetention <= 0 {
		cfg.HandledRetention = events.CheckoutRetention
	}
	if len(cfg.Flow.Steps) == 0 {
		cfg.Flow = events.Checkout
	}
	if err := cfg.Flow.Validate(); err != nil {
		return nil, fmt.Errorf("coordinator: flow: %w", err)
	}
	readReplica := func(ctx context.Context, id string) (*State, uint64, error) { return loadState(ctx, kv, id) }
	return &Coordinator{rules: rules{flow: cfg.Flow, grace: cfg.Grace, deadlines: cfg.Deadlines}, js: js, kv: kv,
		retention: cfg.Retention, redriveWithin: redriveWindow(cfg.HandledRetention), log: log, states: newStateCache(cachedStates), meters: newMeters(cfg.Metrics, cfg.Flow),
		kinds: decisionKinds(cfg.Flow), readReplica: readReplica}, nil
}

// Subjects the coordinator consumes: the request, every step outcome, wait and
// compensation confirmation, its own deadlines and re-drives, and reservation expiries.
func (c *Coordinator) Subjects() []events.Subject {
	out := []events.Subject{events.Requested, events.Deadline, events.InventoryExpired, events.RedriveRequested}
	for _, s := range c.rules.flow.Steps {
		out = append(out, s.Done, s.Failed)
		for _, extra := range []events.Subject{s.Compensated, s.Waiting} {
			if extra != "" {
				out = append(out, extra)
			}
		}
	}
	return out
}

// Runner builds the runner that feeds the coordinator; tune sets its timing and hooks.
func (c *Coordinator) Runner(js jetstream.JetStream, tune ...func(*runner.Config)) (*runner.Runner, error) {
	var routes []runner.Route
	for _, s := range c.Subjects() {
		rt := runner.Route{Subject: s}
		if s == events.Requested {
			rt.Decode = runner.DecodeRequest
		}
		routes = append(routes, rt)
	}
	cfg := runner.Config{Name: events.ServiceCoordinator, Routes: routes, JS: js, Commit: c.Commit, Log: c.log, Flow: c.rules.flow}
	for _, t := range tune {
		t(&cfg)
	}
	return runner.New(cfg)
}

// Commit applies one event to its checkout's state by compare-and-swap and returns the
// decisions to publish. It is a runner.CommitFunc.
//
// It starts from the state this coordinator wrote last for the checkout when it has it (see
// stateCache), and from the bucket otherwise. A cached state, or one a replica answered, is
// trusted for a write, whose compare-and-swap the leader checks; after a conflict the
// state is read from the leader. An outcome without a write is decided on a read: a copy
// dropped, decisions published again, a timer that changes nothing on any read; an event
// refused, or one whose checkout has no state, only on the leader's read.
func (c *Coordinator) Commit(ctx context.Context, in events.Envelope, seq uint64) ([]events.Envelope, error) {
	var out effect
	st, saved, err := c.update(ctx, in.CheckoutID, func(st *State, rev uint64, got source) (bool, error) {
		var err error
		out, err = c.handle(ctx, st, rev, got, in, seq)
		return out.write, err
	})
	if err != nil {
		return nil, err
	}
	if saved == 0 { // nothing to write: a copy, a redelivery, a refusal, a timer for nothing
		return out.events, nil
	}
	c.meters.decided(in, st, out.decisions)
	traceDecisions(ctx, c.kinds, in, st, out.decisions)
	status := st.Status // st is the cache's once put there
	if !st.terminal() { // an ended checkout's later events are timers and copies: decided on a read
		c.states.put(st, saved)
	}
	if len(out.decisions) > 0 && c.log.Enabled(ctx, slog.LevelInfo) { // keys formats: only when logged
		c.log.Info("decided", "checkout_id", in.CheckoutID, "event_id", in.ID, "decisions", keys(out.decisions), "status", status)
	}
	return out.events, nil
}

// effect is what an event does to its checkout: the decisions it calls for, the events that
// carry them, and whether the state must be written.
type effect struct {
	decisions []decision
	events    []events.Envelope
	write     bool
}

// handle applies one event to st, read from got at revision rev. It asks for a surer read
// (readAgain) where the state it was given cannot decide the event.
func (c *Coordinator) handle(ctx context.Context, st *State, rev uint64, got source, in events.Envelope, seq uint64) (effect, error) {
	cached := got == fromCache
	if a, seen := st.Applied[in.ID]; seen {
		if cached {
			return effect{}, readAgain(fromReplica)
		}
		if a.Seq != seq {
			if in.Type == events.Requested && st.RequestDigest != "" && st.RequestDigest != requestDigest(in) {
				return effect{}, fmt.Errorf("%w: checkout %s was already requested with other content (stream sequence %d); "+
					"a checkout_id names one checkout: this request is ignored, publish a new checkout_id for a new checkout",
					events.ErrMalformed, in.CheckoutID, a.Seq)
			}
			// A later copy: the first one's decisions were published before its ack.
			c.log.Info("dropped a copy of an event already applied", "checkout_id", in.CheckoutID, "event_id", in.ID, "stream_seq", seq, "applied_seq", a.Seq)
			return effect{}, nil
		}
		outs, err := c.build(st, a.Decisions, in, time.Now().UTC()) // redelivered: publish its decisions again
		return effect{events: outs}, err
	}
	now := time.Now().UTC()
	if rev == 0 && in.Type != events.Requested {
		if got != fromLeader { // a replica may not have the request's write yet
			return effect{}, readAgain(fromLeader)
		}
		outs, err := c.beforeRequest(ctx, in, seq)
		return effect{events: outs}, err
	}
	var before []byte // a timer's state before it, to tell one that fired for nothing
	if timers[in.Type] {
		var err error
		if before, err = json.Marshal(st); err != nil {
			return effect{}, err
		}
	}
	updated := st.UpdatedAt
	if err := st.apply(c.rules, in); err != nil {
		if got != fromLeader { // a stale state may refuse what the leader's accepts
			return effect{}, readAgain(fromLeader)
		}
		outs, err := c.refuse(ctx, in, err)
		return effect{events: outs}, err
	}
	decisions := st.decide(c.rules, now)
	if len(decisions) == 0 && timers[in.Type] && unchanged(before, st, updated) {
		if cached {
			return effect{}, readAgain(fromReplica)
		}
		// A deadline or expiry that fired for nothing (its step answered, the checkout
		// ended) is nothing on any later delivery too: no write to record it. Most
		// deadlines end so, and each write is an fsync.
		return effect{}, nil
	}
	st.Applied[in.ID] = applied{Seq: seq, Decisions: decisions}
	outs, err := c.build(st, decisions, in, now)
	if err != nil {
		if cached {
			return effect{}, readAgain(fromReplica)
		}
		return effect{}, err
	}
	return effect{decisions: decisions, events: outs, write: true}, nil
}

// update runs change on a checkout's state, read from the cheapest source first, and writes
// the state by compare-and-swap on the revision read when change asks for it. change may
// ask for a surer read (readAgain); a write that loses to another reads the leader and runs
// change again on what it holds. It returns the state and the revision written (0: none).
func (c *Coordinator) update(ctx context.Context, id string, change func(st *State, rev uint64, got source) (write bool, err error)) (*State, uint64, error) {
	from := fromCache
	for range maxConflicts {
		st, rev, got, err := c.begin(ctx, id, from)
		if err != nil {
			return nil, 0, err
		}
		write, err := change(st, rev, got)
		var again readAgain
		switch {
		case errors.As(err, &again):
			from = source(again)
			continue
		case err != nil || !write:
			return st, 0, err
		}
		saved, err := c.save(ctx, st, rev)
		if conflict(err) {
			from = fromLeader // someone else changed the checkout: apply again to the state the leader checks against
			continue
		}
		if err != nil {
			return nil, 0, err
		}
		return st, saved, nil
	}
	return nil, 0, fmt.Errorf("checkout %s: %d conflicting updates in a row", id, maxConflicts)
}

// readAgain asks update for the state from a surer source.
type readAgain source

func (r readAgain) Error() string { return fmt.Sprintf("read the state again from source %d", r) }

// source is where an event's state is read from, from the cheapest to the surest.
type source int

const (
	fromCache   source = iota // the state this coordinator wrote last, when it has it
	fromReplica               // a direct get, which any replica of the bucket answers
	fromLeader                // the bucket stream's leader (readLeader)
)

// begin returns the state an event starts from, read from where from says (the bucket when
// nothing is cached), and where it was read from.
func (c *Coordinator) begin(ctx context.Context, checkoutID string, from source) (st *State, rev uint64, got source, err error) {
	st, rev, cached := c.states.take(checkoutID) // taken in any case: a state read anew replaces it
	switch {
	case cached && from == fromCache:
		return st, rev, fromCache, nil
	case from == fromLeader:
		st, rev, err = readLeader(ctx, c.js, checkoutID)
		return st, rev, fromLeader, err
	}
	st, rev, err = c.readReplica(ctx, checkoutID)
	return st, rev, fromReplica, err
}

// requestDigest fingerprints what a checkout.requested asks for (its fields, so a copy
// encoded differently is still the same request), to tell a copy from a reuse of the
// checkout_id for another checkout. A request that is not even JSON is its bytes.
func requestDigest(in events.Envelope) string {
	canonical := []byte(in.Payload)
	var req events.CheckoutRequest
	if json.Unmarshal(in.Payload, &req) == nil {
		canonical, _ = json.Marshal(req) // a struct of strings: cannot fail
	}
	sum := sha256.Sum256(canonical)
	return hex.EncodeToString(sum[:12])
}

// timers are the events the server fires at their time, whatever happened meanwhile.
var timers = map[events.Subject]bool{events.Deadline: true, events.InventoryExpired: true}

// unchanged reports whether st still encodes as before but for its update time (every
// event moves it to its own time), which was updated.
func unchanged(before []byte, st *State, updated time.Time) bool {
	same := *st
	same.UpdatedAt = updated
	after, err := json.Marshal(&same)
	return err == nil && bytes.Equal(before, after)
}

// beforeRequest explains an event of a checkout whose request the coordinator has not
// applied. The request comes first in the stream, but not always first to the coordinator:
// a request delivered to a coordinator that died before acknowledging it is delivered again
// only after AckWait, while the messages after it are delivered at once. So the event waits
// (a transient error: it is retried) while a request before it in the stream may still be
// unhandled; once none can be, its checkout was never requested (orphan).
func (c *Coordinator) beforeRequest(ctx context.Context, in events.Envelope, seq uint64) ([]events.Envelope, error) {
	waiting, err := c.requestPending(ctx, seq)
	if err != nil {
		return nil, fmt.Errorf("checkout %s: %s before its request: %w", in.CheckoutID, in.Type, err)
	}
	if waiting {
		return nil, fmt.Errorf("checkout %s: %s came before its request, which is not handled yet", in.CheckoutID, in.Type)
	}
	if runner.Attempt(ctx) < staleReadAttempts {
		return nil, fmt.Errorf("checkout %s: no state for %s yet; reading again before believing it was never requested", in.CheckoutID, in.Type)
	}
	return c.orphan(in)
}

// refuse answers an event its checkout's state refused (err), as the bucket's leader has it.
// A replica's read may be behind the other coordinator's last write (an undo's confirmation
// then looks like one for a step never undone, a timer like one never set), which is why the
// refusal was read on the leader; and since not even the leader's read is certain while the
// leader changes (nats-server promises no read-after-write), the event is read again on its
// next deliveries before it is believed. A refused event is then terminated with the
// reason; a stray timer is dropped, since nothing fails by it.
func (c *Coordinator) refuse(ctx context.Context, in events.Envelope, err error) ([]events.Envelope, error) {
	if runner.Attempt(ctx) < staleReadAttempts {
		return nil, fmt.Errorf("checkout %s: %s refused on this read of its state (%v); reading again before believing it", in.CheckoutID, in.Type, err)
	}
	if errors.Is(err, errStrayTimer) {
		c.log.Info("dropped a timer the checkout never set", "checkout_id", in.CheckoutID, "event_id", in.ID)
		return nil, nil
	}
	return nil, err
}

// staleReadAttempts is how many deliveries an event of a checkout with no state, or one its
// state refuses, is read again before it is believed. In a cluster a replica of the bucket
// answers direct gets and may not have the other coordinator's write yet (seen in make
// e2e-cluster: a real reservation was undone as an orphan's); the leader is read before
// either is believed, and these deliveries cover a leader that has just changed.
const staleReadAttempts = 3

// requestPending reports whether a checkout.requested before stream sequence seq may be
// unhandled: one lies above the ack floor of the coordinator's consumer (below which every
// message is handled). The ack of the message handled just before may still be on its way
// to the server, so a floor that is behind is read again a few times before it is believed.
func (c *Coordinator) requestPending(ctx context.Context, seq uint64) (bool, error) {
	stream, err := c.js.Stream(ctx, events.StreamCheckout)
	if err != nil {
		return false, err
	}
	cons, err := stream.Consumer(ctx, events.ServiceCoordinator)
	if errors.Is(err, jetstream.ErrConsumerNotFound) {
		return false, nil // nothing consumes for the coordinator: nothing is in flight
	}
	if err != nil {
		return false, err
	}
	for try := range 4 {
		info, err := cons.Info(ctx)
		if err != nil {
			return false, err
		}
		if info.AckFloor.Stream+1 >= seq {
			return false, nil
		}
		req, err := stream.GetMsg(ctx, info.AckFloor.Stream+1, jetstream.WithGetMsgSubject(string(events.Requested)))
		if errors.Is(err, jetstream.ErrMsgNotFound) || (err == nil && req.Sequence >= seq) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if try < 3 {
			time.Sleep(25 * time.Millisecond)
		}
	}
	return true, nil
}

// orphan handles an event of a checkout that has no key: never requested (forged or
// stray), or ended and removed after its retention. A step's success that can be undone is
// undone (a reservation released, a charge refunded, an order cancelled), so nothing stays
// held or charged for a checkout nobody asked for; anything else is refused with the reason.
//
// A removed checkout must not be undone by a late copy of one of its events: every event it
// applied, and every timer it set, was made before its last change, so such an event is at
// least the retention old when it finds no key. An event older than half the retention is
// therefore dropped, with the reason in the log (half: room for the producers' clocks to
// differ). A real step's success is made moments before it comes, unless the coordinator
// was down for that long: then the log says to check it by hand.
func (c *Coordinator) orphan(in events.Envelope) ([]events.Envelope, error) {
	step, ok, found := c.rules.flow.Outcome(in.Type)
	if age := time.Since(in.Time); !in.Time.IsZero() && age > c.retention/2 {
		log := c.log.Info
		if found && ok && step.Compensate != "" {
			log = c.log.Error
		}
		log("dropped an old event of a checkout with no state: a late copy of an ended checkout's event (its state was removed after the retention), or one made while the coordinator was down; nothing is undone",
			"checkout_id", in.CheckoutID, "event_id", in.ID, "subject", in.Type, "event_age", age.Round(time.Second), "retention", c.retention)
		return nil, nil
	}
	if !found || !ok || step.Compensate == "" {
		return nil, fmt.Errorf("%w: %s for checkout %s, which was never requested", events.ErrMalformed, in.Type, in.CheckoutID)
	}
	if err := new(State).absorbResult(in); err != nil {
		return nil, err // not a success of that step at all: refused as malformed
	}
	c.log.Warn("undoing a step done for a checkout that was never requested", "checkout_id", in.CheckoutID, "event_id", in.ID, "step", step.Name)
	undo, err := events.New(in.CheckoutID, step.Compensate, events.Compensation{
		Reason: fmt.Sprintf("checkout %s was never requested: %s (event %s) is undone", in.CheckoutID, step.Name, in.ID)})
	if err != nil {
		return nil, err
	}
	undo.CausationID, undo.Time = in.ID, time.Now().UTC()
	return []events.Envelope{undo}, nil
}

// State returns a checkout's state as the bucket's leader has it; found is false for an
// unknown checkout.
func (c *Coordinator) State(ctx context.Context, checkoutID string) (st *State, found bool, err error) {
	st, rev, err := readLeader(ctx, c.js, checkoutID)
	return st, rev > 0, err
}

// loadState reads a checkout's state with a direct get (the KV client's get; the bucket
// allows them), which any replica answers: cheap, and good enough to start a write, whose
// compare-and-swap the leader checks, but it may lag the last write by a moment.
func loadState(ctx context.Context, kv jetstream.KeyValue, id string) (*State, uint64, error) {
	entry, err := kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return newState(id), 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("load checkout %s: %w", id, err)
	}
	return decodeState(id, entry.Value(), entry.Revision())
}

// readLeader reads a checkout's state from the bucket stream's leader
// ($JS.API.STREAM.MSG.GET, not a direct get), which has every write it acknowledged: what an
// outcome decided without a write (a refusal, a checkout believed never requested, a payment
// believed not asked for) is read from.
func readLeader(ctx context.Context, js jetstream.JetStream, id string) (*State, uint64, error) {
	if !events.ValidCheckoutID(id) { // as the KV client refuses a key that is a wildcard
		return nil, 0, fmt.Errorf("load checkout %q: not a checkout ID", id)
	}
	// The older JetStream client's message get asks the leader unless told to get directly.
	var api nats.JSOpt
	switch o := js.Options(); {
	case o.Domain != "":
		api = nats.Domain(o.Domain)
	case o.APIPrefix != "":
		api = nats.APIPrefix(o.APIPrefix)
	default:
		api = nats.APIPrefix(jetstream.DefaultAPIPrefix)
	}
	legacy, err := js.Conn().JetStream(api)
	if err != nil {
		return nil, 0, err
	}
	msg, err := legacy.GetLastMsg(bucketStream, bucketSubject(id), nats.Context(ctx)) // bounded as the client's calls are
	if errors.Is(err, nats.ErrMsgNotFound) {
		return newState(id), 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("load checkout %s from the leader: %w", id, err)
	}
	if removed(msg.Header) {
		return newState(id), 0, nil
	}
	return decodeState(id, msg.Data, msg.Sequence)
}

// removed reports a key's delete or purge marker, or the marker the server leaves when it
// removes a message at its TTL: a key with no state, as the KV client's get reads them.
func removed(h nats.Header) bool {
	switch h.Get(kvOperation) {
	case "DEL", "PURGE":
		return true
	}
	switch h.Get(jetstream.MarkerReasonHeader) {
	case "MaxAge", "Purge", "Remove":
		return true
	}
	return false
}

// The checkouts bucket as the stream under it: its name, a key's subject, and the header
// the KV client marks a delete or purge with.
const (
	bucketStream = "KV_" + events.BucketCheckouts
	kvOperation  = "KV-Operation"
)

func bucketSubject(id string) string { return "$KV." + events.BucketCheckouts + "." + id }

func decodeState(id string, raw []byte, rev uint64) (*State, uint64, error) {
	st := newState(id)
	if err := json.Unmarshal(raw, st); err != nil {
		return nil, 0, fmt.Errorf("decode checkout %s: %w", id, err)
	}
	return st, rev, nil
}

// save writes the checkout's state by compare-and-swap on rev. An ended checkout's state
// is written with the retention as its TTL, so the server removes the key that long after
// its last change; a change after the end (a late step undone) starts the time again.
// It returns the revision written.
func (c *Coordinator) save(ctx context.Context, st *State, rev uint64) (uint64, error) {
	raw, err := json.Marshal(st)
	if err != nil {
		return 0, err
	}
	switch {
	case rev == 0:
		return c.kv.Create(ctx, st.CheckoutID, raw)
	case st.terminal():
		// KeyValue.Update takes no TTL: the same compare-and-swap publish, with one.
		msg := &nats.Msg{Subject: bucketSubject(st.CheckoutID), Data: raw}
		ack, err := c.js.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(rev), jetstream.WithMsgTTL(c.retention))
		if err != nil {
			return 0, err
		}
		return ack.Sequence, nil
	default:
		return c.kv.Update(ctx, st.CheckoutID, raw, rev)
	}
}

// conflict reports a compare-and-swap that lost to another write (the server's code differs
// between a single server and a replicated bucket).
func conflict(err error) bool {
	var api *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) ||
		(errors.As(err, &api) && (api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence || api.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant))
}

// build turns decisions into the events that carry them, at time now.
func (c *Coordinator) build(st *State, decisions []decision, cause events.Envelope, now time.Time) ([]events.Envelope, error) {
	outs := make([]events.Envelope, 0, len(decisions))
	for _, d := range decisions {
		payload, err := c.payload(st, d)
		if err != nil {
			return nil, err
		}
		e, err := events.New(st.CheckoutID, d.Type, payload)
		if err != nil {
			return nil, err
		}
		if d.Attempt > 0 {
			e.ID = events.OutputID(e.ID, events.RedriveID(st.CheckoutID, d.Attempt)) // the re-drive's: the step runs again
		}
		if d.Type == events.Deadline {
			// One schedule slot per deadline: a republished older one must not replace a
			// newer one (a stale deadline that fires is a no-op).
			at := fmt.Sprint(d.At.UnixMilli())
			e.ID = fmt.Sprintf("%s:%s:%s", e.ID, d.Step, at)
			e.Schedule = &events.Schedule{At: d.At, Key: "deadline." + string(d.Step) + "." + at}
		}
		e.CausationID, e.Time = cause.ID, now
		outs = append(outs, e)
	}
	return outs, nil
}

func (c *Coordinator) payload(st *State, d decision) (any, error) {
	switch d.Type {
	case events.Deadline:
		return events.DeadlineReached{Step: d.Step, Deadline: d.At}, nil
	case events.Completed:
		done := events.CheckoutCompleted{OrderID: st.OrderID, OrderNumber: st.OrderNumber, PaymentIntentID: st.PaymentIntentID,
			Warnings: st.Warnings, NeedsAttention: st.NeedsAttention}
		if st.Quote != nil {
			done.Total, done.Currency = st.Quote.Total, st.Quote.Currency
		}
		return done, nil
	case events.Failed:
		f := st.Failure
		return events.CheckoutFailed{Step: f.Step, Code: f.Code, Message: f.Message, Compensated: st.Compensated,
			AlsoFailed: st.alsoFailed(c.rules.flow), CustomerEmail: st.CustomerEmail, CartID: st.CartID, Products: f.Products,
			Renewal: st.Renewal}, nil
	case events.RedriveSettled:
		return events.RedriveOutcome{Attempt: d.Attempt, Warnings: st.Warnings, NeedsAttention: st.NeedsAttention}, nil
	case events.FulfilmentRequested, events.ConfirmationRequested, events.LabelRequested:
		if st.Order == nil {
			return nil, st.missing(d.Type, "an order")
		}
		return st.Order, nil
	case events.PaymentRequested, events.OrderRequested:
		if st.Quote == nil {
			return nil, st.missing(d.Type, "a validated quote")
		}
		if d.Type == events.PaymentRequested {
			return st.Quote, nil
		}
		return events.Payment{PaymentIntentID: st.PaymentIntentID, Amount: st.Quote.Total, Currency: st.Quote.Currency, Quote: *st.Quote}, nil
	}
	for _, s := range c.rules.flow.Steps {
		if d.Type == s.Compensate {
			return events.Compensation{Reason: fmt.Sprintf("checkout failed at %s: %s", st.Failure.Step, st.Failure.Message)}, nil
		}
	}
	return nil, fmt.Errorf("no payload for decision %s", d.Type)
}

// missing explains a decision that lacks what its event must carry. For a checkout the
// coordinator never saw start, the event that led here is forged or stray: refused. For one
// it knows, an earlier event is late: the event is retried until it has come.
func (s *State) missing(d events.Subject, what string) error {
	if s.Steps[events.StepValidateCart] == nil {
		return fmt.Errorf("%w: checkout %s is unknown (never requested): %s needs %s", events.ErrMalformed, s.CheckoutID, d, what)
	}
	return fmt.Errorf("checkout %s: %s needs %s, not here yet", s.CheckoutID, d, what)
}

func keys(ds []decision) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = d.key()
	}
	return out
}
