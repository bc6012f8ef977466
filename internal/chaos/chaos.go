package chaos

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	bolt "go.etcd.io/bbolt"
)

// Options of a run.
type Options struct {
	Seed        uint64        // every random choice derives from it
	Checkouts   int           // how many checkouts the load starts
	Concurrency int           // how many run at once (default 16)
	KillEvery   time.Duration // about how often a fault starts while the load runs (0: never)
	Root        string        // the module's root, to build the binaries from
	Dir         string        // where the processes keep their data and logs
	// Pace, when set, holds the load to the target's own progress: the i-th checkout starts
	// once Pace(ctx, i) returns nil; an error stops the load (a rolling upgrade that failed).
	Pace func(ctx context.Context, i int) error
	// NoCoupons leaves coupons out of the load: a rolling upgrade from a release that has
	// none, whose processes would refuse or not explain them.
	NoCoupons bool
	// NoSubscriptions leaves subscriptions out of the load: a rolling upgrade from a release
	// that has none.
	NoSubscriptions bool
	// Log prints progress; the summary is in the Result.
	Log func(format string, args ...any)
}

// Bounds of the phases after the faults stop.
const (
	// checkoutWait is how long a worker waits for its checkout before starting the next.
	checkoutWait = 3 * time.Minute
	// terminalWait is how long every checkout has to end once the faults stop: enough for an
	// abandoned 3-D Secure, an unanswered review and a refund that distrusts Stripe's search
	// index (payments' SearchLag) to run out.
	terminalWait = 5 * time.Minute
	// idleWait is how long the services have to finish what the terminal events start
	// (settling stock, failure notices).
	idleWait = 2 * time.Minute
)

// target is the system a run attacks: how the harness reaches it, the faults it takes,
// and where its state is read from once its services have stopped. The local processes
// (stack) and the compose cluster (cluster) are the two.
type target interface {
	// connect opens the harness's connection to NATS, reconnecting through any fault.
	connect() (*nats.Conn, error)
	// stripeURL is the base URL of the Stripe emulator, never faulted: real Stripe does
	// not forget PaymentIntents.
	stripeURL() string
	// attack causes faults about every `every` until ctx ends, undoes each after a random
	// pause, and returns how many it caused once every one is undone.
	attack(ctx context.Context, r *rand.Rand, every time.Duration, log func(string, ...any)) int
	// waitHealthy waits until every service is up and consuming again.
	waitHealthy(ctx context.Context, limit time.Duration) error
	// stopServices stops every service gracefully, so that their stores can be read.
	stopServices(ctx context.Context) error
	// withStore opens a stopped service's bbolt file for f.
	withStore(ctx context.Context, service string, f func(*bolt.DB) error) error
	// mails is every delivery the customers' mail server took.
	mails(ctx context.Context) ([]receivedMail, error)
	// subscriptionDay is how long a day of a subscription's plan lasts there.
	subscriptionDay() time.Duration
	// mailbox is the customers' mail server as the run can break and fix it, nil when it
	// cannot (mailpit takes everything): then no checkout waits for a re-drive.
	mailbox() mailbox
}

// mailbox is a mail server whose mailboxes can refuse mail (550) and take it again.
type mailbox interface {
	Refuse(addr string)
	Take(addr string)
}

// Run starts the stack as local processes, drives the load under faults, stops the faults,
// waits for every checkout to end and reconciles. It returns an error when the run itself
// could not be carried out; violations are in the Result.
func Run(ctx context.Context, o Options) (Result, error) {
	start := time.Now()
	bin := filepath.Join(o.Dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return Result{Seed: o.Seed, Checkouts: o.Checkouts}, err
	}
	jetcheckout, natsServer, err := buildBinaries(ctx, o.Root, bin)
	if err != nil {
		return Result{Seed: o.Seed, Checkouts: o.Checkouts}, err
	}
	initial := initialStock(o.Checkouts)
	st, err := startStack(ctx, o.Dir, jetcheckout, natsServer, initial)
	if err != nil {
		return Result{Seed: o.Seed, Checkouts: o.Checkouts}, err
	}
	defer st.stop()
	if o.Log != nil {
		o.Log("stack up in %s: nats %s, stripe %s, smtp %s, data %s", time.Since(start).Round(time.Millisecond), st.natsURL, st.emulatorURL, st.smtp.Addr, o.Dir)
	}
	return attack(ctx, o, st, initial, start)
}

