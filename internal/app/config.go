package app

import (
	"cmp"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/httpapi"
	"github.com/jetcheckout/jetcheckout/internal/topology"
	"github.com/jetcheckout/jetcheckout/internal/tracing"
	"github.com/jetcheckout/jetcheckout/runner"
	"github.com/jetcheckout/jetcheckout/services/fraud"
	"github.com/jetcheckout/jetcheckout/services/inventory"
	"github.com/jetcheckout/jetcheckout/services/payments"
	"github.com/prometheus/client_golang/prometheus"
)

// Config is the binary's configuration, read from the environment (12-factor, so the
// same names work in `make run`, a shell and docker compose).
type Config struct {
	NATSURL    string // NATS_URL: connect here; empty runs nats-server embedded
	NATSListen string // NATS_LISTEN: the embedded server's address (default 127.0.0.1:4222)
	DataDir    string // DATA_DIR: JetStream, bbolt files and the outbox (default ./data)
	// Replicas (JETSTREAM_REPLICAS, default 1) is how many copies of every stream and bucket
	// a JetStream cluster keeps: 3 in the three-node compose cluster.
	Replicas int

	// Credentials and TLS for NATS_URL, under the names the nats CLI reads too.
	NATSUser     string // NATS_USER
	NATSPassword string // NATS_PASSWORD, or the contents of NATS_PASSWORD_FILE (never logged)
	NATSCreds    string // NATS_CREDS: a decentralised-auth credentials file (JWT and nkey seed)
	NATSCA       string // NATS_CA: CA bundle to verify the server with (a tls:// URL)
	NATSCert     string // NATS_CERT: client certificate, for servers that verify clients
	NATSKey      string // NATS_KEY: its private key

	// NATSMonitorURL (NATS_MONITOR_URL) is nats-server's monitoring address (e.g.
	// http://nats:8222); when set, the health check also reports the server's own /healthz
	// (a full disk stalls its streams without a word to its clients).
	NATSMonitorURL string

	// HealthAddr (HEALTH_ADDR, host:port) serves GET /healthz: 200 once connected and every
	// runner is consuming, 503 with the reason otherwise. Empty serves nothing.
	HealthAddr string

	// SigningPublic (SIGNING_PUBLIC_KEYS) and SigningSeeds (SIGNING_SEED_<SERVICE>, never
	// logged) are the events' signing keys (signing.go).
	SigningPublic []string
	SigningSeeds  map[string]string

	HTTPAddr   string // HTTP_ADDR: the HTTP API and run UI (default 127.0.0.1:8080)
	AdminToken string // ADMIN_TOKEN: guards the review endpoints and customers' data (never logged; `run` makes one when unset)
	// ReaderToken (READER_TOKEN, never logged) reads customers' personal data in the API and
	// the UI, and decides nothing.
	ReaderToken string
	// AdminTokenFile is where `run` keeps the admin token it made (DATA_DIR/admin-token,
	// mode 0600): the banner names the file, never the token.
	AdminTokenFile string

	// RateClient (CHECKOUT_RATE_CLIENT, default 30/1m) and RateEmail (CHECKOUT_RATE_EMAIL,
	// default 10/1h) limit the checkouts started over HTTP per client address and per
	// customer email; 0 is no limit. TrustedProxies (TRUSTED_PROXIES, addresses or CIDR
	// prefixes, default none) are the proxies whose X-Forwarded-For names the client.
	RateClient, RateEmail httpapi.Rate
	TrustedProxies        []netip.Prefix
	// RateWrongToken (WRONG_TOKEN_RATE, default 10/15m) limits the wrong tokens a client may
	// present to the API or the UI's sign-in; 0 is no limit.
	RateWrongToken httpapi.Rate

	StripeKey          string // STRIPE_SECRET_KEY: with no STRIPE_API_BASE, real Stripe
	StripeBase         string // STRIPE_API_BASE: a Stripe-compatible API (e.g. the emulator)
	StripeEmulatorAddr string // STRIPE_EMULATOR_LISTEN: the embedded emulator's address (default 127.0.0.1:12111)

	SMTPAddr     string // SMTP_ADDR (host:port): send email over SMTP; empty writes .eml files to the outbox
	SMTPUsername string // SMTP_USERNAME
	SMTPPassword string // SMTP_PASSWORD (never logged)
	MailFrom     string // MAIL_FROM

	LogLevel  slog.Level // LOG_LEVEL: debug, info, warn, error
	LogFormat string     // LOG_FORMAT: text or json

	// Timing and fault injection for tests and chaos runs; zero values are the defaults.
	Deadlines  map[events.StepName]time.Duration // per-step deadlines (events.Flow's otherwise)
	Grace      time.Duration                     // the coordinator's grace after a step's deadline
	MaxDeliver int                               // attempts before a step is given up
	RetryBase  time.Duration                     // first redelivery delay
	AckWait    time.Duration                     // how long an unanswered delivery waits before redelivery (topology.DefaultAckWait)
	// HandlerTimeout is the longest a step handles one message (runner's default, 30 s):
	// also how long a publish the server never answers (a full disk) holds its checkout.
	HandlerTimeout time.Duration
	// ReviewWindow is how long a fraud review may wait for an operator (fraud's default otherwise).
	ReviewWindow time.Duration
	// FraudRules (FRAUD_RULES) is a file of the fraud check's rules (fraud.LoadConfig) read
	// instead of the demo's (deploy/demo/fraud.json).
	FraudRules string
	// AuthWindow is how long a customer has to finish 3-D Secure (payments' default otherwise).
	AuthWindow time.Duration
	// ReservationTTL (INVENTORY_RESERVATION_TTL) is the longest any checkout holds stock,
	// whatever it waits for (inventory.DefaultReservationTTL otherwise, 1h); the waits for
	// people must fit in it (see holdsBounded).
	ReservationTTL time.Duration
	// MaxHoldPerCustomer (INVENTORY_MAX_HOLD_PER_CUSTOMER) is how many units of one product
	// a customer may hold in unfinished checkouts: 0 is the inventory's default (10), a
	// negative value no limit ("0" in the environment).
	MaxHoldPerCustomer int
	// ReturnURLs (RETURN_URL_ALLOW) is where a checkout may send its customer back to
	// after 3-D Secure: any https URL when empty, else only under the listed origins or
	// prefixes.
	ReturnURLs events.ReturnURLRule
	// Concurrency (RUNNER_CONCURRENCY) is how many messages each service handles at once,
	// each checkout's in order (runner.Config.Concurrency); default DefaultConcurrency, and
	// DefaultCallingConcurrency for payments and notifications.
	Concurrency int
	// HandledRetention (HANDLED_RETENTION) is how long each service keeps the record of an
	// event it handled (runner.DefaultRetention, 30 days, says why); CheckoutRetention
	// (CHECKOUT_RETENTION) how long the coordinator keeps an ended checkout's key
	// (coordinator.DefaultRetention). Shorter ones are for measurements and tests.
	HandledRetention  time.Duration
	CheckoutRetention time.Duration
	// SnapshotEvery (SNAPSHOT_EVERY) is how often each rebuildable service (events.Rebuildable)
	// puts a copy of its view in its own bucket (events.ViewsBucket), when it changed: a lost
	// view is restored from it and only what came after is replayed (runner.Config.Snapshots).
	// Default a minute.
	SnapshotEvery time.Duration
	// SubscriptionDay (SUBSCRIPTION_DAY) is how long a day of a subscription's plan lasts:
	// 24h; shortened for a demo or a test, so that "every 1 day" renews in seconds (at least
	// 1s, a message schedule's shortest interval).
	SubscriptionDay time.Duration
	// SubscriptionRetryDays (SUBSCRIPTION_RETRY_DAYS, "1,3,7") are the days after a renewal's
	// first declined payment on which it is tried again; SubscriptionAfterRetries
	// (SUBSCRIPTION_AFTER_RETRIES, "cancelled" or "paused") what becomes of the subscription
	// after the last. Empty: the defaults (subscriptions.DefaultRetryDays, cancelled).
	SubscriptionRetryDays    []int
	SubscriptionAfterRetries string
	// PinnedTTL (PINNED_TTL) is how long the instance of a rebuildable service that holds its
	// consumer's pin may go without pulling (dead, frozen, cut off) before the server gives
	// the messages to another instance (runner.Config.PinnedTTL): default
	// topology.DefaultPinnedTTL, at least 2s. The setup role makes the consumers with it, so it
	// must be the same for the setup role and the services.
	PinnedTTL time.Duration
	// SchemaWriteVersion (SCHEMA_WRITE_VERSION) holds the events this process writes at an
	// older version of the contract during a rolling upgrade, until every instance reads the
	// new one (events.HoldWriteVersion); 0, the default, writes events.SchemaVersion. It is
	// the process's: Start applies it to everything the process writes.
	SchemaWriteVersion int
	// RunsRetention (RUNS_RETENTION) is how long the HTTP API's read model keeps a checkout
	// after its last change (httpapi.DefaultRunsRetention: 30 days, as the stream).
	RunsRetention time.Duration
	// Faults make routes of a service fail, by service name: a step failing without a change
	// to it, for tests.
	Faults map[string][]Fault
	Hooks  map[string]runner.Hooks // by service name: simulated crashes
	// NATSWaiting hears why Start is still waiting for NATS at start (the health endpoint
	// reports it).
	NATSWaiting func(err error)
	// Metrics is the process's registry, served on /metrics (metrics.go); nil: Start makes
	// one of the system's own (System.Metrics).
	Metrics *prometheus.Registry

	// Tracing says where spans go: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT, or
	// OTEL_EXPORTER_OTLP_ENDPOINT plus /v1/traces (OTLP over HTTP). Empty: nowhere, and every
	// tracer is the global no-op one (docs/OPERATIONS.md, "Traces").
	Tracing tracing.Config
	// TraceURL (TRACE_URL) is a trace UI's page of one trace, {trace_id} standing for the
	// trace's ID (Jaeger: http://localhost:16686/trace/{trace_id}): the run page links to it.
	TraceURL string
	// Traces are the process's tracers, made from Tracing; nil: Start makes them for the
	// system and shuts them down when it stops.
	Traces *tracing.Provider
}

