package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/nats-io/nats.go/jetstream"
)

// UpgradeOptions are the two images of a rolling upgrade and the version its writers are
// held at until every container runs the new one.
type UpgradeOptions struct {
	From, To string // jetcheckout images: the previous release's, the current build's
	// FromRev is the previous release's git revision (tag or commit): the NATS nodes start
	// with its configuration (deploy/nats: the users and their permissions) and get the
	// current one when they are replaced. Empty: the current one from the start.
	FromRev string
	// Hold is SCHEMA_WRITE_VERSION while the first round replaces the containers, the
	// version the previous release reads; a second round lifts it. Empty: no hold, one round
	// (what an upgrade that ignores the order does).
	Hold string
}

// Replacement is one container replaced by one on the new image, and how long it took from
// the replacement's start (the old one stops) to the new one being ready: its health check
// passing, and for a NATS node every stream and consumer current again.
type Replacement struct {
	Round   int // 1: writers held at the old version; 2: the hold lifted
	Service string
	Took    time.Duration
}

// UpgradeResult is the chaos Result of the load that ran through the upgrade, and what the
// upgrade did.
type UpgradeResult struct {
	Result
	Replacements []Replacement
	// GivenUp is every message in DEADLETTER, grouped by the service that gave it up and the
	// reason: one line each, with how many and their stream sequences.
	GivenUp []string
	// Versions counts the CHECKOUT stream's events by schema version, written while the
	// writers were held and after the hold was lifted.
	Versions string
}

// notReplaced runs the jetcheckout image but stays on the old one: the Stripe emulator stands
// in for Stripe, which is no part of the shop, and forgets its PaymentIntents when it restarts.
const notReplaced = "stripe-emulator"

// The NATS nodes' configuration directory, and the variable that mounts one in the upgrade
// test's compose file over the cluster's: the previous release's, then the current one.
const (
	natsConfigDir = "deploy/nats"
	natsConfigVar = "UPGRADE_NATS_CONFIG"
)

var natsConfigOverride = `# Written by the upgrade test (internal/chaos): the NATS nodes' configuration (users and
# permissions) from ` + natsConfigVar + `: the previous release's until a node is replaced.
services:
  nats: {volumes: ["${` + natsConfigVar + `}:/etc/nats/jetcheckout:ro"]}
  nats-2: {volumes: ["${` + natsConfigVar + `}:/etc/nats/jetcheckout:ro"]}
  nats-3: {volumes: ["${` + natsConfigVar + `}:/etc/nats/jetcheckout:ro"]}
`

