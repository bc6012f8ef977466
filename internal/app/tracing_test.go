package app

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/smtpsink"
	"github.com/jetcheckout/jetcheckout/internal/tracing"
	collector "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/proto"
)

// span is one span the in-test OTLP receiver took, with its service's name.
type span struct {
	service             string
	traceID, id, parent string
	name                string
	attrs               map[string]string
	published           []string // the event IDs of its "publish" events
	failed              bool
}

// otlpReceiver takes OTLP/HTTP protobuf POSTs on /v1/traces, as a collector would.
type otlpReceiver struct {
	*httptest.Server
	mu    sync.Mutex
	spans []span
}

func startOTLPReceiver(t *testing.T) *otlpReceiver {
	t.Helper()
	rcv := &otlpReceiver{}
	rcv.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		var req collector.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(body, &req)
		}
		if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" || err != nil {
			t.Errorf("OTLP receiver: %s %s: %v", r.Method, r.URL.Path, err)
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		rcv.take(&req)
		out, _ := proto.Marshal(&collector.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		_, _ = w.Write(out)
	}))
	t.Cleanup(rcv.Close)
	return rcv
}

func (rcv *otlpReceiver) take(req *collector.ExportTraceServiceRequest) {
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	for _, rs := range req.GetResourceSpans() {
		var service string
		for _, kv := range rs.GetResource().GetAttributes() {
			if kv.GetKey() == "service.name" {
				service = kv.GetValue().GetStringValue()
			}
		}
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				rcv.spans = append(rcv.spans, convert(service, s))
			}
		}
	}
}

func convert(service string, s *tracepb.Span) span {
	out := span{service: service, traceID: hex.EncodeToString(s.GetTraceId()), id: hex.EncodeToString(s.GetSpanId()),
		parent: hex.EncodeToString(s.GetParentSpanId()), name: s.GetName(), attrs: map[string]string{},
		failed: s.GetStatus().GetCode() == tracepb.Status_STATUS_CODE_ERROR}
	for _, kv := range s.GetAttributes() {
		out.attrs[kv.GetKey()] = kv.GetValue().GetStringValue() // the string ones: all the test reads
	}
	for _, e := range s.GetEvents() {
		if e.GetName() != "publish" {
			continue
		}
		for _, kv := range e.GetAttributes() {
			if kv.GetKey() == "jetcheckout.event_id" {
				out.published = append(out.published, kv.GetValue().GetStringValue())
			}
		}
	}
	return out
}

// trace is every span taken of the trace with ID id.
func (rcv *otlpReceiver) trace(id string) []span {
	rcv.mu.Lock()
	defer rcv.mu.Unlock()
	var out []span
	for _, s := range rcv.spans {
		if s.traceID == id {
			out = append(out, s)
		}
	}
	return out
}

