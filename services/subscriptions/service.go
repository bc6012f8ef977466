package subscriptions

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/topology"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
)

// Config of the subscriptions service.
type Config struct {
	JS  jetstream.JetStream
	NC  *nats.Conn
	Log *slog.Logger
	// Day is how long a day of a plan lasts: 24h, shortened by configuration in tests and
	// demos so that renewals come in seconds (SUBSCRIPTION_DAY).
	Day time.Duration
	// RetryDays are the days after a period's first declined payment on which it is tried
	// again (dunning; default 1, 3 and 7); after the last, the subscription becomes
	// AfterRetries: events.SubscriptionCancelled (the default) or events.SubscriptionPaused.
	RetryDays    []int
	AfterRetries string
	// Keys check that the checkout outcomes ending a period are the coordinator's. Nil
	// checks nothing: for a test of this service alone.
	Keys *events.Keys
	// Metrics is where the service counts periods (metrics.go); nil counts for nobody.
	Metrics prometheus.Registerer
}

// Service keeps subscriptions and starts their periods.
type Service struct {
	cfg     Config
	log     *slog.Logger
	dunning dunning
	meters  *meters
	// kv and stream are the bucket and the stream, set once by bind before ready closes.
	kv     jetstream.KeyValue
	stream jetstream.Stream
	ready  chan struct{}
}

// DefaultRetryDays: a declined renewal is tried again 1, 3 and 7 days after the first decline.
var DefaultRetryDays = []int{1, 3, 7}

