package app

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/internal/natstest"
)

// runUntilBanner runs `jetcheckout run` with env until its banner is out, then whileUp,
// stops it and returns everything it wrote (logs and banner).
func runUntilBanner(t *testing.T, env map[string]string, whileUp ...func()) string {
	t.Helper()
	var stdout, stderr natstest.LogBuffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, cancel, []string{"run"}, func(k string) string { return env[k] }, &stdout, &stderr)
	}()
	deadline := time.Now().Add(wait)
	for !strings.Contains(stdout.String(), "Stop with Ctrl-C") {
		select {
		case c := <-code:
			t.Fatalf("run exited %d: %s%s", c, stdout.String(), stderr.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("no banner: %s%s", stdout.String(), stderr.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, f := range whileUp {
		f()
	}
	cancel()
	if c := <-code; c != 0 {
		t.Errorf("run exited %d: %s", c, stderr.String())
	}
	return stdout.String() + stderr.String()
}

// TestRunNeverPrintsTheAdminToken: `make run` printed an operator-set ADMIN_TOKEN in its
// banner. Neither a set token nor a made one appears in what run writes; a made one is in
// a file only its owner reads, and the banner names the file.
func TestRunNeverPrintsTheAdminToken(t *testing.T) {
	base := func(dir string) map[string]string {
		return map[string]string{"DATA_DIR": dir, "NATS_LISTEN": "127.0.0.1:-1", "HTTP_ADDR": "127.0.0.1:0",
			"STRIPE_EMULATOR_LISTEN": "127.0.0.1:0", "LOG_LEVEL": "debug"}
	}
	t.Run("set", func(t *testing.T) {
		env := base(t.TempDir())
		env["ADMIN_TOKEN"] = "operator-chosen-secret-7f3a"
		out := runUntilBanner(t, env)
		if strings.Contains(out, env["ADMIN_TOKEN"]) {
			t.Fatalf("the output shows ADMIN_TOKEN:\n%s", out)
		}
		if !strings.Contains(out, "the ADMIN_TOKEN you set") {
			t.Errorf("the banner does not say where the token is:\n%s", out)
		}
	})
	t.Run("made", func(t *testing.T) {
		dir := t.TempDir()
		out := runUntilBanner(t, base(dir))
		path := filepath.Join(dir, "admin-token")
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		token := strings.TrimSpace(string(raw))
		if len(token) < 32 || strings.Contains(out, token) {
			t.Fatalf("token %q (in the output: %v):\n%s", token, strings.Contains(out, token), out)
		}
		if !strings.Contains(out, path) {
			t.Errorf("the banner does not name %s:\n%s", path, out)
		}
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v (%v), want 0600", path, fi.Mode().Perm(), err)
		}
	})
}
