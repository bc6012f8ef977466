package notifications

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/mail"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/store"
	"github.com/jetcheckout/jetcheckout/runner"
	bolt "go.etcd.io/bbolt"
)

var (
	sentBucket    = []byte("sent")    // checkout ID → SentEmail of its confirmation
	noticesBucket = []byte("notices") // checkout ID → SentEmail of its failure notice
)

// SentEmail records an email handed to the mail system: a confirmation, or a failure
// notice (which has no OrderID).
type SentEmail struct {
	OrderID   string    `json:"order_id,omitempty"`
	MessageID string    `json:"message_id"`
	To        string    `json:"to"`
	SentAt    time.Time `json:"sent_at"`
}

// Service runs send_order_confirmation and tells customers why a checkout failed.
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
	if err := store.EnsureBuckets(db, sentBucket, noticesBucket); err != nil {
		return nil, fmt.Errorf("notifications: %w", err)
	}
	if cfg.Transport == TransportSMTP {
		log.Info("emails go out by smtp", "smtp", cfg.SMTP)
	} else {
		log.Info("emails go to the outbox", "dir", cfg.OutboxDir)
	}
	return &Service{db: db, log: log, cfg: cfg, from: from, sender: sender, now: time.Now}, nil
}

// Routes binds send_order_confirmation to its trigger (and to its trigger at schema version
// 1, while events of it may be in flight), and the failure notice to checkout.failed.
func (s *Service) Routes() []runner.Route {
	confirm := func(trigger events.Subject) runner.Route {
		return runner.Route{Subject: trigger, Call: s.sendConfirmation,
			Outcomes: []events.Subject{events.ConfirmationSent}, Replay: replaySent(sentBucket)}
	}
	return []runner.Route{
		confirm(events.FulfilmentRequested),
		confirm(events.ConfirmationRequested),
		{Subject: events.Failed, Call: s.sendFailureNotice,
			Outcomes: []events.Subject{events.FailureNoticeSent}, Replay: replayNotice},
	}
}

// sendConfirmation is send_order_confirmation.
func (s *Service) sendConfirmation(ctx context.Context, in events.Envelope) (runner.Handler, error) {
	var order events.Order
	if err := in.DecodePayload(&order); err != nil {
		return nil, err
	}
	if order.ID == "" || order.Number == "" {
		return nil, fmt.Errorf("%s payload: %w: needs order_id and order_number", in.Type, events.ErrMalformed)
	}
	log := s.log.With("checkout_id", in.CheckoutID, "event_id", in.ID, "email", "confirmation", "order_number", order.Number)
	sent, err := s.sendOnce(ctx, sentBucket, in, log, SentEmail{OrderID: order.ID}, func() (Message, error) {
		return render(in.CheckoutID, order, s.from, s.dateOr(order.CreatedAt))
	})
	if err != nil {
		return nil, fmt.Errorf("send confirmation of %s: %w", order.Number, err)
	}
	return recordSent(sentBucket, in.CheckoutID, sent, events.Must(in.CheckoutID, events.ConfirmationSent, sent.event())), nil
}

// sendFailureNotice tells the customer of a failed checkout what happened, whether money
// moved, and what they can do. It is not a step: a send that keeps failing is retried
// (and announced as stuck by the runner), never given up; but an address the mail server
// refuses (5xx: no such mailbox) is rejected with the server's reason, since no retry
// will change it (the event stays in DEADLETTER for a replay).
func (s *Service) sendFailureNotice(ctx context.Context, in events.Envelope) (runner.Handler, error) {
	var failed events.CheckoutFailed
	if err := in.DecodePayload(&failed); err != nil {
		return nil, err
	}
	log := s.log.With("checkout_id", in.CheckoutID, "event_id", in.ID, "email", "failure_notice", "code", failed.Code)
	if why := noticeRefusal(failed); why != "" {
		log.Info("no failure notice: " + why)
		return func(context.Context, *bolt.Tx, events.Envelope) ([]events.Envelope, error) { return nil, nil }, nil
	}
	sent, err := s.sendOnce(ctx, noticesBucket, in, log, SentEmail{}, func() (Message, error) {
		return renderFailure(in.CheckoutID, failed, s.from, s.dateOr(in.Time))
	})
	if Refused(err) {
		return nil, runner.Permanent(fmt.Errorf("failure notice to %s refused: %w", failed.CustomerEmail, err))
	}
	if err != nil {
		return nil, fmt.Errorf("send failure notice: %w", err)
	}
	return recordSent(noticesBucket, in.CheckoutID, sent, events.Must(in.CheckoutID, events.FailureNoticeSent, sent.event())), nil
}

