package app

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/nats-io/nats-server/v2/server"
)

// HEALTH_ADDR answers 503 until the system is up and every runner consumes, then 200;
// `jetcheckout healthcheck` (on HEALTH_ADDR, or a URL given) exits accordingly.
func TestHealthEndpoint(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	h := &health{}
	if err := serveHealth(ctx, addr, h, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	env := func(k string) string { return map[string]string{"HEALTH_ADDR": addr}[k] }
	check := func(args ...string) (int, string) {
		var out, errs bytes.Buffer
		code := Healthcheck(args, env, &out, &errs)
		return code, out.String() + errs.String()
	}
	if code, out := check(); code != 1 || !strings.Contains(out, "starting") {
		t.Errorf("before start: exit %d, %q", code, out)
	}
	h.set(func(context.Context) error { return errors.New("orders: not consuming yet") })
	if code, out := check("http://" + addr + HealthPath); code != 1 || !strings.Contains(out, "not consuming") {
		t.Errorf("not consuming, URL given: exit %d, %q", code, out)
	}
	sys := startSystem(t, t.TempDir())
	natstest.Eventually(t, wait, func() bool { return sys.Ready(ctx) == nil }, "never ready: %v", sys.Ready(ctx))
	h.set(sys.Ready)
	if code, out := check(); code != 0 {
		t.Errorf("running: exit %d, %q", code, out)
	}
	if code, _ := check("--bogus"); code != 2 {
		t.Errorf("an unknown flag: exit %d", code)
	}
}

func TestNATSCredentialsFromEnv(t *testing.T) {
	file := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(file, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env := func(vars map[string]string) func(string) string { return func(k string) string { return vars[k] } }
	cfg, err := ConfigFromEnv(env(map[string]string{"NATS_USER": "payments", "NATS_PASSWORD_FILE": file}))
	if err != nil || cfg.NATSUser != "payments" || cfg.NATSPassword != "s3cret" {
		t.Errorf("password file: %q %q %v", cfg.NATSUser, cfg.NATSPassword, err)
	}
	for name, vars := range map[string]map[string]string{
		"password twice":        {"NATS_USER": "a", "NATS_PASSWORD": "x", "NATS_PASSWORD_FILE": file},
		"password without user": {"NATS_PASSWORD": "x"},
		"creds and user":        {"NATS_USER": "a", "NATS_CREDS": "/x.creds"},
		"cert without key":      {"NATS_CERT": "/c.pem"},
		"missing password file": {"NATS_USER": "a", "NATS_PASSWORD_FILE": file + ".gone"},
		"bad health address":    {"HEALTH_ADDR": "8081"},
	} {
		if _, err := ConfigFromEnv(env(vars)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// `jetcheckout api` is healthy while JetStream answers, and says why not once the server
// has disabled it (as nats-server does when it runs out of resources).
func TestAPIHealthNeedsJetStream(t *testing.T) {
	env := natstest.Start(t)
	ready := jetStreamReady(env.NC, env.JS, "")
	if err := ready(t.Context()); err != nil {
		t.Fatalf("with JetStream: %v", err)
	}
	if err := env.Server.DisableJetStream(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second) // as the health endpoint gives it
	defer cancel()
	if err := ready(ctx); err == nil || !strings.Contains(err.Error(), "JetStream") {
		t.Errorf("with JetStream disabled: %v", err)
	}
}

// With NATS_MONITOR_URL a process reports the server's own health, which is what tells a
// stalled store (a client sees only unanswered publishes): asked of a real nats-server's
// monitoring port, healthy, then not once its JetStream is gone.
func TestHealthAsksTheServersMonitor(t *testing.T) {
	opts := &server.Options{Host: "127.0.0.1", Port: -1, HTTPHost: "127.0.0.1", HTTPPort: -1, JetStream: true, StoreDir: t.TempDir()}
	srv := runServer(t, opts)
	monitor := fmt.Sprintf("http://%s", srv.MonitorAddr())
	if err := monitorHealth(t.Context(), monitor); err != nil {
		t.Fatalf("a healthy server: %v", err)
	}
	if err := monitorHealth(t.Context(), ""); err != nil {
		t.Errorf("no URL checks nothing: %v", err)
	}
	if err := srv.DisableJetStream(); err != nil {
		t.Fatal(err)
	}
	if err := monitorHealth(t.Context(), monitor); err == nil || !strings.Contains(err.Error(), "nats-server unhealthy") {
		t.Errorf("a server without JetStream: %v, want it unhealthy", err)
	}
	if err := monitorHealth(t.Context(), "http://127.0.0.1:1"); err == nil {
		t.Error("a monitor nobody answers passed")
	}
}