// DefaultConcurrency is how many messages a service handles at once by default: enough
// checkouts overlapping their fsyncs and publish acks to keep the disk busy.
const DefaultConcurrency = 16

// DefaultCallingConcurrency is the default of the services that wait on the outside world
// (payments on Stripe, notifications on SMTP): a lane waits out its call, so with Stripe
// answering in 300 ms, 16 lanes would cap payments near 50 a second (30 measured, with
// checkouts sharing lanes); 64 keep it above what the rest of the checkout reaches.
const DefaultCallingConcurrency = 64

// callsOut are the services whose steps wait on the outside world.
var callsOut = map[string]bool{events.ServicePayments: true, events.ServiceNotifications: true}

// pinnedTTL is service's: PinnedTTL or its default for a rebuildable service, whose instances
// each have their own file and take turns on its consumer's pin; none for the others.
func (c Config) pinnedTTL(service string) time.Duration {
	if !events.Rebuildable[service] {
		return 0
	}
	return cmp.Or(c.PinnedTTL, topology.DefaultPinnedTTL)
}

// concurrency is service's: the configured Concurrency, or its default.
func (c Config) concurrency(service string) int {
	switch {
	case c.Concurrency > 0:
		return c.Concurrency
	case callsOut[service]:
		return DefaultCallingConcurrency
	}
	return DefaultConcurrency
}

