package app

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func TestNATSServerFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		file string // "" when refused
	}{
		{[]string{"--config", "a.conf"}, "a.conf"},
		{[]string{"-config=a.conf"}, "a.conf"},
		{[]string{"-c", "a.conf"}, "a.conf"},
		{nil, ""},
		{[]string{"--config"}, ""},
		{[]string{"--config", "a.conf", "extra"}, ""},
		{[]string{"--jetstream"}, ""},
	} {
		var stderr bytes.Buffer
		file, err := natsServerFlags(tc.args, &stderr)
		if file != tc.file || (err == nil) != (tc.file != "") {
			t.Errorf("%q: %q, %v", tc.args, file, err)
		}
		if err != nil && !strings.Contains(stderr.String(), "-config") {
			t.Errorf("%q: no usage: %q", tc.args, stderr.String())
		}
	}
	// Through the command line: a usage error exits 2, a file that cannot be read 1.
	env := func(k string) string { return map[string]string{"DATA_DIR": t.TempDir()}[k] }
	var out bytes.Buffer
	if code := run(t.Context(), func() {}, []string{"nats-server"}, env, &out, &out); code != 2 {
		t.Errorf("no --config: exit %d", code)
	}
	out.Reset()
	if code := run(t.Context(), func() {}, []string{"nats-server", "-c", filepath.Join(t.TempDir(), "none.conf")}, env, &out, &out); code != 1 || !strings.Contains(out.String(), "none.conf") {
		t.Errorf("a missing file: exit %d, %q", code, out.String())
	}
}

// A server that cannot start (its port taken) logs why and exits 1 at once, where the
// library, unlike nats-server's own logger, would not exit by itself.
func TestNATSServerExitsOnFatal(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	conf := writeNATSConf(t, fmt.Sprintf("listen: %q\n", ln.Addr().String()))
	var out natstest.LogBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(t.Context(), func() {}, []string{"nats-server", "--config", conf}, os.Getenv, &out, &out)
	}()
	select {
	case code := <-done:
		if code != 1 || !strings.Contains(out.String(), "Error listening on port") {
			t.Errorf("exit %d:\n%s", code, out.String())
		}
	case <-time.After(wait):
		t.Fatalf("still running with its port taken:\n%s", out.String())
	}
}

// TestNATSServerRecoversDiskFull runs `jetcheckout nats-server` on a configuration file
// whose JetStream is on a 16 MB tmpfs (its port from the environment, as the compose
// stack's passwords are), fills the disk under a publishing client, and frees it: upstream
// nats-server stays wedged until restarted; this one must answer /healthz 503 while
// full, then store again by itself, keeping what was stored, and exit 0 on a signal.
func TestNATSServerRecoversDiskFull(t *testing.T) {
	dir := mountTmpfs(t, "16m")
	port, monitor := freePort(t), freePort(t)
	t.Setenv("JC_TEST_NATS_PORT", strconv.Itoa(port))
	conf := writeNATSConf(t, fmt.Sprintf(`host: 127.0.0.1
port: $JC_TEST_NATS_PORT
http: "127.0.0.1:%d"
jetstream { store_dir: %q, sync_interval: always }
`, monitor, filepath.Join(dir, "jetstream")))
	var logs natstest.LogBuffer
	t.Cleanup(func() {
		if t.Failed() {
			all := logs.String()
			t.Logf("log (last 8 KB):\n%s", all[max(0, len(all)-8<<10):])
		}
	})
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, func() {}, []string{"nats-server", "--config", conf}, os.Getenv, &logs, &logs)
	}()

	var nc *nats.Conn
	natstest.Eventually(t, wait, func() bool {
		var err error
		nc, err = nats.Connect(fmt.Sprintf("nats://127.0.0.1:%d", port))
		return err == nil
	}, "the server never accepted a connection")
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}}); err != nil {
		t.Fatal(err)
	}
	publish := func() error {
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		_, err := js.Publish(pctx, "t.x", make([]byte, 16<<10))
		return err
	}
	if err := publish(); err != nil {
		t.Fatal(err)
	}
	healthz := fmt.Sprintf("http://127.0.0.1:%d/healthz", monitor)
	if c, body := get(t, healthz); c != http.StatusOK {
		t.Fatalf("/healthz before the disk filled: %d %s", c, body)
	}

	filler := filepath.Join(dir, "filler")
	fillDisk(t, filler)
	natstest.Eventually(t, wait, func() bool { return publish() != nil }, "every publish was stored with the disk full")
	natstest.Eventually(t, wait, func() bool { c, _ := get(t, healthz); return c == http.StatusServiceUnavailable },
		"/healthz stayed healthy with the disk full")
	if err := publish(); err == nil {
		t.Errorf("a publish was stored with the disk still full")
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, func() bool { return publish() == nil }, func() string {
		_, body := get(t, healthz)
		return "publishes not stored again after the disk has room; /healthz: " + body
	})
	if c, body := get(t, healthz); c != http.StatusOK {
		t.Errorf("/healthz after recovery: %d %s", c, body)
	}
	info, err := js.Stream(ctx, "T")
	if err != nil {
		t.Fatal(err)
	}
	if n := info.CachedInfo().State.Msgs; n < 2 {
		t.Errorf("stream T holds %d messages after recovery, want the ones stored before and after", n)
	}
	for _, want := range [][]string{{"component=nats-server", "no space left on device"}, {"component=nats-server", "restarting JetStream"}} {
		if !logLine(logs.String(), want...) {
			t.Errorf("no log line with %q", want)
		}
	}

	stop()
	select {
	case code := <-done:
		if code != 0 || !strings.Contains(logs.String(), "stopped cleanly") {
			t.Errorf("after the signal: exit %d", code)
		}
	case <-time.After(wait):
		t.Fatal("still running after the signal")
	}
}

// writeNATSConf writes a nats-server configuration file and returns its path.
func writeNATSConf(t *testing.T, text string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "nats.conf")
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// freePort is a TCP port on the loopback that nothing listened on a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}