// sendOnce sends the checkout's message that build renders, unless bucket records it as
// sent already, and returns its record (rec, completed). It runs with no transaction open,
// so a slow mail server holds up this checkout alone; recordSent saves the record with the
// event's outputs. A checkout's events are handled one at a time, so nothing records the
// message meanwhile.
func (s *Service) sendOnce(ctx context.Context, bucket []byte, in events.Envelope, log *slog.Logger, rec SentEmail, build func() (Message, error)) (SentEmail, error) {
	var sent SentEmail
	if found, err := store.View(s.db, bucket, in.CheckoutID, &sent); err != nil || found {
		return sent, err
	}
	msg, err := build()
	if err != nil {
		return SentEmail{}, err
	}
	if err := s.send(ctx, in.CheckoutID, msg); err != nil {
		return SentEmail{}, err
	}
	rec.MessageID, rec.To, rec.SentAt = msg.ID, msg.To, s.now().UTC()
	log.Info("email sent", "message_id", msg.ID)
	return rec, nil
}

// recordSent is the handler that records a sent message in bucket and emits out, timed
// when it was sent: the event is the record, and a rebuilt view takes it from there
// (replaySent). A record there already (only a copy of the event outside its checkout's
// lane could have made it) stays, and is what is announced.
func recordSent(bucket []byte, checkoutID string, sent SentEmail, out events.Envelope) runner.Handler {
	return func(_ context.Context, tx *bolt.Tx, _ events.Envelope) ([]events.Envelope, error) {
		b := tx.Bucket(bucket)
		var first SentEmail
		found, err := store.Get(b, checkoutID, &first)
		if err != nil {
			return nil, err
		}
		if found {
			out.Payload, err = json.Marshal(first.event())
			out.Time = first.SentAt
			return []events.Envelope{out}, err
		}
		out.Time = sent.SentAt
		return []events.Envelope{out}, store.Put(b, checkoutID, sent)
	}
}

// replayNotice rebuilds the record of a failure notice (replaySent). A notice not sent on
// purpose (noticeRefusal) announced nothing, and records nothing here either; one due but
// not announced, with no notice of its checkout recorded before, was refused by the mail
// server, and live handling rejected its event, keeping no record of it: so does the replay.
func replayNotice(ctx context.Context, tx *bolt.Tx, in events.Envelope, recorded []events.Envelope) error {
	if len(recorded) > 0 {
		return replaySent(noticesBucket)(ctx, tx, in, recorded)
	}
	var failed events.CheckoutFailed
	if err := in.DecodePayload(&failed); err != nil {
		return err
	}
	if Notifies(failed) && tx.Bucket(noticesBucket).Get([]byte(in.CheckoutID)) == nil {
		return runner.Permanent(errors.New("the failure notice was refused: it was not sent"))
	}
	return nil
}

// replaySent rebuilds the record of a sent message in bucket from the event that announced
// it, sent at the event's time.
func replaySent(bucket []byte) runner.Replayer {
	return func(_ context.Context, tx *bolt.Tx, in events.Envelope, recorded []events.Envelope) error {
		if len(recorded) == 0 {
			return nil
		}
		var announced events.EmailSent
		if err := recorded[0].DecodePayload(&announced); err != nil {
			return err
		}
		b := tx.Bucket(bucket)
		if b.Get([]byte(in.CheckoutID)) != nil {
			return nil
		}
		return store.Put(b, in.CheckoutID, SentEmail{OrderID: announced.OrderID, MessageID: announced.MessageID,
			To: announced.To, SentAt: recorded[0].Time})
	}
}

// event is the announcement of a sent email.
func (e SentEmail) event() events.EmailSent {
	return events.EmailSent{OrderID: e.OrderID, To: e.To, MessageID: e.MessageID}
}

// dateOr is the Date of a message about an event of time t: t itself, so that a resend is
// the same message, or now when t is unknown.
func (s *Service) dateOr(t time.Time) time.Time {
	if t.IsZero() {
		return s.now()
	}
	return t
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
		if Refused(err) {
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

// FailureNotice returns the record of a failed checkout's notice; found is false until it
// is sent, and stays false when the checkout's customer was not known.
func (s *Service) FailureNotice(checkoutID string) (sent SentEmail, found bool, err error) {
	found, err = store.View(s.db, noticesBucket, checkoutID, &sent)
	return sent, found, err
}
