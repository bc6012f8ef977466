package app

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
)

// NATS over TLS with the development certificates: a service connects to tls:// when it
// trusts the CA (NATS_CA) and shows its client certificate (NATS_CERT, NATS_KEY); without
// either it is refused.
func TestNATSOverTLS(t *testing.T) {
	certs := t.TempDir()
	if err := WriteDevCerts(certs, []string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	file := func(name string) string { return filepath.Join(certs, name) }
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: file("server-cert.pem"), KeyFile: file("server-key.pem"), CaFile: file("ca.pem"), Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	srv := runServer(t, &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: t.TempDir(),
		TLSConfig: tc, TLSVerify: true, TLSTimeout: 2})
	url := strings.Replace(srv.ClientURL(), "nats://", "tls://", 1)
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))

	cfg := testConfig(t.TempDir())
	cfg.NATSURL, cfg.NATSCA, cfg.NATSCert, cfg.NATSKey = url, file("ca.pem"), file("client-cert.pem"), file("client-key.pem")
	sys, err := Start(context.Background(), cfg, log, "orders")
	if err != nil {
		t.Fatalf("with the CA and a client certificate: %v", err)
	}
	sys.Stop()

	noClientCert := cfg
	noClientCert.NATSCert, noClientCert.NATSKey = "", ""
	noCA := cfg
	noCA.NATSCA = ""
	for name, c := range map[string]Config{"without a client certificate": noClientCert, "without the CA": noCA} {
		if sys, err := Start(context.Background(), c, log, "orders"); err == nil {
			sys.Stop()
			t.Errorf("%s: connected", name)
		}
	}
}
