package app

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/metrics"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/jetcheckout/jetcheckout/internal/stripeemu"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scraped is one scrape of a /metrics endpoint, parsed.
type scraped struct {
	raw      []byte
	families map[string]*dto.MetricFamily
}

// scrapeMetrics GETs a /metrics URL and parses Prometheus's text format.
func scrapeMetrics(t *testing.T, url string) scraped {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %v\n%s", url, resp.StatusCode, err, raw)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("GET %s: not Prometheus's text format: %v", url, err)
	}
	return scraped{raw: raw, families: families}
}

// value is the value of family name's series whose labels are exactly labels (pairs of name
// and value): a counter's or a gauge's value, a histogram's count. Absent: -1.
func (s scraped) value(name string, labels ...string) float64 {
	f := s.families[name]
	if f == nil {
		return -1
	}
	for _, m := range f.GetMetric() {
		if !labelsAre(m, labels) {
			continue
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue()
		case m.Gauge != nil:
			return m.Gauge.GetValue()
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount())
		}
	}
	return -1
}

// sum adds the values of family name's series whose labels include labels.
func (s scraped) sum(name string, labels ...string) float64 {
	var total float64
	for _, m := range s.families[name].GetMetric() {
		if includes(m, labels) {
			total += m.GetCounter().GetValue()
		}
	}
	return total
}

func labelsAre(m *dto.Metric, labels []string) bool {
	return len(m.GetLabel()) == len(labels)/2 && includes(m, labels)
}

func includes(m *dto.Metric, labels []string) bool {
	for i := 0; i+1 < len(labels); i += 2 {
		if !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == labels[i] && l.GetValue() == labels[i+1] }) {
			return false
		}
	}
	return true
}

