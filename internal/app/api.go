package app

import (
	"context"
	"errors"
	"log/slog"
	"net/http"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/httpapi"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// APIName is the HTTP API's name: its NATS user, its inbox and its durable consumer.
const APIName = httpapi.ConsumerName

// api is a running HTTP API.
type api struct {
	URL    string
	cancel context.CancelFunc
	done   chan error
}

// startAPI serves the HTTP API and the run UI on cfg.HTTPAddr with nc and js, and returns
// once it listens. emu is the Stripe emulator the demo may play 3-D Secure on (or nil);
// health is what its GET /healthz reports; metricsHandler, when set, answers GET /metrics (`run`
// only: the API's own process serves them on HEALTH_ADDR, off its public port).
func startAPI(ctx context.Context, cfg Config, log *slog.Logger, nc *nats.Conn, js jetstream.JetStream, keys *events.Keys, emu *httpapi.Emulator,
	health func(context.Context) error, metricsHandler http.Handler) (*api, error) {
	srv, err := httpapi.New(httpapi.Config{Addr: cfg.HTTPAddr, DataDir: cfg.DataDir, AdminToken: cfg.AdminToken, ReaderToken: cfg.ReaderToken,
		Emulator: emu, NC: nc, JS: js, Health: health, Log: log.With("component", APIName), RunsRetention: cfg.RunsRetention,
		RateClient: cfg.RateClient, RateEmail: cfg.RateEmail, RateWrongToken: cfg.RateWrongToken, TrustedProxies: cfg.TrustedProxies, ReturnURLs: cfg.ReturnURLs, Keys: keys,
		Metrics: metricsHandler, Tracer: cfg.Traces.Tracer(APIName), TraceURL: cfg.TraceURL})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a := &api{cancel: cancel, done: make(chan error, 1)}
	listening := make(chan string, 1)
	go func() { a.done <- srv.Run(ctx, func(addr string) { listening <- addr }) }()
	select {
	case addr := <-listening:
		a.URL = "http://" + addr
		return a, nil
	case err := <-a.done:
		cancel()
		return nil, err
	}
}

// Done receives the API's error if it stops on its own.
func (a *api) Done() <-chan error { return a.done }

// Stop stops serving and waits for in-flight requests.
func (a *api) Stop() error {
	a.cancel()
	return <-a.done
}

// serveAPI is `jetcheckout api`: the HTTP API alone, against NATS_URL, as the api user.
func serveAPI(ctx context.Context, unhook func(), cfg Config, log *slog.Logger, h *health) error {
	cfg.NATSWaiting = h.waitingForNATS
	a, nc, err := startAPIProcess(ctx, cfg, log)
	if ctx.Err() != nil && err != nil {
		log.Info("stopped while starting", "err", err)
		return nil
	}
	if err != nil {
		return err
	}
	defer drain(nc)
	js, err := jetstream.New(nc)
	if err != nil {
		return errors.Join(err, a.Stop())
	}
	h.set(jetStreamReady(nc, js, cfg.NATSMonitorURL))
	log.Info("http api listening", "url", a.URL)
	select {
	case <-ctx.Done():
		unhook()
	case err := <-a.Done():
		return err
	}
	h.set(func(context.Context) error { return errors.New("shutting down") })
	return a.Stop()
}

// startAPIProcess connects as the api user, waits for the topology and starts the API.
func startAPIProcess(ctx context.Context, cfg Config, log *slog.Logger) (*api, *nats.Conn, error) {
	keys, err := cfg.signingKeys(nil) // it checks events, and signs none
	if err != nil {
		return nil, nil, err
	}
	nc, err := connect(ctx, cfg.NATSURL, cfg, log, []string{APIName})
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err == nil {
		err = ensureTopology(ctx, false, js, cfg, log, APIName)
	}
	var a *api
	if err == nil {
		watchConsumers(cfg.Metrics, js, APIName)
		a, err = startAPI(ctx, cfg, log, nc, js, keys, nil, jetStreamReady(nc, js, cfg.NATSMonitorURL), nil)
	}
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return a, nc, nil
}

// emulatorControl is the embedded Stripe emulator's control API, if this process runs one.
func (s *System) emulatorControl() *httpapi.Emulator {
	if s.Emulator == nil {
		return nil
	}
	return &httpapi.Emulator{URL: s.StripeURL, Key: emulatorKey}
}