// emulatorKey is the test-mode key used with the embedded emulator; it is not a secret.
const emulatorKey = "sk_test_jetcheckout_emulator"

// ConfigFromEnv reads the configuration and validates it.
func ConfigFromEnv(getenv func(string) string) (Config, error) {
	c := Config{
		NATSURL:                  getenv("NATS_URL"),
		NATSListen:               or(getenv("NATS_LISTEN"), "127.0.0.1:4222"),
		DataDir:                  or(getenv("DATA_DIR"), "data"),
		NATSUser:                 getenv("NATS_USER"),
		NATSPassword:             getenv("NATS_PASSWORD"),
		NATSCreds:                getenv("NATS_CREDS"),
		NATSCA:                   getenv("NATS_CA"),
		NATSCert:                 getenv("NATS_CERT"),
		NATSKey:                  getenv("NATS_KEY"),
		HealthAddr:               getenv("HEALTH_ADDR"),
		NATSMonitorURL:           getenv("NATS_MONITOR_URL"),
		HTTPAddr:                 or(getenv("HTTP_ADDR"), "127.0.0.1:8080"),
		AdminToken:               getenv("ADMIN_TOKEN"),
		ReaderToken:              getenv("READER_TOKEN"),
		StripeKey:                getenv("STRIPE_SECRET_KEY"),
		StripeBase:               getenv("STRIPE_API_BASE"),
		StripeEmulatorAddr:       or(getenv("STRIPE_EMULATOR_LISTEN"), "127.0.0.1:12111"),
		SMTPAddr:                 getenv("SMTP_ADDR"),
		SMTPUsername:             getenv("SMTP_USERNAME"),
		SMTPPassword:             getenv("SMTP_PASSWORD"),
		MailFrom:                 or(getenv("MAIL_FROM"), "JetCheckout <orders@jetcheckout.local>"),
		FraudRules:               getenv("FRAUD_RULES"),
		SubscriptionAfterRetries: getenv("SUBSCRIPTION_AFTER_RETRIES"),
		LogFormat:                or(getenv("LOG_FORMAT"), "text"),
		Tracing:                  tracing.ConfigFromEnv(getenv),
		TraceURL:                 getenv("TRACE_URL"),
	}
	c.SigningPublic, c.SigningSeeds = signingFromEnv(getenv)
	if v := getenv("JETSTREAM_REPLICAS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 5 {
			return c, fmt.Errorf("JETSTREAM_REPLICAS %q: want 1 to 5 (JetStream's limit)", v)
		}
		c.Replicas = n
	}
	if err := c.frontDoor(getenv); err != nil {
		return c, err
	}
	if v := getenv("RUNNER_CONCURRENCY"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 1024 {
			return c, fmt.Errorf("RUNNER_CONCURRENCY %q: want 1 to 1024", v)
		}
		c.Concurrency = n
	}
	if v := getenv("SCHEMA_WRITE_VERSION"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < events.OldestSchemaVersion || n > events.SchemaVersion {
			return c, fmt.Errorf("SCHEMA_WRITE_VERSION %q: this release writes event schema versions %d to %d (empty: %d)",
				v, events.OldestSchemaVersion, events.SchemaVersion, events.SchemaVersion)
		}
		c.SchemaWriteVersion = n
	}
	if v := getenv("INVENTORY_MAX_HOLD_PER_CUSTOMER"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			return c, fmt.Errorf("INVENTORY_MAX_HOLD_PER_CUSTOMER %q: want a number of units, 0 for no limit", v)
		}
		c.MaxHoldPerCustomer = n
		if n == 0 {
			c.MaxHoldPerCustomer = -1
		}
	}
	var err error
	if c.SubscriptionRetryDays, err = parseDays(getenv("SUBSCRIPTION_RETRY_DAYS")); err != nil {
		return c, err
	}
	if c.ReturnURLs, err = events.ParseReturnURLAllow(getenv("RETURN_URL_ALLOW")); err != nil {
		return c, err
	}
	if err := c.LogLevel.UnmarshalText([]byte(or(getenv("LOG_LEVEL"), "info"))); err != nil {
		return c, fmt.Errorf("LOG_LEVEL: %w", err)
	}
	for name, d := range map[string]*time.Duration{"FRAUD_REVIEW_WINDOW": &c.ReviewWindow, "PAYMENT_AUTH_WINDOW": &c.AuthWindow,
		"HANDLED_RETENTION": &c.HandledRetention, "CHECKOUT_RETENTION": &c.CheckoutRetention, "RUNS_RETENTION": &c.RunsRetention,
		"INVENTORY_RESERVATION_TTL": &c.ReservationTTL, "SNAPSHOT_EVERY": &c.SnapshotEvery, "PINNED_TTL": &c.PinnedTTL,
		"SUBSCRIPTION_DAY": &c.SubscriptionDay} {
		if v := getenv(name); v != "" {
			parsed, err := time.ParseDuration(v)
			if err != nil || parsed <= 0 {
				return c, fmt.Errorf("%s %q: want a positive duration like 90s or 10m", name, v)
			}
			*d = parsed
		}
	}
	if file := getenv("NATS_PASSWORD_FILE"); file != "" {
		if c.NATSPassword != "" {
			return c, errors.New("set NATS_PASSWORD or NATS_PASSWORD_FILE, not both")
		}
		raw, err := os.ReadFile(file)
		if err != nil {
			return c, fmt.Errorf("NATS_PASSWORD_FILE: %w", err)
		}
		// A secret file usually ends with a newline its writer did not mean as part of it.
		c.NATSPassword = strings.TrimRight(string(raw), "\r\n")
	}
	return c, c.Validate()
}

