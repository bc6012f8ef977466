package coordinator

import (
	"sync"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// The coordinator's metrics (docs/OPERATIONS.md): its terminal decisions, each counted once
// by the coordinator that made it, when its state change is stored. Times are the events':
// a checkout's duration runs from its earliest event (the request) to its terminal event.

// checkoutBuckets span a checkout from tens of milliseconds to the longest it can wait for
// a person: 3-D Secure (10 minutes by default) or a fraud review.
var checkoutBuckets = []float64{0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600}

// Completed checkouts' outcomes.
const (
	completedOK             = "ok"
	completedWarning        = "warning"         // a step failed without failing the checkout (the confirmation email)
	completedNeedsAttention = "needs_attention" // paid and ordered, an operator has to look (no label, a lapsed reservation)
)

// maxCodes bounds the failure codes named in labels: codes are the events' constants, but a
// stream may hold events of other releases; past this many, a code counts as "other".
const maxCodes = 64

type meters struct {
	started                           prometheus.Counter
	completed                         map[string]prometheus.Counter
	failed, expiries                  *prometheus.CounterVec
	completedDuration, failedDuration prometheus.Observer
	codesMu                           sync.Mutex
	codes                             map[string]bool
	flow                              events.Flow
}

func newMeters(reg prometheus.Registerer, flow events.Flow) *meters {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metrics.Namespace, Name: name, Help: help}, labels))
	}
	completed := counter("checkouts_completed_total",
		"Checkouts the coordinator completed: ok, warning (a step failed without failing it: the confirmation email), needs_attention (an operator must look: no shipping label, a lapsed reservation).",
		"outcome")
	duration := metrics.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: metrics.Namespace, Name: "checkout_duration_seconds",
		Help:    "From a checkout's request to its terminal event (completed or failed), by the events' times.",
		Buckets: checkoutBuckets}, []string{"outcome"}))
	m := &meters{
		started: metrics.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{Namespace: metrics.Namespace, Name: "checkouts_started_total",
			Help: "Checkout requests the coordinator took up."})),
		completed: map[string]prometheus.Counter{completedOK: completed.WithLabelValues(completedOK),
			completedWarning: completed.WithLabelValues(completedWarning), completedNeedsAttention: completed.WithLabelValues(completedNeedsAttention)},
		failed: counter("checkouts_failed_total", "Checkouts the coordinator failed, by the step that failed them and its failure code.", "step", "code"),
		expiries: counter("deadline_expiries_total",
			"Steps the coordinator failed when their deadline timer fired with no answer (deadline_exceeded; they are undone).", "step"),
		completedDuration: duration.WithLabelValues("completed"),
		failedDuration:    duration.WithLabelValues("failed"),
		codes:             map[string]bool{},
		flow:              flow,
	}
	for _, s := range flow.Steps {
		m.expiries.WithLabelValues(string(s.Name)) // listed at 0 from the start
	}
	return m
}

// decided counts what applying in decided, once its state st is stored.
func (m *meters) decided(in events.Envelope, st *State, decisions []decision) {
	if in.Type == events.Requested {
		m.started.Inc()
	}
	if in.Type == events.Deadline {
		for name, step := range st.Steps {
			if step.EventID == in.ID && step.Status == StepFailed {
				m.expiries.WithLabelValues(m.stepLabel(name)).Inc()
			}
		}
	}
	for _, d := range decisions {
		took := st.EndedAt.Sub(st.StartedAt).Seconds()
		switch d.Type {
		case events.Completed:
			outcome := completedOK
			switch {
			case st.NeedsAttention:
				outcome = completedNeedsAttention
			case len(st.Warnings) > 0:
				outcome = completedWarning
			}
			m.completed[outcome].Inc()
			m.completedDuration.Observe(took)
		case events.Failed:
			var step events.StepName
			var code string
			if st.Failure != nil {
				step, code = st.Failure.Step, st.Failure.Code
			}
			m.failed.WithLabelValues(m.stepLabel(step), m.codeLabel(code)).Inc()
			m.failedDuration.Observe(took)
		}
	}
}

// stepLabel is a step of the flow, or "other".
func (m *meters) stepLabel(name events.StepName) string {
	if _, ok := m.flow.Step(name); ok {
		return string(name)
	}
	return "other"
}

// codeLabel is code, while the codes seen stay few.
func (m *meters) codeLabel(code string) string {
	m.codesMu.Lock()
	defer m.codesMu.Unlock()
	if !m.codes[code] && len(m.codes) >= maxCodes {
		return "other"
	}
	m.codes[code] = true
	return code
}
