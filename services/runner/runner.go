package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/store"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	bolt "go.etcd.io/bbolt"
)

// Handler handles one event inside the service's bbolt transaction and returns the events
// to emit. It never acks or publishes: the runner commits tx with the outputs, publishes
// them, then acks. A returned error rolls the transaction back.
type Handler func(ctx context.Context, tx *bolt.Tx, in events.Envelope) ([]events.Envelope, error)

// Decoder turns a raw message into an envelope; from identifies the message.
type Decoder func(subject string, data []byte, from events.Origin) (events.Envelope, error)

// Route binds a subject to its handler.
type Route struct {
	Subject events.Subject
	Handle  Handler
	Decode  Decoder // nil: events.Decode
}

// CommitFunc applies an event to a store of state exactly once and returns the events to
// publish: the outputs of a first application, the recorded outputs again when seq is the
// stream sequence that was recorded (a redelivery), nothing for a later copy of the event.
type CommitFunc func(ctx context.Context, in events.Envelope, seq uint64) ([]events.Envelope, error)

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
	MaxDeliver int           // default 20
	AckWait    time.Duration // default 30s
	RetryBase  time.Duration // first redelivery delay of a transient failure, default 200ms
	RetryMax   time.Duration // longest redelivery delay, default 30s
}

func (c *Config) setDefaults() {
	if c.Stream == "" {
		c.Stream = events.StreamCheckout
	}
	if c.MaxDeliver == 0 {
		c.MaxDeliver = 20
	}
	if c.AckWait == 0 {
		c.AckWait = 30 * time.Second
	}
	if c.RetryBase == 0 {
		c.RetryBase = 200 * time.Millisecond
	}
	if c.RetryMax == 0 {
		c.RetryMax = 30 * time.Second
	}
	if c.Log == nil {
		c.Log = slog.Default()
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
	}
	for _, r := range c.Routes {
		if r.Subject == "" || (r.Handle == nil && c.Commit == nil) {
			return fmt.Errorf("runner %s: a route needs a subject and a handler", c.Name)
		}
	}
	return nil
}

// Runner consumes one durable consumer and drives its handlers.
type Runner struct {
	cfg    Config
	routes map[string]Route
	log    *slog.Logger
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
	r := &Runner{cfg: cfg, routes: map[string]Route{}, log: cfg.Log.With("runner", cfg.Name)}
	for _, rt := range cfg.Routes {
		if rt.Decode == nil {
			rt.Decode = func(subject string, data []byte, _ events.Origin) (events.Envelope, error) {
				return events.Decode(subject, data)
			}
		}
		r.routes[string(rt.Subject)] = rt
	}
	if cfg.Commit != nil {
		return r, nil
	}
	err := cfg.DB.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(processedBucket)
		return err
	})
	return r, err
}

