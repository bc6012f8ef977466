package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// Registering twice gives the first collector back, so its counts go on; no registry (nil,
// or a nil *Registry in an interface) registers nothing.
func TestRegister(t *testing.T) {
	reg := prometheus.NewRegistry()
	opts := prometheus.CounterOpts{Name: "jetcheckout_test_total", Help: "a test counter"}
	first := Register(reg, prometheus.NewCounter(opts))
	first.Inc()
	if again := Register(reg, prometheus.NewCounter(opts)); again != first {
		t.Error("a second registration made a second counter")
	}
	var none *prometheus.Registry
	for _, r := range []prometheus.Registerer{nil, none} {
		c := prometheus.NewCounter(opts)
		if got := Register(r, c); got != c {
			t.Error("without a registry, the collector given is not the one back")
		}
	}
}