// serveMetrics serves sys's metrics as HEALTH_ADDR does and returns their URL.
func serveMetrics(t *testing.T, sys *System) string {
	t.Helper()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	h := &health{metrics: metrics.Handler(sys.Metrics)}
	h.set(sys.Ready)
	if err := serveHealth(t.Context(), addr, h, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	return "http://" + addr + metrics.Path
}

// TestMetricsCountWhatHappened runs checkouts through the whole system, scrapes /metrics
// over HTTP and checks the counts against what happened to them: two complete, a card is
// declined (its reservation released), a cart wants more than the stock, Stripe answers 503
// once to a payment (retried, completed), and the shipping label keeps failing for one
// (retried twice, given up into DEADLETTER, completed for an operator's attention).
func TestMetricsCountWhatHappened(t *testing.T) {
	var flaky atomic.Bool
	faults := func(c stripeemu.Call) stripeemu.Fault {
		if c.Method == http.MethodPost && c.Path == "/v1/payment_intents" && c.Params.Get("metadata[checkout_id]") == "co-m-flaky" && flaky.CompareAndSwap(false, true) {
			return stripeemu.Fault{Status: http.StatusServiceUnavailable}
		}
		return stripeemu.Fault{}
	}
	r := startRig(t, t.TempDir(), faults, withMaxDeliver(3),
		withFault(events.ServiceShipping, failingFor(events.FulfilmentRequested, "co-m-noship", errors.New("carrier API unavailable"))))
	url := serveMetrics(t, r.System)
	hoodie := stock(t, r.System, "hoodie-saga")

	tee := events.CartItem{ProductID: "tee-jetstream", Quantity: 1}
	r.checkout(t, "co-m-ok-1", "pm_card_visa", tee)
	r.checkout(t, "co-m-ok-2", "pm_card_visa", tee)
	r.checkout(t, "co-m-declined", "pm_card_chargeDeclined", tee)
	r.checkout(t, "co-m-nostock", "pm_card_visa", events.CartItem{ProductID: "hoodie-saga", Quantity: hoodie.Available + 1})
	r.checkout(t, "co-m-flaky", "pm_card_visa", tee)
	r.checkout(t, "co-m-noship", "pm_card_visa", tee)
	for _, id := range []string{"co-m-ok-1", "co-m-ok-2", "co-m-flaky"} {
		if done := r.completed(t, id); done.NeedsAttention || len(done.Warnings) > 0 {
			t.Fatalf("%s completed with %+v", id, done)
		}
	}
	if done := r.completed(t, "co-m-noship"); !done.NeedsAttention {
		t.Fatalf("co-m-noship completed with %+v, want it flagged", done)
	}
	r.failed(t, "co-m-declined", events.CodeCardDeclined, events.StepProcessPayment)
	r.failed(t, "co-m-nostock", events.CodeInsufficientStock, events.StepReserveInventory)
	deadLetter(t, r.env, events.ServiceShipping, string(events.FulfilmentRequested))
	for _, name := range Services {
		r.env.WaitIdle(t, name)
	}
	emails := func() int {
		files, _ := os.ReadDir(r.Config.Outbox())
		n := 0
		for _, f := range files {
			if strings.HasSuffix(f.Name(), ".eml") {
				n++
			}
		}
		return n
	}

	type want struct {
		name   string
		labels []string
		value  func() float64 // the count that happened
	}
	is := func(v float64) func() float64 { return func() float64 { return v } }
	wants := []want{
		{"jetcheckout_checkouts_started_total", nil, is(6)},
		{"jetcheckout_checkouts_completed_total", []string{"outcome", "ok"}, is(3)},
		{"jetcheckout_checkouts_completed_total", []string{"outcome", "warning"}, is(0)},
		{"jetcheckout_checkouts_completed_total", []string{"outcome", "needs_attention"}, is(1)},
		{"jetcheckout_checkouts_failed_total", []string{"step", string(events.StepProcessPayment), "code", events.CodeCardDeclined}, is(1)},
		{"jetcheckout_checkouts_failed_total", []string{"step", string(events.StepReserveInventory), "code", events.CodeInsufficientStock}, is(1)},
		{"jetcheckout_checkout_duration_seconds", []string{"outcome", "completed"}, is(4)},
		{"jetcheckout_checkout_duration_seconds", []string{"outcome", "failed"}, is(2)},
		// Every checkout but the one out of stock reached the payment; the 503 made one retry.
		{"jetcheckout_handled_total", []string{"service", "payments", "subject", string(events.PaymentRequested), "outcome", "ok"}, is(5)},
		{"jetcheckout_handled_total", []string{"service", "payments", "subject", string(events.PaymentRequested), "outcome", "retry"}, is(1)},
		{"jetcheckout_stripe_request_duration_seconds", []string{"operation", "POST /v1/payment_intents", "code", "503"}, is(1)},
		{"jetcheckout_stripe_request_duration_seconds", []string{"operation", "POST /v1/payment_intents", "code", "402"}, is(1)},
		{"jetcheckout_stripe_request_duration_seconds", []string{"operation", "POST /v1/payment_intents", "code", "200"}, is(4)},
		// MaxDeliver 3: two retries, then the step is given up and its trigger dead-lettered.
		{"jetcheckout_handled_total", []string{"service", "shipping", "subject", string(events.FulfilmentRequested), "outcome", "retry"}, is(2)},
		{"jetcheckout_steps_given_up_total", []string{"service", "shipping", "step", string(events.StepCreateLabel), "code", events.CodeRetriesExhausted}, is(1)},
		{"jetcheckout_dead_letters_total", []string{"service", "shipping", "subject", string(events.FulfilmentRequested)}, is(1)},
		{"jetcheckout_dead_letters_stored", []string{"service", "shipping"}, is(1)},
		{"jetcheckout_dead_letters_stored", []string{"service", "payments"}, is(0)},
		// The declined card's reservation was released; nothing else was undone.
		{"jetcheckout_compensations_total", []string{"service", "inventory", "step", string(events.StepReserveInventory), "outcome", "ok"}, is(1)},
		{"jetcheckout_compensations_total", []string{"service", "payments", "step", string(events.StepProcessPayment), "outcome", "ok"}, is(0)},
		{"jetcheckout_deadline_expiries_total", []string{"step", string(events.StepProcessPayment)}, is(0)},
		{"jetcheckout_email_send_duration_seconds", []string{"transport", "outbox", "outcome", "ok"}, func() float64 { return float64(emails()) }},
	}
	for _, name := range Services {
		wants = append(wants,
			want{"jetcheckout_consumer_pending_messages", []string{"stream", events.StreamCheckout, "consumer", name}, is(0)},
			want{"jetcheckout_consumer_ack_pending_messages", []string{"stream", events.StreamCheckout, "consumer", name}, is(0)},
			want{"jetcheckout_lanes", []string{"service", name}, is(float64(r.Config.concurrency(name)))},
			want{"jetcheckout_messages_held", []string{"service", name}, is(0)})
	}
	// The counts follow the answers to the server, which WaitIdle saw: a scrape may come
	// a moment before the last of them.
	var s scraped
	for deadline := time.Now().Add(wait); ; time.Sleep(100 * time.Millisecond) {
		s = scrapeMetrics(t, url)
		var wrong []string
		for _, w := range wants {
			if got, want := s.value(w.name, w.labels...), w.value(); got != want {
				wrong = append(wrong, fmt.Sprintf("%s%v = %v, want %v", w.name, w.labels, got, want))
			}
		}
		if len(wrong) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the metrics do not count what happened:\n%s", strings.Join(wrong, "\n"))
		}
	}

	// Each delivery answered is timed once.
	for _, m := range s.families["jetcheckout_handler_duration_seconds"].GetMetric() {
		var service, subject string
		for _, l := range m.GetLabel() {
			switch l.GetName() {
			case "service":
				service = l.GetValue()
			case "subject":
				subject = l.GetValue()
			}
		}
		if handled := s.sum("jetcheckout_handled_total", "service", service, "subject", subject); float64(m.GetHistogram().GetSampleCount()) != handled {
			t.Errorf("%s %s: %d deliveries timed, %v answered", service, subject, m.GetHistogram().GetSampleCount(), handled)
		}
	}
	if n := s.value("jetcheckout_handled_total", "service", "coordinator", "subject", string(events.Requested), "outcome", "ok"); n != 6 {
		t.Errorf("the coordinator handled %v requests, want 6", n)
	}
	if s.value("go_goroutines") <= 0 || s.value("process_cpu_seconds_total") < 0 {
		t.Error("no Go runtime or process metrics")
	}
	if bytes.Contains(s.raw, []byte("co-m-")) {
		t.Error("a checkout ID is in a label")
	}
	doc, err := os.ReadFile("../../docs/OPERATIONS.md")
	if err != nil {
		t.Fatal(err)
	}
	for name := range s.families {
		if strings.HasPrefix(name, metrics.Namespace+"_") && !bytes.Contains(doc, []byte("| `"+name+"` |")) {
			t.Errorf("docs/OPERATIONS.md does not list %s", name)
		}
	}
	problems, err := promlint.New(bytes.NewReader(s.raw)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, metrics.Namespace+"_") {
			t.Errorf("promlint: %s: %s", p.Metric, p.Text)
		}
	}
}

