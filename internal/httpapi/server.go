package httpapi

import (
	"cmp"
	"context"
	"crypto/subtle"
	_ "embed"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Config of the API.
type Config struct {
	Addr    string // host:port to listen on
	DataDir string // where the read model's bbolt file (api.db) goes
	// AdminToken guards the review endpoints (Authorization: Bearer, or the UI's cookie).
	// Empty refuses them all.
	AdminToken string
	// Emulator, when set, is the Stripe emulator the demo plays the customer's 3-D Secure
	// page on; the run page then offers to complete or fail it.
	Emulator *Emulator
	NC       *nats.Conn
	JS       jetstream.JetStream
	Log      *slog.Logger
	// Health, when set, says why the system cannot take checkouts now (JetStream cannot
	// store, say); GET /healthz then answers 503 with the reason. Nil: always ok.
	Health func(context.Context) error
	// RunsRetention is how long a checkout stays in the read model after its last change
	// (default DefaultRunsRetention, the CHECKOUT stream's own).
	RunsRetention time.Duration
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
	cfg   Config
	log   *slog.Logger
	store *Store
	hub   *Hub
	ui    *ui
	mux   *http.ServeMux
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
	s := &Server{cfg: cfg, log: cfg.Log, store: st, hub: &Hub{}, mux: http.NewServeMux()}
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
	m.HandleFunc("GET /checkouts", s.handle(s.listCheckouts))
	m.HandleFunc("GET /checkouts/{id}", s.handle(s.getCheckout))
	m.HandleFunc("GET /checkouts/{id}/events", s.handle(s.checkoutEvents))
	m.HandleFunc("GET /checkouts/{id}/stream", s.handle(s.streamCheckout))
	m.HandleFunc("POST /checkouts/{id}/review", s.handle(s.admin(s.reviewCheckout)))
	m.HandleFunc("GET /reviews", s.handle(s.admin(s.listReviews)))
	m.HandleFunc("POST /carts", s.handle(s.createCart))
	m.HandleFunc("GET /carts/{id}", s.handle(s.getCart))
	m.HandleFunc("GET /products", s.handle(s.listProducts))
	m.HandleFunc("GET /openapi.yaml", serveOpenAPI)
	m.HandleFunc("GET /healthz", s.healthz)
	s.ui.routes(m)
	m.HandleFunc("/", s.handle(func(http.ResponseWriter, *http.Request) error {
		return problem(http.StatusNotFound, "no such resource; the API is described at /openapi.yaml")
	}))
}

// healthz answers 200 {"status":"ok"}, or 503 {"status":"unavailable","reason":...}.
func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
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
		errs <- (&Projector{JS: s.cfg.JS, Store: s.store, Log: s.log, Hub: s.hub}).Run(ctx)
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

// admin guards h with the admin token: an Authorization: Bearer header, or the cookie the
// UI's sign-in sets.
func (s *Server) admin(h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if s.cfg.AdminToken == "" {
			return problem(http.StatusForbidden, "no ADMIN_TOKEN is configured, so the admin endpoints are off")
		}
		if !s.isAdmin(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="jetcheckout admin"`)
			return problem(http.StatusUnauthorized, "this endpoint needs the admin token: Authorization: Bearer <ADMIN_TOKEN>")
		}
		return h(w, r)
	}
}

func (s *Server) isAdmin(r *http.Request) bool {
	if s.cfg.AdminToken == "" {
		return false
	}
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		if c, err := r.Cookie(adminCookie); err == nil {
			token = c.Value
		}
	}
	return subtle.ConstantTimeCompare([]byte(token), []byte(s.cfg.AdminToken)) == 1
}

//go:embed openapi.yaml
var openAPI []byte

func serveOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/yaml")
	_, _ = w.Write(openAPI)
}
