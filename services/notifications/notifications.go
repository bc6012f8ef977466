package notifications

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/store"
	"github.com/jetcheckout/jetcheckout/services/runner"
	bolt "go.etcd.io/bbolt"
)

var sentBucket = []byte("sent") // checkout ID → SentEmail

// SentEmail records a confirmation handed to the mail system.
type SentEmail struct {
	OrderID   string    `json:"order_id"`
	MessageID string    `json:"message_id"`
	To        string    `json:"to"`
	SentAt    time.Time `json:"sent_at"`
}

// Service runs send_order_confirmation.
type Service struct {
	db     *bolt.DB
	log    *slog.Logger
	cfg    Config
	from   *mail.Address
	sender Sender
	now    func() time.Time
}

// New applies defaults to cfg, validates it, prepares the transport and creates the
// service's bucket.
func New(db *bolt.DB, log *slog.Logger, cfg Config) (*Service, error) {
	if db == nil || log == nil {
		return nil, errors.New("notifications: db and log are required")
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	from, err := mail.ParseAddress(cfg.From)
	if err != nil {
		return nil, err
	}
	sender, err := cfg.newSender()
	if err != nil {
		return nil, err
	}
	if err := store.EnsureBuckets(db, sentBucket); err != nil {
		return nil, fmt.Errorf("notifications: %w", err)
	}
	if cfg.Transport == TransportSMTP {
		log.Info("confirmations go out by smtp", "smtp", cfg.SMTP)
	} else {
		log.Info("confirmations go to the outbox", "dir", cfg.OutboxDir)
	}
	return &Service{db: db, log: log, cfg: cfg, from: from, sender: sender, now: time.Now}, nil
}

// Routes binds send_order_confirmation to its trigger.
func (s *Service) Routes() []runner.Route {
	return []runner.Route{{Subject: events.OrderCreated, Handle: s.sendConfirmation}}
}

// sendConfirmation sends inside the step's transaction: the runner handles one event at a
// time, and the record of the send commits with the event's outputs.
func (s *Service) sendConfirmation(ctx context.Context, tx *bolt.Tx, in events.Envelope) ([]events.Envelope, error) {
	var order events.Order
	if err := in.DecodePayload(&order); err != nil {
		return nil, err
	}
	if order.ID == "" || order.Number == "" {
		return nil, fmt.Errorf("%w: %s payload needs order_id and order_number", events.ErrMalformed, in.Type)
	}
	b := tx.Bucket(sentBucket)
	var sent SentEmail
	found, err := store.Get(b, in.CheckoutID, &sent)
	if err != nil {
		return nil, err
	}
	if !found {
		date := order.CreatedAt
		if date.IsZero() {
			date = s.now()
		}
		msg, err := render(in.CheckoutID, order, s.from, date)
		if err != nil {
			return nil, err
		}
		if err := s.send(ctx, in.CheckoutID, msg); err != nil {
			return nil, fmt.Errorf("send confirmation of %s: %w", order.Number, err)
		}
		sent = SentEmail{OrderID: order.ID, MessageID: msg.ID, To: msg.To, SentAt: s.now().UTC()}
		if err := store.Put(b, in.CheckoutID, sent); err != nil {
			return nil, err
		}
		s.log.Info("confirmation sent", "checkout_id", in.CheckoutID, "order_number", order.Number, "message_id", msg.ID)
	}
	return []events.Envelope{events.Must(in.CheckoutID, events.ConfirmationSent, events.EmailSent{
		OrderID: sent.OrderID, To: sent.To, MessageID: sent.MessageID,
	})}, nil
}

// send retries a failed send for a few seconds. A refusal (5xx) ends the retries early;
// either way the error goes back to the runner, which redelivers the event later.
func (s *Service) send(ctx context.Context, checkoutID string, m Message) error {
	policy := backoff.WithContext(backoff.NewExponentialBackOff(
		backoff.WithInitialInterval(s.cfg.RetryInitial),
		backoff.WithMaxElapsedTime(s.cfg.RetryFor),
	), ctx)
	attempt := func() error {
		err := s.sender.Send(ctx, m)
		if refused(err) {
			return backoff.Permanent(err)
		}
		return err
	}
	return backoff.RetryNotify(attempt, policy, func(err error, next time.Duration) {
		s.log.Warn("send failed, retrying", "checkout_id", checkoutID, "retry_in", next, "err", err)
	})
}

// Sent returns the record of a checkout's confirmation; found is false until it is sent.
func (s *Service) Sent(checkoutID string) (sent SentEmail, found bool, err error) {
	found, err = store.View(s.db, sentBucket, checkoutID, &sent)
	return sent, found, err
}
