package app

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natsserver"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
)

// A service started before its NATS server waits for it, saying so on its health endpoint,
// and runs once the server is up, instead of exiting.
func TestAServiceWaitsForNATS(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().(*net.TCPAddr)
	_ = ln.Close() // nothing listens there until the server starts

	h := &health{}
	waiting := make(chan struct{}, 1)
	cfg := testConfig(t.TempDir())
	cfg.NATSURL = "nats://" + addr.String()
	cfg.NATSWaiting = func(err error) {
		h.waitingForNATS(err)
		select {
		case waiting <- struct{}{}:
		default:
		}
	}
	type started struct {
		sys *System
		err error
	}
	done := make(chan started, 1)
	go func() {
		sys, err := Start(context.Background(), cfg, testLogger(), events.ServiceCatalog)
		done <- started{sys, err}
	}()
	select {
	case <-waiting:
	case s := <-done:
		t.Fatalf("Start returned (%v) without a server to connect to", s.err)
	case <-time.After(wait):
		t.Fatal("Start neither waited nor returned")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, HealthPath, nil))
	if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), "waiting for NATS") {
		t.Errorf("health while waiting: %d %q", rec.Code, rec.Body.String())
	}

	srv, err := natsserver.Start(natsserver.Config{Port: addr.Port, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	var s started
	select {
	case s = <-done:
	case <-time.After(wait):
		t.Fatal("Start did not connect once the server was up")
	}
	if s.err != nil {
		t.Fatalf("Start: %v", s.err)
	}
	t.Cleanup(s.sys.Stop)
	natstest.Eventually(t, wait, func() bool { return s.sys.Ready(context.Background()) == nil },
		"the catalog is not consuming")
}
