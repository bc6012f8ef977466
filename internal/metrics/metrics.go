// Package metrics is what every process serves on /metrics for Prometheus: a registry of the
// process's own, with the Go runtime's and the process's collectors, the collectors that read
// JetStream when scraped (jetstream.go), and the measures of the calls to Stripe and to the
// mail server (calls.go). The runner's and the coordinator's metrics are defined at their
// seams (runner/metrics.go, coordinator/metrics.go). docs/OPERATIONS.md lists
// every metric, where each process serves them, and the alerts.
package metrics

import (
	"errors"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Namespace prefixes every metric of jetcheckout's own.
const Namespace = "jetcheckout"

// Path is where a process serves its metrics.
const Path = "/metrics"

// NewRegistry is a process's registry, with the Go runtime's and the process's collectors.
// Never the client library's global one: two systems started in one test process keep
// counters of their own.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Handler serves what g gathers in Prometheus's text format. A collector that fails (a
// JetStream read that timed out) leaves its series out; the others are still served.
func Handler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{ErrorHandling: promhttp.ContinueOnError})
}

// Register registers c with reg and returns it, or the collector registered already with
// the same metrics (a process that starts its services again, a test's restart), so the
// counts go on. A nil reg (or a nil *prometheus.Registry) registers nothing: c counts for
// nobody.
func Register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if r, ok := reg.(*prometheus.Registry); reg == nil || ok && r == nil {
		return c
	}
	err := reg.Register(c)
	var already prometheus.AlreadyRegisteredError
	if errors.As(err, &already) {
		if existing, ok := already.ExistingCollector.(C); ok {
			return existing
		}
	}
	if err != nil {
		panic(err) // two metrics of one name and different labels: a programming error
	}
	return c
}
