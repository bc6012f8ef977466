package tracing

import (
	"context"
	"testing"

	"github.com/nats-io/nats.go"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

func TestConfigFromEnv(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		want string
		bad  bool
	}{
		{env: nil, want: ""},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318"}, want: "http://jaeger:4318/v1/traces"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318/"}, want: "http://jaeger:4318/v1/traces"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://b/otlp/traces"}, want: "https://b/otlp/traces"},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_SDK_DISABLED": "true"}, want: ""},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://a:4318", "OTEL_TRACES_EXPORTER": "none"}, want: ""},
		{env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "jaeger:4317"}, want: "jaeger:4317/v1/traces", bad: true},
	} {
		c := ConfigFromEnv(func(k string) string { return tc.env[k] })
		if c.Endpoint != tc.want || (c.Validate() != nil) != tc.bad || c.Enabled() != (tc.want != "") {
			t.Errorf("%v: endpoint %q, validate %v; want %q, bad %v", tc.env, c.Endpoint, c.Validate(), tc.want, tc.bad)
		}
	}
}

func TestOffIsNoOp(t *testing.T) {
	p, err := New(Config{})
	if err != nil || p.Enabled() {
		t.Fatalf("New(off) = %v, %v", p, err)
	}
	_, span := p.Tracer("catalog").Start(context.Background(), "x")
	if span.IsRecording() || span.SpanContext().IsValid() {
		t.Error("a tracer of a provider that is off records")
	}
	if err := p.Shutdown(context.Background()); err != nil {
		t.Error(err)
	}
}

// TestCheckoutRootAndHeaders: a checkout's root span has the trace ID its checkout ID gives,
// links to a publisher's own trace, and its context goes through NATS headers and back.
func TestCheckoutRootAndHeaders(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec), sdktrace.WithIDGenerator(checkoutIDs{}))
	tracer := tp.Tracer(Scope)
	if CheckoutTraceID("co_1") == CheckoutTraceID("co_2") || CheckoutTraceID("co_1") != CheckoutTraceID("co_1") || !CheckoutTraceID("").IsValid() {
		t.Fatal("CheckoutTraceID is not a function of the checkout ID")
	}

	_, foreign := tracer.Start(context.Background(), "a publisher's own")
	h := nats.Header{}
	Inject(trace.ContextWithSpan(context.Background(), foreign), h)
	if h.Get("traceparent") == "" {
		t.Fatalf("no traceparent in %v", h)
	}
	ctx, root := StartCheckoutRoot(Extract(context.Background(), h), tracer, "co_1", "root")
	root.End()
	got := rec.Ended()[0]
	if got.SpanContext().TraceID() != CheckoutTraceID("co_1") || got.Parent().IsValid() {
		t.Errorf("root: trace %s parent %v, want trace %s and no parent", got.SpanContext().TraceID(), got.Parent(), CheckoutTraceID("co_1"))
	}
	if len(got.Links()) != 1 || got.Links()[0].SpanContext.SpanID() != foreign.SpanContext().SpanID() {
		t.Errorf("root: links %v, want the publisher's span", got.Links())
	}

	out := nats.Header{}
	Inject(ctx, out)
	_, child := tracer.Start(Extract(context.Background(), out), "next hop")
	child.End()
	next := rec.Ended()[1]
	if next.Parent().SpanID() != root.SpanContext().SpanID() || next.SpanContext().TraceID() != CheckoutTraceID("co_1") {
		t.Errorf("next hop: parent %s in trace %s, want %s in %s", next.Parent().SpanID(), next.SpanContext().TraceID(), root.SpanContext().SpanID(), CheckoutTraceID("co_1"))
	}
	if ctx := Extract(context.Background(), nil); trace.SpanContextFromContext(ctx).IsValid() {
		t.Error("no headers gave a span context")
	}
}
