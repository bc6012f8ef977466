package app

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/httpapi"
	"github.com/jetcheckout/jetcheckout/internal/metrics"
	"github.com/jetcheckout/jetcheckout/internal/natsserver"
	"github.com/jetcheckout/jetcheckout/internal/stripeemu"
	"github.com/jetcheckout/jetcheckout/internal/topology"
	"github.com/jetcheckout/jetcheckout/internal/tracing"
	"github.com/jetcheckout/jetcheckout/runner"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"
)

// recoverInterval is how often the embedded server's JetStream is checked, and, when it
// cannot store, how often the disk is probed for room to restart it.
const recoverInterval = 2 * time.Second

// Services lists every service a process can run.
var Services = events.Services

// unit is one running service: its runner, its request-reply endpoints and its store.
type unit struct {
	name   string
	runner *runner.Runner
	serve  func(*nats.Conn) (micro.Service, error) // nil when it answers no requests
	close  func() error
	// beside is a part that runs in the unit's process beside its runner, with its own
	// endpoints: the subscriptions, beside the coordinator.
	beside interface {
		Run(context.Context) error
		Serve(*nats.Conn) (micro.Service, error)
	}
}

// System is a running set of services and whatever they were given to run on.
type System struct {
	Config    Config
	NATSURL   string
	StripeURL string // the Stripe API the payments service calls ("" = real Stripe)
	APIURL    string // the HTTP API and run UI, when this process serves them
	Server    *server.Server
	Emulator  *stripeemu.Server
	NC        *nats.Conn
	JS        jetstream.JetStream
	// Keys sign the events of the services this process runs and check everyone's.
	Keys *events.Keys
	// Metrics are the process's (Config.Metrics, or a registry of the system's own).
	Metrics *prometheus.Registry
	Handles

	// ownTraces: the tracers Start made (no Config.Traces), shut down last by Stop.
	ownTraces *tracing.Provider

	log     *slog.Logger
	units   []*unit
	micros  []micro.Service
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	errOnce sync.Once
	stopped sync.Once
	err     error
	failed  chan struct{}
}

