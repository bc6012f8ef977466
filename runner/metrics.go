package runner

import (
	"context"
	"sync"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// The runners' metrics (docs/OPERATIONS.md): every series carries the runner's service, the
// subject a message came on (a step's trigger, an undo, an outcome for the coordinator), or
// a step of the flow; never anything of one checkout. One runner resolves its series when
// it is made, so counting a message costs no label lookup.

// handlerBuckets span a message's handling: a commit and a publish in a few milliseconds, a
// call to Stripe in hundreds, up to HandlerTimeout.
var handlerBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}

// Outcomes of a delivery, as the runner answered it.
const (
	outcomeOK       = "ok"       // acknowledged: handled (or a copy dropped, or a step given up with its failure published)
	outcomeRetry    = "retry"    // delivered again later: a transient error
	outcomeRejected = "rejected" // terminated: kept in DEADLETTER, announced on checkout.rejected
	outcomeFailed   = "failed"
)

// givenUpCodes are the failures a runner gives a step of its own accord.
var givenUpCodes = []string{events.CodeRetriesExhausted, events.CodeDeadlineExceeded, events.CodeStepFailed}

// unrouted labels a message on a subject the runner has no route for (its consumer's filter
// should let none through).
const unrouted = "unrouted"

// vectors are the metric families the runners of one registry share.
type vectors struct {
	handled, deadLetters, stuck, givenUp, compensations *prometheus.CounterVec
	duration                                            *prometheus.HistogramVec
	lanes                                               *laneCollector
}

func newVectors(reg prometheus.Registerer) vectors {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		return metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metrics.Namespace, Name: name, Help: help}, labels))
	}
	return vectors{
		handled: counter("handled_total",
			"Deliveries a runner finished, by how it answered: ok (acknowledged), retry (delivered again later), rejected (kept in DEADLETTER).",
			"service", "subject", "outcome"),
		deadLetters: counter("dead_letters_total", "Messages a runner copied to DEADLETTER: rejected inputs and the triggers of steps it gave up.",
			"service", "subject"),
		stuck: counter("stuck_total", "Announcements on checkout.stuck: an undo or a settlement that keeps failing (it is still retried).",
			"service", "subject"),
		givenUp: counter("steps_given_up_total",
			"Steps a runner failed of its own accord: started after or tried past their deadline (deadline_exceeded), kept failing (retries_exhausted), refused their input for good (step_failed).",
			"service", "step", "code"),
		compensations: counter("compensations_total", "Attempts to undo a step (refund, release, cancel): ok, or failed (retried; never given up).",
			"service", "step", "outcome"),
		duration: metrics.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: metrics.Namespace, Name: "handler_duration_seconds",
			Help:    "How long a runner took over one delivery: decoding, its calls (Stripe, SMTP), the handler, the commit and the publish of its outputs, up to its answer.",
			Buckets: handlerBuckets}, []string{"service", "subject"})),
		lanes: metrics.Register(reg, newLaneCollector()),
	}
}

// meters are one runner's series.
type meters struct {
	vectors
	service  string
	routes   map[string]*routeMeters
	unrouted *routeMeters
}

// routeMeters are the series of one route.
type routeMeters struct {
	ok, retry, rejected, deadLetters, stuck prometheus.Counter
	duration                                prometheus.Observer
	undone, undoFailed                      prometheus.Counter // nil unless the route undoes a step
}

func newMeters(reg prometheus.Registerer, flow events.Flow, service string, routes []Route) *meters {
	m := &meters{vectors: newVectors(reg), service: service, routes: map[string]*routeMeters{}}
	m.unrouted = m.route(unrouted)
	for _, rt := range routes {
		rm := m.route(string(rt.Subject))
		if step, ok := flow.TriggeredBy(service, rt.Subject); ok {
			for _, code := range givenUpCodes {
				m.givenUp.WithLabelValues(service, string(step.Name), code) // listed at 0 from the start
			}
		}
		for _, step := range flow.Steps {
			if step.Service == service && step.Compensate == rt.Subject {
				rm.undone = m.compensations.WithLabelValues(service, string(step.Name), outcomeOK)
				rm.undoFailed = m.compensations.WithLabelValues(service, string(step.Name), outcomeFailed)
			}
		}
		m.routes[string(rt.Subject)] = rm
	}
	return m
}

