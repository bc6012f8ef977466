package httpapi

import (
	"context"
	"errors"
	"net/url"
	"strings"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/tracing"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// A checkout's trace starts here, when the API publishes its request: a root span of the
// trace whose ID the checkout ID gives (tracing.CheckoutTraceID), so the run page can link
// to it without keeping anything, and its traceparent travels with checkout.requested.

// traceIDPlaceholder is what TraceURL holds where the trace's ID goes.
const traceIDPlaceholder = "{trace_id}"

// CheckTraceURL reports a TRACE_URL that cannot link a run to its trace: one without
// {trace_id}, or not an http(s) URL. Empty is fine: no links.
func CheckTraceURL(s string) error {
	if s == "" {
		return nil
	}
	if !strings.Contains(s, traceIDPlaceholder) {
		return errors.New("want a URL with {trace_id} where the trace's ID goes, e.g. http://localhost:16686/trace/{trace_id}")
	}
	u, err := url.Parse(strings.ReplaceAll(s, traceIDPlaceholder, "0"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return errors.New("want an http:// or https:// URL, e.g. http://localhost:16686/trace/{trace_id}")
	}
	return nil
}

// traceLink is the trace UI's page of the checkout's trace, "" without a TraceURL.
func (s *Server) traceLink(checkoutID string) string {
	if s.cfg.TraceURL == "" {
		return ""
	}
	return strings.ReplaceAll(s.cfg.TraceURL, traceIDPlaceholder, tracing.CheckoutTraceID(checkoutID).String())
}

// startTrace starts the span of publishing a checkout's request: the root of its trace.
func (s *Server) startTrace(ctx context.Context, checkoutID string) (context.Context, trace.Span) {
	tracer := s.cfg.Tracer
	if tracer == nil {
		tracer = (*tracing.Provider)(nil).Tracer(ConsumerName)
	}
	return tracing.StartCheckoutRoot(ctx, tracer, checkoutID, "api POST /checkout/process",
		trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(tracing.CheckoutID.String(checkoutID), attribute.String("http.route", "/checkout/process"),
			tracing.System.String("nats"), tracing.Subject.String(string(events.Requested))))
}
