package app

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jetcheckout/jetcheckout/events"
)

// `jetcheckout run` needs no signing setting: its keys are made once in DATA_DIR and kept,
// so the events already in the stream stay believed after a restart.
func TestSigningKeysKeptInTheDataDir(t *testing.T) {
	cfg := Config{DataDir: filepath.Join(t.TempDir(), "data")}
	first, err := cfg.signingKeys(events.Services)
	if err != nil {
		t.Fatal(err)
	}
	again, err := cfg.signingKeys(events.Services)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(first.PublicKeys(), again.PublicKeys()) || len(first.PublicKeys()) != len(events.Services) {
		t.Errorf("keys after a restart %v, want the first ones %v", again.PublicKeys(), first.PublicKeys())
	}
	info, err := os.Stat(filepath.Join(cfg.DataDir, signingKeysFile))
	if err != nil || info.Mode().Perm() != 0o600 {
		t.Errorf("the kept seeds: %v, mode %v; want a private file", err, info.Mode())
	}
	for _, s := range events.Services {
		if !first.Signs(s) {
			t.Errorf("the process running every service holds no key of %s", s)
		}
	}
}

// Services in several processes must share their public keys: a process of one service
// refuses to start with keys of its own that nobody else would know.
func TestSigningKeysAcrossProcesses(t *testing.T) {
	cfg := Config{DataDir: t.TempDir(), NATSURL: "nats://127.0.0.1:4222"}
	if _, err := cfg.signingKeys([]string{events.ServicePayments}); err == nil || !strings.Contains(err.Error(), SigningPublicVar) {
		t.Errorf("one service of several without %s: %v, want an error naming it", SigningPublicVar, err)
	}
	env, err := SigningEnv()
	if err != nil {
		t.Fatal(err)
	}
	getenv := func(key string) string {
		for _, kv := range env {
			if k, v, _ := strings.Cut(kv, "="); k == key && (key == SigningPublicVar || key == SigningSeedVar(events.ServicePayments)) {
				return v
			}
		}
		return ""
	}
	cfg.SigningPublic, cfg.SigningSeeds = signingFromEnv(getenv)
	keys, err := cfg.signingKeys([]string{events.ServicePayments})
	if err != nil {
		t.Fatal(err)
	}
	if !keys.Signs(events.ServicePayments) || keys.Signs(events.ServiceOrders) {
		t.Error("payments' process should hold payments' key and no other")
	}
	if _, err := cfg.signingKeys([]string{events.ServiceOrders}); err == nil || !strings.Contains(err.Error(), SigningSeedVar(events.ServiceOrders)) {
		t.Errorf("orders without its seed: %v, want an error naming %s", err, SigningSeedVar(events.ServiceOrders))
	}
}

// make secrets gives each service its seed in its own env file, and everyone the public keys.
func TestSecretsHoldTheSigningKeys(t *testing.T) {
	dir := t.TempDir()
	if err := WriteNATSSecrets(dir); err != nil {
		t.Fatal(err)
	}
	public, err := readEnvFile(filepath.Join(dir, "signing.env"), SigningPublicVar)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range events.Services {
		seed, err := readEnvFile(filepath.Join(dir, s+".env"), SigningSeedVar(s))
		if err != nil {
			t.Fatal(err)
		}
		pub, err := events.PublicKeyOf(seed)
		if err != nil || !strings.Contains(public, s+"="+pub) {
			t.Errorf("%s's seed (%v) is not the key signing.env lists for it", s, err)
		}
		if _, err := readEnvFile(filepath.Join(dir, s+".env"), "NATS_PASSWORD"); err != nil {
			t.Errorf("%s.env lost its password: %v", s, err)
		}
	}
	if err := WriteNATSSecrets(dir); err != nil {
		t.Fatal(err)
	}
	if again, _ := readEnvFile(filepath.Join(dir, "signing.env"), SigningPublicVar); again != public {
		t.Error("a second make secrets changed the signing keys")
	}
}
