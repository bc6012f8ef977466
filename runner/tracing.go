package runner

import (
	"context"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/tracing"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

// Tracing (docs/OPERATIONS.md, "Traces"): each delivery a lane handles is a span,
// "<service> handle <subject>", the child of the span that published the message (its
// traceparent header); the outputs carry the span's own context, so the next hop is its
// child. A message without a traceparent (published by the nats CLI, or by a process that
// does not trace: the re-drive's request, a release before tracing) and a checkout request
// without one of its checkout's trace start a root of that trace (tracing.CheckoutTraceID),
// so they still land in their checkout's trace.

// The attributes of a delivery's span besides tracing's.
const (
	attrOutcome = attribute.Key("jetcheckout.outcome")
	attrAttempt = attribute.Key("jetcheckout.attempt")
)

// tracer is the runner's tracer: Config.Tracer, or the global no-op one.
func (r *Runner) tracer() trace.Tracer {
	if r.cfg.Tracer != nil {
		return r.cfg.Tracer
	}
	return noTracer
}

var noTracer = (*tracing.Provider)(nil).Tracer("")

// traced is the policy that makes each delivery a span, under the span that published it,
// named after the event once it is read and ended with how the delivery was answered.
func (r *Runner) traced(next deliveryHandler) deliveryHandler {
	return func(ctx context.Context, d *delivery) error {
		ctx, span := r.startSpan(ctx, d.msg)
		err := next(ctx, d)
		if d.decoded {
			nameSpan(span, d.in, r.steps[d.msg.Subject()].Name, d.attempt)
		}
		endSpan(span, d.msg.answer)
		return err
	}
}

// startSpan starts the span of a delivery, under the span that published it.
func (r *Runner) startSpan(ctx context.Context, msg jetstream.Msg) (context.Context, trace.Span) {
	ctx = tracing.Extract(ctx, msg.Headers())
	name := r.cfg.Name + " handle " + msg.Subject()
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithAttributes(tracing.System.String("nats"), tracing.Subject.String(msg.Subject()))}
	if remote := trace.SpanContextFromContext(ctx); r.cfg.Tracer != nil && (!remote.IsValid() || r.ownDecoder[msg.Subject()]) {
		// Its checkout's trace starts here, unless its publisher (the HTTP API) started it;
		// a request's traceparent of another trace becomes a link.
		id := string(r.checkoutKey(msg))
		if remote.TraceID() != tracing.CheckoutTraceID(id) {
			return tracing.StartCheckoutRoot(ctx, r.tracer(), id, name, opts...)
		}
	}
	return r.tracer().Start(ctx, name, opts...)
}

// nameSpan names on the delivery's span the event it carries.
func nameSpan(span trace.Span, in events.Envelope, step events.StepName, attempt int) {
	if !span.IsRecording() {
		return
	}
	span.SetAttributes(tracing.CheckoutID.String(in.CheckoutID), tracing.EventID.String(in.ID), attrAttempt.Int(attempt))
	if step != "" {
		span.SetAttributes(tracing.Step.String(string(step)))
	}
}

// endSpan ends a delivery's span with how the runner answered it.
func endSpan(span trace.Span, a answer) {
	if span.IsRecording() {
		outcome := "unanswered" // a simulated crash
		switch a {
		case answerAck:
			outcome = outcomeOK
		case answerNak:
			outcome = outcomeRetry
		case answerTerm:
			outcome = outcomeRejected
		}
		span.SetAttributes(attrOutcome.String(outcome))
		if a != answerAck {
			span.SetStatus(codes.Error, outcome)
		}
	}
	span.End()
}

// spanFailed records on the delivery's span why it failed.
func spanFailed(ctx context.Context, err error) {
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
}

// injectSpan puts the span context of ctx in an output's headers, and names the output on
// the span.
func injectSpan(ctx context.Context, h nats.Header, e events.Envelope) {
	tracing.Inject(ctx, h)
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.AddEvent("publish", trace.WithAttributes(tracing.Subject.String(string(e.Type)), tracing.EventID.String(e.ID)))
	}
}
