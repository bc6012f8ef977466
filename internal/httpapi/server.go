package httpapi

import (
	"cmp"
	"context"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"path/filepath"
	"sync"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"
)

// Config of the API.
type Config struct {
	Addr    string // host:port to listen on
	DataDir string // where the read model's bbolt file (api.db) goes
	// AdminToken guards the review endpoints and reads customers' personal data
	// (Authorization: Bearer, or the UI's cookie). Empty refuses the reviews.
	AdminToken string
	// ReaderToken reads customers' personal data (checkout lists, events, the UI's pages),
	// and nothing more. Without either token, a checkout shows only its redacted view.
	ReaderToken string
	// Emulator, when set, is the Stripe emulator the demo plays the customer's 3-D Secure
	// page on; the run page then offers to complete or fail it.
	Emulator *Emulator
	NC       *nats.Conn
	JS       jetstream.JetStream
	Log      *slog.Logger
	// RateClient and RateEmail limit the checkouts started without a token, per client
	// address and per customer email (zero: no limit). TrustedProxies are the proxies
	// whose X-Forwarded-For names the client (none: the connection's peer is the client).
	RateClient, RateEmail Rate
	TrustedProxies        []netip.Prefix
	// RateWrongToken limits the wrong tokens a client may present (the UI's sign-in, an
	// Authorization bearer): over it, its every token is answered 429 unread (zero: no limit).
	RateWrongToken Rate
	// Health, when set, says why the system cannot take checkouts now (JetStream cannot
	// store, say); GET /healthz then answers 503 with the reason. Nil: always ok.
	Health func(context.Context) error
	// RunsRetention is how long a checkout stays in the read model after its last change
	// (default DefaultRunsRetention, the CHECKOUT stream's own).
	RunsRetention time.Duration
	// Keys check that every event the run view shows came from its producer (nil: shown
	// unchecked, for tests of the API alone).
	Keys *events.Keys
	// ReturnURLs is where a checkout may send its customer back to (RETURN_URL_ALLOW), as
	// the catalog's validate_cart applies it: a request it would refuse is answered 422.
	ReturnURLs events.ReturnURLRule
	// Metrics, when set, answers GET /metrics (Prometheus): `jetcheckout run` serves its
	// process's there. Nil: not on this address.
	Metrics http.Handler
	// Tracer starts the trace of each checkout the API publishes (trace.go). Nil: the global
	// no-op tracer.
	Tracer trace.Tracer
	// TraceURL, when set, is a trace UI's page of one trace with {trace_id} in it: the run
	// page links each checkout to its trace (CheckTraceURL).
	TraceURL string
}

// Emulator is where the Stripe test-mode emulator's control API answers, and its key.
type Emulator struct {
	URL, Key string
}

// Validate explains the first setting that cannot work.
func (c Config) Validate() error {
	switch {
	case c.NC == nil || c.JS == nil:
		return errors.New("httpapi: NC and JS are required")
	case c.DataDir == "":
		return errors.New("httpapi: DataDir is required")
	}
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		return fmt.Errorf("HTTP_ADDR %q: want host:port: %w", c.Addr, err)
	}
	return nil
}

// Server is the HTTP API and the run UI.
type Server struct {
	cfg                 Config
	perClient, perEmail *limiter
	perWrongToken       *limiter
	sessions            *sessions
	log                 *slog.Logger
	store               *Store
	hub                 *Hub
	ui                  *ui
	mux                 *http.ServeMux
}

// New opens the read model and builds the routes.
func New(cfg Config) (*Server, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	st, err := OpenStore(filepath.Join(cfg.DataDir, "api.db"))
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Log, store: st, hub: &Hub{}, mux: http.NewServeMux(),
		perClient: newLimiter(cfg.RateClient, "checkouts", "client"), perEmail: newLimiter(cfg.RateEmail, "checkouts", "customer email"),
		perWrongToken: newLimiter(cfg.RateWrongToken, "wrong tokens", "client"), sessions: newSessions(sessionTTL)}
	if s.ui, err = newUI(s); err != nil {
		st.Close()
		return nil, err
	}
	s.routes()
	return s, nil
}