// TestTracesFollowACheckout runs checkouts through the whole system with spans exported to
// an in-test OTLP receiver: one started over HTTP that completes (its confirmation sent over
// SMTP), and one published straight to checkout.requested whose card is declined. Each is
// one trace: a span per step and per coordinator decision, each handler's span the child of
// the span that published its input, the Stripe and SMTP calls children of their step's
// span, and the declined checkout's compensation in its trace.
func TestTracesFollowACheckout(t *testing.T) {
	rcv := startOTLPReceiver(t)
	mails, err := smtpsink.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(mails.Close)
	var carrierDown atomic.Bool
	carrierDown.Store(true)
	r := startRig(t, t.TempDir(), nil, withMaxDeliver(2),
		withFault(events.ServiceShipping, while(&carrierDown, events.FulfilmentRequested, "co-trace-redrive")),
		func(c *Config) {
			c.Tracing = tracing.Config{Endpoint: rcv.URL + "/v1/traces"}
			c.SMTPAddr = mails.Addr
			c.HTTPAddr = "127.0.0.1:0"
		})
	a, err := startAPI(context.Background(), r.Config, testLogger(), r.NC, r.JS, r.Keys, nil, r.Ready, nil)
	if err != nil {
		t.Fatal(err)
	}
	tee := events.CartItem{ProductID: "tee-jetstream", Quantity: 1}

	// Over HTTP: the API starts the trace.
	cart := createCart(t, r.System, "USD", tee)
	resp, err := http.Post(a.URL+"/checkout/process", "application/json", bytes.NewReader(checkoutRequest("", cart.ID, "pm_card_visa", california)))
	if err != nil {
		t.Fatal(err)
	}
	var accepted struct {
		CheckoutID string `json:"checkout_id"`
	}
	err = json.NewDecoder(resp.Body).Decode(&accepted)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST /checkout/process: %d %v", resp.StatusCode, err)
	}
	completed := accepted.CheckoutID
	r.completed(t, completed)

	// Straight to the stream, with no traceparent: its first consumers start the trace.
	r.checkout(t, "co-trace-declined", "pm_card_chargeDeclined", tee)
	r.failed(t, "co-trace-declined", events.CodeCardDeclined, events.StepProcessPayment)
	// A label that failed, re-drived once the carrier is back: the re-drive's request has no
	// traceparent (the coordinator's endpoint answers it), and joins the checkout's trace.
	r.checkout(t, "co-trace-redrive", "pm_card_visa", tee)
	if done := completedOf(t, r.watch, "co-trace-redrive"); !done.NeedsAttention {
		t.Fatalf("co-trace-redrive completed with %+v, want it flagged", done)
	}
	carrierDown.Store(false)
	if _, err := redrive(t, r.System, "co-trace-redrive", "ops", "the carrier is back"); err != nil {
		t.Fatal(err)
	}
	settledOf(t, r.watch, "co-trace-redrive", 1)
	if len(mails.Mails()) == 0 {
		t.Error("the mail server took no email")
	}

	// A graceful stop sends every span still buffered.
	if err := a.Stop(); err != nil {
		t.Fatal(err)
	}
	r.Stop()

	ok := rcv.trace(tracing.CheckoutTraceID(completed).String())
	checkTrace(t, completed, ok, true)
	if roots := spansWhere(ok, func(s span) bool { return s.parent == "" }); len(roots) != 1 || roots[0].name != "api POST /checkout/process" {
		t.Errorf("checkout over HTTP: want one root, the API's; got %v", names(roots))
	}
	for _, step := range events.Checkout.Steps {
		if len(spansWhere(ok, func(s span) bool {
			return s.attrs["jetcheckout.step"] == string(step.Name) && s.service == step.Service
		})) == 0 {
			t.Errorf("checkout over HTTP: no span of step %s (%s)", step.Name, step.Service)
		}
	}
	for _, d := range []events.Subject{events.PaymentRequested, events.OrderRequested, events.FulfilmentRequested, events.Completed} {
		wantChildOf(t, ok, "coordinator decide "+string(d), "coordinator handle ")
	}
	wantChildOf(t, ok, "stripe POST /v1/payment_intents", "payments handle "+string(events.PaymentRequested))
	wantChildOf(t, ok, "email send smtp", "notifications handle "+string(events.FulfilmentRequested))
	services := map[string]bool{}
	for _, s := range ok {
		services[s.service] = true
	}
	if len(services) < len(events.Services)+1 {
		t.Errorf("checkout over HTTP: spans of services %v, want every service's and the API's", services)
	}

	declined := rcv.trace(tracing.CheckoutTraceID("co-trace-declined").String())
	checkTrace(t, "co-trace-declined", declined, false)
	for _, s := range spansWhere(declined, func(s span) bool { return s.parent == "" }) {
		if !strings.HasSuffix(s.name, " handle "+string(events.Requested)) {
			t.Errorf("declined checkout: root span %q: only the request's consumers start its trace", s.name)
		}
	}
	payment, _ := events.Checkout.Step(events.StepProcessPayment)
	wantChildOf(t, declined, "coordinator decide "+string(events.PaymentRequested), "coordinator handle ")
	if charge := wantChildOf(t, declined, "stripe POST /v1/payment_intents", "payments handle "+string(events.PaymentRequested)); charge != nil && !charge.failed {
		t.Error("declined checkout: the declined charge's span is not marked failed")
	}
	undone := 0
	for _, step := range events.Checkout.Steps {
		if step.Compensate == "" || len(spansWhere(declined, func(s span) bool { return s.name == "coordinator decide "+string(step.Compensate) })) == 0 {
			continue
		}
		undone++
		if step.Compensate != payment.Compensate {
			wantChildOf(t, declined, step.Service+" handle "+string(step.Compensate), "coordinator handle ")
		}
	}
	reserve, _ := events.Checkout.Step(events.StepReserveInventory)
	wantChildOf(t, declined, "coordinator decide "+string(reserve.Compensate), "coordinator handle "+string(payment.Failed))
	wantChildOf(t, declined, "inventory handle "+string(reserve.Compensate), "coordinator handle ")
	wantChildOf(t, declined, "coordinator decide "+string(events.Failed), "coordinator handle ")
	if undone == 0 {
		t.Error("declined checkout: no compensation decided in its trace")
	}

	redriven := rcv.trace(tracing.CheckoutTraceID("co-trace-redrive").String())
	retried := spansWhere(redriven, func(s span) bool {
		return s.name == "shipping handle "+string(events.FulfilmentRequested) && s.attrs["jetcheckout.outcome"] == "retry"
	})
	if len(retried) == 0 || !retried[0].failed {
		t.Errorf("re-driven checkout: no failed span of the label's retried attempts (%v)", names(redriven))
	}
	requests := spansWhere(redriven, func(s span) bool { return s.name == "coordinator handle "+string(events.RedriveRequested) })
	if len(requests) != 1 || requests[0].parent != "" {
		t.Fatalf("re-drive: its request's spans %v, want one root (it came without a traceparent)", requests)
	}
	request := requests[0]
	for _, s := range spansWhere(redriven, func(s span) bool { return s.attrs["jetcheckout.cause"] == string(events.RedriveRequested) }) {
		if s.parent != request.id || s.name != "coordinator decide "+string(events.FulfilmentRequested) {
			t.Errorf("re-drive: decision %q under %s, want the go-ahead of the fulfilment again under the request's span", s.name, s.parent)
		}
	}
	wantChildOf(t, redriven, "coordinator decide "+string(events.FulfilmentRequested), "coordinator handle ")
	labelled := spansWhere(redriven, func(s span) bool {
		return s.name == "shipping handle "+string(events.FulfilmentRequested) && s.attrs["jetcheckout.outcome"] == "ok" && !s.failed
	})
	if len(labelled) != 1 {
		t.Fatalf("re-drive: spans of the label made %v, want one", labelled)
	}
	if parents := spansWhere(redriven, func(p span) bool { return p.id == labelled[0].parent }); len(parents) != 1 ||
		!slices.Contains(parents[0].published, labelled[0].attrs["jetcheckout.event_id"]) {
		t.Errorf("re-drive: the label's span is under %v, want the span that published its go-ahead again", names(parents))
	}
}

