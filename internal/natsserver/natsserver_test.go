package natsserver_test

import (
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/internal/natsserver"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
)

// The server's notices and errors reach our logger at their levels; its debug lines do
// not while the logger is not at Debug.
func TestServerLogsToSlog(t *testing.T) {
	var buf natstest.LogBuffer
	s, err := natsserver.Start(natsserver.Config{Port: -1, StoreDir: t.TempDir(), Log: slog.New(slog.NewTextHandler(&buf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	// A client that speaks no NATS: the server reports a parser error and closes it.
	conn, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte("NOT NATS\r\n")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(buf.String(), "level=ERROR") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	log := buf.String()
	for _, want := range []string{`level=INFO msg="Server is ready"`, "level=ERROR", "parser ERROR"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if strings.Contains(log, "level=DEBUG") {
		t.Errorf("debug lines at level info:\n%s", log)
	}
}
