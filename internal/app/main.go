package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/metrics"
	"github.com/jetcheckout/jetcheckout/internal/stripeemu"
	"github.com/jetcheckout/jetcheckout/internal/tracing"
)

const usage = `usage: jetcheckout <command>

  run                  the whole checkout in one process: nats-server embedded (or NATS_URL),
                       the Stripe emulator (unless STRIPE_SECRET_KEY/STRIPE_API_BASE), every service,
                       the HTTP API and run UI on HTTP_ADDR
  api                  the HTTP API and run UI alone, against NATS_URL
  service NAME...      run some services against NATS_URL, e.g. "service payments"
                       (services: catalog inventory fraud payments orders notifications shipping coordinator)
  setup [-once] [-migrate]
                       as the setup user, create or update the streams, the buckets and the
                       services' consumers (which no service may), then keep them so (restoring
                       any change) until stopped; -migrate, as the operator, first migrates a
                       CHECKOUT stream made before the timer streams
  stripe-emulator      the Stripe test-mode emulator alone, on STRIPE_EMULATOR_LISTEN
  nats-server --config FILE
                       nats-server from its configuration file (what the compose stack runs),
                       restarting JetStream once a full disk has room again, else exiting 1
  events               print the event catalog as a Markdown table
  healthcheck [URL]    exit 0 when URL (default: this container's HEALTH_ADDR) answers 2xx
  nats-config          print nats-server's accounts block: one user per service, derived from events/
  nats-secrets DIR     write a random password per NATS user, and a signing key per service, as env
                       files in DIR (existing ones kept)
  nats-certs DIR       write a development CA, server and client certificate for NATS TLS into DIR

Configuration comes from the environment: NATS_URL, NATS_USER, NATS_PASSWORD (or
NATS_PASSWORD_FILE), NATS_CREDS, NATS_CA, NATS_CERT, NATS_KEY, NATS_LISTEN, NATS_MONITOR_URL, DATA_DIR,
STRIPE_SECRET_KEY, STRIPE_API_BASE, STRIPE_EMULATOR_LISTEN, SMTP_ADDR, SMTP_USERNAME,
SMTP_PASSWORD, MAIL_FROM, LOG_LEVEL, LOG_FORMAT, HEALTH_ADDR, HTTP_ADDR, ADMIN_TOKEN,
READER_TOKEN, CHECKOUT_RATE_CLIENT, CHECKOUT_RATE_EMAIL, WRONG_TOKEN_RATE, TRUSTED_PROXIES,
HANDLED_RETENTION, CHECKOUT_RETENTION, RUNS_RETENTION, SNAPSHOT_EVERY, PINNED_TTL, SIGNING_PUBLIC_KEYS,
SIGNING_SEED_<SERVICE> (README.md, "Configuration"; docs/OPERATIONS.md, "Settings").
`

// Main runs a command and returns the process's exit code; SIGINT or SIGTERM stops it.
func Main(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	return run(ctx, stop, args, getenv, stdout, stderr)
}

// run is Main until ctx ends; unhook restores the default handling of the signals. The
// logs go to stdout too.
func run(ctx context.Context, unhook func(), args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "events":
		fmt.Fprint(stdout, events.Checkout.Markdown())
		return 0
	case "healthcheck":
		return Healthcheck(args[1:], getenv, stdout, stderr)
	case "nats-config":
		if err := WriteNATSAuth(stdout); err != nil {
			fmt.Fprintln(stderr, "jetcheckout:", err)
			return 1
		}
		return 0
	case "nats-secrets", "nats-certs":
		if len(args) != 2 {
			fmt.Fprint(stderr, usage)
			return 2
		}
		write := WriteNATSSecrets
		if args[0] == "nats-certs" {
			write = func(dir string) error { return WriteDevCerts(dir, DevCertHosts) }
		}
		if err := write(args[1]); err != nil {
			fmt.Fprintln(stderr, "jetcheckout:", err)
			return 1
		}
		return 0
	}
	cfg, err := ConfigFromEnv(getenv)
	if err != nil {
		fmt.Fprintln(stderr, "jetcheckout: configuration:", err)
		return 2
	}
	log := cfg.LoggerTo(stdout)
	cfg.Metrics = metrics.NewRegistry()
	if cfg.Traces, err = tracing.New(cfg.Tracing); err != nil {
		fmt.Fprintln(stderr, "jetcheckout: configuration:", err)
		return 2
	}
	defer shutdownTraces(cfg.Traces, log)
	h := &health{metrics: metrics.Handler(cfg.Metrics)}
	if cfg.HealthAddr != "" {
		if err := serveHealth(ctx, cfg.HealthAddr, h, log); err != nil {
			log.Error("stopped", "err", err)
			return 1
		}
	}

	switch args[0] {
	case "run":
		if cfg.AdminToken == "" {
			// Never printed: the banner says which file holds it.
			if cfg.AdminToken, cfg.AdminTokenFile, err = adminTokenFile(cfg.DataDir); err != nil {
				log.Error("stopped", "err", err)
				return 1
			}
		}
		err = serve(ctx, unhook, cfg, log, h, stdout, true)
	case "api":
		if cfg.NATSURL == "" {
			fmt.Fprintln(stderr, "jetcheckout: api needs NATS_URL (use `run` for everything embedded)")
			return 2
		}
		err = serveAPI(ctx, unhook, cfg, log, h)
	case "service":
		if len(args) < 2 {
			fmt.Fprint(stderr, usage)
			return 2
		}
		if cfg.NATSURL == "" {
			fmt.Fprintln(stderr, "jetcheckout: service needs NATS_URL (use `run` for everything embedded)")
			return 2
		}
		err = serve(ctx, unhook, cfg, log, h, stdout, false, args[1:]...)
	case "setup":
		if cfg.NATSURL == "" {
			fmt.Fprintln(stderr, "jetcheckout: setup needs NATS_URL (`run` sets up its embedded server itself)")
			return 2
		}
		err = runSetup(ctx, cfg, log, h, slices.Contains(args[1:], "-once"), slices.Contains(args[1:], "-migrate"))
	case "nats-server":
		file, ferr := natsServerFlags(args[1:], stderr)
		if ferr != nil {
			return 2
		}
		err = serveNATS(ctx, unhook, file, log)
	case "stripe-emulator":
		h.set(func(ctx context.Context) error { return dialable(ctx, cfg.StripeEmulatorAddr) })
		err = stripeemu.ListenAndServe(ctx, cfg.StripeEmulatorAddr, log)
	default:
		fmt.Fprint(stderr, usage)
		return 2
	}
	if err != nil {
		log.Error("stopped", "err", err)
		return 1
	}
	return 0
}