// checkTrace checks a checkout's spans: there are some; each handler's span names the
// checkout and is the child of the span that published its input, in the same trace;
// nothing failed unless declined.
func checkTrace(t *testing.T, checkoutID string, spans []span, allOK bool) {
	t.Helper()
	if len(spans) == 0 {
		t.Fatalf("checkout %s: no spans in its trace %s", checkoutID, tracing.CheckoutTraceID(checkoutID))
	}
	byID := map[string]span{}
	for _, s := range spans {
		byID[s.id] = s
	}
	for _, s := range spans {
		if !strings.Contains(s.name, " handle ") {
			continue
		}
		if s.attrs["jetcheckout.checkout_id"] != checkoutID || s.attrs["jetcheckout.outcome"] != "ok" {
			t.Errorf("checkout %s: span %q names checkout %q, outcome %q", checkoutID, s.name, s.attrs["jetcheckout.checkout_id"], s.attrs["jetcheckout.outcome"])
		}
		if s.parent == "" {
			continue // a root: checked by the caller
		}
		parent, found := byID[s.parent]
		if !found {
			t.Errorf("checkout %s: span %q: its parent %s is not in the trace", checkoutID, s.name, s.parent)
			continue
		}
		if !slices.Contains(parent.published, s.attrs["jetcheckout.event_id"]) {
			t.Errorf("checkout %s: span %q (event %s) is a child of %q, which did not publish its input (it published %v)",
				checkoutID, s.name, s.attrs["jetcheckout.event_id"], parent.name, parent.published)
		}
		if allOK && s.failed {
			t.Errorf("checkout %s: span %q failed", checkoutID, s.name)
		}
	}
}

// wantChildOf finds the span named name and checks that its parent's name begins with
// parentPrefix.
func wantChildOf(t *testing.T, spans []span, name, parentPrefix string) *span {
	t.Helper()
	found := spansWhere(spans, func(s span) bool { return s.name == name })
	if len(found) == 0 {
		t.Errorf("no span %q in the trace (spans: %v)", name, names(spans))
		return nil
	}
	for _, s := range found {
		parents := spansWhere(spans, func(p span) bool { return p.id == s.parent })
		if len(parents) != 1 || !strings.HasPrefix(parents[0].name, parentPrefix) {
			t.Errorf("span %q: parent %v, want a span %q...", name, names(parents), parentPrefix)
		}
	}
	return &found[0]
}

func spansWhere(spans []span, keep func(span) bool) []span {
	var out []span
	for _, s := range spans {
		if keep(s) {
			out = append(out, s)
		}
	}
	return out
}

func names(spans []span) []string {
	out := make([]string, len(spans))
	for i, s := range spans {
		out[i] = s.service + ": " + s.name
	}
	slices.Sort(out)
	return out
}