// Default limits of the checkouts started over HTTP.
const (
	DefaultRateClient = "30/1m"
	DefaultRateEmail  = "10/1h"
	// DefaultRateWrongToken bounds guessing a token: 10 wrong ones, then one every 90 s.
	DefaultRateWrongToken = "10/15m"
)

// frontDoor reads the HTTP API's limits on checkouts started without a token, and on wrong
// tokens.
func (c *Config) frontDoor(getenv func(string) string) error {
	var err error
	if c.RateClient, err = httpapi.ParseRate(or(getenv("CHECKOUT_RATE_CLIENT"), DefaultRateClient)); err != nil {
		return fmt.Errorf("CHECKOUT_RATE_CLIENT %w", err)
	}
	if c.RateEmail, err = httpapi.ParseRate(or(getenv("CHECKOUT_RATE_EMAIL"), DefaultRateEmail)); err != nil {
		return fmt.Errorf("CHECKOUT_RATE_EMAIL %w", err)
	}
	if c.RateWrongToken, err = httpapi.ParseRate(or(getenv("WRONG_TOKEN_RATE"), DefaultRateWrongToken)); err != nil {
		return fmt.Errorf("WRONG_TOKEN_RATE %w", err)
	}
	if c.TrustedProxies, err = httpapi.ParsePrefixes(getenv("TRUSTED_PROXIES")); err != nil {
		return fmt.Errorf("TRUSTED_PROXIES %w", err)
	}
	return nil
}