// serve runs services until a signal or a failure, then stops them gracefully. After the
// first signal, unhook restores the default handling, so a second Ctrl-C stops at once.
func serve(ctx context.Context, unhook func(), cfg Config, log *slog.Logger, h *health, stdout io.Writer, banner bool, names ...string) error {
	if len(names) > 0 { // `service NAME`: replicas of a service take turns on its store
		release, err := awaitTurn(ctx, cfg.DataDir, log, h, names)
		if ctx.Err() != nil {
			log.Info("stopped while standing by")
			return nil
		}
		if err != nil {
			return err
		}
		defer release()
		log.Info("running", "services", names)
	}
	cfg.NATSWaiting = h.waitingForNATS
	sys, err := Start(ctx, cfg, log, names...)
	if ctx.Err() != nil && err != nil {
		log.Info("stopped while starting", "err", err)
		return nil
	}
	if err != nil {
		return err
	}
	var api *api
	var apiDone <-chan error
	if banner { // `run`: the HTTP API too
		watchConsumers(cfg.Metrics, sys.JS, APIName)
		if api, err = startAPI(ctx, cfg, log, sys.NC, sys.JS, sys.Keys, sys.emulatorControl(), sys.Ready, metrics.Handler(cfg.Metrics)); err != nil {
			sys.Stop()
			return err
		}
		sys.APIURL, apiDone = api.URL, api.Done()
	}
	h.set(sys.Ready)
	if banner {
		sys.Banner(stdout)
	}
	var apiErr error
	select {
	case <-ctx.Done():
		unhook()
		log.Info("shutting down: finishing in-flight work (Ctrl-C again to stop at once)")
	case <-sys.Failed():
	case apiErr = <-apiDone:
	}
	h.set(func(context.Context) error { return errors.New("shutting down") })
	if api != nil && apiErr == nil {
		apiErr = api.Stop() // before the services: it uses their connection
	}
	sys.Stop()
	if err := errors.Join(sys.Err(), apiErr); err != nil {
		return err
	}
	log.Info("stopped cleanly")
	return nil
}

// adminTokenFile is the admin token `run` makes when ADMIN_TOKEN is unset: kept in a file
// only its owner reads (DATA_DIR/admin-token), the same across restarts, so that a signed-in
// browser stays signed in.
func adminTokenFile(dataDir string) (token, path string, err error) {
	path = filepath.Join(dataDir, "admin-token")
	if raw, err := os.ReadFile(path); err == nil && len(strings.TrimSpace(string(raw))) >= 16 {
		return strings.TrimSpace(string(raw)), path, nil
	}
	if err := os.MkdirAll(dataDir, 0o700); err != nil {
		return "", "", fmt.Errorf("admin token: %w", err)
	}
	token = randomPassword()
	if err := os.WriteFile(path, []byte(token+"\n"), 0o600); err != nil {
		return "", "", fmt.Errorf("admin token: %w", err)
	}
	return token, path, nil
}

// dialable reports whether something accepts connections on addr.
func dialable(ctx context.Context, addr string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", local(addr))
	if err != nil {
		return err
	}
	return conn.Close()
}
