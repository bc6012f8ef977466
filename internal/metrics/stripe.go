package metrics

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// CallBuckets cover a call to the outside world: a few milliseconds to the emulator, a few
// hundred to Stripe, up to the clients' timeouts (20 s to Stripe, 10 s per SMTP attempt).
var CallBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20}

// StripeTransport measures every request the payments service makes to Stripe's API: its
// operation (method and path, IDs left out) and the status Stripe answered ("error" when
// none came: a network failure or the client's timeout).
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
	resp, err := t.next.RoundTrip(req)
	code := "error"
	if err == nil {
		code = strconv.Itoa(resp.StatusCode)
	}
	t.duration.WithLabelValues(stripeOperation(req.Method, req.URL.Path), code).Observe(time.Since(began).Seconds())
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
