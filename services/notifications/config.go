package notifications

import (
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/mail"
	"time"
)

// Transports a Config can choose.
const (
	TransportOutbox = "outbox" // one .eml file per message in a directory
	TransportSMTP   = "smtp"
)

// Config of the notifications service.
type Config struct {
	From      string // default "JetCheckout <orders@jetcheckout.local>"
	Transport string // TransportOutbox (default) or TransportSMTP
	OutboxDir string // required with TransportOutbox
	SMTP      SMTPConfig

	// A failed send is retried with exponential backoff for up to RetryFor inside the
	// step; then the error goes to the runner, which redelivers the event later. The step
	// holds its input and its bbolt transaction meanwhile, so keep it to seconds.
	RetryFor     time.Duration // default 3s
	RetryInitial time.Duration // first retry delay, default 100ms

	// WrapSender, when set, wraps the transport (to measure each send, say).
	WrapSender func(transport string, s Sender) Sender
}

// SMTPConfig reaches a mail server. STARTTLS is used whenever the server offers it;
// credentials are sent only over TLS or to a loopback server.
type SMTPConfig struct {
	Addr      string // host:port
	Username  string // optional: PLAIN auth when set
	Password  Secret
	HelloName string         // name given in EHLO, default "localhost"
	Timeout   time.Duration  // one attempt, from dial to QUIT, default 10s
	RootCAs   *x509.CertPool // trusted for STARTTLS; nil: the system's roots
}

// LogValue leaves the password out of logs.
func (c SMTPConfig) LogValue() slog.Value {
	return slog.GroupValue(slog.String("addr", c.Addr), slog.String("username", c.Username))
}

// Secret is a string that does not print: fmt, slog and encoders see "[redacted]".
type Secret string

func (Secret) String() string { return "[redacted]" }

// MarshalText keeps the secret out of JSON and text logs.
func (Secret) MarshalText() ([]byte, error) { return []byte("[redacted]"), nil }

const maxRetryFor = 15 * time.Second

func (c *Config) setDefaults() {
	if c.From == "" {
		c.From = "JetCheckout <orders@jetcheckout.local>"
	}
	if c.Transport == "" {
		c.Transport = TransportOutbox
	}
	if c.SMTP.HelloName == "" {
		c.SMTP.HelloName = "localhost"
	}
	if c.SMTP.Timeout == 0 {
		c.SMTP.Timeout = 10 * time.Second
	}
	if c.RetryFor == 0 {
		c.RetryFor = 3 * time.Second
	}
	if c.RetryInitial == 0 {
		c.RetryInitial = 100 * time.Millisecond
	}
}

// Validate reports the first setting the service cannot work with.
func (c Config) Validate() error {
	if _, err := mail.ParseAddress(c.From); err != nil {
		return fmt.Errorf("notifications: From %q is not an email address: %w", c.From, err)
	}
	switch c.Transport {
	case TransportOutbox:
		if c.OutboxDir == "" {
			return errors.New("notifications: OutboxDir is required with the outbox transport")
		}
	case TransportSMTP:
		if _, port, err := net.SplitHostPort(c.SMTP.Addr); err != nil || port == "" {
			return fmt.Errorf("notifications: SMTP.Addr must be host:port, got %q", c.SMTP.Addr)
		}
		if c.SMTP.Password != "" && c.SMTP.Username == "" {
			return errors.New("notifications: SMTP.Password is set without SMTP.Username")
		}
		if c.SMTP.Timeout < 0 {
			return errors.New("notifications: SMTP.Timeout must be positive")
		}
	default:
		return fmt.Errorf("notifications: Transport must be %q or %q, got %q", TransportOutbox, TransportSMTP, c.Transport)
	}
	if c.RetryFor < 0 || c.RetryFor > maxRetryFor || c.RetryInitial <= 0 {
		return fmt.Errorf("notifications: RetryFor must be between 0 and %s and RetryInitial positive, got %s and %s",
			maxRetryFor, c.RetryFor, c.RetryInitial)
	}
	return nil
}

// newSender builds the configured transport, wrapped when WrapSender says so.
func (c Config) newSender() (Sender, error) {
	s, err := c.transport()
	if err != nil || c.WrapSender == nil {
		return s, err
	}
	return c.WrapSender(c.Transport, s), nil
}

func (c Config) transport() (Sender, error) {
	if c.Transport == TransportSMTP {
		return &SMTP{cfg: c.SMTP}, nil
	}
	return NewOutbox(c.OutboxDir)
}
