package payments

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/store"
	"github.com/jetcheckout/jetcheckout/runner"
	"github.com/nats-io/nats.go"
	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"
	bolt "go.etcd.io/bbolt"
)

// Config is how the service reaches Stripe.
type Config struct {
	// BaseURL is the Stripe API, e.g. the emulator's "http://127.0.0.1:12111"; "" is
	// https://api.stripe.com.
	BaseURL string
	// SecretKey is the secret (sk_...) or restricted (rk_...) API key. Never logged.
	SecretKey string
	// HTTPTimeout bounds each Stripe request; default 20s, under the runner's 30s HandlerTimeout
	// so a slow answer fails its attempt, to be retried, before the runner gives up on it.
	HTTPTimeout time.Duration
	// Transport makes the HTTP requests to Stripe (nil: http.DefaultTransport); it may
	// wrap another to measure them.
	Transport http.RoundTripper
	// MaxNetworkRetries is stripe-go's own retries of a request; default 0, because the
	// runner redelivers the event and the same idempotency key makes that safe.
	MaxNetworkRetries int64
	// AuthWindow is how long a customer has to finish 3-D Secure; default 10m. The
	// payment is cancelled, and the step fails, when it runs out.
	AuthWindow time.Duration
	// RecheckEvery is how often the service looks at a PaymentIntent that waits for the
	// customer's authentication; default 2s.
	RecheckEvery time.Duration
	// SearchLag is how long after a refund is asked for an empty search of Stripe is not
	// believed: Stripe's search index lags behind writes (under a minute, it says), and a
	// charge that a timed-out attempt made must not be missed. Default 90s.
	SearchLag time.Duration
	// NC, when set, is the connection on which the service asks the coordinator whether it
	// asked for a checkout's payment (events.CheckoutsStepActive: its process_payment step
	// is running). A request it did not ask for, forged or stray, is refused before Stripe is
	// called, with a failure certain that nothing was charged; one asked while the
	// coordinator does not answer is retried, not charged. Nil charges every request: for
	// tests of the service alone.
	NC *nats.Conn
}

// DefaultAuthWindow is how long a customer has to finish 3-D Secure by default.
const DefaultAuthWindow = 10 * time.Minute

func (c *Config) setDefaults() {
	if c.HTTPTimeout == 0 {
		c.HTTPTimeout = 20 * time.Second
	}
	if c.AuthWindow == 0 {
		c.AuthWindow = DefaultAuthWindow
	}
	if c.RecheckEvery == 0 {
		c.RecheckEvery = 2 * time.Second
	}
	if c.SearchLag == 0 {
		c.SearchLag = 90 * time.Second
	}
}

// Validate reports a configuration the service cannot work with.
func (c Config) Validate() error {
	switch {
	case c.SecretKey == "":
		return errors.New("payments: a Stripe secret key is required (sk_test_... for test mode)")
	case !strings.HasPrefix(c.SecretKey, "sk_") && !strings.HasPrefix(c.SecretKey, "rk_"):
		return errors.New("payments: the Stripe key must be a secret (sk_...) or restricted (rk_...) key, not a publishable one")
	case c.HTTPTimeout < 0 || c.MaxNetworkRetries < 0:
		return errors.New("payments: HTTPTimeout and MaxNetworkRetries cannot be negative")
	case c.AuthWindow < 0 || c.RecheckEvery < 0:
		return errors.New("payments: AuthWindow and RecheckEvery cannot be negative")
	}
	return nil
}

// LogValue keeps the key out of logs.
func (c Config) LogValue() slog.Value {
	base := c.BaseURL
	if base == "" {
		base = stripe.APIURL
	}
	return slog.GroupValue(slog.String("base_url", base), slog.Duration("http_timeout", c.HTTPTimeout),
		slog.Duration("auth_window", c.AuthWindow), slog.Duration("recheck_every", c.RecheckEvery),
		slog.Bool("live", strings.Contains(c.SecretKey, "_live_")))
}

// Service charges and refunds checkouts.
type Service struct {
	db     *bolt.DB
	log    *slog.Logger
	cfg    Config
	stripe *client.API
}

// New creates the payments bucket in db and a Stripe client for cfg.
func New(db *bolt.DB, log *slog.Logger, cfg Config) (*Service, error) {
	if db == nil || log == nil {
		return nil, errors.New("payments: db and log are required")
	}
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if err := store.EnsureBuckets(db, bucketPayments); err != nil {
		return nil, fmt.Errorf("payments: %w", err)
	}
	return &Service{db: db, log: log, cfg: cfg, stripe: newStripeClient(cfg, log)}, nil
}

// newStripeClient builds a client of its own (no stripe-go globals) for cfg.
func newStripeClient(cfg Config, log *slog.Logger) *client.API {
	bc := &stripe.BackendConfig{
		HTTPClient:        &http.Client{Timeout: cfg.HTTPTimeout, Transport: cfg.Transport},
		MaxNetworkRetries: stripe.Int64(cfg.MaxNetworkRetries),
		LeveledLogger:     stripeLog{log.With("component", "stripe-go")},
	}
	if cfg.BaseURL != "" {
		bc.URL = stripe.String(cfg.BaseURL)
	}
	backend := stripe.GetBackendWithConfig(stripe.APIBackend, bc)
	return client.New(cfg.SecretKey, &stripe.Backends{API: backend, Connect: backend, Uploads: backend})
}

// Routes are the service's steps.
func (s *Service) Routes() []runner.Route {
	return []runner.Route{
		{Subject: events.PaymentRequested, Call: s.processPayment, Outcomes: paymentOutcomes, Replay: replayPayment, Scheduled: s.firstLook},
		{Subject: events.PaymentRecheck, Call: s.recheckPayment, Outcomes: recheckOutcomes, Replay: replayRecheck},
		{Subject: events.PaymentRefund, Call: s.refundPayment, Outcomes: refundOutcomes, Replay: replayRefund},
	}
}

// Payment returns a checkout's payment record.
func (s *Service) Payment(checkoutID string) (r Record, found bool, err error) {
	found, err = store.View(s.db, bucketPayments, checkoutID, &r)
	return r, found, err
}

// stripeLog sends stripe-go's own lines to slog at debug level: the service logs every
// outcome itself, with the checkout ID. Its debug lines (whole response bodies, with
// client secrets) are dropped.
type stripeLog struct{ log *slog.Logger }

func (l stripeLog) Debugf(string, ...any)          {}
func (l stripeLog) Infof(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l stripeLog) Warnf(format string, v ...any)  { l.log.Debug(fmt.Sprintf(format, v...)) }
func (l stripeLog) Errorf(format string, v ...any) { l.log.Debug(fmt.Sprintf(format, v...)) }
