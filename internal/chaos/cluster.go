package chaos

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/store"
	"github.com/nats-io/nats.go"
	bolt "go.etcd.io/bbolt"
)

// ClusterOptions are how to run the compose cluster (`make up-cluster`'s stack).
type ClusterOptions struct {
	// Compose is the Compose command with the cluster's variables, as the Makefile finds it:
	// "docker compose --env-file deploy/cluster.env" or "docker-compose --env-file ...".
	Compose []string
	// Project is the compose project: its own containers, volumes and network.
	Project string
	// Files are more compose files over the cluster's, and Env more variables for every
	// Compose command (JETCHECKOUT_IMAGE, say: the image it starts on).
	Files, Env []string
}

// natsNodes are the cluster's NATS servers (compose services).
var natsNodes = []string{"nats", "nats-2", "nats-3"}

// imageUID owns the services' files in their volumes (deploy/image/passwd: jetcheckout).
const imageUID = 10001

// cluster is a compose project of the three-node cluster with two replicas of every
// service, reached from the host through ports published on its loopback.
type cluster struct {
	root, dir  string
	compose    []string          // the command and its arguments up to the subcommand
	env        []string          // vars, and the host ports, fixed for the run: a restarted container keeps its own
	vars       []string          // the run's own Compose variables (ClusterOptions.Env)
	ports      map[string]int    // compose service → its published port
	containers map[string]string // compose service → container ID
	network    string            // the project's network
	user, pass string            // the operator's NATS credentials
	log        func(string, ...any)

	mu        sync.Mutex      // containers and takeovers, while faults run
	takeovers []time.Duration // measured by destroy
}

// RunCluster starts the compose cluster on its own project, seeded with the run's stock,
// drives the same load as Run while it stops, kills, pauses and cuts off NATS nodes and
// service containers, then reconciles as Run does. The project is torn down at the end,
// also when the run fails; its logs are kept in o.Dir when it failed.
func RunCluster(ctx context.Context, o Options, co ClusterOptions) (res Result, err error) {
	start := time.Now()
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	initial := initialStock(o.Checkouts)
	c := newCluster(o, co)
	defer func() {
		c.teardown(err != nil || len(res.Violations) > 0)
	}()
	if err := c.start(ctx, co, initial); err != nil {
		return Result{Seed: o.Seed, Checkouts: o.Checkouts}, err
	}
	o.Log("cluster up in %s: project %s, nats %s, stripe %s, mailpit 127.0.0.1:%d",
		time.Since(start).Round(time.Second), co.Project, c.natsURL(), c.stripeURL(), c.ports["mailpit"])
	return attack(ctx, o, c, initial, start)
}

func newCluster(o Options, co ClusterOptions) *cluster {
	return &cluster{root: o.Root, dir: o.Dir, log: o.Log, vars: co.Env, containers: map[string]string{}}
}

// start brings the project up from nothing, with the run's stock in the inventory's volume
// before the inventory first starts (it records the stock it finds there as its initial stock
// in JetStream, and seeds the demo stock only into an empty store).
func (c *cluster) start(ctx context.Context, co ClusterOptions, initial map[string]int) error {
	if len(co.Compose) == 0 || co.Project == "" {
		return fmt.Errorf("cluster: no Compose command or project")
	}
	var err error
	if c.user, c.pass, err = credentials(filepath.Join(c.root, "deploy/secrets/operator.env")); err != nil {
		return fmt.Errorf("%w (make secrets writes it)", err)
	}
	override := filepath.Join(c.dir, "chaos-cluster.yml")
	if err := os.WriteFile(override, []byte(composeOverride), 0o644); err != nil {
		return err
	}
	c.compose = append(slices.Clone(co.Compose), "-p", co.Project, "-f", filepath.Join(c.root, "docker-compose.yml"),
		"-f", filepath.Join(c.root, "deploy/compose.cluster.yml"), "-f", override) // the second: nodes 2 and 3's volumes
	for _, f := range co.Files {
		c.compose = append(c.compose, "-f", f)
	}
	// The host ports are picked here, not left to Docker, so that a container keeps its port
	// when the chaos restarts it. Between the pick and the start another process may take
	// one (Docker then says it "is already allocated"): the stack starts again on new ports.
	for attempt := 1; ; attempt++ {
		err = c.up(ctx, initial)
		if err == nil {
			break
		}
		if attempt == 3 || !strings.Contains(err.Error(), "port is already allocated") {
			return err
		}
	}
	if err := c.waitHealthy(ctx, 5*time.Minute); err != nil {
		return err
	}
	for _, svc := range append(slices.Clone(natsNodes), c.serviceContainers()...) {
		if c.containers[svc], err = c.container(ctx, svc); err != nil {
			return err
		}
	}
	if c.network, err = c.run(ctx, "docker", "inspect", "-f", "{{range $k, $v := .NetworkSettings.Networks}}{{$k}}{{end}}", c.containers["nats"]); err != nil {
		return err
	}
	return c.checkStock(ctx, initial)
}

