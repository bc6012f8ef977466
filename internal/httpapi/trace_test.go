package httpapi

import (
	"testing"

	"github.com/jetcheckout/jetcheckout/internal/tracing"
)

// TestTraceLink: the run page's link is TRACE_URL with the checkout's trace ID in it.
func TestTraceLink(t *testing.T) {
	s := &Server{cfg: Config{TraceURL: "http://localhost:16686/trace/{trace_id}?uiEmbed=v0"}}
	want := "http://localhost:16686/trace/" + tracing.CheckoutTraceID("co_1").String() + "?uiEmbed=v0"
	if got := s.traceLink("co_1"); got != want {
		t.Errorf("traceLink = %q, want %q", got, want)
	}
	if got := (&Server{}).traceLink("co_1"); got != "" {
		t.Errorf("no TRACE_URL: link %q", got)
	}
	for _, bad := range []string{"http://localhost:16686/trace/", "localhost/{trace_id}", "javascript:alert(1)//{trace_id}"} {
		if err := CheckTraceURL(bad); err == nil {
			t.Errorf("CheckTraceURL(%q) accepted", bad)
		}
	}
	if err := CheckTraceURL(s.cfg.TraceURL); err != nil || CheckTraceURL("") != nil {
		t.Errorf("CheckTraceURL(%q): %v", s.cfg.TraceURL, err)
	}
}