func (m *meters) route(subject string) *routeMeters {
	handled := func(outcome string) prometheus.Counter { return m.handled.WithLabelValues(m.service, subject, outcome) }
	return &routeMeters{ok: handled(outcomeOK), retry: handled(outcomeRetry), rejected: handled(outcomeRejected),
		deadLetters: m.deadLetters.WithLabelValues(m.service, subject), stuck: m.stuck.WithLabelValues(m.service, subject),
		duration: m.duration.WithLabelValues(m.service, subject)}
}

func (m *meters) of(subject string) *routeMeters {
	if rm, ok := m.routes[subject]; ok {
		return rm
	}
	return m.unrouted
}

// metered is the policy that times each delivery and counts it by how it was answered.
func (r *Runner) metered(next deliveryHandler) deliveryHandler {
	return func(ctx context.Context, d *delivery) error {
		began := time.Now()
		err := next(ctx, d)
		r.meters.delivered(d.msg, time.Since(began))
		return err
	}
}

// delivered counts a delivery the runner answered after took; one left unanswered (a
// simulated crash) is not counted.
func (m *meters) delivered(msg *heldMsg, took time.Duration) {
	rm := m.of(msg.Subject())
	switch msg.answer {
	case answerNone:
		return
	case answerAck:
		rm.ok.Inc()
		if rm.undone != nil {
			rm.undone.Inc()
		}
	case answerNak:
		rm.retry.Inc()
	case answerTerm:
		rm.rejected.Inc()
	}
	if rm.undoFailed != nil && msg.answer != answerAck {
		rm.undoFailed.Inc()
	}
	rm.duration.Observe(took.Seconds())
}

func (m *meters) gaveUp(step events.StepName, code string) {
	m.givenUp.WithLabelValues(m.service, string(step), code).Inc()
}

// answer is how a held message was answered.
type answer uint8

const (
	answerNone answer = iota
	answerAck
	answerNak
	answerTerm
)

// laneCollector reports, when scraped, the lanes of the runners running in the process.
type laneCollector struct {
	mu      sync.Mutex
	running map[*lanes]string // the service of each

	lanes, busy, held *prometheus.Desc
}

func newLaneCollector() *laneCollector {
	desc := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(metrics.Namespace, "", name), help, []string{"service"}, nil)
	}
	return &laneCollector{running: map[*lanes]string{},
		lanes: desc("lanes", "Lanes a runner handles messages in: one message of a checkout at a time in each (CONCURRENCY)."),
		busy:  desc("lanes_busy", "Lanes handling a message now."),
		held:  desc("messages_held", "Messages a runner has taken from its consumer and not answered yet: being handled, or waiting in a lane."),
	}
}

func (c *laneCollector) track(l *lanes, service string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.running[l] = service
}

func (c *laneCollector) untrack(l *lanes) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.running, l)
}

func (c *laneCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.lanes
	ch <- c.busy
	ch <- c.held
}

func (c *laneCollector) Collect(ch chan<- prometheus.Metric) {
	type sums struct{ lanes, busy, held int }
	by := map[string]*sums{}
	c.mu.Lock()
	for l, service := range c.running {
		s := by[service]
		if s == nil {
			s = &sums{}
			by[service] = s
		}
		s.lanes += len(l.queues)
		s.busy += int(l.busy.Load())
		s.held += l.held.count()
	}
	c.mu.Unlock()
	for service, s := range by {
		ch <- prometheus.MustNewConstMetric(c.lanes, prometheus.GaugeValue, float64(s.lanes), service)
		ch <- prometheus.MustNewConstMetric(c.busy, prometheus.GaugeValue, float64(s.busy), service)
		ch <- prometheus.MustNewConstMetric(c.held, prometheus.GaugeValue, float64(s.held), service)
	}
}