// up picks the host ports, starts the stack clean, and seeds the inventory before it starts.
func (c *cluster) up(ctx context.Context, initial map[string]int) error {
	published := []struct{ service, variable string }{
		{"nats", "NATS_PORT"}, {"nats-2", "NATS_2_PORT"}, {"nats-3", "NATS_3_PORT"}, {"stripe-emulator", "STRIPE_EMULATOR_PORT"},
		{"mailpit", "MAILPIT_PORT"}, {"nats-monitor", "NATS_MONITOR_PORT"}, {"api", "API_PORT"},
		{"prometheus", "PROMETHEUS_PORT"}, {"jaeger", "JAEGER_PORT"},
	}
	ports, err := freePorts(len(published)) // all different, unlike separate picks
	if err != nil {
		return err
	}
	c.ports, c.env = map[string]int{}, slices.Clone(c.vars)
	for i, p := range published {
		c.ports[p.service] = ports[i]
		c.env = append(c.env, fmt.Sprintf("%s=%d", p.variable, ports[i]))
	}
	// A run killed before it could tear down leaves its project behind: start clean.
	if err := c.down(ctx); err != nil {
		return err
	}
	if _, err := c.dc(ctx, "up", "--no-start"); err != nil {
		return err
	}
	if err := c.seed(ctx, initial); err != nil {
		return err
	}
	_, err = c.dc(ctx, "up", "-d")
	return err
}

// composeOverride shortens the windows of 3-D Secure and fraud reviews, as the local stack
// does, so that abandoned ones end within a run.
var composeOverride = fmt.Sprintf(`# Written by the chaos harness (internal/chaos): short windows, so that abandoned 3-D
# Secure and unanswered reviews end within a run.
services:
  payments: {environment: {PAYMENT_AUTH_WINDOW: %[1]s}}
  payments-2: {environment: {PAYMENT_AUTH_WINDOW: %[1]s}}
  fraud: {environment: {FRAUD_REVIEW_WINDOW: %[2]s}}
  fraud-2: {environment: {FRAUD_REVIEW_WINDOW: %[2]s}}
`, authWindow, reviewWindow)

// seed writes the run's stock into a bbolt file and copies it into the inventory's volumes
// through their created containers, as a tar stream: only there does the file keep its owner,
// the image's user (docker cp of a file makes it root's; -a looks the user up in the
// container, which has no getent).
func (c *cluster) seed(ctx context.Context, initial map[string]int) error {
	dir := filepath.Join(c.dir, "seed", events.ServiceInventory)
	if err := seedInventory(dir, initial); err != nil {
		return err
	}
	name := events.ServiceInventory + ".db"
	raw, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	var archive bytes.Buffer
	tw := tar.NewWriter(&archive)
	if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o600, Size: int64(len(raw)), Uid: imageUID, Gid: imageUID, ModTime: time.Now()}); err != nil {
		return err
	}
	if _, err := tw.Write(raw); err != nil {
		return err
	}
	if err := tw.Close(); err != nil {
		return err
	}
	// Both replicas: each has a volume of its own, and the first to start records its stock.
	for _, replica := range []string{events.ServiceInventory, events.ServiceInventory + "-2"} {
		id, err := c.container(ctx, replica)
		if err != nil {
			return err
		}
		cmd := exec.CommandContext(ctx, "docker", "cp", "-", id+":/data")
		cmd.Stdin = bytes.NewReader(archive.Bytes())
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("seed the volume of %s: %v: %s", replica, err, out)
		}
	}
	return nil
}