// Start starts the named services (all of them when names is empty): the embedded
// nats-server when no NATS_URL is set, the Stripe emulator when no Stripe is configured,
// the streams and bucket, each service's store, endpoints and runner.
func Start(ctx context.Context, cfg Config, log *slog.Logger, names ...string) (_ *System, err error) {
	if len(names) == 0 {
		names = Services
	}
	for _, n := range names {
		if !slices.Contains(Services, n) {
			return nil, fmt.Errorf("unknown service %q (services: %v)", n, Services)
		}
	}
	if err := events.HoldWriteVersion(cfg.SchemaWriteVersion); err != nil {
		return nil, err
	}
	if v := events.WriteVersion(); v != events.SchemaVersion {
		log.Warn("writing events at an older schema version for a rolling upgrade: unset SCHEMA_WRITE_VERSION once every instance runs this release",
			"writes", v, "reads", fmt.Sprintf("%d to %d", events.OldestSchemaVersion, events.SchemaVersion))
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.NewRegistry()
	}
	s := &System{Config: cfg, NATSURL: cfg.NATSURL, Metrics: cfg.Metrics, log: log, failed: make(chan struct{})}
	if cfg.Traces == nil {
		if s.ownTraces, err = tracing.New(cfg.Tracing); err != nil {
			return nil, err
		}
		s.Config.Traces, cfg.Traces = s.ownTraces, s.ownTraces
	}
	if s.Keys, err = cfg.signingKeys(names); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	if s.NATSURL == "" {
		host, portStr, _ := net.SplitHostPort(cfg.NATSListen)
		port, err := strconv.Atoi(portStr)
		if err != nil {
			return nil, fmt.Errorf("NATS_LISTEN port: %w", err)
		}
		s.Server, err = natsserver.Start(natsserver.Config{Host: host, Port: port, StoreDir: filepath.Join(cfg.DataDir, "jetstream"),
			Log: log.With("component", "nats-server")})
		if err != nil {
			return nil, err
		}
		s.NATSURL = s.Server.ClientURL()
	}
	stripeKey := cfg.StripeKey
	s.StripeURL = cfg.StripeBase
	if slices.Contains(names, "payments") && cfg.EmbeddedStripe() {
		s.Emulator, err = stripeemu.Start(cfg.StripeEmulatorAddr, stripeemu.New(stripeemu.WithLogger(log.With("component", "stripe-emulator"))))
		if err != nil {
			return nil, err
		}
		s.StripeURL, stripeKey = s.Emulator.URL, emulatorKey
	}
	if s.NC, err = connect(ctx, s.NATSURL, cfg, log, names); err != nil {
		return nil, err
	}
	if s.JS, err = jetstream.New(s.NC); err != nil {
		return nil, err
	}
	if err := ensureTopology(ctx, s.Server != nil, s.JS, cfg, log, names...); err != nil {
		return nil, err
	}
	setupCtx, cancelSetup := context.WithTimeout(ctx, 30*time.Second)
	defer cancelSetup()
	d := deps{cfg: cfg, log: log, js: s.JS, stripeURL: s.StripeURL, stripeKey: stripeKey, keys: s.Keys, metrics: cfg.Metrics, traces: cfg.Traces}
	for _, n := range names {
		u, err := build(setupCtx, n, d, &s.Handles)
		if err != nil {
			return nil, fmt.Errorf("service %s: %w", n, err)
		}
		s.units = append(s.units, u)
	}
	watchConsumers(cfg.Metrics, s.JS, names...)
	if s.Server != nil { // the embedded server's streams: this process is the deployment
		metrics.Register(cfg.Metrics, metrics.NewStreams()).Watch(s.JS, topology.Names)
	}
	for _, u := range s.units {
		for _, serve := range u.serves() {
			m, err := serve(s.NC)
			if err != nil {
				return nil, fmt.Errorf("service %s endpoints: %w", u.name, err)
			}
			s.micros = append(s.micros, m)
		}
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	s.cancel = cancel
	if s.Server != nil { // a full disk stops JetStream's writes until it restarts: restart it
		s.wg.Go(func() {
			if err := natsserver.Recover(runCtx, s.Server, log.With("component", "nats-server"), recoverInterval); err != nil {
				s.fail(err)
			}
		})
	}
	for _, u := range s.units {
		s.wg.Go(func() {
			if err := u.runner.Run(runCtx); err != nil {
				s.fail(fmt.Errorf("service %s: %w", u.name, err))
			}
		})
		if u.beside != nil {
			s.wg.Go(func() {
				if err := u.beside.Run(runCtx); err != nil {
					s.fail(fmt.Errorf("service %s: %w", u.name, err))
				}
			})
		}
	}
	return s, nil
}

// serves are the unit's endpoints' starters: its own, and those of the part beside it.
func (u *unit) serves() []func(*nats.Conn) (micro.Service, error) {
	var out []func(*nats.Conn) (micro.Service, error)
	if u.serve != nil {
		out = append(out, u.serve)
	}
	if u.beside != nil {
		out = append(out, u.beside.Serve)
	}
	return out
}

// ensureTopology creates the streams, the buckets and every consumer for the process that
// owns its server (embedded), and otherwise waits for the setup role to have made them and
// the consumers of the processes named (a service's, or APIName): a service's or the API's
// NATS user may not create or change a stream or a consumer.
func ensureTopology(ctx context.Context, embedded bool, js jetstream.JetStream, cfg Config, log *slog.Logger, names ...string) error {
	if embedded {
		if err := migrate(ctx, js, cfg, log); err != nil {
			return err
		}
		setupCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		return topology.Ensure(setupCtx, js, topology.Replicas(cfg.Replicas), topology.Consumers(consumers(cfg, append(Services, APIName)...)...))
	}
	return topology.Await(ctx, js, cfg.NATSWaiting, topology.Replicas(cfg.Replicas), topology.Consumers(consumers(cfg, names...)...))
}

// consumers are the durable consumers on CHECKOUT of the processes named: what the setup role
// creates, and what each process binds to. A rebuildable service's has the priority group its
// instances take turns through.
func consumers(cfg Config, names ...string) []jetstream.ConsumerConfig {
	var cfgs []jetstream.ConsumerConfig
	for _, name := range names {
		switch {
		case name == APIName:
			cfgs = append(cfgs, httpapi.ConsumerConfig())
		case slices.Contains(Services, name):
			c := topology.StepConsumer(name, events.Checkout.ConsumedBy(name), topology.DefaultAckWait)
			if ttl := cfg.pinnedTTL(name); ttl > 0 {
				c = topology.Pinned(c, ttl)
			}
			cfgs = append(cfgs, c)
		}
	}
	return cfgs
}

func (s *System) fail(err error) {
	s.errOnce.Do(func() {
		s.err = err
		close(s.failed)
	})
}

// Failed is closed when a service stopped on its own; Err says why.
func (s *System) Failed() <-chan struct{} { return s.failed }

// Err is why a service stopped, if one did.
func (s *System) Err() error { return s.err }

// Stop shuts down gracefully: stop consuming and finish in-flight work, stop answering
// requests, drain the connection, close the stores, then the emulator and the server.
func (s *System) Stop() { s.stopped.Do(s.stop) }

func (s *System) stop() {
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
	for _, m := range s.micros {
		_ = m.Stop()
	}
	if s.NC != nil {
		drain(s.NC)
	}
	for _, u := range s.units {
		if u.close != nil {
			if err := u.close(); err != nil {
				s.log.Warn("close store", "service", u.name, "err", err)
			}
		}
	}
	if s.Emulator != nil {
		if err := s.Emulator.Close(); err != nil {
			s.log.Warn("stop stripe emulator", "err", err)
		}
	}
	if s.Server != nil {
		s.Server.Shutdown()
		s.Server.WaitForShutdown()
	}
	shutdownTraces(s.ownTraces, s.log)
}

// shutdownTraces sends the spans not sent yet, for a few seconds at most: a collector that
// is down must not hold up a stop.
func shutdownTraces(p *tracing.Provider, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		log.Warn("traces not all sent", "err", err)
	}
}

