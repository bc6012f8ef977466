package inventory

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/jetcheckout/jetcheckout/internal/steptest"
	"github.com/jetcheckout/jetcheckout/internal/store"
	"github.com/jetcheckout/jetcheckout/runner"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/shopspring/decimal"
	bolt "go.etcd.io/bbolt"
)

// process is one run of the inventory as the app starts it: its view file in dir, the stock
// seeded from the initial stock recorded in JetStream, a rebuilding runner with 8 lanes.
type process struct {
	svc  *Service
	path string
	logs *natstest.LogBuffer
	stop func()
}

func startProcess(t *testing.T, env *natstest.Env, dir string, file map[string]int, cfg Config, tweaks ...func(*runner.Config)) *process {
	t.Helper()
	p := &process{path: filepath.Join(dir, "inventory.db"), logs: &natstest.LogBuffer{}}
	view, err := store.OpenView(p.path)
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.MultiWriter(t.Output(), p.logs), &slog.HandlerOptions{Level: slog.LevelInfo}))
	if p.svc, err = NewWithConfig(view.DB, log, cfg); err != nil {
		t.Fatal(err)
	}
	stock, err := p.svc.RecordedSeed(context.Background(), env.JS, nil, file)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.svc.Seed(stock); err != nil {
		t.Fatal(err)
	}
	rc := runner.Config{Name: events.ServiceInventory, JS: env.JS, DB: view.DB, Log: log, Routes: p.svc.Routes(), Rebuild: true,
		Concurrency: 8, AckWait: time.Second, RetryBase: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond, MaxDeliver: 200}
	for _, tweak := range tweaks {
		tweak(&rc)
	}
	r, err := runner.New(rc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	stopped := false
	p.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil && !errors.Is(err, errKilled) {
			t.Errorf("runner stopped with %v", err)
		}
		if err := view.Close(); err != nil {
			t.Error(err)
		}
	}
	t.Cleanup(p.stop)
	return p
}

// validated publishes a checkout's validated cart of one lamp, timed now as the catalog's
// runner would time it, for customer n.
func validated(t *testing.T, env *natstest.Env, checkoutID string, customer int) {
	t.Helper()
	q := quote(line("lamp", "Lamp", 1))
	q.CustomerID, q.CustomerEmail = fmt.Sprintf("cus_%d", customer), fmt.Sprintf("c%d@example.com", customer)
	publishAt(t, env, events.Must(checkoutID, events.CartValidated, q))
}

func publishAt(t *testing.T, env *natstest.Env, e events.Envelope) {
	t.Helper()
	e.Time = time.Now().UTC()
	env.Publish(t, e)
}

// withMiddleware gives the runner middleware.
func withMiddleware(mw ...runner.Middleware) func(*runner.Config) {
	return func(rc *runner.Config) { rc.Middleware = mw }
}

// heldBack fails the reservations of checkoutIDs (transiently: they are retried) until ready
// says the view is ready for them: they are decided after events published after them.
func heldBack(ready func(tx *bolt.Tx) (bool, error), checkoutIDs ...string) runner.Middleware {
	return func(route events.Subject, next runner.Handler) runner.Handler {
		if route != events.CartValidated {
			return next
		}
		return func(ctx context.Context, tx *bolt.Tx, in events.Envelope) ([]events.Envelope, error) {
			if !slices.Contains(checkoutIDs, in.CheckoutID) {
				return next(ctx, tx, in)
			}
			if ok, err := ready(tx); err != nil || !ok {
				return nil, errors.Join(err, errors.New("held back"))
			}
			return next(ctx, tx, in)
		}
	}
}

// reservedOnce is ready once the checkout has a reservation.
func reservedOnce(checkoutID string) func(tx *bolt.Tx) (bool, error) {
	return func(tx *bolt.Tx) (bool, error) {
		_, found, err := loadReservation(tx, checkoutID)
		return found, err
	}
}

// lampAvailable is ready once a lamp is available.
func lampAvailable(tx *bolt.Tx) (bool, error) {
	var st events.Stock
	_, err := store.Get(tx.Bucket(bucketStock), "lamp", &st)
	return st.Available > 0, err
}

