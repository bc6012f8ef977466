package chaos

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/app"
	"github.com/jetcheckout/jetcheckout/internal/smtpsink"
	"github.com/jetcheckout/jetcheckout/internal/store"
	"github.com/jetcheckout/jetcheckout/services/inventory"
	"github.com/nats-io/nats.go"
	bolt "go.etcd.io/bbolt"
)

// emulatorKey is the emulator's test-mode key; it is not a secret.
const emulatorKey = "sk_test_jetcheckout_chaos"

// receivedMail is one email a customer's mail server took.
type receivedMail = smtpsink.Mail

// Windows short enough for abandoned 3-D Secure and unanswered reviews to end within a run.
const (
	authWindow   = 20 * time.Second
	reviewWindow = 20 * time.Second
)

// stack is every process of a run and where it keeps its files.
type stack struct {
	dir         string
	natsURL     string
	emulatorURL string
	smtp        *smtpsink.Sink
	nats        *process
	emulator    *process
	services    map[string]*process
	health      map[string]string // service → its HEALTH_ADDR
	logs        []*os.File
}

// buildBinaries compiles jetcheckout and the nats-server that go.mod pins into dir.
func buildBinaries(ctx context.Context, root, dir string) (jetcheckout, natsServer string, err error) {
	jetcheckout, natsServer = filepath.Join(dir, "jetcheckout"), filepath.Join(dir, "nats-server")
	for _, b := range []struct{ out, pkg string }{
		{jetcheckout, "./cmd/jetcheckout"},
		{natsServer, "github.com/nats-io/nats-server/v2"},
	} {
		cmd := exec.CommandContext(ctx, "go", "build", "-o", b.out, b.pkg)
		cmd.Dir, cmd.Env = root, append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out)
		}
	}
	return jetcheckout, natsServer, nil
}

// startStack starts nats-server, the Stripe emulator, an SMTP sink and every service, each
// its own process with its own data directory, and waits until every service is healthy.
func startStack(ctx context.Context, dir, jetcheckout, natsServer string, initial map[string]int) (_ *stack, err error) {
	s := &stack{dir: dir, services: map[string]*process{}, health: map[string]string{}}
	defer func() {
		if err != nil {
			s.stop()
		}
	}()
	if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o755); err != nil {
		return nil, err
	}
	if s.smtp, err = smtpsink.Start(); err != nil {
		return nil, err
	}
	natsAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	s.natsURL = "nats://" + natsAddr
	conf := filepath.Join(dir, "nats.conf")
	host, port, _ := net.SplitHostPort(natsAddr)
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`server_name: chaos
host: %s
port: %s
max_payload: 2MB
jetstream {
  store_dir: %q
  sync_interval: always
}
`, host, port, filepath.Join(dir, "jetstream"))), 0o600); err != nil {
		return nil, err
	}
	s.nats = newProcess("nats-server", natsServer, []string{"-c", conf}, nil, s.logFile("nats-server"))
	if err := s.nats.run(); err != nil {
		return nil, err
	}

	emuAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	s.emulatorURL = "http://" + emuAddr
	s.emulator = newProcess("stripe-emulator", jetcheckout, []string{"stripe-emulator"},
		[]string{"STRIPE_EMULATOR_LISTEN=" + emuAddr, "LOG_LEVEL=warn"}, s.logFile("stripe-emulator"))
	if err := s.emulator.run(); err != nil {
		return nil, err
	}
	if err := seedInventory(filepath.Join(dir, events.ServiceInventory), initial); err != nil {
		return nil, err
	}
	// Every process signs with its service's key and checks the others' (SIGNING_*).
	signing, err := app.SigningEnv()
	if err != nil {
		return nil, err
	}
	for _, name := range events.Services {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		s.health[name] = addr
		env := append([]string{
			"NATS_URL=" + s.natsURL, "DATA_DIR=" + s.dataDir(name), "HEALTH_ADDR=" + addr,
			"STRIPE_API_BASE=" + s.emulatorURL, "STRIPE_SECRET_KEY=" + emulatorKey, "SMTP_ADDR=" + s.smtp.Addr,
			"LOG_LEVEL=warn", "PAYMENT_AUTH_WINDOW=" + authWindow.String(), "FRAUD_REVIEW_WINDOW=" + reviewWindow.String(),
			"SUBSCRIPTION_DAY=" + subscriptionDay.String(), "SUBSCRIPTION_RETRY_DAYS=" + subscriptionRetryDays,
		}, signing...)
		p := newProcess(name, jetcheckout, []string{"service", name}, env, s.logFile(name))
		s.services[name] = p
		if err := p.run(); err != nil {
			return nil, err
		}
	}
	return s, s.waitHealthy(ctx, 60*time.Second)
}

