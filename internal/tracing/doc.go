// Package tracing sets up OpenTelemetry tracing for a process and carries a span's context
// in NATS message headers (W3C traceparent and tracestate), so that one checkout is one
// trace across every service it goes through (docs/OPERATIONS.md, "Traces").
//
// Spans are exported over OTLP/HTTP only when an endpoint is configured (the standard
// OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT); otherwise every tracer
// is the global no-op one and nothing is recorded or sent.
package tracing
