package subscriptions

import (
	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/metrics"
	"github.com/prometheus/client_golang/prometheus"
)

// The subscriptions' metrics (docs/OPERATIONS.md), each counted once, by the instance whose
// compare-and-swap stored the change.
type meters struct {
	started, retried prometheus.Counter
	ended            *prometheus.CounterVec
}

func newMeters(reg prometheus.Registerer) *meters {
	counter := func(name, help string) prometheus.Counter {
		return metrics.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{Namespace: metrics.Namespace, Name: name, Help: help}))
	}
	m := &meters{
		started: counter("subscription_periods_started_total", "Periods of subscriptions started: each a renewal checkout."),
		retried: counter("subscription_retries_total", "Attempts of a declined period started again (dunning), each its own checkout."),
		ended: metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: metrics.Namespace, Name: "subscription_periods_ended_total",
			Help: "Periods of subscriptions ended: paid, or failed (after the last attempt of a decline, or at once for a failure no retry mends)."}, []string{"outcome"})),
	}
	m.ended.WithLabelValues(events.PeriodPaid) // listed at 0 from the start
	m.ended.WithLabelValues(events.PeriodFailed)
	return m
}
