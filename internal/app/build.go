package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/jetcheckout/jetcheckout/coordinator"
	"github.com/jetcheckout/jetcheckout/deploy"
	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/metrics"
	"github.com/jetcheckout/jetcheckout/internal/store"
	"github.com/jetcheckout/jetcheckout/internal/tracing"
	"github.com/jetcheckout/jetcheckout/runner"
	"github.com/jetcheckout/jetcheckout/services/catalog"
	"github.com/jetcheckout/jetcheckout/services/fraud"
	"github.com/jetcheckout/jetcheckout/services/inventory"
	"github.com/jetcheckout/jetcheckout/services/notifications"
	"github.com/jetcheckout/jetcheckout/services/orders"
	"github.com/jetcheckout/jetcheckout/services/payments"
	"github.com/jetcheckout/jetcheckout/services/shipping"
	"github.com/jetcheckout/jetcheckout/services/subscriptions"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nats.go/micro"
	"github.com/prometheus/client_golang/prometheus"
	bolt "go.etcd.io/bbolt"
	"go.opentelemetry.io/otel/trace"
)

// deps is what building a service may use.
type deps struct {
	cfg       Config
	log       *slog.Logger
	js        jetstream.JetStream
	stripeURL string
	stripeKey string
	keys      *events.Keys
	metrics   prometheus.Registerer
	traces    *tracing.Provider
}

// tracer is service's tracer; nil when nothing is exported (the runner then uses the global
// no-op one, and starts no checkout's trace of its own).
func (d deps) tracer(service string) trace.Tracer {
	if !d.traces.Enabled() {
		return nil
	}
	return d.traces.Tracer(service)
}

// Handles are the running services, for the tests and the operator tools to read from.
type Handles struct {
	Catalog       *catalog.Service
	Inventory     *inventory.Service
	Fraud         *fraud.Service
	Payments      *payments.Service
	Orders        *orders.Service
	Notifications *notifications.Service
	Shipping      *shipping.Service
	Coordinator   *coordinator.Coordinator
	Subscriptions *subscriptions.Service
}

// snapshots is the bucket of the service's view snapshots: only a rebuildable view has them
// (one restored is replayed forward from the stream).
func snapshots(name string) string {
	if events.Rebuildable[name] {
		return events.ViewsBucket(name)
	}
	return ""
}

// build makes one service: its bbolt file under DATA_DIR, the service, its runner.
func build(ctx context.Context, name string, d deps, h *Handles) (*unit, error) {
	log := d.log.With("service", name)
	if name == events.ServiceCoordinator {
		c, err := coordinator.New(ctx, d.js, log, coordinator.Config{Grace: d.cfg.Grace, Deadlines: d.cfg.Deadlines, Retention: d.cfg.CheckoutRetention, HandledRetention: d.cfg.HandledRetention,
			Metrics: d.metrics})
		if err != nil {
			return nil, err
		}
		h.Coordinator = c
		r, err := c.Runner(d.js, func(rc *runner.Config) {
			rc.MaxDeliver, rc.RetryBase, rc.AckWait, rc.Hooks = d.cfg.MaxDeliver, d.cfg.RetryBase, d.cfg.AckWait, d.cfg.Hooks[name]
			rc.HandlerTimeout = d.cfg.HandlerTimeout
			rc.Concurrency, rc.Keys, rc.Metrics, rc.Tracer = d.cfg.concurrency(name), d.keys, d.metrics, d.tracer(name)
		})
		if err != nil {
			return nil, err
		}
		// Subscriptions start checkouts, as the coordinator's re-drive does, and keep their
		// state in a KV bucket by compare-and-swap, as it does: they run beside it.
		subs, err := subscriptions.New(ctx, subscriptions.Config{JS: d.js, NC: d.js.Conn(), Log: d.log.With("service", events.ServiceSubscriptions),
			Day: d.cfg.SubscriptionDay, RetryDays: d.cfg.SubscriptionRetryDays, AfterRetries: d.cfg.SubscriptionAfterRetries, Keys: d.keys,
			Metrics: d.metrics})
		if err != nil {
			return nil, err
		}
		h.Subscriptions = subs
		return &unit{name: name, runner: r, beside: subs, serve: func(nc *nats.Conn) (micro.Service, error) { return c.Serve(nc, d.keys) }}, nil
	}
	db, closeDB, err := openStore(filepath.Join(d.cfg.DataDir, name+".db"), events.Rebuildable[name], log)
	if err != nil {
		return nil, err
	}
	u := &unit{name: name, close: closeDB}
	routes, err := buildService(ctx, name, db, log, d, h, u)
	if err != nil {
		closeDB()
		return nil, err
	}
	u.runner, err = runner.New(runner.Config{Name: name, Routes: routes, JS: d.js, DB: db, Log: log,
		Deadlines: d.cfg.Deadlines, MaxDeliver: d.cfg.MaxDeliver, RetryBase: d.cfg.RetryBase, AckWait: d.cfg.AckWait,
		HandlerTimeout: d.cfg.HandlerTimeout, Middleware: d.cfg.middleware(name), Hooks: d.cfg.Hooks[name], Concurrency: d.cfg.concurrency(name),
		Retention: d.cfg.HandledRetention, Keys: d.keys, Rebuild: events.Rebuildable[name], Snapshots: snapshots(name), SnapshotEvery: d.cfg.SnapshotEvery,
		PinnedTTL: d.cfg.pinnedTTL(name), Metrics: d.metrics, Tracer: d.tracer(name)})
	if err != nil {
		closeDB()
		return nil, err
	}
	return u, nil
}

