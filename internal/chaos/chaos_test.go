//go:build chaos

package chaos

import (
	"context"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
)

// TestChaos is `make chaos` and `make chaos-short`. Settings from the environment:
// CHAOS_SEED (default: the time), CHAOS_CHECKOUTS (200), CHAOS_KILL_EVERY (2s; 0 kills
// nothing), CHAOS_CONCURRENCY (16), CHAOS_DIR (default a temporary directory, kept when
// the run fails). Replay a failure with its seed and the same settings.
func TestChaos(t *testing.T) {
	opts := options(t, 200, 2*time.Second)
	t.Logf("chaos: seed=%d checkouts=%d kill_every=%s concurrency=%d dir=%s (replay: CHAOS_SEED=%d)",
		opts.Seed, opts.Checkouts, opts.KillEvery, opts.Concurrency, opts.Dir, opts.Seed)
	res, err := Run(context.Background(), opts)
	judge(t, opts, res, err)
}

// TestChaosCluster is `make chaos-cluster`: the same load and reconciliation against the
// compose cluster, on its own project (CHAOS_PROJECT, default jetcheckout-chaos-cluster),
// with the Compose command of CHAOS_COMPOSE (the Makefile's, with the cluster's
// variables). The same settings as TestChaos, with CHAOS_CHECKOUTS 150 and
// CHAOS_KILL_EVERY 3s (how often a container fault starts). Ctrl-C tears the project
// down.
func TestChaosCluster(t *testing.T) {
	compose := strings.Fields(os.Getenv("CHAOS_COMPOSE"))
	if len(compose) == 0 {
		t.Skip("CHAOS_COMPOSE is not set: `make chaos-cluster` runs this")
	}
	opts := options(t, 150, 3*time.Second)
	project := os.Getenv("CHAOS_PROJECT")
	if project == "" {
		project = "jetcheckout-chaos-cluster"
	}
	t.Logf("chaos-cluster: seed=%d checkouts=%d fault_every=%s concurrency=%d project=%s dir=%s (replay: CHAOS_SEED=%d)",
		opts.Seed, opts.Checkouts, opts.KillEvery, opts.Concurrency, project, opts.Dir, opts.Seed)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := RunCluster(ctx, opts, ClusterOptions{Compose: compose, Project: project})
	judge(t, opts, res, err)
}

// TestUpgradeCluster is `make upgrade-test`: the compose cluster (project CHAOS_PROJECT,
// default jetcheckout-upgrade, Compose command CHAOS_COMPOSE) starts on the previous
// release's image, UPGRADE_FROM_IMAGE, and NATS configuration (of the git revision UPGRADE_FROM_REV;
// unset: the current one), takes the chaos load without faults, and while it runs
// every container of the jetcheckout image is replaced with JETCHECKOUT_IMAGE (the current
// build) one at a time: first with the writers held at UPGRADE_HOLD (SCHEMA_WRITE_VERSION;
// default events.OldestSchemaVersion, the previous release's; empty: no hold), then with the hold
// lifted. Reconciled as TestChaosCluster, with no dead letter allowed. CHAOS_CHECKOUTS
// (200), CHAOS_CONCURRENCY, CHAOS_SEED and CHAOS_DIR as for TestChaos. Ctrl-C tears the
// project down.
func TestUpgradeCluster(t *testing.T) {
	compose := strings.Fields(os.Getenv("CHAOS_COMPOSE"))
	from := os.Getenv("UPGRADE_FROM_IMAGE")
	if len(compose) == 0 || from == "" {
		t.Skip("CHAOS_COMPOSE or UPGRADE_FROM_IMAGE is not set: `make upgrade-test` runs this")
	}
	to := os.Getenv("JETCHECKOUT_IMAGE")
	if to == "" {
		to = "jetcheckout:local"
	}
	hold, ok := os.LookupEnv("UPGRADE_HOLD")
	if !ok {
		hold = strconv.Itoa(events.OldestSchemaVersion)
	}
	project := os.Getenv("CHAOS_PROJECT")
	if project == "" {
		project = "jetcheckout-upgrade"
	}
	opts := options(t, 200, 0)
	t.Logf("upgrade: seed=%d checkouts=%d concurrency=%d from=%s to=%s hold=%q project=%s dir=%s (replay: CHAOS_SEED=%d)",
		opts.Seed, opts.Checkouts, opts.Concurrency, from, to, hold, project, opts.Dir, opts.Seed)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := RunUpgrade(ctx, opts, ClusterOptions{Compose: compose, Project: project}, UpgradeOptions{From: from, To: to, FromRev: os.Getenv("UPGRADE_FROM_REV"), Hold: hold})
	for _, d := range res.GivenUp {
		t.Errorf("dead letters: %s", d)
	}
	if res.Versions != "" {
		t.Log(res.Versions)
	}
	judge(t, opts, res.Result, err)
}

// options reads the run's settings from the environment.
func options(t *testing.T, checkouts uint64, every time.Duration) Options {
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("CHAOS_SEED"); v != "" {
		seed = mustUint(t, "CHAOS_SEED", v)
	}
	opts := Options{
		Seed:        seed,
		Checkouts:   int(envUint(t, "CHAOS_CHECKOUTS", checkouts)),
		Concurrency: int(envUint(t, "CHAOS_CONCURRENCY", 16)),
		KillEvery:   every,
		Log:         func(format string, args ...any) { t.Logf(format, args...) },
	}
	if v := os.Getenv("CHAOS_KILL_EVERY"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("CHAOS_KILL_EVERY %q: %v", v, err)
		}
		opts.KillEvery = d
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	opts.Root = root
	opts.Dir = os.Getenv("CHAOS_DIR")
	if opts.Dir == "" {
		if opts.Dir, err = os.MkdirTemp("", "jetcheckout-chaos-"); err != nil {
			t.Fatal(err)
		}
	}
	return opts
}

// judge fails the test on every violation and on a run that could not be carried out,
// keeping the run's directory then.
func judge(t *testing.T, opts Options, res Result, err error) {
	for _, v := range res.Violations {
		t.Errorf("violation: %s", v)
	}
	t.Log(res.Summary())
	if err != nil {
		t.Fatalf("the run could not be carried out: %v (data and logs in %s)", err, opts.Dir)
	}
	if t.Failed() {
		t.Logf("data and logs kept in %s", opts.Dir)
		return
	}
	if os.Getenv("CHAOS_DIR") == "" {
		_ = os.RemoveAll(opts.Dir)
	}
}

func envUint(t *testing.T, name string, def uint64) uint64 {
	if v := os.Getenv(name); v != "" {
		return mustUint(t, name, v)
	}
	return def
}

func mustUint(t *testing.T, name, v string) uint64 {
	n, err := strconv.ParseUint(v, 10, 64)
	if err != nil {
		t.Fatalf("%s %q: want a non-negative integer", name, v)
	}
	return n
}
