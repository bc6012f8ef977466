package app

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/metrics"
	"github.com/jetcheckout/jetcheckout/internal/natsserver"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// HealthPath is where HEALTH_ADDR answers.
const HealthPath = "/healthz"

// Ready reports why the system is not doing its work, or nil: connected to NATS, no
// service stopped, the embedded server's JetStream (if any) able to store, and every
// runner consuming (a pull request waiting at the server, or messages delivered and not
// yet acknowledged).
func (s *System) Ready(ctx context.Context) error {
	select {
	case <-s.failed:
		return s.err
	default:
	}
	if st := s.NC.Status(); st != nats.CONNECTED {
		return fmt.Errorf("NATS connection %s", st)
	}
	if s.Server != nil {
		if err := natsserver.Health(s.Server); err != nil {
			return err
		}
	}
	if err := monitorHealth(ctx, s.Config.NATSMonitorURL); err != nil {
		return err
	}
	for _, u := range s.units {
		c, err := s.JS.Consumer(ctx, events.StreamCheckout, u.name)
		if err != nil {
			return fmt.Errorf("%s: consumer: %w", u.name, err)
		}
		if info := c.CachedInfo(); info.NumWaiting == 0 && info.NumAckPending == 0 {
			return fmt.Errorf("%s: not consuming yet", u.name)
		}
	}
	return nil
}

// jetStreamReady is the health of a process that uses NATS but runs no runner (the API
// alone): connected, JetStream answering for its account (a server that disabled
// JetStream, out of resources, says so here), and the server's own health when its
// monitoring port is known.
func jetStreamReady(nc *nats.Conn, js jetstream.JetStream, monitorURL string) func(context.Context) error {
	return func(ctx context.Context) error {
		if st := nc.Status(); st != nats.CONNECTED {
			return fmt.Errorf("NATS connection %s", st)
		}
		if _, err := js.AccountInfo(ctx); err != nil {
			return fmt.Errorf("JetStream: %w", err)
		}
		return monitorHealth(ctx, monitorURL)
	}
}

// monitorHealth asks a nats-server's monitoring port (NATS_MONITOR_URL) whether it can do its
// work: a client cannot tell that the server's streams stopped storing (a full disk leaves
// JetStream enabled and every publish unanswered), but the server's own /healthz says so.
// An empty URL checks nothing.
func monitorHealth(ctx context.Context, monitorURL string) error {
	if monitorURL == "" {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(monitorURL, "/")+"/healthz", nil)
	if err != nil {
		return fmt.Errorf("NATS_MONITOR_URL: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("nats-server's health (NATS_MONITOR_URL): %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return fmt.Errorf("nats-server unhealthy (NATS_MONITOR_URL): %d %s", resp.StatusCode, strings.TrimSpace(string(body)))
	}
	return nil
}

// health is what HEALTH_ADDR serves: /healthz, and the process's metrics on /metrics when
// set; check is nil until there is something to check.
type health struct {
	check   atomic.Pointer[func(context.Context) error]
	metrics http.Handler
}

func (h *health) set(check func(context.Context) error) { h.check.Store(&check) }

// waitingForNATS reports, until the next set, that the process is waiting for NATS.
func (h *health) waitingForNATS(err error) {
	h.set(func(context.Context) error { return fmt.Errorf("waiting for NATS: %w", err) })
}

func (h *health) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == metrics.Path && h.metrics != nil {
		h.metrics.ServeHTTP(w, r)
		return
	}
	if r.URL.Path != HealthPath {
		http.NotFound(w, r)
		return
	}
	err := errors.New("starting")
	if check := h.check.Load(); check != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		err = (*check)(ctx)
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if isStandby(err) {
		fmt.Fprintln(w, err) // healthy: alive and ready to take over
		return
	}
	if err != nil {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "not ready:", err)
		return
	}
	fmt.Fprintln(w, "ok")
}

// serveHealth answers on addr until ctx ends. A port that cannot be bound stops the
// process: a container whose health cannot be checked would be restarted forever.
func serveHealth(ctx context.Context, addr string, h *health, log *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("HEALTH_ADDR: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("health endpoint", "err", err)
		}
	}()
	log.Info("health endpoint listening", "url", "http://"+ln.Addr().String()+HealthPath)
	return nil
}

// healthURL is the URL a HEALTH_ADDR answers on, from inside the same container.
func healthURL(addr string) string { return "http://" + local(addr) + HealthPath }

// local is a listening address as a client on the same host dials it: a wildcard host
// (":8081", "0.0.0.0:8081") is the loopback.
func local(addr string) string {
	host, port, _ := net.SplitHostPort(addr)
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

// Healthcheck is the `healthcheck` command, for images with no curl or wget: GET the URL
// (by default this process's HEALTH_ADDR; the nats service's is nats-server's /healthz)
// and exit 0 on a 2xx answer, 1 otherwise.
func Healthcheck(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	var url string
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			fmt.Fprintf(stderr, "healthcheck: unknown flag %s\n", a)
			return 2
		}
		url = a
	}
	if url == "" {
		addr := getenv("HEALTH_ADDR")
		if addr == "" {
			fmt.Fprintln(stderr, "usage: jetcheckout healthcheck [URL]   (default: http://HEALTH_ADDR"+HealthPath+")")
			return 2
		}
		url = healthURL(addr)
	}
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		fmt.Fprintln(stderr, "unhealthy:", err)
		return 1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode/100 != 2 {
		fmt.Fprintf(stderr, "unhealthy: %s: %s\n", resp.Status, strings.TrimSpace(string(body)))
		return 1
	}
	fmt.Fprintf(stdout, "%s\n", strings.TrimSpace(string(body)))
	return 0
}