// openStore opens a service's file: a view the stream rebuilds (unsynced commits, a file not
// closed cleanly discarded and rebuilt) for the rebuildable services, else a store synced on
// every commit. A rebuildable service's file from before views stays synced until the
// runner's first snapshot (taken at once, after the service's start-up writes: the
// catalog's MoveCartsToBucket, the seeds) is stored.
func openStore(path string, view bool, log *slog.Logger) (*bolt.DB, func() error, error) {
	if !view {
		db, err := store.Open(path)
		if err != nil {
			return nil, nil, err
		}
		return db, db.Close, nil
	}
	v, err := store.OpenView(path)
	if err != nil {
		return nil, nil, err
	}
	switch {
	case v.Discarded:
		log.Warn("the view was not closed cleanly (a crash or a kill): it is rebuilt from its snapshot and the stream", "path", path)
	case store.Synced(v.DB):
		log.Info("a file from before views: synced on every commit until its first snapshot is stored", "path", path)
	}
	return v.DB, v.Close, nil
}

func buildService(ctx context.Context, name string, db *bolt.DB, log *slog.Logger, d deps, h *Handles, u *unit) ([]runner.Route, error) {
	switch name {
	case events.ServiceCatalog:
		rates, err := readDemo(deploy.RatesFile, catalog.LoadRates)
		if err != nil {
			return nil, err
		}
		carts, err := catalog.OpenCarts(ctx, d.js, d.keys)
		if err != nil {
			return nil, err
		}
		products, err := readDemo(deploy.CatalogFile, catalog.LoadSeed)
		if err != nil {
			return nil, err
		}
		coupons, err := readDemo(deploy.CouponsFile, catalog.LoadCoupons)
		if err != nil {
			return nil, err
		}
		promotions, err := readDemo(deploy.PromotionsFile, catalog.LoadPromotions)
		if err != nil {
			return nil, err
		}
		if err := errors.Join(coupons.Resolve(products), promotions.Resolve(products)); err != nil {
			return nil, err
		}
		s, err := catalog.New(db, carts, log, rates, catalog.WithReturnURLs(d.cfg.ReturnURLs),
			catalog.WithCoupons(coupons), catalog.WithPromotions(promotions))
		if err != nil {
			return nil, err
		}
		if _, err := s.Seed(products); err != nil {
			return nil, err
		}
		if n, err := s.MoveCartsToBucket(ctx); err != nil {
			return nil, err
		} else if n > 0 {
			log.Info("carts moved from the file to their bucket", "carts", n, "bucket", events.BucketCarts)
		}
		h.Catalog, u.serve = s, s.Serve
		return s.Routes(), nil
	case events.ServiceInventory:
		s, err := inventory.NewWithConfig(db, log, inventory.Config{ReservationTTL: d.cfg.ReservationTTL, MaxHoldPerCustomer: d.cfg.MaxHoldPerCustomer})
		if err != nil {
			return nil, err
		}
		file, err := readDemo(deploy.CatalogFile, inventory.LoadStock)
		if err != nil {
			return nil, err
		}
		stock, err := s.RecordedSeed(ctx, d.js, d.keys, file)
		if err != nil {
			return nil, err
		}
		if _, err := s.Seed(stock); err != nil {
			return nil, err
		}
		h.Inventory, u.serve = s, s.Serve
		return s.Routes(), nil
	case events.ServiceFraud:
		cfg, err := d.fraudRules()
		if err != nil {
			return nil, err
		}
		if d.cfg.ReviewWindow > 0 {
			cfg.ReviewWindow = d.cfg.ReviewWindow
		}
		s, err := fraud.New(db, log, cfg)
		if err != nil {
			return nil, err
		}
		h.Fraud = s
		u.serve = func(nc *nats.Conn) (micro.Service, error) { return s.Serve(nc, d.js, d.keys) }
		return s.Routes(), nil
	case events.ServicePayments:
		s, err := payments.New(db, log, payments.Config{BaseURL: d.stripeURL, SecretKey: d.stripeKey, AuthWindow: d.cfg.AuthWindow,
			RecheckEvery: recheckEvery(d.cfg.AuthWindow), NC: d.js.Conn(), Transport: metrics.NewStripeTransport(d.metrics, nil)})
		h.Payments = s
		return routesOf(s, err)
	case events.ServiceOrders:
		s, err := orders.New(db, log)
		h.Orders = s
		return routesOf(s, err)
	case events.ServiceNotifications:
		cfg := notifications.Config{From: d.cfg.MailFrom, Transport: notifications.TransportOutbox, OutboxDir: d.cfg.Outbox(),
			WrapSender: measureSender(d.metrics)}
		if d.cfg.SMTPAddr != "" {
			cfg.Transport = notifications.TransportSMTP
			cfg.SMTP = notifications.SMTPConfig{Addr: d.cfg.SMTPAddr, Username: d.cfg.SMTPUsername, Password: notifications.Secret(d.cfg.SMTPPassword)}
		}
		s, err := notifications.New(db, log, cfg)
		h.Notifications = s
		return routesOf(s, err)
	case events.ServiceShipping:
		s, err := shipping.New(db, log, shipping.Config{})
		h.Shipping = s
		return routesOf(s, err)
	}
	return nil, fmt.Errorf("unknown service %q", name)
}

