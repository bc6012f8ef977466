//go:build e2e

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/tracing"
)

// stack is the compose project under test and how to reach it from the host.
type stack struct {
	t          *testing.T
	root       string   // the repository: the compose project directory
	compose    []string // the Compose command and its -p and -f arguments
	project    string
	cli        []string // the nats CLI
	tls        bool
	cluster    bool     // the three-node cluster with two replicas of each service (E2E_CLUSTER)
	operator   []string // NATS_USER=..., NATS_PASSWORD=... of the operator
	checkout   []string // ... of the checkout publisher
	natsURL    string
	mailpit    string // http://127.0.0.1:port
	stripe     string // http://127.0.0.1:port
	api        string // http://127.0.0.1:port
	prometheus string // http://127.0.0.1:port
	jaeger     string // http://127.0.0.1:port
	start      time.Time
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// step prints a progress line: the e2e run is read as it goes.
func (s *stack) step(format string, args ...any) {
	fmt.Printf("e2e %6.1fs  %s\n", time.Since(s.start).Seconds(), fmt.Sprintf(format, args...))
}

// run runs a command in the repository and returns its stdout; stderr goes with an error.
func (s *stack) run(extraEnv []string, name string, args ...string) (string, error) {
	return s.runWithin(0, extraEnv, name, args...)
}

// runWithin is run, the command killed after timeout (0: none).
func (s *stack) runWithin(timeout time.Duration, extraEnv []string, name string, args ...string) (string, error) {
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = s.root
	cmd.Env = append(os.Environ(), extraEnv...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out.String(), errb.String())
	}
	return out.String(), nil
}

// hostPorts: empty, so Compose publishes each port on a free one of the host's loopback
// (a `make up` stack may hold the default ones).
var hostPorts = []string{"NATS_PORT=", "NATS_MONITOR_PORT=", "MAILPIT_PORT=", "STRIPE_EMULATOR_PORT=", "API_PORT=", "NATS_2_PORT=", "NATS_3_PORT=",
	"PROMETHEUS_PORT=", "JAEGER_PORT="}

func (s *stack) dc(args ...string) (string, error) {
	full := append(append([]string{}, s.compose[1:]...), args...)
	return s.run(hostPorts, s.compose[0], full...)
}

