//go:build e2e

package e2e

import (
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// notScraped are the compose services without jetcheckout's /metrics: nats-server (its
// figures are JSON on :8222), mailpit, Jaeger, and Prometheus itself.
var notScraped = []string{"nats", "nats-2", "nats-3", "mailpit", "jaeger", "prometheus"}

// scrapeTargets are the HEALTH_ADDR of every jetcheckout container the project runs: what
// Prometheus must scrape.
func (s *stack) scrapeTargets() []string {
	s.t.Helper()
	var want []string
	// By the containers' labels: `ps --services` of docker-compose 1.29 lists the services
	// of profiles not enabled too.
	out, err := s.run(nil, "docker", "ps", "--filter", "label=com.docker.compose.project="+s.project,
		"--format", `{{.Label "com.docker.compose.service"}}`)
	if err != nil {
		s.t.Fatal(err)
	}
	for _, svc := range strings.Fields(out) {
		if !slices.Contains(notScraped, svc) {
			want = append(want, svc+":8081")
		}
	}
	slices.Sort(want)
	return want
}

// promTargets are the instances of Prometheus's jetcheckout job and those not up (with the
// scrape's error).
func (s *stack) promTargets() (all, notUp []string) {
	s.t.Helper()
	var res struct {
		Data struct {
			ActiveTargets []struct {
				Labels    map[string]string `json:"labels"`
				Health    string            `json:"health"`
				LastError string            `json:"lastError"`
			} `json:"activeTargets"`
		} `json:"data"`
	}
	s.getJSON(s.prometheus+"/api/v1/targets?state=active", &res)
	for _, t := range res.Data.ActiveTargets {
		if t.Labels["job"] != "jetcheckout" {
			continue
		}
		all = append(all, t.Labels["instance"])
		if t.Health != "up" {
			notUp = append(notUp, fmt.Sprintf("%s %s %s", t.Labels["instance"], t.Health, t.LastError))
		}
	}
	slices.Sort(all)
	return all, notUp
}

// promValue is the value of a PromQL query that yields one number (false: no series yet).
func (s *stack) promValue(query string) (float64, bool) {
	s.t.Helper()
	var res struct {
		Data struct {
			Result []struct {
				Value [2]any `json:"value"` // [time, "value"]
			} `json:"result"`
		} `json:"data"`
	}
	s.getJSON(s.prometheus+"/api/v1/query?query="+url.QueryEscape(query), &res)
	if len(res.Data.Result) != 1 {
		return 0, false
	}
	text, _ := res.Data.Result[0].Value[1].(string)
	v, err := strconv.ParseFloat(text, 64)
	return v, err == nil
}

// alertRules are the alerts of deploy/prometheus/rules.yml, and those Prometheus evaluated
// without an error.
func (s *stack) alertRules() (want, ok []string) {
	s.t.Helper()
	raw, err := os.ReadFile(filepath.Join(s.root, "deploy/prometheus/rules.yml"))
	if err != nil {
		s.t.Fatal(err)
	}
	var file struct {
		Groups []struct {
			Rules []struct{ Alert string }
		}
	}
	if err := yaml.Unmarshal(raw, &file); err != nil {
		s.t.Fatalf("rules.yml: %v", err)
	}
	for _, g := range file.Groups {
		for _, r := range g.Rules {
			want = append(want, r.Alert)
		}
	}
	var res struct {
		Data struct {
			Groups []struct {
				Rules []struct{ Name, Health string }
			}
		}
	}
	s.getJSON(s.prometheus+"/api/v1/rules?type=alert", &res)
	for _, g := range res.Data.Groups {
		for _, r := range g.Rules {
			if r.Health == "ok" {
				ok = append(ok, r.Name)
			}
		}
	}
	slices.Sort(want)
	slices.Sort(ok)
	return want, ok
}

// prometheusSaw waits until Prometheus scrapes every jetcheckout container of the project,
// each up, and its counters of the coordinators' decisions (summed over the instances) show
// the checkouts the test ended: completed, and failed with a declined card; and that it
// evaluates every alert of rules.yml.
func (s *stack) prometheusSaw(completed, declined int) {
	s.t.Helper()
	want := s.scrapeTargets()
	queries := []struct {
		promql string
		want   int
	}{
		{"sum(jetcheckout_checkouts_completed_total)", completed},
		{`sum(jetcheckout_checkouts_failed_total{code="card_declined"}) or vector(0)`, declined},
	}
	// A few scrapes (scrape_interval 5 s), a restarted service's first one, and a rule
	// evaluation (every 15 s).
	deadline := time.Now().Add(60 * time.Second)
	for {
		var why []string
		all, notUp := s.promTargets()
		if !slices.Equal(all, want) {
			why = append(why, fmt.Sprintf("targets %v, want %v", all, want))
		}
		if len(notUp) > 0 {
			why = append(why, fmt.Sprintf("not up: %v", notUp))
		}
		if rules, ok := s.alertRules(); len(rules) == 0 || !slices.Equal(rules, ok) {
			why = append(why, fmt.Sprintf("alerts evaluated %v, want %v", ok, rules))
		}
		for _, q := range queries {
			if v, ok := s.promValue(q.promql); !ok || v != float64(q.want) {
				why = append(why, fmt.Sprintf("%s = %v (a value: %v), want %d", q.promql, v, ok, q.want))
			}
		}
		if len(why) == 0 {
			s.step("Prometheus scrapes all %d jetcheckout containers, every one up, and evaluates every alert; it counted %d checkouts completed and %d declined", len(want), completed, declined)
			return
		}
		if time.Now().After(deadline) {
			s.t.Errorf("Prometheus at %s after 60 s: %s", s.prometheus, strings.Join(why, "; "))
			return
		}
		time.Sleep(time.Second)
	}
}
