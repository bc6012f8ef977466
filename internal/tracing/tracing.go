package tracing

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Scope is the instrumentation scope of every tracer jetcheckout makes.
const Scope = "github.com/jetcheckout/jetcheckout"

// Namespace is every service's service.namespace.
const Namespace = "jetcheckout"

// ServiceAttr names, on each span's resource, the jetcheckout service that made it: the
// service.name unless OTEL_SERVICE_NAME overrides that for the whole process.
const ServiceAttr = attribute.Key("jetcheckout.service")

// Config says where spans go. The exporter and the SDK read the other standard variables
// themselves (OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES, OTEL_TRACES_SAMPLER and its
// argument, OTEL_EXPORTER_OTLP_HEADERS and _TIMEOUT, OTEL_BSP_*).
type Config struct {
	// Endpoint is the OTLP/HTTP URL spans are POSTed to (…/v1/traces). Empty: no tracing.
	Endpoint string
}

// ConfigFromEnv reads OTEL_EXPORTER_OTLP_TRACES_ENDPOINT (the URL itself), else
// OTEL_EXPORTER_OTLP_ENDPOINT (a base URL, to which /v1/traces is added), as the
// specification says. OTEL_SDK_DISABLED=true or OTEL_TRACES_EXPORTER=none turns tracing off.
func ConfigFromEnv(getenv func(string) string) Config {
	if strings.EqualFold(getenv("OTEL_SDK_DISABLED"), "true") || strings.EqualFold(getenv("OTEL_TRACES_EXPORTER"), "none") {
		return Config{}
	}
	if u := getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"); u != "" {
		return Config{Endpoint: u}
	}
	if u := getenv("OTEL_EXPORTER_OTLP_ENDPOINT"); u != "" {
		return Config{Endpoint: strings.TrimSuffix(u, "/") + "/v1/traces"}
	}
	return Config{}
}

// Validate reports an endpoint that is not an http(s) URL with a host.
func (c Config) Validate() error {
	if c.Endpoint == "" {
		return nil
	}
	u, err := url.Parse(c.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("OTEL_EXPORTER_OTLP_ENDPOINT / OTEL_EXPORTER_OTLP_TRACES_ENDPOINT %q: want an http:// or https:// URL (OTLP over HTTP, e.g. http://jaeger:4318)", c.Endpoint)
	}
	return nil
}

// Enabled reports whether spans are exported.
func (c Config) Enabled() bool { return c.Endpoint != "" }

// Provider gives each service of a process its tracer. Enabled, each service has a tracer
// provider of its own, whose resource names the service, over one shared exporter; off,
// every tracer is the global no-op one. A nil *Provider is off.
type Provider struct {
	exporter sdktrace.SpanExporter
	mu       sync.Mutex
	services map[string]*sdktrace.TracerProvider
	err      error
}

// New makes the process's Provider; it sends nothing until a span ends.
func New(cfg Config) (*Provider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if !cfg.Enabled() {
		return nil, nil
	}
	exp, err := otlptracehttp.New(context.Background(), otlptracehttp.WithEndpointURL(cfg.Endpoint))
	if err != nil {
		return nil, fmt.Errorf("tracing: %w", err)
	}
	return &Provider{exporter: exp, services: map[string]*sdktrace.TracerProvider{}}, nil
}

// Enabled reports whether p exports spans.
func (p *Provider) Enabled() bool { return p != nil }

// Tracer is the tracer of service: the global no-op one when p is off.
func (p *Provider) Tracer(service string) trace.Tracer {
	if p == nil {
		return otel.GetTracerProvider().Tracer(Scope)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	tp := p.services[service]
	if tp == nil {
		// Later options win: OTEL_SERVICE_NAME (WithFromEnv) overrides the service's name,
		// and the jetcheckout.service attribute still tells the services apart.
		res, err := resource.New(context.Background(),
			resource.WithAttributes(attribute.String("service.name", service)),
			resource.WithTelemetrySDK(), resource.WithFromEnv(),
			resource.WithAttributes(attribute.String("service.namespace", Namespace), ServiceAttr.String(service)))
		if err != nil {
			p.err = errors.Join(p.err, fmt.Errorf("tracing resource of %s: %w", service, err)) // partial: still usable
		}
		tp = sdktrace.NewTracerProvider(sdktrace.WithBatcher(shared{p.exporter}), sdktrace.WithResource(res),
			sdktrace.WithIDGenerator(checkoutIDs{}))
		p.services[service] = tp
	}
	return tp.Tracer(Scope)
}

// Shutdown sends the spans not sent yet and stops the exporter: the last thing a process
// does on a graceful stop.
func (p *Provider) Shutdown(ctx context.Context) error {
	if p == nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	errs := []error{p.err}
	for _, tp := range p.services {
		errs = append(errs, tp.Shutdown(ctx))
	}
	errs = append(errs, p.exporter.Shutdown(ctx))
	return errors.Join(errs...)
}

// shared is the exporter as each service's provider sees it: shutting down one provider
// must not stop the exporter the others still use (Provider.Shutdown stops it last).
type shared struct{ sdktrace.SpanExporter }

func (shared) Shutdown(context.Context) error { return nil }

// CheckoutTraceID is the trace ID of a checkout's trace, derived from its checkout ID: the
// HTTP API starts the trace with it, so does the first consumer of a checkout.requested that
// came without a traceparent, and the run UI links a run to it without storing anything.
func CheckoutTraceID(checkoutID string) trace.TraceID {
	sum := sha256.Sum256([]byte("jetcheckout trace\x00" + checkoutID))
	var id trace.TraceID
	copy(id[:], sum[:])
	return id
}

type rootKey struct{}

// StartCheckoutRoot starts a root span of checkoutID's trace (CheckoutTraceID) with
// tracer, linked to the span context in ctx when there is one of another trace (a caller's
// own trace).
func StartCheckoutRoot(ctx context.Context, tracer trace.Tracer, checkoutID, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	if remote := trace.SpanContextFromContext(ctx); remote.IsValid() {
		opts = append(opts, trace.WithLinks(trace.Link{SpanContext: remote}))
	}
	ctx = context.WithValue(ctx, rootKey{}, CheckoutTraceID(checkoutID))
	return tracer.Start(ctx, name, append(opts, trace.WithNewRoot())...)
}

// checkoutIDs gives a root span started by StartCheckoutRoot its checkout's trace ID, and
// every span a random span ID.
type checkoutIDs struct{}

func (checkoutIDs) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	tid, ok := ctx.Value(rootKey{}).(trace.TraceID)
	if !ok {
		tid = randomTraceID()
	}
	return tid, newSpanID()
}

func (checkoutIDs) NewSpanID(context.Context, trace.TraceID) trace.SpanID { return newSpanID() }

func randomTraceID() (id trace.TraceID) {
	for !id.IsValid() {
		putUint64(id[:8], rand.Uint64())
		putUint64(id[8:], rand.Uint64())
	}
	return id
}

func newSpanID() (id trace.SpanID) {
	for !id.IsValid() {
		putUint64(id[:], rand.Uint64())
	}
	return id
}

func putUint64(b []byte, v uint64) {
	for i := range 8 {
		b[i] = byte(v >> (56 - 8*i))
	}
}
