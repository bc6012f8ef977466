package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Load is one measured run's shape: a fixed offered rate (open loop: requests go out on
// schedule whether or not earlier ones finished) or a fixed number in flight (closed
// loop: a new request as soon as one ends).
type Load struct {
	Rate     float64       // checkouts/s offered; 0 with InFlight set
	InFlight int           // checkouts kept in flight; 0 with Rate set
	Duration time.Duration // how long requests are offered
	// Drain is how long to wait, after the last request, for the checkouts still open.
	Drain time.Duration
	// Items is what each cart holds (default: a T-shirt and two sticker packs, in USD).
	Items []events.CartItem
}

func (l *Load) setDefaults() {
	if l.Drain == 0 {
		l.Drain = 60 * time.Second
	}
	if len(l.Items) == 0 {
		l.Items = []events.CartItem{{ProductID: "tee-jetstream", Quantity: 1}, {ProductID: "stickers", Quantity: 2}}
	}
}

// Validate explains a load that cannot run.
func (l Load) Validate() error {
	switch {
	case (l.Rate > 0) == (l.InFlight > 0):
		return errors.New("loadgen: set exactly one of a rate and a number in flight")
	case l.Duration <= 0:
		return errors.New("loadgen: the duration must be positive")
	}
	return nil
}

// target is what a run drives: the system's NATS connection and JetStream.
type target struct {
	nc *nats.Conn
	js jetstream.JetStream
}

// runLoad creates the carts, offers the checkouts and waits for them to end.
func runLoad(ctx context.Context, t target, runID string, load Load) (RunResult, error) {
	load.setDefaults()
	if err := load.Validate(); err != nil {
		return RunResult{}, err
	}
	n := cartsNeeded(load)
	cartsStart := time.Now()
	carts, err := createCarts(ctx, t.nc, runID, load.Items, n)
	if err != nil {
		return RunResult{}, err
	}
	res := RunResult{Load: describe(load), CartsCreated: len(carts), CartsPerSecond: float64(len(carts)) / time.Since(cartsStart).Seconds()}

	var slots chan struct{}
	if load.InFlight > 0 {
		slots = make(chan struct{}, load.InFlight)
	}
	ended := func() {
		if slots != nil {
			<-slots
		}
	}
	obs, err := newObserver(t.nc, ended)
	if err != nil {
		return res, err
	}
	defer obs.stop()
	js0, err := streamCounters(ctx, t.js)
	if err != nil {
		return res, err
	}
	usage0 := readUsage()
	stopSampling := sampleMemory(max(load.Duration/20, time.Second))
	start := time.Now()
	published, pubErrs := offer(ctx, t.js, obs, runID, carts, load, slots, start)
	offered := time.Since(start)
	deadline := time.Now().Add(load.Drain)
	for obs.pending() > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	usage1 := readUsage()
	res.Memory = stopSampling()
	js1, err := streamCounters(ctx, t.js)
	if err != nil {
		return res, err
	}

	obs.mu.Lock()
	defer obs.mu.Unlock()
	res.Published = published
	res.PublishErrors = pubErrs
	res.Completed, res.Failed = obs.finished.completed, obs.finished.failed
	res.Unfinished = len(obs.open)
	res.OfferedSeconds = offered.Seconds()
	res.Seconds = offered.Seconds()
	if !obs.last.IsZero() {
		res.Seconds = max(res.Seconds, obs.last.Sub(start).Seconds())
	}
	res.CompletedPerSecond = float64(res.Completed) / res.Seconds
	res.FailedPerSecond = float64(res.Failed) / res.Seconds
	res.EndToEnd = obs.e2e.Summary()
	res.Steps = map[events.StepName]Summary{}
	for name, h := range obs.steps {
		res.Steps[name] = h.Summary()
	}
	res.Resources = usage1.since(usage0)
	res.JetStream = perCheckout(js0, js1, res.Completed+res.Failed)
	res.Stray = obs.stray
	res.Failures = obs.failures
	return res, nil
}

// cartsNeeded is one cart per checkout the load can offer (closed loop: a generous bound).
func cartsNeeded(l Load) int {
	if l.Rate > 0 {
		return int(l.Rate*l.Duration.Seconds()) + 1
	}
	// A closed loop offers as fast as checkouts end: 500/s is several times what the
	// system does today. Should they run out, the run offers for less than its duration.
	return int(500*l.Duration.Seconds()) + l.InFlight
}

func describe(l Load) LoadDesc {
	return LoadDesc{Rate: l.Rate, InFlight: l.InFlight, DurationSeconds: l.Duration.Seconds(), Items: l.Items}
}

// offer publishes one checkout.requested per cart, on schedule (rate) or as slots free up
// (in flight), until the duration is over. Each request's clock starts when it was due:
// a publisher that falls behind does not hide the delay (no coordinated omission).
func offer(ctx context.Context, js jetstream.JetStream, obs *observer, runID string, carts []string, load Load, slots chan struct{}, start time.Time) (published, errs uint64) {
	var wg sync.WaitGroup
	var failed atomic.Uint64
	end := start.Add(load.Duration)
	for i, cart := range carts {
		due := time.Now()
		if load.Rate > 0 {
			due = start.Add(time.Duration(float64(i) / load.Rate * float64(time.Second)))
			if !due.Before(end) {
				break
			}
			if wait := time.Until(due); wait > 0 {
				time.Sleep(wait)
			}
		} else {
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
			}
			due = time.Now()
			if !due.Before(end) {
				<-slots
				break
			}
		}
		if ctx.Err() != nil {
			break
		}
		id := fmt.Sprintf("%s_%d", runID, i)
		obs.start(id, due)
		ack, err := js.PublishAsync(string(events.Requested), requestFor(runID, id, cart, i))
		published++
		if err != nil {
			failed.Add(1)
			obs.abandon(id)
			continue
		}
		wg.Go(func() {
			select {
			case <-ack.Ok():
			case <-ack.Err():
				failed.Add(1)
				obs.abandon(id)
			}
		})
	}
	wg.Wait()
	return published, failed.Load()
}

// requestFor is a valid Californian checkout by a customer of its own, paid by a card
// that succeeds.
func requestFor(runID, checkoutID, cartID string, i int) []byte {
	addr := events.Address{Line1: "1 Market St", City: "San Francisco", State: "CA", PostalCode: "94105", Country: "US"}
	raw, _ := json.Marshal(events.CheckoutRequest{
		CheckoutID: checkoutID, CartID: cartID, CustomerID: customerOf(runID, i),
		CustomerEmail: fmt.Sprintf("bench%d@example.com", i), PaymentMethodID: "pm_card_visa",
		ShippingAddress: addr, BillingAddress: addr,
	})
	return raw
}

// customerOf is the customer of a run's i-th cart and checkout.
func customerOf(runID string, i int) string { return fmt.Sprintf("cus_%s_%d", runID, i) }