func (s *stack) mustDC(args ...string) string {
	s.t.Helper()
	out, err := s.dc(args...)
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

// nats runs the nats CLI as a user (operator or checkout).
func (s *stack) nats(user []string, args ...string) (string, error) {
	return s.natsWithin(0, user, args...)
}

// natsWithin is nats, the CLI killed after timeout (0: none).
func (s *stack) natsWithin(timeout time.Duration, user []string, args ...string) (string, error) {
	vars := append([]string{"NATS_URL=" + s.natsURL}, user...)
	if s.tls {
		vars = append(vars, "NATS_CA="+filepath.Join(s.root, "deploy/secrets/tls/ca.pem"))
	}
	return s.runWithin(timeout, vars, s.cli[0], append(append([]string{}, s.cli[1:]...), args...)...)
}

func (s *stack) mustNATS(user []string, args ...string) string {
	s.t.Helper()
	out, err := s.nats(user, args...)
	if err != nil {
		s.t.Fatal(err)
	}
	return out
}

// credentials reads NATS_USER and NATS_PASSWORD from a generated env file.
func (s *stack) credentials(user string) []string {
	s.t.Helper()
	raw, err := os.ReadFile(filepath.Join(s.root, "deploy/secrets", user+".env"))
	if err != nil {
		s.t.Fatalf("%v (make secrets writes it)", err)
	}
	var vars []string
	for _, line := range strings.Split(string(raw), "\n") {
		if strings.HasPrefix(line, "NATS_USER=") || strings.HasPrefix(line, "NATS_PASSWORD=") {
			vars = append(vars, line)
		}
	}
	return vars
}

// published is where Compose published a container port on the host.
func (s *stack) published(service, port string) string {
	s.t.Helper()
	addr := strings.TrimSpace(s.mustDC("port", service, port))
	if addr == "" || strings.HasSuffix(addr, ":0") {
		s.t.Fatalf("%s:%s is not published (%q)", service, port, addr)
	}
	return addr
}

// up starts the stack, waits until every container is healthy and finds its ports.
func (s *stack) up() {
	s.t.Helper()
	s.mustDC("up", "-d")
	wait := "180"
	if s.cluster {
		wait = "300" // twenty-one containers on two cores
	}
	if out, err := s.run(nil, "deploy/wait-healthy.sh", s.project, wait); err != nil {
		s.t.Fatal(err)
	} else {
		s.step("every container healthy:\n%s", strings.TrimRight(out, "\n"))
	}
	scheme := "nats://"
	if s.tls {
		scheme = "tls://"
	}
	s.natsURL = scheme + s.published("nats", "4222")
	if s.cluster { // every node, so the CLI moves on when one is down
		s.natsURL += "," + scheme + s.published("nats-2", "4222") + "," + scheme + s.published("nats-3", "4222")
	}
	s.mailpit = "http://" + s.published("mailpit", "8025")
	s.stripe = "http://" + s.published("stripe-emulator", "12111")
	s.api = "http://" + s.published("api", "8080")
	s.prometheus = "http://" + s.published("prometheus", "9090")
	s.jaeger = "http://" + s.published("jaeger", "16686")
}

// checkoutOverHTTP starts a checkout through the api container and waits for its read
// model to show it completed.
func (s *stack) checkoutOverHTTP(email string) string {
	s.t.Helper()
	post := func(path, body string, out any) {
		req, _ := http.NewRequest("POST", s.api+path, strings.NewReader(body))
		req.Header.Set("Idempotency-Key", "e2e-"+email)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			s.t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		if resp.StatusCode/100 != 2 || json.Unmarshal(raw, out) != nil {
			s.t.Fatalf("POST %s: %s: %s", path, resp.Status, raw)
		}
	}
	var cart events.Cart
	post("/carts", `{"customer_id":"cus_http","currency":"USD","items":[{"product_id":"stickers","quantity":1}]}`, &cart)
	addr := `{"line1":"1 Market St","city":"San Francisco","region":"CA","postal_code":"94105","country":"US"}`
	var accepted struct {
		CheckoutID string `json:"checkout_id"`
	}
	post("/checkout/process", `{"cart_id":"`+cart.ID+`","customer_id":"cus_http","customer_email":"`+email+
		`","payment_method_id":"pm_card_visa","shipping_address":`+addr+`,"billing_address":`+addr+`}`, &accepted)
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
		var c struct{ Status string }
		s.getJSON(s.api+"/checkouts/"+accepted.CheckoutID, &c)
		if c.Status == "completed" {
			return accepted.CheckoutID
		}
	}
	s.t.Fatalf("checkout %s over HTTP never completed", accepted.CheckoutID)
	return ""
}

// down removes the project's containers, volumes and network. Docker may keep counting
// endpoints of removed containers on the network (seen after make e2e-cluster: for an hour,
// until the next run's `down` failed on it); Compose then stops before the volumes, which
// down removes itself, so that no run starts on an earlier one's data. The network stays,
// and the next `up` reuses it.
func (s *stack) down() error {
	_, err := s.dc("down", "-v", "--remove-orphans")
	if err == nil || !strings.Contains(err.Error(), "has active endpoints") {
		return err
	}
	s.step("the project's network stays (Docker kept endpoints of removed containers); removing its volumes")
	vols, err := s.run(nil, "docker", "volume", "ls", "-q", "--filter", "label=com.docker.compose.project="+s.project)
	if err != nil || strings.TrimSpace(vols) == "" {
		return err
	}
	_, err = s.run(nil, "docker", append([]string{"volume", "rm"}, strings.Fields(vols)...)...)
	return err
}

// teardown removes the project, its volumes and network; on failure it shows first what
// the containers were doing.
func (s *stack) teardown(failed bool) {
	if failed {
		ps, _ := s.dc("ps")
		logs, _ := s.dc("logs", "--no-color", "--tail=30")
		fmt.Printf("--- compose ps\n%s\n--- compose logs (last 30 lines each)\n%s\n", ps, logs)
	}
	s.step("tearing down (down -v)")
	if err := s.down(); err != nil {
		fmt.Println("teardown:", err)
	}
}

func newStack(t *testing.T) *stack {
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	project := env("E2E_PROJECT", "jetcheckout-e2e")
	compose := strings.Fields(env("E2E_COMPOSE", "docker compose"))
	compose = append(compose, "-p", project)
	compose = append(compose, strings.Fields(env("E2E_COMPOSE_FILES", "-f docker-compose.yml"))...)
	s := &stack{t: t, root: root, compose: compose, project: project, cli: strings.Fields(env("E2E_NATS_CLI", "go tool nats")),
		tls: os.Getenv("E2E_TLS") != "", cluster: os.Getenv("E2E_CLUSTER") != "", start: time.Now()}
	s.operator, s.checkout = s.credentials("operator"), s.credentials("checkout")
	return s
}

