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
)

// Config of the subscriptions service.
type Config struct {
	JS  jetstream.JetStream
	NC  *nats.Conn
	Log *slog.Logger
	// Day is how long a day of a plan lasts: 24h, shortened by configuration in tests and
	// demos so that renewals come in seconds (SUBSCRIPTION_DAY).
	Day time.Duration
	// Keys check that the checkout outcomes ending a period are the coordinator's. Nil
	// checks nothing: for a test of this service alone.
	Keys *events.Keys
}

// Service keeps subscriptions and starts their periods.
type Service struct {
	cfg    Config
	kv     jetstream.KeyValue
	stream jetstream.Stream
	log    *slog.Logger
}

// New binds to the bucket and the stream the setup role makes (topology.Ensure).
func New(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.Day <= 0 {
		cfg.Day = 24 * time.Hour
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	kv, err := cfg.JS.KeyValue(ctx, events.BucketSubscriptions)
	if err != nil {
		return nil, fmt.Errorf("subscriptions: bucket %s: %w", events.BucketSubscriptions, err)
	}
	stream, err := cfg.JS.Stream(ctx, events.StreamSubscriptions)
	if err != nil {
		return nil, fmt.Errorf("subscriptions: stream %s: %w", events.StreamSubscriptions, err)
	}
	return &Service{cfg: cfg, kv: kv, stream: stream, log: cfg.Log}, nil
}

// Run makes every subscription's schedule what its status says (a crash may have come
// between a change of status and of its schedule), then handles renewals and the ends of
// renewal checkouts until ctx ends.
func (s *Service) Run(ctx context.Context) error {
	if err := s.reconcile(ctx); err != nil {
		return err
	}
	consumers := topology.SubscriptionConsumers()
	due, err := topology.Bind(ctx, s.cfg.JS, events.StreamSubscriptions, consumers[events.StreamSubscriptions])
	if err != nil {
		return err
	}
	ends, err := topology.Bind(ctx, s.cfg.JS, events.StreamCheckout, consumers[events.StreamCheckout])
	if err != nil {
		return err
	}
	errs := make(chan error, 2)
	go func() { errs <- s.consume(ctx, due, s.handleDue) }()
	go func() { errs <- s.consume(ctx, ends, s.handleEnd) }()
	err = <-errs
	if ctx.Err() == nil {
		return err
	}
	<-errs
	return nil
}

// consume hands each message to handle, one at a time: a transient error has it delivered
// again after a pause; a permanent one (runner's rules: malformed, forged) is logged and
// dropped, never redelivered for ever.
func (s *Service) consume(ctx context.Context, cons jetstream.Consumer, handle func(context.Context, jetstream.Msg) error) error {
	msgs, err := cons.Messages()
	if err != nil {
		return err
	}
	go func() { <-ctx.Done(); msgs.Stop() }()
	for {
		msg, err := msgs.Next()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				return nil
			}
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
	id := strings.TrimPrefix(msg.Subject(), "subscriptions.due.")
	meta, err := msg.Metadata()
	if err != nil {
		return err
	}
	_, err = s.renew(ctx, id, meta.Timestamp)
	if errors.Is(err, errNotFound) {
		return &permanentError{fmt.Errorf("renewal of %s: %w", id, err)}
	}
	return err
}

// handleEnd ends the period of a renewal checkout that completed or failed.
func (s *Service) handleEnd(ctx context.Context, msg jetstream.Msg) error {
	subject := events.Subject(msg.Subject())
	if s.cfg.Keys != nil {
		h := msg.Headers()
		if err := s.cfg.Keys.Verify(subject, h.Get(events.SignerHeader), h.Get(events.SignatureHeader), msg.Data()); err != nil {
			return &permanentError{err}
		}
	}
	e, err := events.Decode(msg.Subject(), msg.Data())
	if err != nil {
		return &permanentError{err}
	}
	id, n, ok := events.ParseRenewalCheckoutID(e.CheckoutID)
	if !ok {
		return nil // not a renewal
	}
	outcome, code, reason := events.PeriodPaid, "", ""
	if subject == events.Failed {
		var f events.CheckoutFailed
		if err := e.DecodePayload(&f); err != nil {
			return &permanentError{err}
		}
		outcome, code, reason = events.PeriodFailed, f.Code, f.Message
	}
	sub, err := s.end(ctx, id, n, outcome, code, reason, e.Time)
	if errors.Is(err, errNotFound) {
		return &permanentError{fmt.Errorf("%s ends period %d of %s: %w", subject, n, id, err)}
	}
	if err == nil {
		s.log.Info("renewal ended", "subscription_id", id, "period", n, "outcome", outcome, "code", code, "status", sub.Status)
	}
	return err
}
