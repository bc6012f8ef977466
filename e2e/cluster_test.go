//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/topology"
)

// stepServices are the services with a store: their two replicas take turns, on the file's
// lock, or, for a rebuildable one, on its consumer's pin (both run, each on its own volume).
var stepServices = []string{"catalog", "inventory", "fraud", "payments", "orders", "notifications", "shipping"}

// health is what a container's `jetcheckout healthcheck` prints: "ok", "standby: ...", or
// why it is unhealthy.
func (s *stack) health(service string) string {
	out, err := s.run(nil, "docker", "exec", s.container(service), "jetcheckout", "healthcheck")
	if err != nil {
		return "unhealthy: " + err.Error()
	}
	return strings.TrimSpace(out)
}

// active is which of a service's two replicas runs it (the other stands by).
func (s *stack) active(service string) (running, standby string) {
	s.t.Helper()
	a, b := s.health(service), s.health(service+"-2")
	switch {
	case a == "ok" && strings.HasPrefix(b, "standby"):
		return service, service + "-2"
	case b == "ok" && strings.HasPrefix(a, "standby"):
		return service + "-2", service
	}
	s.t.Fatalf("%s: want one replica running and one standing by; %s says %q, %s-2 says %q", service, service, a, service, b)
	return "", ""
}

// pinHolder is the replica of a rebuildable service that took its consumer's pin last (by
// its log), and the other one.
func (s *stack) pinHolder(service string) (holder, other string) {
	s.t.Helper()
	a, b := service, service+"-2"
	if s.lastPin(b).After(s.lastPin(a)) {
		a, b = b, a
	}
	if s.lastPin(a).IsZero() {
		s.t.Fatalf("%s: neither replica logged %q", service, topology.LogHoldingPin)
	}
	return a, b
}

// lastPin is when a replica last logged that it holds its consumer's pin (zero: never), by
// the Docker engine's timestamps.
func (s *stack) lastPin(replica string) time.Time {
	out, err := exec.Command("docker", "logs", "--timestamps", s.container(replica)).CombinedOutput()
	if err != nil {
		return time.Time{}
	}
	var last time.Time
	for line := range strings.SplitSeq(string(out), "\n") {
		stamp, rest, ok := strings.Cut(line, " ")
		if !ok || !strings.Contains(rest, topology.LogHoldingPin) {
			continue
		}
		if at, err := time.Parse(time.RFC3339Nano, stamp); err == nil && at.After(last) {
			last = at
		}
	}
	return last
}

// streamCluster is the part of `nats stream info --json` about replication.
type streamCluster struct {
	Config struct {
		Replicas int `json:"num_replicas"`
	} `json:"config"`
	Cluster struct {
		Leader   string `json:"leader"`
		Replicas []struct {
			Name    string `json:"name"`
			Current bool   `json:"current"`
			Offline bool   `json:"offline"`
		} `json:"replicas"`
	} `json:"cluster"`
	State struct {
		Msgs uint64 `json:"messages"`
	} `json:"state"`
}

func (s *stack) streamInfo(name string) streamCluster {
	s.t.Helper()
	var info streamCluster
	out := s.mustNATS(s.operator, "stream", "info", name, "--json")
	if err := json.Unmarshal([]byte(out), &info); err != nil {
		s.t.Fatalf("stream info %s: %v: %s", name, err, out)
	}
	return info
}