// checkStock asks the running inventory for its stock: the run's, not the demo's.
func (c *cluster) checkStock(ctx context.Context, initial map[string]int) error {
	nc, err := c.connect()
	if err != nil {
		return err
	}
	defer nc.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var all []events.Stock
	if err := retry(ctx, func() error {
		return driver{nc: nc}.call(events.InventoryStock, struct{}{}, &all)
	}); err != nil {
		return err
	}
	for _, st := range all {
		if n, ok := initial[st.ProductID]; ok && (st.Available != n || st.Reserved != 0 || st.Sold != 0) {
			return fmt.Errorf("the inventory started with %+v, not the run's %d: was the seed copied in?", st, n)
		}
	}
	return nil
}

// serviceContainers are both replicas of every service, sorted: the seed must choose the
// same victims every time.
func (c *cluster) serviceContainers() []string {
	var out []string
	for _, s := range events.Services {
		out = append(out, s, s+"-2")
	}
	slices.Sort(out)
	return out
}

func (c *cluster) natsURL() string {
	var urls []string
	for _, n := range natsNodes {
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", c.ports[n]))
	}
	return strings.Join(urls, ",")
}

// connect connects as the operator to every node's published port. Pings every second
// notice a paused node within seconds; the nodes' addresses inside the project's network
// mean nothing here, so the ones they gossip are ignored.
func (c *cluster) connect() (*nats.Conn, error) {
	return nats.Connect(c.natsURL(), nats.Name("chaos harness"), nats.UserInfo(c.user, c.pass),
		nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.RetryOnFailedConnect(true),
		nats.PingInterval(time.Second), nats.MaxPingsOutstanding(3), nats.Timeout(2*time.Second),
		nats.IgnoreDiscoveredServers())
}

// subscriptionDay: the compose stack's, the default.
func (c *cluster) subscriptionDay() time.Duration { return 24 * time.Hour }

func (c *cluster) stripeURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d", c.ports["stripe-emulator"])
}

// waitHealthy waits until every container of the project is healthy (deploy/wait-healthy.sh).
func (c *cluster) waitHealthy(ctx context.Context, limit time.Duration) error {
	_, err := c.run(ctx, filepath.Join(c.root, "deploy/wait-healthy.sh"), c.project(), strconv.Itoa(int(limit.Seconds())))
	return err
}

// stopServices stops both replicas of every service at once (SIGTERM, in-flight work
// finishes); NATS, the emulator and mailpit keep running for the snapshot.
func (c *cluster) stopServices(ctx context.Context) error {
	args := []string{"stop", "-t", "40"}
	for _, s := range c.serviceContainers() {
		args = append(args, c.containerOf(s))
	}
	_, err := c.run(ctx, "docker", args...)
	return err
}

// withStore copies a stopped service's bbolt file out of each replica's volume and opens
// the one whose view has applied the most of the stream. Both keep their views warm, but a
// standby whose catch-up at stop failed (a NATS fault at the wrong moment) is behind, and
// replays at its next start: its file is not what the service knows.
func (c *cluster) withStore(ctx context.Context, service string, f func(*bolt.DB) error) error {
	dir := filepath.Join(c.dir, "stores")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	best, bestApplied := "", uint64(0)
	for _, replica := range []string{service, service + "-2"} {
		file := filepath.Join(dir, replica+".db")
		if _, err := c.run(ctx, "docker", "cp", c.containerOf(replica)+":/data/"+service+".db", file); err != nil {
			return err
		}
		var applied uint64
		if err := openStore(file, func(db *bolt.DB) error { applied = store.Applied(db); return nil }); err != nil {
			return err
		}
		c.log("%s's view has applied up to stream sequence %d", replica, applied)
		if best == "" || applied > bestApplied {
			best, bestApplied = file, applied
		}
	}
	return openStore(best, f)
}

// teardown removes the project, its volumes and network; first it keeps the containers'
// logs in the run's directory when the run failed.
func (c *cluster) teardown(failed bool) {
	if c.compose == nil {
		return
	}
	ctx := context.Background()
	if failed {
		if out, err := c.dc(ctx, "logs", "--no-color", "--timestamps"); err == nil {
			_ = os.WriteFile(filepath.Join(c.dir, "compose.log"), []byte(out), 0o644)
		}
	}
	c.log("tearing down project %s (down -v)", c.project())
	if err := c.down(ctx); err != nil {
		c.log("teardown: %v", err)
	}
}

