package app

import (
	"strings"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/httpapi"
)

// TestWaitWindowsFromEnv: the chaos run (and an operator) shortens how long a fraud review
// and 3-D Secure may wait; a value that is not a positive duration is refused at start.
func TestWaitWindowsFromEnv(t *testing.T) {
	env := func(vars map[string]string) func(string) string { return func(k string) string { return vars[k] } }
	cfg, err := ConfigFromEnv(env(map[string]string{"FRAUD_REVIEW_WINDOW": "90s", "PAYMENT_AUTH_WINDOW": "2m"}))
	if err != nil || cfg.ReviewWindow != 90*time.Second || cfg.AuthWindow != 2*time.Minute {
		t.Errorf("windows %s and %s (%v), want 1m30s and 2m", cfg.ReviewWindow, cfg.AuthWindow, err)
	}
	if cfg, err := ConfigFromEnv(env(nil)); err != nil || cfg.ReviewWindow != 0 || cfg.AuthWindow != 0 {
		t.Errorf("unset: %s and %s (%v), want the services' defaults (0)", cfg.ReviewWindow, cfg.AuthWindow, err)
	}
	for _, bad := range []string{"soon", "-1m", "0s", "10"} {
		if _, err := ConfigFromEnv(env(map[string]string{"PAYMENT_AUTH_WINDOW": bad})); err == nil {
			t.Errorf("PAYMENT_AUTH_WINDOW=%s accepted", bad)
		}
	}
}

// TestRetentionsFromEnv: how long handled records and ended checkouts are kept comes from the
// environment (a measurement shortens them); unset leaves the defaults (a week).
func TestRetentionsFromEnv(t *testing.T) {
	vars := map[string]string{"HANDLED_RETENTION": "3m", "CHECKOUT_RETENTION": "5m"}
	cfg, err := ConfigFromEnv(func(k string) string { return vars[k] })
	if err != nil || cfg.HandledRetention != 3*time.Minute || cfg.CheckoutRetention != 5*time.Minute {
		t.Errorf("retentions %s and %s (%v), want 3m and 5m", cfg.HandledRetention, cfg.CheckoutRetention, err)
	}
	vars = map[string]string{"CHECKOUT_RETENTION": "forever"}
	if _, err := ConfigFromEnv(func(k string) string { return vars[k] }); err == nil {
		t.Error("CHECKOUT_RETENTION=forever accepted")
	}
	vars = map[string]string{"SNAPSHOT_EVERY": "30s"}
	if cfg, err := ConfigFromEnv(func(k string) string { return vars[k] }); err != nil || cfg.SnapshotEvery != 30*time.Second {
		t.Errorf("SNAPSHOT_EVERY=30s: %s (%v)", cfg.SnapshotEvery, err)
	}
	vars = map[string]string{"SNAPSHOT_EVERY": "-1m"}
	if _, err := ConfigFromEnv(func(k string) string { return vars[k] }); err == nil || !strings.Contains(err.Error(), "SNAPSHOT_EVERY") {
		t.Errorf("SNAPSHOT_EVERY=-1m: %v, want a clear error", err)
	}
}

// The services that wait on Stripe or SMTP keep more messages at once by default; a
// configured concurrency applies to every service.
func TestConcurrencyByService(t *testing.T) {
	for _, c := range []struct {
		configured int
		service    string
		want       int
	}{
		{0, events.ServicePayments, DefaultCallingConcurrency},
		{0, events.ServiceNotifications, DefaultCallingConcurrency},
		{0, events.ServiceCatalog, DefaultConcurrency},
		{0, events.ServiceCoordinator, DefaultConcurrency},
		{4, events.ServicePayments, 4},
		{4, events.ServiceInventory, 4},
	} {
		if got := (Config{Concurrency: c.configured}).concurrency(c.service); got != c.want {
			t.Errorf("RUNNER_CONCURRENCY %d, %s: %d, want %d", c.configured, c.service, got, c.want)
		}
	}
}

// TestFrontDoorFromEnv: the checkout and wrong-token rate limits are on by default, 0 turns one off, and
// X-Forwarded-For is trusted only from the proxies named.
func TestFrontDoorFromEnv(t *testing.T) {
	env := func(vars map[string]string) func(string) string { return func(k string) string { return vars[k] } }
	cfg, err := ConfigFromEnv(env(nil))
	if err != nil || cfg.RateClient != (httpapi.Rate{N: 30, Per: time.Minute}) || cfg.RateEmail != (httpapi.Rate{N: 10, Per: time.Hour}) ||
		cfg.RateWrongToken != (httpapi.Rate{N: 10, Per: 15 * time.Minute}) || cfg.TrustedProxies != nil {
		t.Errorf("defaults: %v %v %v %v (%v)", cfg.RateClient, cfg.RateEmail, cfg.RateWrongToken, cfg.TrustedProxies, err)
	}
	cfg, err = ConfigFromEnv(env(map[string]string{"CHECKOUT_RATE_CLIENT": "0", "CHECKOUT_RATE_EMAIL": "3/10m", "WRONG_TOKEN_RATE": "5/1h", "TRUSTED_PROXIES": "10.0.0.0/8,127.0.0.1"}))
	if err != nil || cfg.RateClient.N != 0 || cfg.RateEmail != (httpapi.Rate{N: 3, Per: 10 * time.Minute}) || cfg.RateWrongToken != (httpapi.Rate{N: 5, Per: time.Hour}) || len(cfg.TrustedProxies) != 2 {
		t.Errorf("set: %v %v %v %v (%v)", cfg.RateClient, cfg.RateEmail, cfg.RateWrongToken, cfg.TrustedProxies, err)
	}
	for k, bad := range map[string]string{"CHECKOUT_RATE_CLIENT": "30", "CHECKOUT_RATE_EMAIL": "ten/1h", "WRONG_TOKEN_RATE": "10", "TRUSTED_PROXIES": "proxy.local"} {
		if _, err := ConfigFromEnv(env(map[string]string{k: bad})); err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("%s=%s: %v", k, bad, err)
		}
	}
}