// recheckEvery looks at a PaymentIntent awaiting 3-D Secure often enough for a short
// window (tests); zero keeps payments' default.
func recheckEvery(window time.Duration) time.Duration {
	if window > 0 && window < time.Minute {
		return window / 10
	}
	return 0
}

func routesOf(s interface{ Routes() []runner.Route }, err error) ([]runner.Route, error) {
	if err != nil {
		return nil, err
	}
	return s.Routes(), nil
}

// fraudRules are the fraud check's rules: FRAUD_RULES's file, or the demo's.
func (d *deps) fraudRules() (fraud.Config, error) {
	if d.cfg.FraudRules == "" {
		return readDemo(deploy.FraudFile, fraud.LoadConfig)
	}
	cfg, err := parseFile(func() (io.ReadCloser, error) { return os.Open(d.cfg.FraudRules) }, d.cfg.FraudRules, fraud.LoadConfig)
	if err != nil {
		return fraud.Config{}, fmt.Errorf("FRAUD_RULES %w", err)
	}
	return cfg, nil
}

// readDemo parses one of the embedded demo files.
func readDemo[T any](path string, parse func(io.Reader) (T, error)) (T, error) {
	return parseFile(func() (io.ReadCloser, error) { return deploy.Demo.Open(path) }, path, parse)
}

// parseFile parses the file open opens, its errors naming it as name.
func parseFile[T any](open func() (io.ReadCloser, error), name string, parse func(io.Reader) (T, error)) (T, error) {
	var zero T
	f, err := open()
	if err != nil {
		return zero, err
	}
	defer f.Close()
	v, err := parse(f)
	if err != nil {
		return zero, fmt.Errorf("%s: %w", name, err)
	}
	return v, nil
}
