package tracing

import (
	"context"
	"maps"
	"slices"

	"github.com/nats-io/nats.go"
	"go.opentelemetry.io/otel/propagation"
)

// propagator writes and reads W3C traceparent and tracestate; no baggage travels.
var propagator = propagation.TraceContext{}

// Header is a nats.Header as a propagation carrier. NATS header names are case-sensitive:
// they are written and read as the W3C spells them (lower case).
type Header nats.Header

func (h Header) Get(key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

func (h Header) Set(key, value string) { h[key] = []string{value} }

func (h Header) Keys() []string { return slices.Collect(maps.Keys(h)) }

// Inject writes the span context of ctx into h (nothing when ctx has none). h must not be nil.
func Inject(ctx context.Context, h nats.Header) { propagator.Inject(ctx, Header(h)) }

// Extract returns ctx with the remote span context h carries, if it carries one.
func Extract(ctx context.Context, h nats.Header) context.Context {
	if len(h) == 0 {
		return ctx
	}
	return propagator.Extract(ctx, Header(h))
}
