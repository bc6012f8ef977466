package metrics

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/jetcheckout/jetcheckout/internal/tracing"
	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// CallBuckets cover a call to the outside world: a few milliseconds to the emulator, a few
// hundred to Stripe, up to the clients' timeouts (20 s to Stripe, 10 s per SMTP attempt).
var CallBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20}

// StripeTransport measures every request the payments service makes to Stripe's API: its
// operation (method and path, IDs left out) and the status Stripe answered ("error" when
// none came: a network failure or the client's timeout). Each request is also a span,
// "stripe <operation>", the child of the span in the request's context (the payments
// runner's delivery), made by that span's provider: none when it records nothing.
type StripeTransport struct {
	next     http.RoundTripper
	duration *prometheus.HistogramVec
}

// NewStripeTransport measures the requests next makes (nil: http.DefaultTransport), into reg.
func NewStripeTransport(reg prometheus.Registerer, next http.RoundTripper) *StripeTransport {
	if next == nil {
		next = http.DefaultTransport
	}
	duration := Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: Namespace, Subsystem: "stripe",
		Name: "request_duration_seconds", Buckets: CallBuckets,
		Help: `Requests to Stripe's API by operation ("POST /v1/payment_intents", IDs as {id}) and the HTTP status it answered ("error": no answer). 402 is a declined card.`},
		[]string{"operation", "code"}))
	return &StripeTransport{next: next, duration: duration}
}

func (t *StripeTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	began := time.Now()
	operation := stripeOperation(req.Method, req.URL.Path)
	_, span := tracing.StartChild(req.Context(), "stripe "+operation, trace.WithSpanKind(trace.SpanKindClient),
		trace.WithAttributes(attribute.String("http.request.method", req.Method), attribute.String("server.address", req.URL.Host),
			attribute.String("jetcheckout.stripe.operation", operation)))
	resp, err := t.next.RoundTrip(req)
	code, failed := "error", err
	if err == nil {
		code = strconv.Itoa(resp.StatusCode)
		if span.IsRecording() {
			span.SetAttributes(attribute.Int("http.response.status_code", resp.StatusCode))
			if resp.StatusCode >= 400 { // 402: a declined card
				failed = fmt.Errorf("stripe answered %s", resp.Status)
			}
		}
	}
	tracing.End(span, failed)
	t.duration.WithLabelValues(operation, code).Observe(time.Since(began).Seconds())
	return resp, err
}

// stripeOperation is a request's method and path with the object's ID replaced, a bounded
// label: /v1/payment_intents/pi_3Q.../cancel is "POST /v1/payment_intents/{id}/cancel".
// Anything else the client might ask is "other".
func stripeOperation(method, path string) string {
	parts := strings.Split(strings.Trim(path, "/"), "/")
	if len(parts) < 2 || len(parts) > 4 || parts[0] != "v1" || !word(parts[1]) {
		return method + " other"
	}
	if len(parts) > 2 && parts[2] != "search" {
		parts[2] = "{id}"
	}
	if len(parts) == 4 && !word(parts[3]) {
		return method + " other"
	}
	return method + " /" + strings.Join(parts, "/")
}

// word is a path segment that names a collection or an action, not an object.
func word(s string) bool {
	return s != "" && len(s) <= 32 && strings.Trim(s, "abcdefghijklmnopqrstuvwxyz_") == "" && !strings.Contains(s, "__")
}