func (s *Server) routes() {
	m := s.mux
	m.HandleFunc("POST /checkout/process", s.handle(s.processCheckout))
	m.HandleFunc("GET /checkouts", s.handle(s.need(reader, s.listCheckouts)))
	m.HandleFunc("GET /checkouts/{id}", s.handle(s.getCheckout))
	m.HandleFunc("GET /checkouts/{id}/events", s.handle(s.need(reader, s.checkoutEvents)))
	m.HandleFunc("GET /checkouts/{id}/stream", s.handle(s.streamCheckout))
	m.HandleFunc("POST /checkouts/{id}/review", s.handle(s.need(admin, s.reviewCheckout)))
	m.HandleFunc("POST /checkouts/{id}/redrive", s.handle(s.need(admin, s.redriveCheckout)))
	m.HandleFunc("POST /deadletters/{service}/{seq}/redrive", s.handle(s.need(admin, s.redriveDeadLetter)))
	m.HandleFunc("GET /reviews", s.handle(s.need(admin, s.listReviews)))
	m.HandleFunc("POST /carts", s.handle(s.createCart))
	m.HandleFunc("GET /carts/{id}", s.handle(s.getCart))
	m.HandleFunc("GET /products", s.handle(s.listProducts))
	m.HandleFunc("POST /subscriptions", s.handle(s.need(admin, s.createSubscription)))
	m.HandleFunc("GET /subscriptions", s.handle(s.need(reader, s.listSubscriptions)))
	m.HandleFunc("GET /subscriptions/{id}", s.handle(s.need(reader, s.getSubscription)))
	m.HandleFunc("POST /subscriptions/{id}/pause", s.handle(s.need(admin, s.changeSubscription(events.SubscriptionsPause))))
	m.HandleFunc("POST /subscriptions/{id}/resume", s.handle(s.need(admin, s.changeSubscription(events.SubscriptionsResume))))
	m.HandleFunc("POST /subscriptions/{id}/cancel", s.handle(s.need(admin, s.changeSubscription(events.SubscriptionsCancel))))
	m.HandleFunc("POST /subscriptions/{id}/plan", s.handle(s.need(admin, s.changePlan)))
	m.HandleFunc("GET /openapi.yaml", serveOpenAPI)
	m.HandleFunc("GET /healthz", s.healthz)
	if s.cfg.Metrics != nil {
		m.Handle("GET /metrics", s.cfg.Metrics)
	}
	s.ui.routes(m)
	m.HandleFunc("/", s.handle(func(http.ResponseWriter, *http.Request) error {
		return problem(http.StatusNotFound, "no such resource; the API is described at /openapi.yaml")
	}))
}

// healthz answers 200 {"status":"ok"}, or 503 {"status":"unavailable","reason":...}.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	if s.store.rebuilding.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": errRebuilding.Error()})
		return
	}
	if s.cfg.Health != nil {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := s.cfg.Health(ctx); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"status": "unavailable", "reason": err.Error()})
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// ServeHTTP serves the API and the UI.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

// Run projects the stream into the read model and serves HTTP on cfg.Addr until ctx is
// cancelled; then it stops listening, lets requests finish (live streams are cut) and
// closes the store. ready, if not nil, receives the listening address once it accepts.
func (s *Server) Run(ctx context.Context, ready func(addr string)) error {
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		s.store.Close()
		return fmt.Errorf("http api: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	srv := &http.Server{Handler: s, ReadHeaderTimeout: 10 * time.Second, BaseContext: func(net.Listener) context.Context { return ctx }}
	errs := make(chan error, 2)
	var wg sync.WaitGroup
	wg.Go(func() {
		errs <- (&Projector{JS: s.cfg.JS, Store: s.store, Log: s.log, Hub: s.hub, Keys: s.cfg.Keys}).Run(ctx)
	})
	wg.Go(func() { s.store.pruneEvery(ctx, cmp.Or(s.cfg.RunsRetention, DefaultRunsRetention), s.log) })
	wg.Go(func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			errs <- err
		}
	})
	if ready != nil {
		ready(ln.Addr().String())
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errs:
	}
	cancel() // ends the live streams, so Shutdown does not wait for them
	shutCtx, done := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer done()
	if err := srv.Shutdown(shutCtx); err != nil {
		s.log.Warn("http api: shutdown", "err", err)
	}
	wg.Wait()
	return errors.Join(runErr, s.store.Close())
}

//go:embed openapi.yaml
var openAPI []byte

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(openAPI)
}