// TestHoldSettingsFromEnv: the hold limit, the reservation TTL that bounds every hold and
// the return_url allow-list come from the environment, and settings that cannot work
// together are refused at start.
func TestHoldSettingsFromEnv(t *testing.T) {
	env := func(vars map[string]string) func(string) string { return func(k string) string { return vars[k] } }
	cfg, err := ConfigFromEnv(env(map[string]string{"INVENTORY_MAX_HOLD_PER_CUSTOMER": "3", "INVENTORY_RESERVATION_TTL": "20m",
		"FRAUD_REVIEW_WINDOW": "5m", "PAYMENT_AUTH_WINDOW": "5m", "RETURN_URL_ALLOW": "https://shop.example, http://localhost:8080"}))
	if err != nil || cfg.MaxHoldPerCustomer != 3 || cfg.ReservationTTL != 20*time.Minute ||
		cfg.ReturnURLs.String() != "https://shop.example,http://localhost:8080" {
		t.Errorf("limit %d, TTL %s, return URLs %s (%v)", cfg.MaxHoldPerCustomer, cfg.ReservationTTL, cfg.ReturnURLs, err)
	}
	if cfg, err := ConfigFromEnv(env(map[string]string{"INVENTORY_MAX_HOLD_PER_CUSTOMER": "0"})); err != nil || cfg.MaxHoldPerCustomer >= 0 {
		t.Errorf("0 must switch the limit off: %d (%v)", cfg.MaxHoldPerCustomer, err)
	}
	if cfg, err := ConfigFromEnv(env(nil)); err != nil || cfg.MaxHoldPerCustomer != 0 || cfg.ReturnURLs.String() != "any https URL" {
		t.Errorf("unset: limit %d, return URLs %s (%v), want the defaults", cfg.MaxHoldPerCustomer, cfg.ReturnURLs, err)
	}
	for name, vars := range map[string]map[string]string{
		"limit not a number":    {"INVENTORY_MAX_HOLD_PER_CUSTOMER": "ten"},
		"negative limit":        {"INVENTORY_MAX_HOLD_PER_CUSTOMER": "-1"},
		"waits outlast the TTL": {"INVENTORY_RESERVATION_TTL": "30m"}, // 30m review + 10m 3-D Secure
		"long review window":    {"FRAUD_REVIEW_WINDOW": "2h"},
		"TTL over a day":        {"INVENTORY_RESERVATION_TTL": "48h", "FRAUD_REVIEW_WINDOW": "40h"},
		"allow-list not a URL":  {"RETURN_URL_ALLOW": "shop.example"},
	} {
		if _, err := ConfigFromEnv(env(vars)); err == nil {
			t.Errorf("%s: %v accepted", name, vars)
		}
	}
}

// TestTracingFromEnv: traces go where the standard variables say, the run page links to them
// through TRACE_URL, and settings that cannot work are refused at start, naming the variable.
func TestTracingFromEnv(t *testing.T) {
	env := func(vars map[string]string) func(string) string { return func(k string) string { return vars[k] } }
	cfg, err := ConfigFromEnv(env(nil))
	if err != nil || cfg.Tracing.Enabled() || cfg.TraceURL != "" {
		t.Errorf("defaults: %+v %q (%v)", cfg.Tracing, cfg.TraceURL, err)
	}
	cfg, err = ConfigFromEnv(env(map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://jaeger:4318", "TRACE_URL": "http://localhost:16686/trace/{trace_id}"}))
	if err != nil || cfg.Tracing.Endpoint != "http://jaeger:4318/v1/traces" || cfg.TraceURL != "http://localhost:16686/trace/{trace_id}" {
		t.Errorf("set: %+v %q (%v)", cfg.Tracing, cfg.TraceURL, err)
	}
	for k, bad := range map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "jaeger:4318", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "ftp://x/v1/traces",
		"TRACE_URL": "http://localhost:16686/trace/"} {
		if _, err := ConfigFromEnv(env(map[string]string{k: bad})); err == nil || !strings.Contains(err.Error(), k) {
			t.Errorf("%s=%s: %v", k, bad, err)
		}
	}
	if _, err := ConfigFromEnv(env(map[string]string{"TRACE_URL": "localhost:16686/trace/{trace_id}"})); err == nil {
		t.Error("TRACE_URL without a scheme accepted")
	}
}
