// Command loadgen drives and measures the checkout (internal/loadgen): the whole system in
// this process, or the services behind NATS_URL. `make bench` runs it; docs/PERFORMANCE.md
// says how to read it.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/loadgen"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		opt     = loadgen.Options{NATSURL: os.Getenv("NATS_URL")}
		sweep   loadgen.Sweep
		doSweep bool
		jsonOut string
		profile string
		tracing string
		heap    string
		heapAt  time.Duration
		level   slog.Level
	)
	flag.StringVar(&opt.NATSURL, "nats", opt.NATSURL, "drive the services behind this NATS URL (default $NATS_URL; empty: start the whole system in-process)")
	flag.StringVar(&opt.Listen, "listen", "", "address of the in-process NATS server (default a free loopback port), to watch a run with the nats CLI")
	flag.StringVar(&opt.DataDir, "data", "", "DATA_DIR of the in-process system (default: a temporary directory, removed afterwards)")
	flag.IntVar(&opt.Stock, "stock", 10_000_000, "units of every product stocked before an in-process system starts")
	flag.StringVar(&opt.StripeURL, "stripe", "", "a Stripe emulator running elsewhere (jetcheckout stripe-emulator) instead of the in-process one")
	flag.DurationVar(&opt.StripeLatency, "stripe-latency", 0, "the in-process Stripe emulator answers every call this much later, as real Stripe does (e.g. 300ms)")
	flag.IntVar(&opt.Concurrency, "concurrency", 0, "messages each in-process service handles at once (default: the app's)")
	flag.DurationVar(&opt.HandledRetention, "handled-retention", 0, "how long in-process services keep handled-event records (default: the app's, 30 days)")
	flag.DurationVar(&opt.SnapshotEvery, "snapshot-every", 0, "how often in-process services snapshot their views (default: the app's, 1m)")
	flag.DurationVar(&opt.CheckoutRetention, "checkout-retention", 0, "how long the in-process coordinator keeps an ended checkout's key (default: the app's, 30 days)")
	flag.Float64Var(&opt.Load.Rate, "rate", 0, "checkouts/s offered (open loop)")
	flag.IntVar(&opt.Load.InFlight, "inflight", 0, "checkouts kept in flight (closed loop), instead of -rate")
	flag.DurationVar(&opt.Load.Duration, "duration", 20*time.Second, "how long requests are offered")
	flag.DurationVar(&opt.Load.Drain, "drain", 60*time.Second, "how long to wait for open checkouts after the last request")
	flag.IntVar(&opt.Repeat, "repeat", 1, "runs of the same load on the same system")
	flag.DurationVar(&opt.CeilingFor, "ceiling", 3*time.Second, "how long each raw JetStream ceiling measurement publishes (0 skips it)")
	flag.BoolVar(&opt.BatchCurve, "batch-curve", false, "also measure atomic batches of 1 to 100 messages from 1 and 8 publishers (what batching can buy on this disk)")
	flag.BoolVar(&doSweep, "sweep", false, "find the highest rate held with p99 under -p99 (rates from -sweep-from, doubling, then bisecting)")
	flag.Float64Var(&sweep.From, "sweep-from", 50, "the sweep's first rate")
	flag.IntVar(&sweep.Steps, "sweep-steps", 3, "bisection steps after the first rate that did not hold")
	flag.Float64Var(&sweep.P99BoundMS, "p99", 100, "the sweep's p99 bound in ms")
	flag.DurationVar(&sweep.Settle, "settle", 2*time.Second, "pause between sweep runs")
	flag.StringVar(&jsonOut, "json", "", "also write the report as JSON to this file (- for stdout, then the table goes to stderr)")
	flag.StringVar(&profile, "cpuprofile", "", "write a CPU profile of the whole process (in-process: every service) to this file")
	flag.StringVar(&heap, "memprofile", "", "write a heap profile of the whole process to this file after the runs (before the system stops)")
	flag.DurationVar(&heapAt, "memprofile-every", 0, "also write a heap profile every this long while the runs go on, to FILE.<seconds>s (with -memprofile): what grows")
	flag.StringVar(&tracing, "trace", "", "write an execution trace of the whole process to this file (go tool trace)")
	flag.Func("items", "each cart's items as product:quantity,... (default tee-jetstream:1,stickers:2; the demo stocks few units: against NATS_URL pick what its stock allows)", func(v string) error {
		items, err := parseItems(v)
		opt.Load.Items = items
		return err
	})
	flag.TextVar(&level, "log-level", slog.LevelWarn, "log level of the generator and of in-process services")
	flag.Parse()
	if opt.BatchCurve && opt.CeilingFor <= 0 {
		return fmt.Errorf("-batch-curve is part of the ceiling: give -ceiling a duration above 0")
	}
	if opt.StripeLatency > 0 && (opt.StripeURL != "" || opt.NATSURL != "") {
		return fmt.Errorf("-stripe-latency applies to the in-process Stripe emulator: not with -stripe or NATS_URL (set a latency fault on that emulator instead)")
	}
	if doSweep {
		opt.Sweep = &sweep
		if opt.Load.Rate == 0 && opt.Load.InFlight == 0 {
			opt.Load.Rate = sweep.From // validated per run; the sweep sets each rate
		}
	} else if opt.Load.Rate == 0 && opt.Load.InFlight == 0 {
		opt.Load.Rate = 200
	}
	opt.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))

	if profile != "" {
		f, err := os.Create(profile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if tracing != "" {
		f, err := os.Create(tracing)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := trace.Start(f); err != nil {
			return err
		}
		defer trace.Stop()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if heap != "" {
		opt.AfterRuns = func() error { return writeHeapProfile(heap) }
		if heapAt > 0 {
			defer profileEvery(ctx, heapAt, heap)()
		}
	}
	rep, err := loadgen.Run(ctx, opt)
	table := os.Stdout
	if jsonOut == "-" {
		table = os.Stderr
	}
	rep.WriteTable(table)
	if jsonOut != "" {
		if werr := writeJSON(jsonOut, rep); werr != nil && err == nil {
			err = werr
		}
	}
	return err
}

func writeJSON(path string, rep loadgen.Report) error {
	raw, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	raw = append(raw, '\n')
	if path == "-" {
		_, err = os.Stdout.Write(raw)
		return err
	}
	return os.WriteFile(path, raw, 0o644)
}

func writeHeapProfile(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	runtime.GC()
	return pprof.WriteHeapProfile(f)
}

// profileEvery writes a heap profile to path.<seconds>s every interval until stopped.
func profileEvery(ctx context.Context, interval time.Duration, path string) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		start := time.Now()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				at := fmt.Sprintf("%s.%ds", path, int(time.Since(start).Seconds()))
				if err := writeHeapProfile(at); err != nil {
					fmt.Fprintln(os.Stderr, "loadgen: heap profile:", err)
				}
			}
		}
	}()
	return func() { cancel(); <-done }
}

// parseItems reads "product:quantity,...".
func parseItems(v string) ([]events.CartItem, error) {
	var items []events.CartItem
	for _, part := range strings.Split(v, ",") {
		id, qty, ok := strings.Cut(strings.TrimSpace(part), ":")
		n, err := strconv.Atoi(qty)
		if !ok || id == "" || err != nil || n < 1 {
			return nil, fmt.Errorf("item %q: want product:quantity", part)
		}
		items = append(items, events.CartItem{ProductID: id, Quantity: n})
	}
	return items, nil
}