// releaseFiles copies the files under dir, as git revision rev has them, into to (readable
// by the image's user).
func releaseFiles(ctx context.Context, root, rev, dir, to string) error {
	list, err := exec.CommandContext(ctx, "git", "-C", root, "ls-tree", "-r", "--name-only", rev, dir).Output()
	if err != nil {
		return fmt.Errorf("git ls-tree %s %s: %w", rev, dir, err)
	}
	names := strings.Fields(string(list))
	if len(names) == 0 {
		return fmt.Errorf("revision %s has no %s", rev, dir)
	}
	for _, name := range names {
		data, err := exec.CommandContext(ctx, "git", "-C", root, "show", rev+":"+name).Output()
		if err != nil {
			return fmt.Errorf("git show %s:%s: %w", rev, name, err)
		}
		file := filepath.Join(to, strings.TrimPrefix(name, dir+"/"))
		if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(file, data, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// readyWait bounds how long a replaced container has to be ready.
const readyWait = 3 * time.Minute

// RunUpgrade starts the compose cluster on the image uo.From, drives the chaos load (no
// faults), and while it runs replaces every container of the jetcheckout image but the
// Stripe emulator with uo.To, one at a time, each ready before the next: a first round with
// the writers held at uo.Hold (SCHEMA_WRITE_VERSION), then a second with the hold lifted
// (the NATS nodes write no events: they are replaced in the first round only). The load is
// paced by the upgrade (pacer): every replacement has checkouts in flight, and the last
// share of them runs on the upgraded cluster. Then it reconciles as RunCluster does, lists
// the dead letters, and checks that no event was written at a newer version than the hold
// while it held. The project is torn down at the end; its logs are kept in o.Dir when the
// run failed.
func RunUpgrade(ctx context.Context, o Options, co ClusterOptions, uo UpgradeOptions) (res UpgradeResult, err error) {
	start := time.Now()
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	res.Seed, res.Checkouts = o.Seed, o.Checkouts
	hold, err := holdVersion(uo.Hold)
	if err != nil {
		return res, err
	}
	if uo.From == "" || uo.To == "" || o.Checkouts < 1 {
		return res, fmt.Errorf("upgrade: from %q to %q with %d checkouts: want both images and a load", uo.From, uo.To, o.Checkouts)
	}
	initial := initialStock(o.Checkouts)
	co.Env = append(co.Env, "JETCHECKOUT_IMAGE="+uo.From)
	if uo.FromRev != "" {
		old := filepath.Join(o.Dir, "nats-previous")
		if err := releaseFiles(ctx, o.Root, uo.FromRev, natsConfigDir, old); err != nil {
			return res, fmt.Errorf("the NATS configuration of %s: %w", uo.FromRev, err)
		}
		override := filepath.Join(o.Dir, "upgrade-nats.yml")
		if err := os.WriteFile(override, []byte(natsConfigOverride), 0o644); err != nil {
			return res, err
		}
		co.Files = append(co.Files, override)
		co.Env = append(co.Env, natsConfigVar+"="+old)
	}
	c := newCluster(o, co)
	defer func() {
		c.teardown(err != nil || len(res.Violations) > 0 || len(res.GivenUp) > 0)
	}()
	if err := c.start(ctx, co, initial); err != nil {
		return res, err
	}
	o.Log("cluster up on %s in %s: project %s, nats %s", uo.From, time.Since(start).Round(time.Second), co.Project, c.natsURL())

	r := newRolling(c, uo, hold, o.Checkouts, o.Log)
	if uo.FromRev != "" {
		r.natsConfig = filepath.Join(o.Root, natsConfigDir)
	}
	// The previous release has no coupons and no subscriptions: while its processes run (and
	// while writers are held) a coupon is refused or its failure left unexplained, as
	// OPERATIONS.md says, and nothing would renew a subscription.
	o.Pace, o.KillEvery, o.NoCoupons, o.NoSubscriptions = r.pacer.pace, 0, true, true
	upgradeCtx, stopUpgrade := context.WithCancel(ctx)
	upgraded := make(chan struct{})
	go func() {
		defer close(upgraded)
		r.run(upgradeCtx)
	}()
	res.Result, err = attack(ctx, o, c, initial, start)
	stopUpgrade()
	<-upgraded
	res.Replacements = r.replacements()
	o.Log("%s", replacementsSummary(res.Replacements))
	if err != nil {
		return res, err
	}
	nc, err := c.connect()
	if err != nil {
		return res, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return res, err
	}
	// Reads, made again if a stream is electing a leader (a NATS node restarted a moment ago).
	var broken []string
	for attempt := 1; ; attempt++ {
		if res.GivenUp, err = deadLetters(ctx, js); err == nil {
			res.Versions, broken, err = r.versions(ctx, js)
		}
		if err == nil || attempt == 5 || ctx.Err() != nil {
			break
		}
		o.Log("reading the dead letters and schema versions (attempt %d): %v; again in 5 s", attempt, err)
		time.Sleep(5 * time.Second)
	}
	if err != nil {
		return res, fmt.Errorf("read the dead letters and schema versions: %w", err)
	}
	res.Violations = append(res.Violations, broken...)
	return res, nil
}

// holdVersion is the schema version writers are held at, 0 for none.
func holdVersion(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < events.OldestSchemaVersion || v > events.SchemaVersion {
		return 0, fmt.Errorf("upgrade: hold version %q: want %d to %d, or empty for none", s, events.OldestSchemaVersion, events.SchemaVersion)
	}
	return v, nil
}

// step is one container to replace, in a round.
type step struct {
	round   int
	service string
}

// rolling replaces the cluster's containers one at a time, paced with the load.
type rolling struct {
	c    *cluster
	uo   UpgradeOptions
	hold int
	// natsConfig is the current NATS configuration's directory, mounted in a NATS node when
	// it is replaced (empty: the nodes had it from the start).
	natsConfig string
	steps      []step
	pacer      *pacer
	log        func(string, ...any)

	mu     sync.Mutex
	done   []Replacement
	lifted time.Time // when round 2 began: every event stored before it was written under the hold
}

func newRolling(c *cluster, uo UpgradeOptions, hold, checkouts int, log func(string, ...any)) *rolling {
	// The NATS nodes first (the new release's users and permissions: a superset of the old),
	// then every service's replicas and coordinators, the API, and the setup role last: it
	// puts the consumers' filters as the new release reads them (ARCHITECTURE.md, "The
	// rollout order").
	writers := append(c.serviceContainers(), "api", "setup")
	var steps []step
	for _, svc := range append(slices.Clone(natsNodes), writers...) {
		steps = append(steps, step{1, svc})
	}
	if hold != 0 {
		for _, svc := range writers {
			steps = append(steps, step{2, svc})
		}
	}
	return &rolling{c: c, uo: uo, hold: hold, steps: steps, pacer: newPacer(checkouts, len(steps)), log: log}
}

// run replaces the containers in order, each once its share of the load has started; a
// replacement that fails stops the upgrade and, through the pacer, the load.
func (r *rolling) run(ctx context.Context) {
	nc, err := r.c.connect()
	if err != nil {
		r.pacer.fail(err)
		return
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		r.pacer.fail(err)
		return
	}
	r.log("upgrade: %d replacements from %s to %s, %s; %s stays on %s", len(r.steps), r.uo.From, r.uo.To,
		r.holdNote(), notReplaced, r.uo.From)
	for k, s := range r.steps {
		if err := r.pacer.shareStarted(ctx, k); err != nil {
			r.pacer.fail(err)
			return
		}
		if s.round == 2 && r.liftedAt().IsZero() {
			r.mu.Lock()
			r.lifted = time.Now()
			r.mu.Unlock()
			r.log("upgrade: every container runs %s; round 2 lifts the hold (SCHEMA_WRITE_VERSION empty)", r.uo.To)
		}
		took, err := r.replace(ctx, js, s)
		if err != nil {
			r.pacer.fail(fmt.Errorf("upgrade: replace %s (round %d): %w", s.service, s.round, err))
			return
		}
		r.mu.Lock()
		r.done = append(r.done, Replacement{Round: s.round, Service: s.service, Took: took})
		r.mu.Unlock()
		r.log("upgrade: %d/%d %s replaced (round %d) in %s", k+1, len(r.steps), s.service, s.round, took.Round(time.Millisecond))
		r.pacer.stepDone()
	}
}

func (r *rolling) holdNote() string {
	if r.hold == 0 {
		return "writers NOT held (one round)"
	}
	return fmt.Sprintf("writers held at schema version %d, then a second round without the hold", r.hold)
}

// replace recreates one compose service's container on the new image with the round's
// SCHEMA_WRITE_VERSION, checks that it got both, and waits until it is ready.
func (r *rolling) replace(ctx context.Context, js jetstream.JetStream, s step) (time.Duration, error) {
	write := ""
	if s.round == 1 && r.hold != 0 {
		write = strconv.Itoa(r.hold)
	}
	start := time.Now()
	// --force-recreate: a NATS node's configuration does not change with the variable.
	env := []string{"JETCHECKOUT_IMAGE=" + r.uo.To, "SCHEMA_WRITE_VERSION=" + write}
	if r.natsConfig != "" {
		env = append(env, natsConfigVar+"="+r.natsConfig)
	}
	if _, err := r.c.dcWith(ctx, env, "up", "-d", "--no-deps", "--force-recreate", s.service); err != nil {
		return 0, err
	}
	id, err := r.c.container(ctx, s.service)
	if err != nil {
		return 0, err
	}
	r.c.setContainer(s.service, id)
	if err := r.checkCreated(ctx, s, id, write); err != nil {
		return 0, err
	}
	if err := r.c.ready(ctx, id, readyWait); err != nil {
		return 0, err
	}
	if slices.Contains(natsNodes, s.service) {
		if err := jetStreamCurrent(ctx, js, readyWait); err != nil {
			return 0, err
		}
	}
	return time.Since(start), nil
}

// checkCreated checks that the new container runs the new image and, where it writes events,
// with the round's SCHEMA_WRITE_VERSION: the compose file passes it on.
func (r *rolling) checkCreated(ctx context.Context, s step, id, write string) error {
	out, err := r.c.run(ctx, "docker", "inspect", "-f",
		`{{.Config.Image}}{{range .Mounts}}{{if eq .Destination "/etc/nats/jetcheckout"}} {{.Source}}{{end}}{{end}}{{range .Config.Env}}`+"\n{{.}}{{end}}", id)
	if err != nil {
		return err
	}
	first, env, _ := strings.Cut(out, "\n")
	image, config, _ := strings.Cut(first, " ")
	if image != r.uo.To {
		return fmt.Errorf("the new container runs %s, not %s", image, r.uo.To)
	}
	if slices.Contains(natsNodes, s.service) {
		if r.natsConfig != "" && config != r.natsConfig {
			return fmt.Errorf("the new NATS node's configuration is %s, not %s", config, r.natsConfig)
		}
		return nil
	}
	if want := "SCHEMA_WRITE_VERSION=" + write; !slices.Contains(strings.Split(env, "\n"), want) {
		return fmt.Errorf("the new container's environment has no %s (docker-compose.yml's x-environment passes it)", want)
	}
	return nil
}

func (r *rolling) liftedAt() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lifted
}

func (r *rolling) replacements() []Replacement {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.done)
}

// versions counts the CHECKOUT stream's events by schema_version, split at the moment the hold
// was lifted, and reports as violations every event stored before it at a version newer than
// the hold (a writer that ignored it), and a lifted hold under which nothing was written at
// the current version. Messages without a schema_version (checkout.requested as a storefront
// publishes it) are not events of the contract.
func (r *rolling) versions(ctx context.Context, js jetstream.JetStream) (string, []string, error) {
	lifted := r.liftedAt()
	held, after := map[int]int{}, map[int]int{}
	var early []string
	err := eachInStream(ctx, js, events.StreamCheckout, nil, func(m jetstream.Msg) error {
		var v struct {
			SchemaVersion int `json:"schema_version"`
		}
		md, err := m.Metadata()
		if err != nil {
			return err
		}
		if json.Unmarshal(m.Data(), &v) != nil || v.SchemaVersion == 0 {
			return nil
		}
		if r.hold == 0 || md.Timestamp.Before(lifted) || lifted.IsZero() {
			held[v.SchemaVersion]++
			if r.hold != 0 && v.SchemaVersion > r.hold {
				early = append(early, fmt.Sprintf("%s #%d", m.Subject(), md.Sequence.Stream))
			}
			return nil
		}
		after[v.SchemaVersion]++
		return nil
	})
	if err != nil {
		return "", nil, err
	}
	var broken []string
	if len(early) > 0 {
		broken = append(broken, fmt.Sprintf("%d events written at a version newer than the hold (%d) while it held, the first: %s",
			len(early), r.hold, early[0]))
	}
	if r.hold != 0 && r.hold < events.SchemaVersion && after[events.SchemaVersion] == 0 {
		broken = append(broken, fmt.Sprintf("the hold was lifted, but no event was written at version %d after it", events.SchemaVersion))
	}
	if r.hold == 0 {
		return "events by schema version (no hold): " + countVersions(held), broken, nil
	}
	return fmt.Sprintf("events by schema version: while held at %d: %s; after the hold was lifted: %s",
		r.hold, countVersions(held), countVersions(after)), broken, nil
}

func countVersions(by map[int]int) string {
	if len(by) == 0 {
		return "none"
	}
	var out []string
	for _, v := range slices.Sorted(maps.Keys(by)) {
		out = append(out, fmt.Sprintf("v%d=%d", v, by[v]))
	}
	return strings.Join(out, " ")
}

// deadLetters reads every message in DEADLETTER and groups them by the service that gave
// them up and the reason (their headers; a reason starts with the event's subject).
func deadLetters(ctx context.Context, js jetstream.JetStream) ([]string, error) {
	type group struct {
		n    int
		seqs []string // the first few stream sequences of the events given up
	}
	groups := map[string]*group{}
	err := eachStored(ctx, js, events.StreamDeadLetter, func(m *jetstream.RawStreamMsg) error {
		key := strings.TrimPrefix(m.Subject, "deadletter.") + " gave up " + m.Header.Get(events.HeaderDeadReason)
		g := groups[key]
		if g == nil {
			g = &group{}
			groups[key] = g
		}
		if g.n++; len(g.seqs) < 5 {
			g.seqs = append(g.seqs, "#"+m.Header.Get(events.HeaderDeadSequence))
		}
		return nil
	})
	var out []string
	for _, key := range slices.Sorted(maps.Keys(groups)) {
		g := groups[key]
		more := ""
		if g.n > len(g.seqs) {
			more = " ..."
		}
		out = append(out, fmt.Sprintf("%d× %s (stream %s%s)", g.n, key, strings.Join(g.seqs, " "), more))
	}
	return out, err
}

// replacementsSummary is each round's replacements: how many, how long in all, the median
// and the slowest, then every one.
func replacementsSummary(all []Replacement) string {
	if len(all) == 0 {
		return "upgrade: no container replaced"
	}
	var b strings.Builder
	b.WriteString("upgrade: replacements (from the old container's stop to the new one ready):")
	for round := 1; round <= 2; round++ {
		var took []time.Duration
		var each []string
		var total time.Duration
		slowest := Replacement{}
		for _, r := range all {
			if r.Round != round {
				continue
			}
			took = append(took, r.Took)
			total += r.Took
			each = append(each, fmt.Sprintf("%s %s", r.Service, r.Took.Round(100*time.Millisecond)))
			if r.Took > slowest.Took {
				slowest = r
			}
		}
		if len(took) == 0 {
			continue
		}
		slices.Sort(took)
		fmt.Fprintf(&b, "\n  round %d: %d containers in %s, median %s, slowest %s (%s)\n    %s", round, len(took),
			total.Round(time.Second), median(took).Round(100*time.Millisecond), slowest.Took.Round(100*time.Millisecond),
			slowest.Service, strings.Join(each, ", "))
	}
	return b.String()
}

// ready waits until a container's own health check (its compose healthcheck command, run
// with docker exec every half second, not at Docker's 5 s interval) passes.
func (c *cluster) ready(ctx context.Context, id string, limit time.Duration) error {
	raw, err := c.run(ctx, "docker", "inspect", "-f", "{{json .Config.Healthcheck.Test}}", id)
	if err != nil {
		return err
	}
	var test []string
	if err := json.Unmarshal([]byte(raw), &test); err != nil || len(test) < 2 || test[0] != "CMD" {
		return fmt.Errorf("health check %s: want [\"CMD\", ...]", raw)
	}
	deadline := time.Now().Add(limit)
	for {
		_, err := c.run(ctx, "docker", append([]string{"exec", id}, test[1:]...)...)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("not ready after %s: %v", limit, err)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// jetStreamCurrent waits until every stream and durable consumer has a leader and all its
// replicas are current: the cluster has its quorum back and a node that restarted caught up.
func jetStreamCurrent(ctx context.Context, js jetstream.JetStream, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		lagging, err := notCurrent(ctx, js)
		if err == nil && len(lagging) == 0 {
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("JetStream not current after %s: %v %v", limit, lagging, err)
		}
		time.Sleep(time.Second)
	}
}

// notCurrent lists the streams and durable consumers without a leader or with a replica
// behind or offline.
func notCurrent(ctx context.Context, js jetstream.JetStream) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var out []string
	streams := js.ListStreams(ctx)
	for info := range streams.Info() {
		if why := behind(info.Cluster); why != "" {
			out = append(out, "stream "+info.Config.Name+": "+why)
		}
		stream, err := js.Stream(ctx, info.Config.Name)
		if err != nil {
			return out, err
		}
		consumers := stream.ListConsumers(ctx)
		for ci := range consumers.Info() {
			if why := behind(ci.Cluster); ci.Config.Durable != "" && why != "" {
				out = append(out, "consumer "+info.Config.Name+"/"+ci.Name+": "+why)
			}
		}
		if err := consumers.Err(); err != nil {
			return out, err
		}
	}
	return out, streams.Err()
}

func behind(ci *jetstream.ClusterInfo) string {
	if ci == nil || ci.Leader == "" {
		return "no leader"
	}
	for _, p := range ci.Replicas {
		if p.Offline || !p.Current {
			return p.Name + " not current"
		}
	}
	return ""
}

// pacer spreads a load of n checkouts over the steps of a rolling upgrade. The checkouts are
// cut, in order, into steps+1 shares: share 0 starts at once, share k once step k-1 is done,
// and step k waits until every checkout of share k is let through. So every replacement
// starts with checkouts in flight, the load cannot end before the upgrade does, and its last
// share runs on the upgraded cluster.
type pacer struct {
	n, shares int

	mu      sync.Mutex
	done    int           // steps done
	started int           // checkouts let through
	err     error         // why the upgrade stopped
	changed chan struct{} // closed, and replaced, on every change
}

func newPacer(n, steps int) *pacer {
	return &pacer{n: n, shares: steps + 1, changed: make(chan struct{})}
}

// pace lets checkout i start once the step before its share is done; it fails once the
// upgrade has.
func (p *pacer) pace(ctx context.Context, i int) error {
	return p.wait(ctx, func() bool {
		if i*p.shares/p.n > p.done {
			return false
		}
		p.started = max(p.started, i+1)
		return true
	})
}

// shareStarted waits until every checkout of step k's share has been let through.
func (p *pacer) shareStarted(ctx context.Context, k int) error {
	end := ((k+1)*p.n + p.shares - 1) / p.shares // the first checkout of share k+1
	return p.wait(ctx, func() bool { return p.started >= end })
}

func (p *pacer) stepDone()      { p.update(func() { p.done++ }) }
func (p *pacer) fail(err error) { p.update(func() { p.err = err }) }

// wait waits until ready, called with the lock held (it may change the state), says so.
func (p *pacer) wait(ctx context.Context, ready func() bool) error {
	for {
		p.mu.Lock()
		if p.err != nil {
			err := p.err
			p.mu.Unlock()
			return err
		}
		if ready() {
			p.broadcast()
			p.mu.Unlock()
			return nil
		}
		changed := p.changed
		p.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

func (p *pacer) update(f func()) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f()
	p.broadcast()
}

func (p *pacer) broadcast() {
	close(p.changed)
	p.changed = make(chan struct{})
}