// `jetcheckout run` serves its metrics on HTTP_ADDR, beside the API, and on HEALTH_ADDR.
func TestRunServesMetrics(t *testing.T) {
	api := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	health := net.JoinHostPort("127.0.0.1", strconv.Itoa(freePort(t)))
	env := map[string]string{"DATA_DIR": t.TempDir(), "NATS_LISTEN": "127.0.0.1:-1", "HTTP_ADDR": api, "HEALTH_ADDR": health,
		"STRIPE_EMULATOR_LISTEN": "127.0.0.1:0", "LOG_LEVEL": "warn"}
	runUntilBanner(t, env, func() {
		for _, base := range []string{"http://" + api, "http://" + health} {
			// A runner reports its lanes once it consumes, which may be just after the banner.
			var s scraped
			natstest.Eventually(t, wait, func() bool {
				s = scrapeMetrics(t, base+metrics.Path)
				return s.value("jetcheckout_lanes", "service", "coordinator") > 0
			}, "%s: the coordinator's lanes are never reported", base)
			for _, name := range append(slices.Clone(Services), APIName) {
				if s.value("jetcheckout_consumer_pending_messages", "stream", events.StreamCheckout, "consumer", name) < 0 {
					t.Errorf("%s: no backlog of consumer %s", base, name)
				}
			}
			if s.value("jetcheckout_stream_messages", "stream", events.StreamCheckout) < 0 || s.value("jetcheckout_lanes", "service", "coordinator") <= 0 ||
				s.value("jetcheckout_checkouts_started_total") != 0 {
				t.Errorf("%s: the process's metrics are missing:\n%s", base, s.raw)
			}
		}
	})
}