// TestCluster runs checkouts through the three-node cluster with two replicas of every
// service while it stops the node leading the CHECKOUT stream and SIGKILLs the running
// replica of payments, then starts the node again: every checkout ends exactly once (one
// terminal event, one capture, one order, one PaymentIntent), the standby took over, and
// the returning node catches up.
func TestCluster(t *testing.T) {
	s := newStack(t)
	if !s.cluster {
		t.Skip("E2E_CLUSTER is not set: `make e2e-cluster` runs this")
	}
	run := time.Now().UTC().Format("150405")
	s.begin()

	for _, stream := range []string{events.StreamCheckout, events.TimerStream(events.ServiceCoordinator), "KV_" + events.BucketCheckouts} {
		info := s.streamInfo(stream)
		if info.Config.Replicas != 3 || info.Cluster.Leader == "" || len(info.Cluster.Replicas) != 2 {
			t.Fatalf("%s: %d replicas, leader %q, followers %+v; want 3 replicas", stream, info.Config.Replicas, info.Cluster.Leader, info.Cluster.Replicas)
		}
	}
	for _, svc := range stepServices {
		if events.Rebuildable[svc] {
			if a, b := s.health(svc), s.health(svc+"-2"); a != "ok" || b != "ok" {
				t.Fatalf("%s is rebuildable: want both replicas running (each on its own view); %s says %q, %s-2 says %q", svc, svc, a, svc, b)
			}
			s.step("%s and %s-2 run, taking turns on the consumer's pin", svc, svc)
			continue
		}
		running, standby := s.active(svc)
		s.step("%s runs, %s stands by", running, standby)
	}

	products := []string{"tee-jetstream", "mug-nats", "stickers"}
	publish := func(phase string, n int) []string {
		var ids []string
		for i := range n {
			id := fmt.Sprintf("e2e-%s-%s-%d", run, phase, i)
			s.checkoutOf(id, products[i%len(products)], "pm_card_visa", "ada+"+id+"@example.com")
			ids = append(ids, id)
		}
		return ids
	}
	ids := publish("calm", 3)

	leader := s.streamInfo(events.StreamCheckout).Cluster.Leader
	s.step("stopping %s, the CHECKOUT stream's leader", leader)
	s.mustDC("stop", leader)
	ids = append(ids, publish("node-down", 4)...)
	rebuildable := events.Rebuildable[events.ServicePayments]
	var payments, other string
	if rebuildable {
		payments, other = s.pinHolder("payments")
		s.step("%s holds payments' pin", payments)
	} else {
		payments, other = s.active("payments")
	}
	crashed := time.Now()
	if _, err := s.crash(payments); err != nil {
		s.step("%v: skipping the replica crash", err)
	}
	ids = append(ids, publish("replica-down", 4)...)
	s.step("starting %s again", leader)
	s.mustDC("start", leader)

	for _, id := range ids {
		if end := s.waitFor(id, 180*time.Second, events.Completed, events.Failed); end.Type != events.Completed {
			t.Errorf("%s ended in %s: %s", id, end.Type, end.Payload)
			continue
		}
		s.exactlyOnce(id)
	}
	s.step("%d checkouts completed, each exactly once", len(ids))

	// The killed replica came back as the standby of the one that took over (for a
	// rebuildable service: both run, and one took the pin after the crash).
	deadline := time.Now().Add(90 * time.Second)
	for {
		a, b := s.health("payments"), s.health("payments-2")
		back := (a == "ok") != (b == "ok") && (strings.HasPrefix(a, "standby") || strings.HasPrefix(b, "standby"))
		if rebuildable {
			// Either may take the pin: the killed one, restarted, may be waiting first.
			back = a == "ok" && b == "ok" && (s.lastPin(other).After(crashed) || s.lastPin(payments).After(crashed))
		}
		if back {
			s.step("payments: %q, payments-2: %q", a, b)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("payments replicas after the crash: %q and %q; want one running and one standing by, or (rebuildable) both running and the pin taken again", a, b)
		}
		time.Sleep(time.Second)
	}
	// The node that was down has caught up with the stream.
	for {
		info := s.streamInfo(events.StreamCheckout)
		current := info.Cluster.Leader != ""
		for _, r := range info.Cluster.Replicas {
			current = current && r.Current && !r.Offline
		}
		if current {
			s.step("CHECKOUT: leader %s, every replica current again (%d messages)", info.Cluster.Leader, info.State.Msgs)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("CHECKOUT replicas after %s came back: %+v", leader, info.Cluster)
		}
		time.Sleep(time.Second)
	}
	// Both coordinators' counts, summed, are the checkouts; every replica is scraped.
	s.prometheusSaw(len(ids), 0)
	if !t.Failed() {
		s.step("PASS")
	}
}
