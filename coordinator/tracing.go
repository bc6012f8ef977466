package coordinator

import (
	"context"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/tracing"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// Tracing (docs/OPERATIONS.md, "Traces"): each decision the coordinator stores is a span,
// "coordinator decide <subject>", the child of the span of the delivery that caused it (the
// runner's, in ctx), made by that span's provider; so is a step failed by its deadline,
// "coordinator deadline expired <step>". The decisions' events are published by the runner
// under its delivery span.

// Decision kinds, the jetcheckout.decision attribute.
const (
	kindFanIn        = "fan-in"       // the go-ahead of a step that waits for several (the payment)
	kindGoAhead      = "go-ahead"     // the go-ahead of a gated step (the order, the fulfilment)
	kindCompensation = "compensation" // an undo: refund, cancel, release
	kindDeadline     = "deadline"     // a step's deadline timer set
	kindTerminal     = "terminal"     // checkout.completed or checkout.failed
	kindOther        = "other"
)

// The attributes of a decision's span besides tracing's.
const (
	attrCause    = attribute.Key("jetcheckout.cause") // the subject of the event that caused it
	attrDecision = attribute.Key("jetcheckout.decision")
	attrStatus   = attribute.Key("jetcheckout.status")
	attrRedrive  = attribute.Key("jetcheckout.redrive_attempt")
)

// decisionKinds classifies every subject the coordinator decides in flow.
func decisionKinds(flow events.Flow) map[events.Subject]string {
	kinds := map[events.Subject]string{events.Deadline: kindDeadline, events.Completed: kindTerminal, events.Failed: kindTerminal}
	for _, s := range flow.Steps {
		if s.Compensate != "" {
			kinds[s.Compensate] = kindCompensation
		}
		if s.Trigger != events.Requested && len(s.After) > 1 {
			kinds[s.Trigger] = kindFanIn
		} else if _, ok := kinds[s.Trigger]; !ok && s.Trigger != events.Requested && len(s.After) == 1 {
			kinds[s.Trigger] = kindGoAhead
		}
	}
	return kinds
}

// traceDecisions records what applying in decided, once its state st is stored, as spans
// under the delivery's span.
func traceDecisions(ctx context.Context, kinds map[events.Subject]string, in events.Envelope, st *State, decisions []decision) {
	parent := trace.SpanFromContext(ctx)
	if !parent.IsRecording() {
		return
	}
	tracer := parent.TracerProvider().Tracer(tracing.Scope)
	common := []attribute.KeyValue{tracing.CheckoutID.String(in.CheckoutID), tracing.EventID.String(in.ID), attrCause.String(string(in.Type)), attrStatus.String(string(st.Status))}
	if in.Type == events.Deadline {
		for name, step := range st.Steps {
			if step.EventID == in.ID && step.Status == StepFailed {
				_, span := tracer.Start(ctx, "coordinator deadline expired "+string(name),
					trace.WithAttributes(append(common, attrDecision.String("deadline-expiry"), tracing.Step.String(string(name)))...))
				span.End()
			}
		}
	}
	for _, d := range decisions {
		kind, ok := kinds[d.Type]
		if !ok {
			kind = kindOther
		}
		attrs := append(common[:len(common):len(common)], attrDecision.String(kind))
		if d.Step != "" {
			attrs = append(attrs, tracing.Step.String(string(d.Step)))
		}
		if d.Attempt > 0 {
			attrs = append(attrs, attrRedrive.Int(d.Attempt))
		}
		_, span := tracer.Start(ctx, "coordinator decide "+string(d.Type), trace.WithAttributes(attrs...))
		span.End()
	}
}