// Validate explains the first setting that cannot work.
func (c Config) Validate() error {
	if c.NATSURL == "" {
		if _, _, err := net.SplitHostPort(c.NATSListen); err != nil {
			return fmt.Errorf("NATS_LISTEN %q: want host:port: %w", c.NATSListen, err)
		}
	}
	if c.StripeBase == "" && c.StripeKey != "" && !strings.HasPrefix(c.StripeKey, "sk_") && !strings.HasPrefix(c.StripeKey, "rk_") {
		return errors.New("STRIPE_SECRET_KEY must be a Stripe secret or restricted key (sk_... or rk_...)")
	}
	if c.SMTPAddr != "" {
		if _, _, err := net.SplitHostPort(c.SMTPAddr); err != nil {
			return fmt.Errorf("SMTP_ADDR %q: want host:port: %w", c.SMTPAddr, err)
		}
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return fmt.Errorf("LOG_FORMAT %q: want text or json", c.LogFormat)
	}
	if c.DataDir == "" {
		return errors.New("DATA_DIR must not be empty")
	}
	if c.PinnedTTL != 0 && c.PinnedTTL < 2*time.Second {
		return fmt.Errorf("PINNED_TTL %s: at least 2s (an idle instance pulls again every half of it)", c.PinnedTTL)
	}
	if err := c.holdsBounded(); err != nil {
		return err
	}
	if err := c.Tracing.Validate(); err != nil {
		return err
	}
	if err := httpapi.CheckTraceURL(c.TraceURL); err != nil {
		return fmt.Errorf("TRACE_URL: %w", err)
	}
	return c.validateNATSAuth()
}