// New checks the configuration and binds to the bucket and the stream the setup role makes
// (topology.Ensure) if they are there; otherwise Run waits for them.
func New(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.Day <= 0 {
		cfg.Day = 24 * time.Hour
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.RetryDays == nil {
		cfg.RetryDays = DefaultRetryDays
	}
	if cfg.AfterRetries == "" {
		cfg.AfterRetries = events.SubscriptionCancelled
	}
	if err := checkDunning(cfg.RetryDays, cfg.AfterRetries); err != nil {
		return nil, err
	}
	if cfg.Day < time.Second {
		return nil, fmt.Errorf("subscriptions: a day of %v: at least 1s, a message schedule's shortest interval", cfg.Day)
	}
	s := &Service{cfg: cfg, log: cfg.Log, ready: make(chan struct{}), meters: newMeters(cfg.Metrics),
		dunning: dunning{days: cfg.RetryDays, day: cfg.Day, final: cfg.AfterRetries}}
	if _, err := s.bindOnce(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// bindEvery is how often a service that found no bucket or stream looks again.
const bindEvery = 2 * time.Second

// bind waits until the setup role made the subscriptions' bucket and stream: in a rolling
// upgrade from a release without them, it is replaced after the processes that run this
// service, which meanwhile answer that subscriptions are not set up yet (and run the rest).
func (s *Service) bind(ctx context.Context) error {
	for said := false; ; said = true {
		bound, err := s.bindOnce(ctx)
		if bound || err != nil {
			return err
		}
		if !said {
			s.log.Warn("waiting for the setup role (`jetcheckout setup`) to create the subscriptions' bucket and stream")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(bindEvery):
		}
	}
}

// bindOnce binds to the bucket and the stream if both are there (bound), once.
func (s *Service) bindOnce(ctx context.Context) (bound bool, err error) {
	select {
	case <-s.ready:
		return true, nil
	default:
	}
	kv, err := s.cfg.JS.KeyValue(ctx, events.BucketSubscriptions)
	if err == nil {
		var stream jetstream.Stream
		if stream, err = s.cfg.JS.Stream(ctx, events.StreamSubscriptions); err == nil {
			s.kv, s.stream = kv, stream
			close(s.ready)
			return true, nil
		}
	}
	if errors.Is(err, jetstream.ErrBucketNotFound) || errors.Is(err, jetstream.ErrStreamNotFound) {
		return false, nil
	}
	return false, fmt.Errorf("subscriptions: bind: %w", err)
}

// checkDunning refuses a retry schedule that is not days growing from 1, or an end that is
// neither cancelled nor paused.
func checkDunning(days []int, final string) error {
	for i, d := range days {
		if d < 1 || i > 0 && d <= days[i-1] {
			return fmt.Errorf("subscriptions: retry days %v: want whole days from 1, each later than the one before", days)
		}
	}
	if final != events.SubscriptionCancelled && final != events.SubscriptionPaused {
		return fmt.Errorf("subscriptions: after the retries %q: want %s or %s", final, events.SubscriptionCancelled, events.SubscriptionPaused)
	}
	return nil
}

// Run makes every subscription's schedules what its record says (a crash may have come
// between a change of the record and of its schedules), then handles renewals and the ends of
// renewal checkouts until ctx ends. Stopped, at any point, it returns nil.
func (s *Service) Run(ctx context.Context) error {
	err := s.run(ctx)
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func (s *Service) run(ctx context.Context) error {
	if err := s.bind(ctx); err != nil {
		return err
	}
	if err := s.reconcile(ctx); err != nil && ctx.Err() == nil {
		s.log.Error("putting the subscriptions right at start", "err", err) // and again in reconcileEvery
	}
	due, err := s.bindConsumer(ctx, events.StreamSubscriptions)
	if err != nil {
		return err
	}
	ends, err := s.bindConsumer(ctx, events.StreamCheckout)
	if err != nil {
		return err
	}
	done := make(chan struct{})
	go func() { s.consume(ctx, due, s.handleDue); close(done) }()
	go s.reconcileEach(ctx)
	s.consume(ctx, ends, s.handleEnd)
	<-done
	return nil
}

// reconcileEach puts the subscriptions right every reconcileEvery until ctx ends.
func (s *Service) reconcileEach(ctx context.Context) {
	tick := time.NewTicker(reconcileEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if err := s.reconcile(ctx); err != nil && ctx.Err() == nil {
				s.log.Error("putting the subscriptions right", "err", err)
			}
		}
	}
}

// bindConsumer binds to the service's consumer on stream, waiting for the setup role to
// have made it (it makes the stream first).
func (s *Service) bindConsumer(ctx context.Context, stream string) (jetstream.Consumer, error) {
	for said := false; ; said = true {
		cons, err := topology.Bind(ctx, s.cfg.JS, stream, topology.SubscriptionConsumers()[stream])
		if err == nil {
			return cons, nil
		}
		if !said && ctx.Err() == nil {
			s.log.Warn("waiting for the subscriptions' consumer", "stream", stream, "err", err)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(bindEvery):
		}
	}
}

// consume hands each message to handle, one at a time, until ctx ends: a transient error
// has it delivered again after a pause; a permanent one (malformed, forged, of no
// subscription) is logged and dropped, never redelivered for ever. A consumer that cannot be
// read (the server gone a while) is read again, a second later, and said so.
func (s *Service) consume(ctx context.Context, cons jetstream.Consumer, handle func(context.Context, jetstream.Msg) error) {
	for ctx.Err() == nil {
		err := s.consumeOnce(ctx, cons, handle)
		if ctx.Err() != nil {
			return
		}
		s.log.Warn("reading the consumer stopped; reading it again in a second", "consumer", cons.CachedInfo().Name, "err", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

func (s *Service) consumeOnce(ctx context.Context, cons jetstream.Consumer, handle func(context.Context, jetstream.Msg) error) error {
	msgs, err := cons.Messages()
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, msgs.Stop)
	defer stop()
	defer msgs.Stop()
	for {
		msg, err := msgs.Next()
		if errors.Is(err, jetstream.ErrMsgIteratorClosed) {
			return nil
		}
		if err != nil {
			return err
		}
		err = handle(ctx, msg)
		var bad *permanentError
		switch {
		case err == nil:
			_ = msg.Ack()
		case errors.As(err, &bad):
			s.log.Error("input refused for good", "subject", msg.Subject(), "err", err)
			_ = msg.Term()
		default:
			s.log.Warn("input failed; trying again", "subject", msg.Subject(), "err", err)
			_ = msg.NakWithDelay(time.Second)
		}
	}
}

type permanentError struct{ error }

// handleDue starts the period a renewal fired for, at the time the stream stored it.
func (s *Service) handleDue(ctx context.Context, msg jetstream.Msg) error {
	id := strings.TrimPrefix(msg.Subject(), events.SubscriptionDueSubject(""))
	meta, err := msg.Metadata()
	if err != nil {
		return err
	}
	// A retry's one-time schedule fires it when due by the server's clock; RetryAt is by
	// the coordinator's, which may run ahead.
	retry := strings.HasPrefix(msg.Headers().Get("Nats-Scheduler"), events.SubscriptionRetrySubject(""))
	_, err = s.renew(ctx, id, trigger{at: meta.Timestamp, schedule: !retry, retry: retry})
	if errors.Is(err, errNotFound) {
		return &permanentError{fmt.Errorf("renewal of %s: %w", id, err)}
	}
	return err
}

// handleEnd ends the period of a renewal checkout that completed or failed.
func (s *Service) handleEnd(ctx context.Context, msg jetstream.Msg) error {
	subject := events.Subject(msg.Subject())
	e, err := events.Decode(msg.Subject(), msg.Data())
	if err != nil {
		return &permanentError{err}
	}
	id, n, attempt, ok := events.ParseRenewalCheckoutID(e.CheckoutID)
	if !ok {
		return nil // not a renewal: most checkouts, so their signatures are not checked here
	}
	if s.cfg.Keys != nil {
		h := msg.Headers()
		if err := s.cfg.Keys.Verify(subject, h.Get(events.SignerHeader), h.Get(events.SignatureHeader), msg.Data()); err != nil {
			return &permanentError{err}
		}
	}
	code, reason := "", ""
	if subject == events.Failed {
		var f events.CheckoutFailed
		if err := e.DecodePayload(&f); err != nil {
			return &permanentError{err}
		}
		if f.Renewal == nil || f.Renewal.CheckoutID() != e.CheckoutID {
			// Not a renewal the subscriptions asked for: a checkout that took a renewal's ID
			// (the catalog refuses it), which ends no period.
			s.log.Warn("a failed checkout with a renewal's ID is no renewal: ignored", "checkout_id", e.CheckoutID)
			return nil
		}
		code, reason = f.Code, f.Message
	}
	sub, err := s.end(ctx, id, n, attempt, code, reason, e.Time)
	if errors.Is(err, errNotFound) {
		return &permanentError{fmt.Errorf("%s ends period %d of %s: %w", subject, n, id, err)}
	}
	if err == nil {
		s.log.Info("renewal ended", "subscription_id", id, "period", n, "attempt", attempt, "code", code, "status", sub.Status)
	}
	return err
}