// history reads the whole CHECKOUT stream through the CLI (an ordered consumer that stops
// at the end) and groups the events by checkout; checkout.requested, a bare request with
// no type, is left out.
func (s *stack) history() (map[string][]events.Envelope, error) {
	for attempt := 1; ; attempt++ {
		held := s.streamInfo(events.StreamCheckout).State.Msgs
		// The CLI can also wait for ever for an end it will not reach (seen once in
		// make e2e-cluster, reading while the stopped node came back): bounded, read again.
		out, err := s.natsWithin(historyWithin, s.operator, "sub", "checkout.>", "--stream", events.StreamCheckout, "--all", "--raw", "-T")
		if err != nil && attempt < 5 {
			s.step("reading the stream's history: %v: reading again", firstLine(err.Error()))
			time.Sleep(time.Second)
			continue
		}
		if err != nil {
			return nil, err
		}
		byCheckout, read, err := parseHistory(out)
		// The CLI stops where it believes the stream ends; while the stream changes leader
		// (a node stopped or back) it can believe so too early. Read again.
		if err != nil || uint64(read) >= held || attempt == 5 {
			return byCheckout, err
		}
		s.step("read %d of the %d events the stream held: reading again", read, held)
		time.Sleep(time.Second)
	}
}

// historyWithin bounds one read of the stream's history (a few hundred events).
const historyWithin = 30 * time.Second

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}

// parseHistory groups the CLI's raw output by checkout and counts the messages in it.
func parseHistory(out string) (map[string][]events.Envelope, int, error) {
	byCheckout := map[string][]events.Envelope{}
	read := 0
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 4<<20)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) == 0 {
			continue
		}
		read++
		var e events.Envelope
		if json.Unmarshal(sc.Bytes(), &e) == nil && e.Type != "" && e.CheckoutID != "" {
			byCheckout[e.CheckoutID] = append(byCheckout[e.CheckoutID], e)
		}
	}
	return byCheckout, read, sc.Err()
}

func count(es []events.Envelope, typ events.Subject) int {
	n := 0
	for _, e := range es {
		if e.Type == typ {
			n++
		}
	}
	return n
}