// MaxReservationTTL is the longest INVENTORY_RESERVATION_TTL accepted: no checkout should
// keep goods from other customers for longer than a day.
const MaxReservationTTL = 24 * time.Hour

// holdSlack is what a checkout needs on top of its waits for people: the other steps,
// the coordinator's grace after a deadline, the compensation.
const holdSlack = 5 * time.Minute

// holdsBounded checks that every hold of stock has an end no later than the reservation's
// expiry, and that the expiry is no later than MaxReservationTTL: a fraud review and then
// 3-D Secure, each waiting out its window, plus holdSlack, must fit in it, or a customer who
// authenticates on time would find the stock gone.
func (c Config) holdsBounded() error {
	ttl := cmp.Or(c.ReservationTTL, inventory.DefaultReservationTTL)
	review := cmp.Or(c.ReviewWindow, fraud.DefaultConfig().ReviewWindow)
	auth := cmp.Or(c.AuthWindow, payments.DefaultAuthWindow)
	switch {
	case ttl > MaxReservationTTL:
		return fmt.Errorf("INVENTORY_RESERVATION_TTL %s: at most %s", ttl, MaxReservationTTL)
	case review+auth+holdSlack > ttl:
		return fmt.Errorf("FRAUD_REVIEW_WINDOW (%s) + PAYMENT_AUTH_WINDOW (%s) + %s for the other steps must fit in INVENTORY_RESERVATION_TTL (%s): "+
			"shorten the windows or lengthen the TTL", review, auth, holdSlack, ttl)
	}
	return nil
}

// EmbeddedStripe reports whether the in-process emulator stands in for Stripe: when no key
// and no API base are configured.
func (c Config) EmbeddedStripe() bool { return c.StripeKey == "" && c.StripeBase == "" }

// Outbox is where email goes when no SMTP server is configured.
func (c Config) Outbox() string { return filepath.Join(c.DataDir, "outbox") }

// Logger builds the process's logger on stdout; main passes it down.
func (c Config) Logger() *slog.Logger { return c.LoggerTo(os.Stdout) }

// LoggerTo builds the process's logger on w.
func (c Config) LoggerTo(w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: c.LogLevel}
	if c.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// validateNATSAuth explains credentials or TLS settings that cannot work together.
func (c Config) validateNATSAuth() error {
	switch {
	case c.NATSCreds != "" && (c.NATSUser != "" || c.NATSPassword != ""):
		return errors.New("NATS_CREDS and NATS_USER/NATS_PASSWORD are two ways to log in: set one")
	case c.NATSPassword != "" && c.NATSUser == "":
		return errors.New("NATS_PASSWORD needs NATS_USER")
	case (c.NATSCert == "") != (c.NATSKey == ""):
		return errors.New("NATS_CERT and NATS_KEY go together")
	}
	if c.HealthAddr != "" {
		if _, _, err := net.SplitHostPort(c.HealthAddr); err != nil {
			return fmt.Errorf("HEALTH_ADDR %q: want host:port: %w", c.HealthAddr, err)
		}
	}
	return nil
}

func or(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// parseDays reads SUBSCRIPTION_RETRY_DAYS: whole days, comma-separated ("1,3,7"); "none" for
// no retry; empty for the default.
func parseDays(list string) ([]int, error) {
	switch strings.TrimSpace(list) {
	case "":
		return nil, nil
	case "none":
		return []int{}, nil
	}
	var days []int
	for field := range strings.SplitSeq(list, ",") {
		d, err := strconv.Atoi(strings.TrimSpace(field))
		if err != nil || d < 1 || len(days) > 0 && d <= days[len(days)-1] {
			return nil, fmt.Errorf("SUBSCRIPTION_RETRY_DAYS %q: want whole days from 1, each later than the one before, like 1,3,7 (or none)", list)
		}
		days = append(days, d)
	}
	return days, nil
}