// waitHealthy waits until every service answers 200 on /healthz: connected, consuming.
func (s *stack) waitHealthy(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	client := &http.Client{Timeout: time.Second}
	for name, addr := range s.health {
		for {
			resp, err := client.Get("http://" + addr + "/healthz")
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					break
				}
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("service %s not healthy after %s (see %s)", name, limit, filepath.Join(s.dir, "logs", name+".log"))
			}
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	return nil
}

func (s *stack) connect() (*nats.Conn, error) {
	return nats.Connect(s.natsURL, nats.Name("chaos harness"), nats.MaxReconnects(-1),
		nats.ReconnectWait(100*time.Millisecond), nats.RetryOnFailedConnect(true))
}

func (s *stack) stripeURL() string { return s.emulatorURL }

func (s *stack) subscriptionDay() time.Duration { return subscriptionDay }

func (s *stack) attack(ctx context.Context, r *rand.Rand, every time.Duration, log func(string, ...any)) int {
	k := &killer{stack: s, rand: r, every: every, log: log}
	k.run(ctx)
	log("%d kills, %d of them with the service's data directory deleted", k.kills, k.wipes)
	return k.kills
}

// dataDir is service name's DATA_DIR.
func (s *stack) dataDir(name string) string { return filepath.Join(s.dir, name) }

func (s *stack) mails(context.Context) ([]receivedMail, error) { return s.smtp.Mails(), nil }

func (s *stack) mailbox() mailbox { return s.smtp }

// withStore opens a stopped service's bbolt file, in its data directory, for f.
func (s *stack) withStore(_ context.Context, service string, f func(*bolt.DB) error) error {
	return openStore(filepath.Join(s.dataDir(service), service+".db"), f)
}

// stopServices stops every service gracefully, so their stores can be read.
func (s *stack) stopServices(context.Context) error {
	var errs []string
	for name, p := range s.services {
		if err := p.stop(40 * time.Second); err != nil {
			errs = append(errs, name+": "+err.Error())
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// stop ends every process that is still running.
func (s *stack) stop() {
	for _, p := range s.services {
		_ = p.stop(40 * time.Second)
	}
	for _, p := range []*process{s.emulator, s.nats} {
		if p != nil {
			_ = p.stop(10 * time.Second)
		}
	}
	if s.smtp != nil {
		s.smtp.Close()
	}
	for _, f := range s.logs {
		f.Close()
	}
}

// freeAddr picks a free loopback port.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// freePorts picks n free loopback ports, all different: each is held until all are picked.
func freePorts(n int) ([]int, error) {
	ports := make([]int, 0, n)
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// logFile is where a process's output goes, appended across its restarts. A file, not a
// pipe, so a killed process leaves nothing half-copied.
func (s *stack) logFile(name string) *os.File {
	f, err := os.OpenFile(filepath.Join(s.dir, "logs", name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return os.Stderr
	}
	s.logs = append(s.logs, f)
	return f
}

// seedInventory writes the run's initial stock into the inventory's store before it first
// starts (it records the stock it finds there as its initial stock in JetStream, and seeds the
// demo stock only into an empty store).
func seedInventory(dir string, initial map[string]int) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	db, err := store.Open(filepath.Join(dir, events.ServiceInventory+".db"))
	if err != nil {
		return err
	}
	defer db.Close()
	inv, err := inventory.New(db, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	_, err = inv.Seed(initial)
	return err
}
