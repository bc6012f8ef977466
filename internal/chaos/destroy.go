package chaos

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"time"

	"github.com/jetcheckout/jetcheckout/internal/topology"
)

// pinLine is what a service's runner logs when it holds its consumer's pin and its view is
// caught up: the first message under the pin is handled next.
const pinLine = topology.LogHoldingPin

// destroy removes the container of the replica of a rebuildable service that holds its
// consumer's pin, together with its volume, as a lost machine would take them; after pause
// creates the container again, on a new volume, where it rebuilds its view from its snapshot
// and the stream; and measures how long it took until a replica (the other, or the new one
// when it was back first) held the pin and handled messages: the takeover. It reports whether
// the fault was done.
func (c *cluster) destroy(ctx context.Context, service string, pause time.Duration, log func(string, ...any)) bool {
	victim, other := c.pinHolder(ctx, service)
	id := c.containerOf(victim)
	volume, err := c.run(ctx, "docker", "inspect", "-f", `{{range .Mounts}}{{if eq .Destination "/data"}}{{.Name}}{{end}}{{end}}`, id)
	if err != nil || volume == "" {
		log("destroy %s: its volume: %q %v", victim, volume, err)
		return false
	}
	log("destroy %s (the pin's holder) with its volume %s, created again in %s", victim, volume, pause.Round(time.Millisecond))
	start := time.Now()
	if _, err := c.run(ctx, "docker", "rm", "-f", id); err != nil {
		log("destroy %s: %v", victim, err)
		return false
	}
	took := make(chan takeover, 1)
	go func() { took <- c.takeover(ctx, []string{other, victim}, start) }()
	if _, err := c.run(ctx, "docker", "volume", "rm", volume); err != nil {
		log("destroy %s: remove its volume: %v", victim, err)
	}
	time.Sleep(pause)
	// Created again whatever happens, or the run measures an outage it caused itself.
	for attempt := 1; ; attempt++ {
		_, err := c.dc(ctx, "up", "-d", "--no-deps", victim)
		if err == nil {
			if id, err = c.container(ctx, victim); err == nil {
				c.setContainer(victim, id)
				break
			}
		}
		log("create %s again (attempt %d): %v", victim, attempt, err)
		if attempt == 10 {
			break
		}
		time.Sleep(time.Second)
	}
	if t := <-took; t.after > 0 {
		log("takeover of %s: %s held the pin and handled messages %s after %s was destroyed (its catch-up: %s)", service, t.by,
			t.after.Round(time.Millisecond), victim, t.catchUp)
		c.mu.Lock()
		c.takeovers = append(c.takeovers, t.after)
		c.mu.Unlock()
	} else {
		log("takeover of %s: no replica took the pin within a minute (no message for %s came, or %s did not hold the pin)", service, service, victim)
	}
	return true
}

// takeover is when a replica logged that it holds the pin, after a destroy, and what its log
// line says of its catch-up.
type takeover struct {
	by      string
	after   time.Duration
	catchUp string
}

// pinHolder is the replica of service that took its consumer's pin last (by its logs), and
// the other one; the first replica when neither says.
func (c *cluster) pinHolder(ctx context.Context, service string) (holder, other string) {
	a, b := service, service+"-2"
	ta, _, _ := c.lastPin(ctx, a, time.Time{})
	tb, _, _ := c.lastPin(ctx, b, time.Time{})
	if tb.After(ta) {
		return b, a
	}
	return a, b
}

// takeover waits up to a minute for one of replicas (their current containers) to log that
// it holds the pin after since, and returns which did first, how long after since (0: none).
func (c *cluster) takeover(ctx context.Context, replicas []string, since time.Time) takeover {
	deadline := since.Add(time.Minute)
	for time.Now().Before(deadline) {
		var first takeover
		for _, replica := range replicas {
			if at, line, ok := c.lastPin(ctx, replica, since); ok && (first.by == "" || at.Sub(since) < first.after) {
				first = takeover{by: replica, after: at.Sub(since), catchUp: catchUpOf(line)}
			}
		}
		if first.by != "" {
			return first
		}
		time.Sleep(200 * time.Millisecond)
	}
	return takeover{}
}

// catchUpOf is what a pin line says of the catch-up: messages replayed, and how long it took.
func catchUpOf(line string) string {
	var fields struct {
		Replayed int `json:"replayed"`
		Took     any `json:"took"`
	}
	if json.Unmarshal([]byte(line), &fields) != nil {
		return "?"
	}
	took := fmt.Sprint(fields.Took)
	if ns, ok := fields.Took.(float64); ok {
		took = time.Duration(ns).Round(time.Millisecond).String()
	}
	return fmt.Sprintf("%d messages replayed in %s", fields.Replayed, took)
}

// lastPin is when replica last logged that it holds the pin, since a time (zero: ever), by
// the Docker engine's timestamps of its log lines (the host's clock, as the harness's), and
// that line.
func (c *cluster) lastPin(ctx context.Context, replica string, since time.Time) (time.Time, string, bool) {
	args := []string{"logs", "--timestamps"}
	if !since.IsZero() {
		args = append(args, "--since", since.UTC().Format(time.RFC3339Nano))
	}
	out, err := exec.CommandContext(ctx, "docker", append(args, c.containerOf(replica))...).CombinedOutput()
	if err != nil {
		return time.Time{}, "", false
	}
	var last time.Time
	var lastLine string
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		stamp, line, ok := strings.Cut(sc.Text(), " ")
		if !ok || !strings.Contains(line, pinLine) {
			continue
		}
		if at, err := time.Parse(time.RFC3339Nano, stamp); err == nil && at.After(since) {
			last, lastLine = at, line
		}
	}
	return last, lastLine, !last.IsZero()
}

// logTakeovers logs the takeover times measured, and their median.
func (c *cluster) logTakeovers(log func(string, ...any)) {
	c.mu.Lock()
	all := slices.Clone(c.takeovers)
	c.mu.Unlock()
	if len(all) == 0 {
		log("takeovers: none measured")
		return
	}
	slices.Sort(all)
	var each []string
	for _, d := range all {
		each = append(each, d.Round(time.Millisecond).String())
	}
	log("takeovers: %d measured, median %s (%s)", len(all), median(all).Round(time.Millisecond), strings.Join(each, ", "))
}

// median of sorted durations.
func median(sorted []time.Duration) time.Duration {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

// containerOf is the current container of a compose service (destroy makes a new one).
func (c *cluster) containerOf(service string) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.containers[service]
}

func (c *cluster) setContainer(service, id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.containers[service] = id
}
