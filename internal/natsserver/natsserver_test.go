package natsserver_test

import (
	"log/slog"
	"net"
	"os"
	"path/filepath"
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

// LoadConfig reads a file as `nats-server --config` does (includes beside it, variables from
// the environment) and leaves the signals to the caller and tracing off.
func TestLoadConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("main.conf", "server_name: $JC_TEST_NAME\ntrace: true\njetstream { store_dir: /data/js, sync_interval: always }\ninclude ./users.conf\n")
	write("users.conf", "authorization { user: a, password: $JC_TEST_PASSWORD }\n")
	t.Setenv("JC_TEST_NAME", "nats-2")
	t.Setenv("JC_TEST_PASSWORD", "s3cret")
	opts, err := natsserver.LoadConfig(filepath.Join(dir, "main.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if opts.ServerName != "nats-2" || opts.Password != "s3cret" || !opts.JetStream || opts.StoreDir != "/data/js" || !opts.SyncAlways {
		t.Errorf("options: name %q, password %q, jetstream %v in %q, sync always %v", opts.ServerName, opts.Password, opts.JetStream, opts.StoreDir, opts.SyncAlways)
	}
	if !opts.NoSigs || opts.Trace {
		t.Errorf("NoSigs %v, Trace %v: want the caller's signals and no tracing", opts.NoSigs, opts.Trace)
	}
	write("bad.conf", "port: $JC_TEST_UNSET_VARIABLE\n")
	if _, err := natsserver.LoadConfig(filepath.Join(dir, "bad.conf")); err == nil {
		t.Errorf("a variable set nowhere was accepted")
	}
}