// Run consumes until ctx is cancelled, then stops fetching, finishes the messages already
// delivered to it and returns.
func (r *Runner) Run(ctx context.Context) error {
	subjects := slices.Sorted(maps.Keys(r.routes))
	cons, err := r.cfg.JS.CreateOrUpdateConsumer(ctx, r.cfg.Stream, jetstream.ConsumerConfig{
		Durable:        r.cfg.Name,
		Description:    "checkout step runner " + r.cfg.Name,
		FilterSubjects: subjects,
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        r.cfg.AckWait,
		MaxDeliver:     r.cfg.MaxDeliver,
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if ctx.Err() != nil {
		return nil // stopped before it started
	}
	if err != nil {
		return fmt.Errorf("runner %s: consumer: %w", r.cfg.Name, err)
	}
	// A small prefetch: every buffered message's AckWait is running while it waits, and a
	// step may call Stripe or SMTP. (Batching for throughput is a later issue.)
	it, err := cons.Messages(jetstream.PullMaxMessages(prefetch))
	if err != nil {
		return fmt.Errorf("runner %s: consume: %w", r.cfg.Name, err)
	}
	stop := context.AfterFunc(ctx, it.Drain)
	defer stop()
	r.log.Info("consuming", "subjects", subjects)
	var lastErr error
	for {
		msg, err := it.Next()
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
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
		// In-flight work finishes even when shutdown has begun.
		r.process(context.WithoutCancel(ctx), msg)
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

// record is what the runner keeps per handled event ID.
type record struct {
	Seq     uint64            `json:"seq"`
	Outputs []events.Envelope `json:"outputs,omitempty"`
}

func (r *Runner) process(ctx context.Context, msg jetstream.Msg) {
	ctx, cancel := context.WithTimeout(ctx, r.cfg.AckWait)
	defer cancel()
	meta, err := msg.Metadata()
	if err != nil {
		r.log.Error("message without metadata", "subject", msg.Subject(), "err", err)
		_ = msg.Term()
		return
	}
	route, ok := r.routes[msg.Subject()]
	if !ok {
		r.reject(ctx, msg, meta, "", fmt.Errorf("no handler for subject %s", msg.Subject()))
		return
	}
	from := events.Origin{MsgID: msg.Headers().Get(jetstream.MsgIDHeader), StreamSeq: meta.Sequence.Stream, Stored: meta.Timestamp}
	in, err := route.Decode(msg.Subject(), msg.Data(), from)
	if err != nil {
		r.reject(ctx, msg, meta, "", err)
		return
	}
	log := r.log.With("checkout_id", in.CheckoutID, "event_id", in.ID, "subject", msg.Subject())

	var outs []events.Envelope
	if r.cfg.Commit != nil {
		outs, err = r.cfg.Commit(ctx, in, meta.Sequence.Stream)
	} else {
		outs, err = r.commit(ctx, route, in, meta.Sequence.Stream)
	}
	if err != nil {
		if isPermanent(err) {
			r.reject(ctx, msg, meta, in.CheckoutID, err)
			return
		}
		r.retry(ctx, msg, meta, in.CheckoutID, log, err)
		return
	}
	if err := r.publish(ctx, outs); err != nil {
		r.retry(ctx, msg, meta, in.CheckoutID, log, fmt.Errorf("publish outputs: %w", err))
		return
	}
	if err := msg.Ack(); err != nil {
		log.Warn("ack", "err", err)
	}
	log.Debug("handled", "outputs", len(outs))
}

// commit runs the handler and records its outputs in one transaction, or returns what
// to publish for an event already handled.
func (r *Runner) commit(ctx context.Context, route Route, in events.Envelope, seq uint64) ([]events.Envelope, error) {
	var outs []events.Envelope
	err := r.cfg.DB.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(processedBucket)
		var rec record
		found, err := store.Get(b, in.ID, &rec)
		if err != nil {
			return err
		}
		if found {
			if rec.Seq == seq {
				outs = rec.Outputs // redelivered: its outputs may not have reached the stream
				return nil
			}
			r.log.Info("dropped a copy of an event already handled", "checkout_id", in.CheckoutID, "event_id", in.ID, "stream_seq", seq, "handled_seq", rec.Seq)
			return nil
		}
		outs, err = route.Handle(ctx, tx, in)
		if err != nil {
			return err
		}
		Stamp(outs, in)
		return store.Put(b, in.ID, record{Seq: seq, Outputs: outs})
	})
	return outs, err
}

// Stamp fills in what outputs inherit from the event that caused them.
func Stamp(outs []events.Envelope, cause events.Envelope) {
	now := time.Now().UTC()
	for i := range outs {
		outs[i].CausationID = cause.ID
		outs[i].Time = now
		if outs[i].CheckoutID == "" {
			outs[i].CheckoutID = cause.CheckoutID
		}
	}
}

// publish sends the outputs together and waits for every stream ack.
func (r *Runner) publish(ctx context.Context, outs []events.Envelope) error {
	futures := make([]jetstream.PubAckFuture, 0, len(outs))
	for _, e := range outs {
		data, err := e.Encode()
		if err != nil {
			return err
		}
		f, err := r.cfg.JS.PublishMsgAsync(&nats.Msg{Subject: string(e.Type), Data: data}, jetstream.WithMsgID(e.ID))
		if err != nil {
			return err
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (r *Runner) retry(ctx context.Context, msg jetstream.Msg, meta *jetstream.MsgMetadata, checkoutID string, log *slog.Logger, err error) {
	if int(meta.NumDelivered) >= r.cfg.MaxDeliver {
		log.Error("giving up after the last delivery", "attempts", meta.NumDelivered, "err", err)
		r.reject(ctx, msg, meta, checkoutID, fmt.Errorf("gave up after %d attempts: %w", meta.NumDelivered, err))
		return
	}
	delay := r.cfg.RetryBase << min(meta.NumDelivered-1, 16)
	delay = min(delay, r.cfg.RetryMax)
	log.Warn("will retry", "attempt", meta.NumDelivered, "delay", delay, "err", err)
	if err := msg.NakWithDelay(delay); err != nil {
		log.Warn("nak", "err", err)
	}
}

// reject terminates a message that can never be handled and announces why.
func (r *Runner) reject(ctx context.Context, msg jetstream.Msg, meta *jetstream.MsgMetadata, checkoutID string, cause error) {
	if checkoutID == "" {
		checkoutID = probeCheckoutID(msg.Data())
	}
	reason := cause.Error()
	r.log.Warn("rejected", "subject", msg.Subject(), "checkout_id", checkoutID, "stream_seq", meta.Sequence.Stream, "reason", reason)
	e := events.Must(checkoutID, events.Rejected, events.RejectedInput{
		Subject: msg.Subject(), Consumer: r.cfg.Name, StreamSequence: meta.Sequence.Stream, Reason: reason,
	})
	e.ID = "rejected:" + r.cfg.Name + ":" + strconv.FormatUint(meta.Sequence.Stream, 10)
	e.Time = time.Now().UTC()
	if err := r.publish(ctx, []events.Envelope{e}); err != nil {
		r.log.Error("announce rejection", "err", err)
	}
	if err := msg.TermWithReason(truncate(reason, 200)); err != nil {
		r.log.Warn("term", "err", err)
	}
}

// probeCheckoutID finds the checkout a rejected message names, if any.
func probeCheckoutID(data []byte) string {
	var p struct {
		CheckoutID string `json:"checkout_id"`
	}
	if json.Unmarshal(data, &p) == nil && events.ValidCheckoutID(p.CheckoutID) {
		return p.CheckoutID
	}
	return "unknown"
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}