// Twenty checkouts race for five lamps, handled in eight lanes, the first five of the stream
// held back until the last has been answered, so the order the reservations commit in is not
// the stream's; then two sell, one is released and a reservation published before that
// release takes the lamp it freed. The data directory is
// deleted and the inventory started again, with a catalog file edited meanwhile: the
// rebuilt view equals the lost one (stock, reservations, holds, handled records), from the
// recorded initial stock, and nothing is published again.
func TestRebuiltViewKeepsWhoGotTheLastUnits(t *testing.T) {
	env := natstest.Start(t)
	w := env.Watch(t, events.CheckoutSubjects)
	dir := t.TempDir()
	var ids []string
	for i := range 20 {
		ids = append(ids, fmt.Sprintf("co-race-%02d", i))
	}
	p := startProcess(t, env, dir, map[string]int{"lamp": 5}, holdLimit, withMiddleware(heldBack(reservedOnce(ids[19]), ids[:5]...), heldBack(lampAvailable, "co-late")))
	for i, id := range ids {
		validated(t, env, id, i%4)
	}
	var reserved []string
	for _, id := range ids {
		if w.Wait(t, id, 10*time.Second, events.InventoryReserved, events.InventoryFailed).Type == events.InventoryReserved {
			reserved = append(reserved, id)
		}
	}
	if len(reserved) != 5 || slices.Contains(reserved, ids[0]) {
		t.Fatalf("reservations of the 5 lamps: %v, want 5, none of the first held back", reserved)
	}
	for _, id := range reserved[:2] {
		completed(t, env, id)
	}
	validated(t, env, "co-late", 9)
	publishAt(t, env, events.Must(reserved[2], events.InventoryRelease, events.Compensation{Reason: "payment declined"}))
	if w.Wait(t, "co-late", 10*time.Second, events.InventoryReserved, events.InventoryFailed).Type != events.InventoryReserved {
		t.Fatal("the late checkout did not get the released lamp")
	}
	env.WaitIdle(t, events.ServiceInventory)
	live, published := p.lose(t, w)

	p = startProcess(t, env, dir, map[string]int{"lamp": 50, "desk": 3}, holdLimit)
	p.rebuilt(t)
	env.WaitIdle(t, events.ServiceInventory)
	p.wantStock(t, "lamp", events.Stock{ProductID: "lamp", Available: 0, Reserved: 3, Sold: 2})
	p.wantRebuiltAs(t, live, w, published)
	if n := w.Count("", events.InventoryReserved); n != 6 {
		t.Errorf("%d reservations published, want 6", n)
	}
}

// holdLimit lets a customer hold 2 units of a product.
var holdLimit = Config{MaxHoldPerCustomer: 2}

// lose stops the process, keeps what its view holds and deletes its file, and counts what
// was published.
func (p *process) lose(t *testing.T, w *natstest.Watcher) (live map[string]map[string][]byte, published int) {
	t.Helper()
	p.stop()
	live = steptest.Dump(t, p.path)
	if err := os.Remove(p.path); err != nil {
		t.Fatal(err)
	}
	return live, len(w.All(""))
}

// rebuilt waits until the process has rebuilt its view.
func (p *process) rebuilt(t *testing.T) {
	t.Helper()
	natstest.Eventually(t, 10*time.Second, func() bool { return strings.Contains(p.logs.String(), "view rebuilt from the stream") },
		"the inventory did not rebuild its view")
}

// wantRebuiltAs stops the process and checks that its view equals live, that its replay
// found nothing amiss, and that nothing was published since published.
func (p *process) wantRebuiltAs(t *testing.T, live map[string]map[string][]byte, w *natstest.Watcher, published int) {
	t.Helper()
	p.stop()
	for _, l := range strings.Split(p.logs.String(), "\n") {
		if strings.Contains(l, "replay") && strings.Contains(l, "level=ERROR") {
			t.Errorf("replay error: %s", l)
		}
	}
	steptest.SameView(t, live, steptest.Dump(t, p.path))
	if all := w.All(""); len(all) != published {
		t.Errorf("%d events published by the rebuild: %v", len(all)-published, all[published:])
	}
}

// wantStock checks a product's stock in the running view.
func (p *process) wantStock(t *testing.T, productID string, want events.Stock) {
	t.Helper()
	if st, err := p.svc.Stock(productID); err != nil || st != want {
		t.Errorf("stock of %s: %+v (%v), want %+v", productID, st, err, want)
	}
}

// errKilled is what a crash hook returns: the process dies there (runner.Hooks).
var errKilled = errors.New("killed")

// killedAfter is a hook that kills the process at checkoutID's reservation, once, and closes
// killed.
func killedAfter(checkoutID string, killed chan struct{}) func(in events.Envelope) error {
	return func(in events.Envelope) error {
		if in.CheckoutID != checkoutID || in.Type != events.CartValidated {
			return nil
		}
		close(killed)
		return errKilled
	}
}