// attack drives the load against t while t takes faults, stops the faults, waits for every
// checkout to end and reconciles what t holds against initial, the stock it started with.
func attack(ctx context.Context, o Options, t target, initial map[string]int, start time.Time) (Result, error) {
	if o.Concurrency == 0 {
		o.Concurrency = 16
	}
	if o.Log == nil {
		o.Log = func(string, ...any) {}
	}
	res := Result{Seed: o.Seed, Checkouts: o.Checkouts}
	nc, err := t.connect()
	if err != nil {
		return res, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return res, err
	}
	ends, err := watchTerminals(ctx, js)
	if err != nil {
		return res, err
	}
	defer ends.stop()

	// One generator per purpose, each from the seed, so that how fast the load goes does not
	// change which faults are drawn.
	mail := t.mailbox()
	plans := plan(rand.New(rand.NewPCG(o.Seed, 1)), o.Checkouts, mail != nil, !o.NoCoupons)
	byID := make(map[string]planned, len(plans))
	for _, p := range plans {
		byID[p.ID] = p
	}
	d := driver{nc: nc, js: js}
	opCtx, stopOperator := context.WithCancel(ctx)
	defer stopOperator()
	op := operator{driver: d, plans: byID, stripe: stripeClient(t.stripeURL()), emulator: t.stripeURL()}
	go op.run(opCtx)
	var redrives *redriver
	if mail != nil {
		redrives = newRedriver(d, ends, mail, o.Log)
		redrives.start(opCtx, plans)
	}

	// The subscriptions start before the faults: their renewals then come through them.
	var subs []plannedSub
	if !o.NoSubscriptions {
		subs = planSubscriptions(rand.New(rand.NewPCG(o.Seed, 4)), o.Checkouts, t.subscriptionDay())
		if err := subscribe(ctx, d, op.stripe, subs); err != nil {
			return res, err
		}
	}

	faultCtx, stopFaults := context.WithCancel(ctx)
	sf := &stripeFaults{base: t.stripeURL(), rand: rand.New(rand.NewPCG(o.Seed, 3)), log: o.Log}
	var faults sync.WaitGroup
	if o.KillEvery > 0 {
		faults.Go(func() { res.Faults = t.attack(faultCtx, rand.New(rand.NewPCG(o.Seed, 2)), o.KillEvery, o.Log) })
		faults.Go(func() { sf.run(faultCtx) })
	}

	loadErr := drive(ctx, d, plans, o.Concurrency, o.Pace, ends, o.Log)
	stopFaults()
	faults.Wait()
	sf.clear(ctx)
	res.StripeFaults = sf.faults
	if loadErr != nil {
		return res, loadErr
	}
	o.Log("load done in %s; faults stopped after %d faults and %d stripe faults; waiting for every checkout to end",
		time.Since(start).Round(time.Second), res.Faults, res.StripeFaults)
	if err := t.waitHealthy(ctx, 3*time.Minute); err != nil {
		return res, err
	}
	if err := unsubscribe(ctx, d, subs, terminalWait); err != nil {
		o.Log("%v", err)
	}
	ends.waitAll(ctx, plans, terminalWait)
	if redrives != nil {
		if err := redrives.wait(terminalWait); err != nil {
			o.Log("%v", err)
		}
	}
	if err := waitIdle(ctx, js, idleWait); err != nil {
		o.Log("not idle: %v", err)
	}
	stopOperator()
	if err := t.stopServices(ctx); err != nil {
		o.Log("stop services: %v", err)
	}
	// A stream may still be electing a leader after the last fault (a node back a moment
	// ago): its reads time out. They change nothing, so they are made again.
	var snap *state
	for attempt := 1; ; attempt++ {
		if snap, err = snapshot(ctx, t, js, plans); err == nil || attempt == 5 || ctx.Err() != nil {
			break
		}
		o.Log("reading the state (attempt %d): %v; again in 5 s", attempt, err)
		time.Sleep(5 * time.Second)
	}
	if err != nil {
		return res, err
	}
	reconcile(&res, plans, subs, initial, snap)
	if redrives != nil {
		redrives.reconcile(&res, plans, snap)
	}
	o.Log("%s", outcomes(plans, snap.terminals))
	res.Elapsed = time.Since(start)
	return res, nil
}

// drive starts the planned checkouts, concurrency at a time, each once pace lets it (nil: at
// once); each worker waits for its checkout to end (or checkoutWait) before it starts the next.
func drive(ctx context.Context, d driver, plans []planned, concurrency int, pace func(context.Context, int) error,
	ends *terminals, log func(string, ...any)) error {
	work := make(chan planned)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var errs []error
	started, every := 0, max(len(plans)/10, 1) // ten progress lines
	for range concurrency {
		wg.Go(func() {
			for p := range work {
				err := d.start(ctx, &p)
				if err == nil {
					select {
					case <-ends.ended(p.ID):
					case <-time.After(checkoutWait):
					case <-ctx.Done():
					}
					if p.Late {
						err = d.publish(ctx, p)
					}
				}
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					continue
				}
				mu.Lock()
				if started++; started%every == 0 {
					log("%d checkouts driven", started)
				}
				mu.Unlock()
			}
		})
	}
	var paceErr error
	for i, p := range plans {
		if pace != nil {
			if paceErr = pace(ctx, i); paceErr != nil {
				break
			}
		}
		select {
		case work <- p:
		case <-ctx.Done():
		}
	}
	close(work)
	wg.Wait()
	return errors.Join(append(errs, paceErr, ctx.Err())...)
}

// waitIdle waits until every durable consumer of the CHECKOUT stream has handled all it has
// been given.
func waitIdle(ctx context.Context, js jetstream.JetStream, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		busy, err := busyConsumers(ctx, js)
		if err == nil && len(busy) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %v %v", limit, busy, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func busyConsumers(ctx context.Context, js jetstream.JetStream) ([]string, error) {
	stream, err := js.Stream(ctx, events.StreamCheckout)
	if err != nil {
		return nil, err
	}
	var busy []string
	list := stream.ListConsumers(ctx)
	for info := range list.Info() {
		if info.Config.Durable != "" && (info.NumPending > 0 || info.NumAckPending > 0) {
			busy = append(busy, fmt.Sprintf("%s(%d pending, %d unacked)", info.Name, info.NumPending, info.NumAckPending))
		}
	}
	return busy, list.Err()
}
