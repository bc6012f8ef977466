package chaos

import (
	"context"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
)

// A containerFault is done to one container and undone after a pause.
type containerFault struct {
	name     string
	do, undo func(c *cluster, svc, id string) []string // the docker command's arguments
}

// containerFaults: a crash (SIGKILL, Docker does not restart a killed container), a stop
// (SIGTERM, SIGKILL after 2 s), a freeze (docker pause: the process holds its connections,
// locks and leadership, and answers nothing), and a cut-off (off the project's network:
// its peers and clients see it vanish, it sees them vanish).
var containerFaults = []containerFault{
	{name: "kill", do: dockerCmd("kill"), undo: dockerCmd("start")},
	{name: "stop", do: dockerCmd("stop", "-t", "2"), undo: dockerCmd("start")},
	{name: "pause", do: dockerCmd("pause"), undo: dockerCmd("unpause")},
	{name: "cut off", do: func(c *cluster, _, id string) []string { return []string{"network", "disconnect", c.network, id} },
		// The service's name as alias again, or its peers no longer find it by name.
		undo: func(c *cluster, svc, id string) []string {
			return []string{"network", "connect", "--alias", svc, c.network, id}
		}},
}

func dockerCmd(verb string, flags ...string) func(*cluster, string, string) []string {
	return func(_ *cluster, _, id string) []string { return append(append([]string{verb}, flags...), id) }
}

// natsFaultShare is the share of faults that hit a NATS node rather than a service.
const natsFaultShare = 0.3

// destroyShare is the share of the faults on a rebuildable service (events.Rebuildable) that
// destroy its pinned replica's container together with its volume (see destroy).
const destroyShare = 0.4

// attack starts a fault about every `every`: a random kind on a random NATS node or service
// replica, undone after a random pause. Faults overlap, but never two on one container and
// never two NATS nodes at once: the cluster promises to survive the loss of one node.
func (c *cluster) attack(ctx context.Context, r *rand.Rand, every time.Duration, log func(string, ...any)) int {
	services := c.serviceContainers()
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		busy   = map[string]bool{}
		faults int
	)
	natsBusy := func() bool {
		return slices.ContainsFunc(natsNodes, func(n string) bool { return busy[n] })
	}
	for {
		wait := every/2 + time.Duration(r.Int64N(int64(every)))
		select {
		case <-ctx.Done():
			wg.Wait()
			c.logTakeovers(log)
			return faults
		case <-time.After(wait):
		}
		// Every draw is made whether or not the fault can happen, so that the seed's
		// sequence does not depend on timing.
		hitNATS := r.Float64() < natsFaultShare
		victim := services[r.IntN(len(services))]
		if hitNATS {
			victim = natsNodes[r.IntN(len(natsNodes))]
		}
		f := containerFaults[r.IntN(len(containerFaults))]
		pause := 500*time.Millisecond + time.Duration(r.Int64N(int64(4500*time.Millisecond)))
		service := strings.TrimSuffix(victim, "-2")
		destroy := r.Float64() < destroyShare && !hitNATS && events.Rebuildable[service]
		mu.Lock()
		if busy[victim] || (hitNATS && natsBusy()) || (destroy && (busy[service] || busy[service+"-2"])) {
			mu.Unlock()
			continue
		}
		busy[victim] = true
		if destroy { // both replicas: the one left is measured taking over alone
			busy[service], busy[service+"-2"] = true, true
		}
		mu.Unlock()
		if destroy {
			wg.Go(func() {
				defer func() {
					mu.Lock()
					delete(busy, service)
					delete(busy, service+"-2")
					mu.Unlock()
				}()
				if c.destroy(context.WithoutCancel(ctx), service, pause, log) {
					mu.Lock()
					faults++
					mu.Unlock()
				}
			})
			continue
		}
		id := c.containerOf(victim)
		log("%s %s, undone in %s", f.name, victim, pause.Round(time.Millisecond))
		wg.Go(func() {
			defer func() {
				mu.Lock()
				delete(busy, victim)
				mu.Unlock()
			}()
			bg := context.WithoutCancel(ctx)
			if _, err := c.run(bg, "docker", f.do(c, victim, id)...); err != nil {
				log("%s %s: %v", f.name, victim, err)
				return
			}
			mu.Lock()
			faults++
			mu.Unlock()
			time.Sleep(pause)
			// Undone whatever happens, or the run measures an outage it caused itself.
			for attempt := 1; ; attempt++ {
				_, err := c.run(bg, "docker", f.undo(c, victim, id)...)
				if err == nil {
					return
				}
				log("undo %s %s (attempt %d): %v", f.name, victim, attempt, err)
				if attempt == 10 {
					return
				}
				time.Sleep(time.Second)
			}
		})
	}
}
