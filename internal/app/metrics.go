package app

import (
	"context"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/metrics"
	"github.com/jetcheckout/jetcheckout/internal/tracing"
	"github.com/jetcheckout/jetcheckout/services/notifications"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// Every process serves its metrics on HEALTH_ADDR at /metrics, and `run` also on HTTP_ADDR
// (docs/OPERATIONS.md). What each process reports of JetStream: the consumers it consumes
// from, and, in `run` and the setup role (one per deployment), the streams.

// watchConsumers reports the backlog of the named processes' consumers on CHECKOUT.
func watchConsumers(reg prometheus.Registerer, js jetstream.JetStream, names ...string) {
	metrics.Register(reg, metrics.NewConsumers()).Watch(js, events.StreamCheckout, names...)
}

// measuredSender measures each message handed to the mail system (each attempt, the
// notifications service's own quick retries included): how long it took, and whether the
// mail server took it, refused it for good (an SMTP 5xx answer), or failed (a refusal for
// now, a network failure, a timeout, a full disk for the outbox). Each attempt is also a
// span, "email send <transport>", under the notifications runner's delivery span.
type measuredSender struct {
	next                notifications.Sender
	transport           string
	ok, refused, failed prometheus.Observer
}

// measureSender is a notifications.Config's WrapSender that measures into reg.
func measureSender(reg prometheus.Registerer) func(transport string, next notifications.Sender) notifications.Sender {
	duration := metrics.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: metrics.Namespace, Subsystem: "email",
		Name: "send_duration_seconds", Buckets: metrics.CallBuckets,
		Help: "Messages handed to the mail system, by transport (smtp, outbox) and outcome: ok, refused (an SMTP 5xx answer: not retried at once), failed (retried)."},
		[]string{"transport", "outcome"}))
	return func(transport string, next notifications.Sender) notifications.Sender {
		return &measuredSender{next: next, transport: transport, ok: duration.WithLabelValues(transport, "ok"),
			refused: duration.WithLabelValues(transport, "refused"), failed: duration.WithLabelValues(transport, "failed")}
	}
}

func (s *measuredSender) Send(ctx context.Context, m notifications.Message) error {
	began := time.Now()
	ctx, span := tracing.StartChild(ctx, "email send "+s.transport, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("jetcheckout.email.transport", s.transport), attribute.String("jetcheckout.email.message_id", m.ID)))
	err := s.next.Send(ctx, m)
	tracing.End(span, err)
	took := time.Since(began).Seconds()
	switch {
	case err == nil:
		s.ok.Observe(took)
	case notifications.Refused(err):
		s.refused.Observe(took)
	default:
		s.failed.Observe(took)
	}
	return err
}
