package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
)

// A silent connection is given up after about pingInterval × (maxPingsOut + 1).
const (
	pingInterval = 5 * time.Second
	maxPingsOut  = 3
)

// connect dials NATS as the process's user. A process that runs one service takes replies
// on an inbox of its own (_INBOX_<service>), so its NATS user can be allowed to subscribe
// to its replies and nobody else's (see natsauth.go). A server that is not reachable yet
// (started after the services, or restarting) is dialled again with growing delays, up to
// 5 s apart, until ctx ends; cfg.NATSWaiting hears why it is waiting. A server that answers
// and refuses (credentials, TLS) is a deployment mistake: it stops the process at once.
func connect(ctx context.Context, url string, cfg Config, log *slog.Logger, names []string) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name("jetcheckout " + strings.Join(names, ",")),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		// A connection can die without a word: the container cut off its network, the
		// server's machine gone. Only unanswered pings tell; with the defaults (every 2
		// min, 2 outstanding) a step service stayed blind for minutes while it held its
		// replica lock, so the standby could not take over (make chaos-cluster).
		nats.PingInterval(pingInterval),
		nats.MaxPingsOutstanding(maxPingsOut),
		// A refused publish or subscription (a permission the server does not grant) is
		// reported asynchronously: say so loudly, it is a deployment mistake.
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			attrs := []any{"err", err}
			if sub != nil {
				attrs = append(attrs, "subject", sub.Subject)
			}
			level := slog.LevelWarn
			if errors.Is(err, nats.ErrPermissionViolation) || errors.Is(err, nats.ErrAuthorization) {
				level = slog.LevelError
			}
			log.Log(context.Background(), level, "nats", attrs...)
		}),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				log.Warn("nats disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { log.Info("nats reconnected", "url", nc.ConnectedUrlRedacted()) }),
	}
	if len(names) == 1 {
		opts = append(opts, nats.CustomInboxPrefix(InboxPrefix(names[0])))
	}
	opts = append(opts, cfg.natsAuthOptions()...)
	dial := func() (*nats.Conn, error) {
		nc, err := nats.Connect(url, opts...)
		if err != nil && !unreachable(err) {
			return nil, backoff.Permanent(err)
		}
		return nc, err
	}
	wait := backoff.NewExponentialBackOff(backoff.WithInitialInterval(250*time.Millisecond),
		backoff.WithMaxInterval(5*time.Second), backoff.WithMaxElapsedTime(0))
	nc, err := backoff.RetryNotifyWithData(dial, backoff.WithContext(wait, ctx), func(err error, next time.Duration) {
		log.Warn("waiting for NATS", "err", err, "retry_in", next.Round(time.Millisecond))
		if cfg.NATSWaiting != nil {
			cfg.NATSWaiting(err)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("connect to NATS at %s: %w", url, err)
	}
	return nc, nil
}

// unreachable reports a connection error that waiting may cure: nothing listens yet
// (nats.ErrNoServers is how a refused connection is reported), the name does not resolve
// yet (a container not started), or the dial failed.
func unreachable(err error) bool {
	var dns *net.DNSError
	var op *net.OpError
	return errors.Is(err, nats.ErrNoServers) || errors.As(err, &dns) || errors.As(err, &op) && op.Op == "dial"
}

// natsAuthOptions are the credentials and TLS settings of the configuration.
func (c Config) natsAuthOptions() []nats.Option {
	var opts []nats.Option
	if c.NATSUser != "" {
		opts = append(opts, nats.UserInfo(c.NATSUser, c.NATSPassword))
	}
	if c.NATSCreds != "" {
		opts = append(opts, nats.UserCredentials(c.NATSCreds))
	}
	if c.NATSCA != "" {
		opts = append(opts, nats.RootCAs(c.NATSCA))
	}
	if c.NATSCert != "" {
		opts = append(opts, nats.ClientCert(c.NATSCert, c.NATSKey))
	}
	return opts
}

// InboxPrefix is where a process running only the named service takes its replies.
func InboxPrefix(service string) string { return "_INBOX_" + service }