// drain flushes what the connection still has to send and waits for it to close.
func drain(nc *nats.Conn) {
	closed := make(chan struct{})
	nc.SetClosedHandler(func(*nats.Conn) { close(closed) })
	if err := nc.Drain(); err != nil {
		nc.Close()
		return
	}
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		nc.Close()
	}
}

// Banner is what `make run` prints once everything is up.
func (s *System) Banner(w io.Writer) {
	outbox := s.Config.Outbox()
	if s.Config.SMTPAddr != "" {
		outbox = "SMTP " + s.Config.SMTPAddr
	}
	stripe := s.StripeURL
	if stripe == "" {
		stripe = "api.stripe.com (live key from STRIPE_SECRET_KEY)"
	} else if s.Emulator != nil {
		stripe += " (test-mode emulator)"
	}
	fmt.Fprintf(w, `
jetcheckout is running.
  NATS       %s
  data       %s
  outbox     %s
  stripe     %s

Quickstart: watch every event in a second terminal,
  go tool nats sub 'checkout.>'
then in a third create a cart and check it out:
  go tool nats req catalog.list ''    # prices and units available
  cart=$(go tool nats req carts.create '{"customer_id":"cus_ada","currency":"USD","items":[{"product_id":"tee-jetstream","quantity":2}]}' --raw | sed 's/.*"id":"\([^"]*\)".*/\1/')
  go tool nats pub checkout.requested '{"cart_id":"'$cart'","customer_id":"cus_ada","customer_email":"ada@example.com","payment_method_id":"pm_card_visa","shipping_address":{"line1":"1 Market St","city":"San Francisco","state":"CA","postal_code":"94105","country":"US"},"billing_address":{"line1":"1 Market St","city":"San Francisco","state":"CA","postal_code":"94105","country":"US"}}'
  go tool nats req catalog.list ''    # 2 tee-jetstream fewer available
  ls %s
`, s.NATSURL, s.Config.DataDir, outbox, stripe, s.Config.Outbox())
	if s.APIURL != "" {
		// Where the token is, never the token: terminals and their logs are read by others.
		where := "the ADMIN_TOKEN you set"
		if s.Config.AdminTokenFile != "" {
			where = "in " + s.Config.AdminTokenFile + " (set ADMIN_TOKEN to choose it)"
		}
		fmt.Fprintf(w, `
Or over HTTP: the run UI and demo store at %s/ui/ (the API: %s/openapi.yaml);
  admin token for the review queue and the customers' data: %s
`, s.APIURL, s.APIURL, where)
	}
	fmt.Fprintln(w, "Stop with Ctrl-C (in-flight work finishes first).")
}
