package loadgen

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/jetcheckout/jetcheckout/deploy"
	"github.com/jetcheckout/jetcheckout/internal/app"
	"github.com/jetcheckout/jetcheckout/internal/store"
	"github.com/jetcheckout/jetcheckout/internal/stripeemu"
	"github.com/jetcheckout/jetcheckout/internal/tracing"
	"github.com/jetcheckout/jetcheckout/services/inventory"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Options of one invocation.
type Options struct {
	// NATSURL: drive the services already running there. Empty starts the whole system in
	// this process, as `make run` does (embedded nats-server with file storage and sync
	// always, bbolt with fsync, the Stripe emulator over HTTP, email to the outbox), on a
	// scratch DATA_DIR.
	NATSURL string
	// Listen is the in-process server's address (default 127.0.0.1:-1, a free port): set it
	// to watch a run with the nats CLI.
	Listen string
	// DataDir for the in-process system (default: a temporary directory, removed after).
	DataDir string
	// Stock is what every product is stocked with before an in-process system starts, so a
	// long run never sells out (the demo's stock is tens of units). Against NATS_URL the
	// stock is whatever that system has.
	Stock int
	// StripeURL, when set, is a Stripe emulator (or compatible API) running elsewhere, used
	// with a test key instead of the in-process one: its memory then stays out of the
	// process's figures.
	StripeURL string
	// StripeLatency, when set, starts the in-process emulator answering every call this much
	// later: real Stripe takes hundreds of milliseconds to confirm a PaymentIntent, the
	// emulator on loopback about one.
	StripeLatency time.Duration
	// Concurrency of each in-process service (app.Config.Concurrency; 0: its default).
	Concurrency int
	// HandledRetention and CheckoutRetention of the in-process system (app.Config's; 0:
	// their defaults, 30 days): shorter ones show in a run of minutes what a month of
	// traffic reaches.
	HandledRetention, CheckoutRetention time.Duration
	// SnapshotEvery is how often the in-process services snapshot their views (app.Config's;
	// 0: the app's default).
	SnapshotEvery time.Duration
	Load          Load
	// Repeat runs the same load this many times on the same system (default 1).
	Repeat int
	// Sweep, when set, replaces Load's rate: rates are tried from Sweep.From up.
	Sweep *Sweep
	// CeilingFor is how long each raw-ceiling measurement publishes (0 skips it).
	CeilingFor time.Duration
	// BatchCurve adds to the ceiling what atomic batches of 1 to 100 messages cost, from one
	// publisher and from 8 (Ceiling.BatchCurve; 12 more measurements of CeilingFor).
	BatchCurve bool
	// AfterRuns, when set, is called after the last run while the system still runs (a
	// heap profile, say).
	AfterRuns func() error
	Log       *slog.Logger
}

// Run measures: the ceiling, then the runs (or the sweep).
func Run(ctx context.Context, opt Options) (rep Report, err error) {
	if opt.Log == nil {
		opt.Log = slog.New(slog.DiscardHandler)
	}
	rep = Report{Target: "in-process", StripeLatencyMS: ms(opt.StripeLatency)}
	nc, stop, err := connectTarget(ctx, opt)
	if err != nil {
		return rep, err
	}
	defer stop()
	if opt.NATSURL != "" {
		rep.Target = opt.NATSURL
	}
	rep.Machine = Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version(), NATSServer: nc.ConnectedServerVersion(), OS: runtime.GOOS + "/" + runtime.GOARCH}
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(asyncWindow))
	if err != nil {
		return rep, err
	}
	if opt.CeilingFor > 0 {
		opt.Log.Info("measuring the raw JetStream ceiling", "each", opt.CeilingFor)
		if rep.Ceiling, err = measureCeiling(ctx, js, opt.CeilingFor, opt.BatchCurve); err != nil {
			return rep, err
		}
	}
	// The requests get a JetStream context of their own: the ceiling's window is small.
	loadJS, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(1<<16))
	if err != nil {
		return rep, err
	}
	t := target{nc: nc, js: loadJS}
	runID := fmt.Sprintf("bench%d", time.Now().Unix())
	if opt.Sweep != nil {
		s, err := sweep(ctx, t, runID, opt.Load, *opt.Sweep, opt.Log, func(r RunResult) {
			r.ratios(rep.Ceiling)
			rep.Runs = append(rep.Runs, r)
		})
		rep.Sweep = &s
		return rep, err
	}
	if opt.AfterRuns != nil {
		defer func() {
			if aerr := opt.AfterRuns(); aerr != nil && err == nil {
				err = aerr
			}
		}()
	}
	for i := range max(opt.Repeat, 1) {
		opt.Log.Info("run", "n", i+1, "load", describe(opt.Load))
		r, err := runLoad(ctx, t, fmt.Sprintf("%s_%d", runID, i), opt.Load)
		if err != nil {
			return rep, err
		}
		r.ratios(rep.Ceiling)
		rep.Runs = append(rep.Runs, r)
	}
	return rep, nil
}