// waitFor polls the stream until checkout id has an event of one of types, and returns it.
func (s *stack) waitFor(id string, timeout time.Duration, types ...events.Subject) events.Envelope {
	s.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		h, err := s.history()
		if err != nil {
			s.t.Fatal(err)
		}
		for _, e := range h[id] {
			for _, typ := range types {
				if e.Type == typ {
					return e
				}
			}
		}
		if time.Now().After(deadline) {
			var seen []string
			for _, e := range h[id] {
				seen = append(seen, string(e.Type))
			}
			s.t.Fatalf("checkout %s: no %v after %s; its events: %v", id, types, timeout, seen)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

var california = events.Address{Name: "Ada Lovelace", Line1: "1 Market St", City: "San Francisco", State: "CA", PostalCode: "94105", Country: "US"}

// createCart asks the catalog for a cart, as the operator, through the CLI.
func (s *stack) createCart(product string, qty int) events.Cart {
	s.t.Helper()
	body, _ := json.Marshal(events.CreateCart{CustomerID: "cus_e2e", Currency: "USD", Items: []events.CartItem{{ProductID: product, Quantity: qty}}})
	out := s.mustNATS(s.operator, "req", string(events.CartsCreate), string(body), "--raw")
	var cart events.Cart
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &cart); err != nil || cart.ID == "" {
		s.t.Fatalf("carts.create answered %q: %v", out, err)
	}
	return cart
}

// checkoutOf creates a cart and publishes its checkout as the checkout user.
func (s *stack) checkoutOf(id, product, pm, email string) events.Cart {
	s.t.Helper()
	cart := s.createCart(product, 1)
	body, _ := json.Marshal(events.CheckoutRequest{CheckoutID: id, CartID: cart.ID, CustomerID: "cus_e2e", CustomerEmail: email,
		PaymentMethodID: pm, ShippingAddress: california, BillingAddress: california})
	s.mustNATS(s.checkout, "pub", string(events.Requested), string(body))
	s.step("published %s (cart %s, %s)", id, cart.ID, pm)
	return cart
}

// email finds the message mailpit caught for to whose subject contains subject.
func (s *stack) email(to, subject string) string {
	s.t.Helper()
	var list struct {
		Messages []struct {
			ID      string
			Subject string
			To      []struct{ Address string }
		} `json:"messages"`
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		s.getJSON(s.mailpit+"/api/v1/search?query="+url.QueryEscape("to:"+to), &list)
		for _, m := range list.Messages {
			if len(m.To) == 1 && m.To[0].Address == to && strings.Contains(m.Subject, subject) {
				var msg struct{ Text string }
				s.getJSON(s.mailpit+"/api/v1/message/"+m.ID, &msg)
				return msg.Text
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("mailpit: no email to %s with %q in its subject (%d to that address)", to, subject, len(list.Messages))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (s *stack) getJSON(u string, v any, header ...string) {
	s.t.Helper()
	req, _ := http.NewRequest("GET", u, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		s.t.Fatalf("GET %s: %s: %s", u, resp.Status, raw)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		s.t.Fatalf("GET %s: %v: %s", u, err, raw)
	}
}

// intents are the emulator's PaymentIntents of a checkout, found as payments finds them.
func (s *stack) intents(checkoutID string) []struct{ ID, Status string } {
	s.t.Helper()
	var res struct {
		Data []struct{ ID, Status string } `json:"data"`
	}
	q := url.QueryEscape("metadata['checkout_id']:'" + checkoutID + "'")
	s.getJSON(s.stripe+"/v1/payment_intents/search?query="+q, &res, "Authorization", "Bearer sk_test_jetcheckout_emulator")
	return res.Data
}

// exactlyOnce asserts a completed checkout's effects happened once: one terminal event,
// one capture, one order, one PaymentIntent that succeeded.
func (s *stack) exactlyOnce(id string) {
	s.t.Helper()
	s.onceInStream(id)
	if pis := s.intents(id); len(pis) != 1 || pis[0].Status != "succeeded" {
		s.t.Errorf("%s: PaymentIntents %+v, want one that succeeded", id, pis)
	}
}

// onceInStream asserts the stream holds one terminal event, one capture and one order of a
// completed checkout.
func (s *stack) onceInStream(id string) {
	s.t.Helper()
	h, err := s.history()
	if err != nil {
		s.t.Fatal(err)
	}
	for typ, want := range map[events.Subject]int{events.Completed: 1, events.Failed: 0, events.PaymentCaptured: 1, events.OrderCreated: 1} {
		if got := count(h[id], typ); got != want {
			s.t.Errorf("%s: %d × %s, want %d", id, got, typ, want)
		}
	}
}

// container is the ID of a service's container.
func (s *stack) container(service string) string {
	s.t.Helper()
	id := strings.TrimSpace(s.mustDC("ps", "-q", service))
	if id == "" {
		s.t.Fatalf("no container for %s", service)
	}
	return id
}

// crash SIGKILLs a service's process, as a crash would: no chance to finish anything.
// Docker then restarts it (restart: unless-stopped), which `docker kill` would not do
// (it counts as a manual stop); killing from the host needs the right to signal the
// process (root). It returns the container's ID.
func (s *stack) crash(service string) (string, error) {
	s.t.Helper()
	id := s.container(service)
	pid, _ := s.run(nil, "docker", "inspect", "-f", "{{.State.Pid}}", id)
	var n int
	fmt.Sscan(pid, &n)
	if err := syscall.Kill(n, syscall.SIGKILL); err != nil {
		return id, fmt.Errorf("cannot SIGKILL %s's process %d from here (%v)", service, n, err)
	}
	s.step("SIGKILLed %s (pid %d)", service, n)
	return id, nil
}

// begin starts the stack from nothing, tearing it down when the test ends, or on Ctrl-C or
// a CI timeout (then it dies as asked).
func (s *stack) begin() {
	t := s.t
	s.step("project %s, compose %q, nats CLI %q, TLS %v", s.project, strings.Join(s.compose, " "), strings.Join(s.cli, " "), s.tls)
	var once sync.Once
	teardown := func() { once.Do(func() { s.teardown(t.Failed()) }) }
	// Ctrl-C or a CI timeout: tear down, then die as asked.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	go func() {
		sig := <-sigs
		s.step("%v: stopping", sig)
		teardown()
		os.Exit(130)
	}()
	t.Cleanup(teardown)
	// A run killed before it could tear down leaves its project behind: start clean.
	if err := s.down(); err != nil {
		t.Fatal(err)
	}

	s.step("starting the stack")
	s.up()
	s.step("NATS %s, mailpit %s, Stripe emulator %s", s.natsURL, s.mailpit, s.stripe)
}

func TestStack(t *testing.T) {
	s := newStack(t)
	run := time.Now().UTC().Format("150405")
	s.begin()
	if out := s.mustNATS(s.operator, "req", string(events.CatalogList), "", "--raw"); !strings.Contains(out, "tee-jetstream") {
		t.Fatalf("catalog.list: %s", out)
	}

	happy, declined := "e2e-"+run+"-happy", "e2e-"+run+"-declined"
	happyTo, declinedTo := "ada+"+run+"@example.com", "grace+"+run+"@example.com"
	happyCart := s.checkoutOf(happy, "tee-jetstream", "pm_card_visa", happyTo)
	s.checkoutOf(declined, "mug-nats", "pm_card_chargeDeclined", declinedTo)

	end := s.waitFor(happy, 60*time.Second, events.Completed, events.Failed)
	var done events.CheckoutCompleted
	if err := json.Unmarshal(end.Payload, &done); end.Type != events.Completed || err != nil {
		t.Fatalf("%s ended in %s: %s", happy, end.Type, end.Payload)
	}
	s.step("%s completed: order %s, %s %s", happy, done.OrderNumber, done.Total, done.Currency)
	end = s.waitFor(declined, 60*time.Second, events.Completed, events.Failed)
	var failed events.CheckoutFailed
	if err := json.Unmarshal(end.Payload, &failed); end.Type != events.Failed || err != nil ||
		failed.Code != events.CodeCardDeclined || failed.Step != events.StepProcessPayment {
		t.Fatalf("%s ended in %s: %s", declined, end.Type, end.Payload)
	}
	s.step("%s failed at %s with %s, compensated %v", declined, failed.Step, failed.Code, failed.Compensated)
	s.exactlyOnce(happy)

	if text := s.email(happyTo, "is confirmed"); !strings.Contains(text, done.OrderNumber) {
		t.Errorf("the confirmation email does not name order %s:\n%s", done.OrderNumber, text)
	}
	s.step("mailpit has the confirmation of %s to %s", done.OrderNumber, happyTo)
	if text := s.email(declinedTo, ""); !strings.Contains(text, "not been charged") {
		t.Errorf("the failure notice does not say nothing was charged:\n%s", text)
	}
	s.step("mailpit has the failure notice to %s", declinedTo)
	overHTTP := s.checkoutOverHTTP("http+" + run + "@example.com")
	s.step("%s completed, started over HTTP at the api container %s", overHTTP, s.api)
	for _, id := range []string{overHTTP, declined} {
		services := s.trace(id, 60*time.Second)
		s.step("jaeger has the trace of %s (%s), with spans of %v", id, tracing.CheckoutTraceID(id), services)
	}

	// A checkout reaches payments while payments is down: it waits in the stream, and the
	// restarted service takes it up, charging once.
	restarted := "e2e-" + run + "-restart"
	s.step("stopping payments (SIGTERM)")
	s.mustDC("stop", "payments")
	s.checkoutOf(restarted, "stickers", "pm_card_visa", "ada+"+run+"@example.com")
	s.waitFor(restarted, 60*time.Second, events.PaymentRequested)
	s.step("%s waits at process_payment; starting payments again", restarted)
	s.mustDC("start", "payments")
	if end := s.waitFor(restarted, 90*time.Second, events.Completed, events.Failed); end.Type != events.Completed {
		t.Fatalf("%s ended in %s after the restart: %s", restarted, end.Type, end.Payload)
	}
	s.exactlyOnce(restarted)
	s.step("%s completed exactly once after the restart (one capture, one order, one PaymentIntent)", restarted)

	// A service that dies (SIGKILL, no chance to finish anything) is restarted by Docker
	// (restart: unless-stopped); a checkout published while it is down completes once.
	// `docker kill` would count as a manual stop, so the process is killed from the host,
	// which needs the right to signal it (root).
	crashed := "e2e-" + run + "-crash"
	completed := 3 // happy, over HTTP, restarted
	if orders, err := s.crash("orders"); err != nil {
		s.step("%v: skipping the crash", err)
	} else {
		completed++
		s.checkoutOf(crashed, "mug-nats", "pm_card_visa", happyTo)
		if end := s.waitFor(crashed, 90*time.Second, events.Completed, events.Failed); end.Type != events.Completed {
			t.Fatalf("%s ended in %s after orders crashed: %s", crashed, end.Type, end.Payload)
		}
		s.exactlyOnce(crashed)
		restarts, _ := s.run(nil, "docker", "inspect", "-f", "{{.RestartCount}}", orders)
		if strings.TrimSpace(restarts) == "0" {
			t.Errorf("Docker did not restart orders")
		}
		s.step("Docker restarted orders (restart count %s); %s completed exactly once", strings.TrimSpace(restarts), crashed)
	}

	// Prometheus scrapes every container and counted what the coordinator decided.
	s.prometheusSaw(completed, 1)

	// Everything stops cleanly on SIGTERM and comes back with its data.
	s.step("stopping the whole stack")
	s.mustDC("stop")
	ids, err := s.run(nil, "docker", "ps", "-aq", "--filter", "label=com.docker.compose.project="+s.project)
	if err != nil {
		t.Fatal(err)
	}
	if len(strings.Fields(ids)) == 0 {
		t.Fatal("no containers of the project")
	}
	for _, id := range strings.Fields(ids) {
		out, err := s.run(nil, "docker", "inspect", "-f", "{{.Name}} {{.State.ExitCode}}", id)
		if err != nil {
			t.Fatal(err)
		}
		if name, code, _ := strings.Cut(strings.TrimSpace(out), " "); code != "0" {
			t.Errorf("%s exited with %s on SIGTERM", name, code)
		}
	}
	s.step("all %d containers exited 0; starting again", len(strings.Fields(ids)))
	s.up()
	var cart events.Cart
	body, _ := json.Marshal(map[string]string{"cart_id": happyCart.ID})
	if err := json.Unmarshal([]byte(s.mustNATS(s.operator, "req", string(events.CartsGet), string(body), "--raw")), &cart); err != nil || cart.CheckoutID != happy {
		t.Errorf("after the restart, cart %s: %+v (%v), want checked out by %s", happyCart.ID, cart, err, happy)
	}
	if out := s.mustNATS(s.operator, "kv", "get", events.BucketCheckouts, happy, "--raw"); !strings.Contains(out, happy) {
		t.Errorf("after the restart, the coordinator's record of %s: %q", happy, out)
	}
	again := "e2e-" + run + "-again"
	s.checkoutOf(again, "tee-jetstream", "pm_card_visa", happyTo)
	if end := s.waitFor(again, 60*time.Second, events.Completed, events.Failed); end.Type != events.Completed {
		t.Fatalf("%s ended in %s: %s", again, end.Type, end.Payload)
	}
	s.exactlyOnce(again)
	// The emulator keeps its PaymentIntents in memory: the earlier ones are gone with it.
	s.onceInStream(happy)
	s.onceInStream(restarted)
	s.step("data intact after the restart; %s completed", again)
	if !t.Failed() {
		s.step("PASS")
	}
}

// trace waits for jaeger's API to hold the trace of checkout id with spans of the API or
// the catalog, the coordinator, payments and notifications, and returns the services whose
// spans it holds. The services send their spans in batches, every few seconds.
func (s *stack) trace(id string, timeout time.Duration) []string {
	s.t.Helper()
	u := s.jaeger + "/api/traces/" + tracing.CheckoutTraceID(id).String()
	var services []string
	for deadline := time.Now().Add(timeout); time.Now().Before(deadline); time.Sleep(time.Second) {
		resp, err := http.Get(u)
		if err != nil {
			s.t.Fatal(err)
		}
		var got struct {
			Data []struct {
				Spans []struct {
					ProcessID string `json:"processID"`
				} `json:"spans"`
				Processes map[string]struct {
					ServiceName string `json:"serviceName"`
				} `json:"processes"`
			} `json:"data"`
		}
		err = json.NewDecoder(resp.Body).Decode(&got)
		resp.Body.Close()
		if resp.StatusCode == http.StatusNotFound {
			continue
		}
		if resp.StatusCode != http.StatusOK || err != nil {
			s.t.Fatalf("GET %s: %s %v", u, resp.Status, err)
		}
		seen := map[string]bool{}
		for _, tr := range got.Data {
			for _, sp := range tr.Spans {
				seen[tr.Processes[sp.ProcessID].ServiceName] = true
			}
		}
		services = slices.Sorted(maps.Keys(seen))
		if seen[events.ServiceCatalog] && seen[events.ServiceCoordinator] && seen[events.ServicePayments] && seen[events.ServiceNotifications] {
			return services
		}
	}
	s.t.Fatalf("jaeger: the trace of %s (%s) has spans of %v only, want catalog, coordinator, payments and notifications", id, u, services)
	return nil
}