// down removes the project's containers, volumes and network. Docker may keep counting
// endpoints of removed containers on the network; Compose then stops before the volumes,
// which down removes itself: a run on an earlier run's data finds its checkout IDs taken
// and its services' records made. The network stays, and the next `up` reuses it.
func (c *cluster) down(ctx context.Context) error {
	_, err := c.dc(ctx, "down", "-v", "--remove-orphans")
	if err == nil || !strings.Contains(err.Error(), "has active endpoints") {
		return err
	}
	c.log("the project's network stays (Docker kept endpoints of removed containers); removing its volumes")
	vols, err := c.run(ctx, "docker", "volume", "ls", "-q", "--filter", "label=com.docker.compose.project="+c.project())
	if err != nil || vols == "" {
		return err
	}
	_, err = c.run(ctx, "docker", append([]string{"volume", "rm"}, strings.Fields(vols)...)...)
	return err
}

func (c *cluster) project() string {
	i := slices.Index(c.compose, "-p")
	return c.compose[i+1]
}

// container is the ID of a compose service's container, created or running, asked of the
// engine (any Compose front end labels its containers the same way).
func (c *cluster) container(ctx context.Context, service string) (string, error) {
	id, err := c.run(ctx, "docker", "ps", "-aq", "--filter", "label=com.docker.compose.project="+c.project(),
		"--filter", "label=com.docker.compose.service="+service)
	if err == nil && (id == "" || strings.Contains(id, "\n")) {
		err = fmt.Errorf("compose service %s: containers %q, want one", service, id)
	}
	return id, err
}

// dc runs a Compose subcommand on the project.
func (c *cluster) dc(ctx context.Context, args ...string) (string, error) {
	return c.dcWith(ctx, nil, args...)
}

// dcWith runs a Compose subcommand with more variables (runWith).
func (c *cluster) dcWith(ctx context.Context, env []string, args ...string) (string, error) {
	full := append(slices.Clone(c.compose[1:]), args...)
	return c.runWith(ctx, env, c.compose[0], full...)
}

// run runs a command in the repository with the run's ports and returns its trimmed stdout.
func (c *cluster) run(ctx context.Context, name string, args ...string) (string, error) {
	return c.runWith(ctx, nil, name, args...)
}

// runWith is run with more variables, which take precedence over the run's.
func (c *cluster) runWith(ctx context.Context, env []string, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = c.root
	cmd.Env = append(append(os.Environ(), c.env...), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, errb.String())
	}
	return strings.TrimSpace(out.String()), nil
}

// credentials reads NATS_USER and NATS_PASSWORD from a generated env file.
func credentials(path string) (user, pass string, err error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return "", "", err
	}
	for line := range strings.SplitSeq(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "NATS_USER="); ok {
			user = strings.TrimSpace(v)
		}
		if v, ok := strings.CutPrefix(line, "NATS_PASSWORD="); ok {
			pass = strings.TrimSpace(v)
		}
	}
	if user == "" || pass == "" {
		return "", "", fmt.Errorf("%s: no NATS_USER and NATS_PASSWORD", path)
	}
	return user, pass, nil
}

// mailbox: mailpit takes every message; nothing is refused.
func (c *cluster) mailbox() mailbox { return nil }

// mails reads every message mailpit holds, a page at a time; mailpit keeps each delivery,
// so a message delivered twice is there twice.
func (c *cluster) mails(ctx context.Context) ([]receivedMail, error) {
	var out []receivedMail
	for {
		var page struct {
			Messages []struct {
				MessageID string
				Subject   string
				To        []struct{ Address string }
			} `json:"messages"`
		}
		u := fmt.Sprintf("http://127.0.0.1:%d/api/v1/messages?start=%d&limit=500", c.ports["mailpit"], len(out))
		if err := getJSON(ctx, u, &page); err != nil {
			return nil, err
		}
		if len(page.Messages) == 0 {
			return out, nil
		}
		for _, m := range page.Messages {
			to := ""
			if len(m.To) > 0 {
				to = m.To[0].Address
			}
			out = append(out, receivedMail{MessageID: m.MessageID, To: to, Subject: m.Subject})
		}
	}
}

func getJSON(ctx context.Context, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