// connectTarget connects to NATS_URL, or starts the whole system here and connects to it.
// The generator has a connection of its own either way.
func connectTarget(ctx context.Context, opt Options) (*nats.Conn, func(), error) {
	if opt.NATSURL != "" {
		nc, err := nats.Connect(opt.NATSURL, nats.Name("loadgen"))
		return nc, func() {
			if nc != nil {
				nc.Close()
			}
		}, err
	}
	dir, cleanup := opt.DataDir, func() {}
	if dir == "" {
		tmp, err := os.MkdirTemp("", "jetcheckout-bench-")
		if err != nil {
			return nil, nil, err
		}
		dir, cleanup = tmp, func() { _ = os.RemoveAll(tmp) }
	}
	if err := stockUp(filepath.Join(dir, "inventory.db"), opt.Stock, opt.Log); err != nil {
		cleanup()
		return nil, nil, err
	}
	cfg := app.Config{NATSListen: cmp.Or(opt.Listen, "127.0.0.1:-1"), DataDir: dir, StripeEmulatorAddr: "127.0.0.1:0",
		MailFrom: "JetCheckout <orders@jetcheckout.local>", LogFormat: "text", Concurrency: opt.Concurrency,
		HandledRetention: opt.HandledRetention, CheckoutRetention: opt.CheckoutRetention, SnapshotEvery: opt.SnapshotEvery,
		// Traces as the processes would export them: OTEL_EXPORTER_OTLP_ENDPOINT set, or none.
		Tracing: tracing.ConfigFromEnv(os.Getenv)}
	if opt.StripeURL != "" {
		cfg.StripeBase, cfg.StripeKey = opt.StripeURL, "sk_test_loadgen"
	} else if opt.StripeLatency > 0 {
		late := stripeemu.Fault{Delay: opt.StripeLatency}
		emu, err := stripeemu.Start("127.0.0.1:0", stripeemu.New(stripeemu.WithFault(func(stripeemu.Call) stripeemu.Fault { return late })))
		if err != nil {
			cleanup()
			return nil, nil, err
		}
		removeDir := cleanup
		cleanup = func() { _ = emu.Close(); removeDir() }
		cfg.StripeBase, cfg.StripeKey = emu.URL, "sk_test_loadgen"
	}
	sys, err := app.Start(ctx, cfg, opt.Log)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	// The endpoints' subscriptions reach the server with this flush, before our first request.
	err = sys.NC.Flush()
	var nc *nats.Conn
	if err == nil {
		nc, err = nats.Connect(sys.NATSURL, nats.Name("loadgen"))
	}
	if err != nil {
		sys.Stop()
		cleanup()
		return nil, nil, err
	}
	return nc, func() {
		nc.Close()
		sys.Stop()
		cleanup()
	}, nil
}

// stockUp stocks every demo product with n units in a fresh inventory file, before the
// inventory service first opens it (it seeds only an empty inventory). The steps run as
// they would on any stock; only the quantities differ from the demo's.
func stockUp(path string, n int, log *slog.Logger) error {
	if n <= 0 {
		return nil
	}
	f, err := deploy.Demo.Open(deploy.CatalogFile)
	if err != nil {
		return err
	}
	demo, err := inventory.LoadStock(f)
	f.Close()
	if err != nil {
		return err
	}
	db, err := store.Open(path)
	if err != nil {
		return err
	}
	defer db.Close()
	svc, err := inventory.New(db, log)
	if err != nil {
		return err
	}
	stock := map[string]int{}
	for id := range demo {
		stock[id] = n
	}
	seeded, err := svc.Seed(stock)
	if err == nil && !seeded {
		err = errors.New("loadgen: the inventory in DATA_DIR already has stock; give the bench a fresh DATA_DIR")
	}
	return err
}