// A process killed in the middle of the race (one reservation committed and not published,
// one published and not acknowledged, others in flight), its data directory then deleted:
// the restarted inventory rebuilds what the stream recorded and decides only what it did not,
// so each checkout has one answer in the stream, exactly five of them reservations, and the
// view holds exactly those.
func TestRebuildAfterAKillInTheRace(t *testing.T) {
	for _, window := range []string{"after the commit", "after the publish"} {
		t.Run(window, func(t *testing.T) {
			env := natstest.Start(t)
			dir := t.TempDir()
			killed := make(chan struct{})
			p := startProcess(t, env, dir, map[string]int{"lamp": 5}, Config{}, func(rc *runner.Config) {
				if window == "after the commit" {
					rc.Hooks.AfterCommit = killedAfter("co-kill-03", killed)
				} else {
					rc.Hooks.AfterPublish = killedAfter("co-kill-03", killed)
				}
			})
			var ids []string
			for i := range 12 {
				ids = append(ids, fmt.Sprintf("co-kill-%02d", i))
				validated(t, env, ids[i], i)
			}
			<-killed
			p.stop()
			if err := os.Remove(p.path); err != nil {
				t.Fatal(err)
			}

			p = startProcess(t, env, dir, map[string]int{"lamp": 5}, Config{})
			p.rebuilt(t)
			env.WaitIdle(t, events.ServiceInventory)
			answers := answersInStream(t, env)
			var reserved int
			for _, id := range ids {
				switch got := answers[id]; {
				case len(got) != 1:
					t.Errorf("%s: answers in the stream %v, want one", id, got)
				case got[0] == events.InventoryReserved:
					reserved++
					if res, err := p.svc.Reservation(id); err != nil || res.Status != Reserved {
						t.Errorf("%s: reserved in the stream, in the view %+v (%v)", id, res, err)
					}
				default:
					if res, err := p.svc.Reservation(id); err != nil || res.Status != Refused {
						t.Errorf("%s: refused in the stream, in the view %+v (%v)", id, res, err)
					}
				}
			}
			if reserved != 5 {
				t.Errorf("%d reservations in the stream, want 5", reserved)
			}
			p.wantStock(t, "lamp", events.Stock{ProductID: "lamp", Available: 0, Reserved: 5})
		})
	}
}

// answersInStream are the answers to reserve_inventory that the CHECKOUT stream holds, by
// checkout.
func answersInStream(t *testing.T, env *natstest.Env) map[string][]events.Subject {
	t.Helper()
	ctx := context.Background()
	stream, err := env.JS.Stream(ctx, events.StreamCheckout)
	if err != nil {
		t.Fatal(err)
	}
	answers := map[string][]events.Subject{}
	for _, subject := range []events.Subject{events.InventoryReserved, events.InventoryFailed} {
		for seq := uint64(1); ; {
			m, err := stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(string(subject)))
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			e, err := events.Decode(m.Subject, m.Data)
			if err != nil {
				t.Fatal(err)
			}
			answers[e.CheckoutID] = append(answers[e.CheckoutID], subject)
			seq = m.Sequence + 1
		}
	}
	return answers
}

// Reservations that expired, one of them sold afterwards from what was available, are
// rebuilt as they ended: the expiries come back from the stream, fired by the server.
func TestRebuiltViewAfterExpiries(t *testing.T) {
	env := natstest.Start(t)
	w := env.Watch(t, events.CheckoutSubjects)
	dir := t.TempDir()
	p := startProcess(t, env, dir, map[string]int{"lamp": 5}, shortTTL)
	for i, id := range []string{"co-sold", "co-expired", "co-late-sale"} {
		validated(t, env, id, i)
		w.Wait(t, id, 10*time.Second, events.InventoryReserved)
	}
	completed(t, env, "co-sold")
	w.Wait(t, "co-expired", 10*time.Second, events.InventoryExpired)
	w.Wait(t, "co-late-sale", 10*time.Second, events.InventoryExpired)
	completed(t, env, "co-late-sale")
	w.Wait(t, "co-late-sale", 10*time.Second, events.InventoryCommitted)
	env.WaitIdle(t, events.ServiceInventory)
	live, published := p.lose(t, w)

	p = startProcess(t, env, dir, map[string]int{"lamp": 5}, shortTTL)
	p.rebuilt(t)
	p.wantStock(t, "lamp", events.Stock{ProductID: "lamp", Available: 3, Sold: 2})
	p.wantRebuiltAs(t, live, w, published)
}

