package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"slices"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
)

// killer SIGKILLs a random service, or the nats-server, about every `every`, and lets it
// start again after a random pause; a service whose file is a view (events.Rebuildable) may
// lose its data directory too, and must rebuild it from its snapshot and the stream.
type killer struct {
	stack *stack
	rand  *rand.Rand
	every time.Duration
	log   func(format string, args ...any)
	kills int
	wipes int
}

// natsShare is the share of kills that hit the nats-server rather than a service.
const natsShare = 0.15

// wipeShare is the share of a rebuildable service's kills that also delete its data directory.
const wipeShare = 0.5

func (k *killer) run(ctx context.Context) {
	names := make([]string, 0, len(k.stack.services))
	for name := range k.stack.services {
		names = append(names, name)
	}
	slices.Sort(names) // map order is random; the seed must choose the same victims
	for {
		// Between half and one and a half times the interval.
		wait := k.every/2 + time.Duration(k.rand.Int64N(int64(k.every)))
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		victim, pause, wipe := k.stack.nats, 500*time.Millisecond+time.Duration(k.rand.Int64N(int64(2500*time.Millisecond))), ""
		if k.rand.Float64() >= natsShare {
			name := names[k.rand.IntN(len(names))]
			victim, pause = k.stack.services[name], time.Duration(k.rand.Int64N(int64(3*time.Second)))
			if events.Rebuildable[name] && k.rand.Float64() < wipeShare {
				wipe = k.stack.dataDir(name)
			}
		}
		if wipe != "" {
			k.log("kill %s and delete its data directory, restart in %s", victim.name, pause.Round(time.Millisecond))
			k.wipes++
		} else {
			k.log("kill %s, restart in %s", victim.name, pause.Round(time.Millisecond))
		}
		victim.kill(pause, wipe)
		k.kills++
	}
}

// stripeFaults switches one of the emulator's faults on for a while, then off, again and
// again: latency, 5xx before or after the request ran, a request that hangs, and the
// charge whose answer is lost.
type stripeFaults struct {
	base   string
	rand   *rand.Rand
	log    func(format string, args ...any)
	faults int
}

var faultMenu = []string{
	`{"kind":"latency","delay":"1500ms","probability":0.3}`,
	`{"kind":"status","status":503,"count":3}`,
	`{"kind":"status","status":500,"after_run":true,"count":2}`,
	`{"kind":"status","status":429,"count":2}`,
	`{"kind":"timeout","match":{"method":"POST","path":"/v1/payment_intents"},"count":1}`,
	`{"kind":"charge_then_timeout","match":{"method":"POST","path":"/v1/payment_intents"},"count":1}`,
	`{"kind":"charge_then_timeout","match":{"method":"POST","path":"/v1/refunds"},"count":1}`,
}

func (f *stripeFaults) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second + time.Duration(f.rand.Int64N(int64(4*time.Second)))):
		}
		rule := faultMenu[f.rand.IntN(len(faultMenu))]
		if err := emulatorCall(ctx, f.base, http.MethodPost, "/_emulator/faults", rule); err != nil {
			f.log("stripe fault %s: %v", rule, err)
			continue
		}
		f.faults++
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(f.rand.Int64N(int64(3 * time.Second)))):
		}
		f.clear(context.WithoutCancel(ctx))
	}
}

// clear switches every fault off.
func (f *stripeFaults) clear(ctx context.Context) {
	if err := emulatorCall(ctx, f.base, http.MethodDelete, "/_emulator/faults", ""); err != nil {
		f.log("clear stripe faults: %v", err)
	}
}

func (f *stripeFaults) String() string { return fmt.Sprintf("%d stripe faults", f.faults) }
