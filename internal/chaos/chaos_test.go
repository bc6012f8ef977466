//go:build chaos

package chaos

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// TestChaos is `make chaos` and `make chaos-short`. Settings from the environment:
// CHAOS_SEED (default: the time), CHAOS_CHECKOUTS (200), CHAOS_KILL_EVERY (2s; 0 kills
// nothing), CHAOS_CONCURRENCY (16), CHAOS_DIR (default a temporary directory, kept when
// the run fails). Replay a failure with its seed and the same settings.
func TestChaos(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("CHAOS_SEED"); v != "" {
		seed = mustUint(t, "CHAOS_SEED", v)
	}
	opts := Options{
		Seed:        seed,
		Checkouts:   int(envUint(t, "CHAOS_CHECKOUTS", 200)),
		Concurrency: int(envUint(t, "CHAOS_CONCURRENCY", 16)),
		KillEvery:   2 * time.Second,
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
	t.Logf("chaos: seed=%d checkouts=%d kill_every=%s concurrency=%d dir=%s (replay: CHAOS_SEED=%d)",
		seed, opts.Checkouts, opts.KillEvery, opts.Concurrency, opts.Dir, seed)

	res, err := Run(context.Background(), opts)
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