func completed(t *testing.T, env *natstest.Env, checkoutID string) {
	t.Helper()
	publishAt(t, env, events.Must(checkoutID, events.Completed, events.CheckoutCompleted{OrderID: "ord_" + checkoutID, Total: decimal.NewFromInt(10), Currency: "USD"}))
}

// The initial stock is the one recorded in JetStream at the first start: a view rebuilt
// after the catalog file was edited starts from it (a product added to the file is not
// stocked), and the stream takes no second seed, even one published without asking.
func TestRecordedSeedWinsOverAnEditedFile(t *testing.T) {
	env := natstest.Start(t)
	w := env.Watch(t, events.CheckoutSubjects)
	dir := t.TempDir()
	p := startProcess(t, env, dir, map[string]int{"lamp": 5}, Config{})
	validated(t, env, "co-1", 1)
	w.Wait(t, "co-1", 10*time.Second, events.InventoryReserved)
	env.WaitIdle(t, events.ServiceInventory)
	p.lose(t, w)

	p = startProcess(t, env, dir, map[string]int{"lamp": 50, "desk": 3}, Config{})
	p.rebuilt(t)
	p.wantStock(t, "lamp", events.Stock{ProductID: "lamp", Available: 4, Reserved: 1})
	if _, err := p.svc.Stock("desk"); !errors.Is(err, ErrUnknownProduct) {
		t.Errorf("a product only the edited file has: %v, want ErrUnknownProduct", err)
	}
	if !strings.Contains(p.logs.String(), "the recorded one stands") {
		t.Error("the edited file was not reported")
	}
	if _, err := env.JS.Publish(context.Background(), events.StockSeed, []byte(`{"stock":{"lamp":50}}`)); err == nil {
		t.Error("the stream took a second seed")
	}
}

// A view made before the initial stock was recorded records its totals (available,
// reserved and sold: what was seeded, as nothing restocks), not the file's stock.
func TestSeedOfAViewFromBeforeTheRecord(t *testing.T) {
	env := natstest.Start(t)
	svc := newService(t)
	if _, err := svc.Seed(map[string]int{"lamp": 5}); err != nil {
		t.Fatal(err)
	}
	err := svc.db.Update(func(tx *bolt.Tx) error {
		return moveStock(tx, []events.ReservedItem{{ProductID: "lamp", Quantity: 2}}, reserveUnits)
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := svc.RecordedSeed(context.Background(), env.JS, nil, map[string]int{"lamp": 50})
	if err != nil || !maps.Equal(got, map[string]int{"lamp": 5}) {
		t.Fatalf("recorded seed %v (%v), want lamp 5", got, err)
	}
	if got, err := newService(t).RecordedSeed(context.Background(), env.JS, nil, nil); err != nil || !maps.Equal(got, map[string]int{"lamp": 5}) {
		t.Errorf("seed read by another view: %v (%v), want the recorded one", got, err)
	}
}

// The recorded seed is believed only signed by the inventory: one that another writer got in
// first (it cannot be replaced) stops the inventory rather than seeding a view with it.
func TestRecordedSeedMustBeTheInventorys(t *testing.T) {
	seed, public, err := events.GenerateSeed()
	if err != nil {
		t.Fatal(err)
	}
	keys, err := events.NewKeys([]string{events.ServiceInventory + "=" + public}, map[string]string{events.ServiceInventory: seed})
	if err != nil {
		t.Fatal(err)
	}
	file := map[string]int{"lamp": 5}
	signed := natstest.Start(t)
	for range 2 { // recorded, then read back
		if got, err := newService(t).RecordedSeed(context.Background(), signed.JS, keys, file); err != nil || !maps.Equal(got, file) {
			t.Fatalf("signed seed: %v (%v), want %v", got, err, file)
		}
	}
	forged := natstest.Start(t)
	if _, err := forged.JS.Publish(context.Background(), events.StockSeed, []byte(`{"stock":{"lamp":500},"from":"file"}`)); err != nil {
		t.Fatal(err)
	}
	if got, err := newService(t).RecordedSeed(context.Background(), forged.JS, keys, file); !errors.Is(err, events.ErrForged) {
		t.Errorf("unsigned seed: %v (%v), want it refused", got, err)
	}
}
