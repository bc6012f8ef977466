package runner

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/jetcheckout/jetcheckout/internal/store"
	"github.com/jetcheckout/jetcheckout/internal/topology"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	bolt "go.etcd.io/bbolt"
)

// testPinnedTTL is the shortest PinnedTTL: a takeover within a few seconds.
const testPinnedTTL = 2 * time.Second

// Two instances of a rebuildable step, each with its own file, share its consumer. The one
// that holds the pin dies mid-load (after a commit, before its publish and ack): the other
// takes over within seconds, every checkout's output is in the stream once, the survivor's
// view is what a full rebuild from the stream gives, and the dead one, started again on its
// file, catches its view up as a standby.
func TestPinnedInstancesTakeOverWhenTheHolderDies(t *testing.T) {
	env := natstest.Start(t)
	a, b := newInstance(t, env, "a", env.URL), newInstance(t, env, "b", env.URL)
	a.start(t)
	b.start(t)
	w := env.Watch(t, "checkout.>")

	const checkouts = 60
	published := publishSlowly(t, env, checkouts, 20*time.Millisecond)
	holder, standby := holderOf(t, env, a, b)
	natstest.Eventually(t, wait, func() bool { return holder.live() >= 10 }, "the holder handled too little before its death")
	holder.die()
	t.Logf("instance %s holds the pin and dies after %d messages", holder.name, holder.live())
	holder.wantDead(t)
	<-published
	waitAllAcked(t, env)
	if standby.live() == 0 {
		t.Fatal("the standby never took over")
	}

	wantOutputsOnce(t, env, w, checkouts)
	wantViewOfFullRebuild(t, env, standby, checkouts)

	holder.restart(t)
	natstest.Eventually(t, wait, func() bool { return store.Applied(holder.db) >= lastInput(t, env) }, "the restarted instance did not catch its view up")
	wantViewOfFullRebuild(t, env, holder, checkouts)
}

// The holder freezes (its connection stalls, as a paused process's) in the middle of a
// message it has committed: the server pins the other instance, which handles that message
// again and everything after. When the old holder thaws, it finishes that message (its
// publish is a duplicate the stream drops) and gets nothing more: the pin's ID refuses its
// pulls. Every checkout's output is in the stream once.
func TestAFrozenHolderCannotDoubleAnEffect(t *testing.T) {
	env := natstest.Start(t)
	proxy := newFreezer(t, env.URL)
	a := newInstance(t, env, "a", proxy.url())
	held := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	a.hooks.AfterCommit = func(in events.Envelope) error {
		if in.CheckoutID == "co-freeze" {
			once.Do(func() { close(held) })
			<-release
		}
		return nil
	}
	a.start(t)
	w := env.Watch(t, "checkout.>")
	publishInput(t, env, "co-first")
	natstest.Eventually(t, wait, func() bool { return a.live() == 1 }, "instance a did not take the first checkout")
	b := newInstance(t, env, "b", env.URL)
	b.start(t)

	publishInput(t, env, "co-freeze")
	<-held
	proxy.freeze()
	for i := range 10 {
		publishInput(t, env, fmt.Sprintf("co-after-%d", i))
	}
	natstest.Eventually(t, 3*wait, func() bool { return b.handled("co-freeze") && b.live() >= 11 }, "instance b did not take over from the frozen one")
	proxy.thaw()
	close(release)
	natstest.Eventually(t, wait, func() bool { return a.handled("co-freeze") }, "the thawed instance did not finish its message")
	for i := range 10 {
		publishInput(t, env, fmt.Sprintf("co-later-%d", i))
	}
	waitAllAcked(t, env)

	for i := range 10 {
		if id := fmt.Sprintf("co-later-%d", i); a.handled(id) {
			t.Errorf("the old holder handled %s, published after it thawed: its pulls were not fenced", id)
		}
	}
	wantOutputsOnce(t, env, w, 22)
	natstest.Eventually(t, wait, func() bool { return store.Applied(a.db) >= lastInput(t, env) }, "the old holder did not catch its view up as a standby")
	wantViewOfFullRebuild(t, env, a, 22)
}

// A holder asked to stop finishes its messages and gives the pin up: the other instance
// takes over at once, not after PinnedTTL.
func TestAStoppedHolderGivesThePinUp(t *testing.T) {
	env := natstest.Start(t)
	a, b := newInstance(t, env, "a", env.URL), newInstance(t, env, "b", env.URL)
	a.start(t)
	b.start(t)
	publishInput(t, env, "co-1")
	waitAllAcked(t, env)
	holder, other := holderOf(t, env, a, b)
	holder.shutDown(t)
	start := time.Now()
	publishInput(t, env, "co-2")
	natstest.Eventually(t, wait, func() bool { return other.handled("co-2") }, "the other instance did not take over")
	if took := time.Since(start); took >= testPinnedTTL/2 {
		t.Errorf("the other instance took over in %v: the pin was not given up (an idle holder keeps it for at least %v)", took, testPinnedTTL/2)
	}
	waitAllAcked(t, env)
	wantViewOfFullRebuild(t, env, other, 2)
}

// A route whose outcome a rebuild takes from the stream is left to live handling by the
// catch-up when its outcome is not there yet. Here the old holder still holds such messages
// (its lane is stuck, so it stops pulling and loses the pin, but keeps them alive) and finishes
// them after the other took over: they never come to the new holder, whose view gets them
// from the stream once they are acknowledged.
func TestMessagesLeftToTheOldHolderReachTheNewHoldersView(t *testing.T) {
	env := natstest.Start(t)
	a := newInstance(t, env, "a", env.URL)
	a.replayed, a.concurrency = true, 1
	stuck, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	a.hooks.AfterCommit = func(in events.Envelope) error {
		if in.CheckoutID == "co-stuck" {
			once.Do(func() { close(stuck) })
			<-release
		}
		return nil
	}
	a.start(t)
	publishInput(t, env, "co-first")
	natstest.Eventually(t, wait, func() bool { return a.live() == 1 }, "instance a did not take the first checkout")
	b := newInstance(t, env, "b", env.URL)
	b.replayed = true
	b.start(t)
	publishInput(t, env, "co-stuck")
	<-stuck
	for k := range 20 { // a's lane slots fill up: it stops pulling and loses the pin
		publishInput(t, env, fmt.Sprintf("co-behind-%d", k))
	}
	natstest.Eventually(t, 3*wait, func() bool { return b.live() > 0 }, "instance b did not take over")
	close(release)
	waitAllAcked(t, env)
	if b.handled("co-stuck") {
		t.Fatal("co-stuck came to b: the test wants it finished by a alone")
	}
	natstest.Eventually(t, wait, func() bool { return store.Applied(b.db) >= lastInput(t, env) }, "the new holder's mark did not reach the last input")
	wantViewOfFullRebuild(t, env, b, 22)
}

// replayStep applies the test step's recorded outcome as its handler did: one more effect.
func replayStep(_ context.Context, tx *bolt.Tx, in events.Envelope, recorded []events.Envelope) error {
	if len(recorded) == 0 {
		return nil
	}
	b := tx.Bucket(effectsBucket)
	var n int
	if _, err := store.Get(b, in.CheckoutID, &n); err != nil {
		return err
	}
	return store.Put(b, in.CheckoutID, n+1)
}

// A consumer made before instances shared it (no priority group) is drift: the runner, where
// it may, puts the group on it, and the instances take turns.
func TestAConsumerWithoutTheGroupIsGivenIt(t *testing.T) {
	env := natstest.Start(t)
	ctx := context.Background()
	if _, err := env.JS.CreateConsumer(ctx, events.StreamCheckout, topology.StepConsumer(consumer, []string{string(input)}, topology.DefaultAckWait)); err != nil {
		t.Fatal(err)
	}
	a := newInstance(t, env, "a", env.URL)
	a.start(t)
	publishInput(t, env, "co-1")
	waitAllAcked(t, env)
	cons, err := env.JS.Consumer(ctx, events.StreamCheckout, consumer)
	if err != nil {
		t.Fatal(err)
	}
	cfg := cons.CachedInfo().Config
	if cfg.PriorityPolicy != jetstream.PriorityPolicyPinned || len(cfg.PriorityGroups) != 1 || cfg.PinnedTTL != testPinnedTTL {
		t.Errorf("consumer: policy %v, groups %v, pinned TTL %v; want pinned, [%s], %v", cfg.PriorityPolicy, cfg.PriorityGroups, cfg.PinnedTTL, topology.PriorityGroup, testPinnedTTL)
	}
}

// instance is one process of a rebuildable test step: its own connection and file.
type instance struct {
	name  string
	env   *natstest.Env
	url   string
	step  *step
	db    *bolt.DB
	hooks Hooks
	// replayed: its route has Outcomes and Replay, as one whose answer a rebuild takes from
	// the stream; concurrency: its lanes (default 4)
	replayed    bool
	concurrency int

	mu     sync.Mutex
	seen   map[string]int // checkouts handled live (published and about to be acked), by ID
	dead   bool
	runner *Runner
	stop   context.CancelFunc
	result func() error // Run's, once it returned
}

var errDied = errors.New("the instance died")

func newInstance(t *testing.T, env *natstest.Env, name, url string) *instance {
	t.Helper()
	return &instance{name: name, env: env, url: url, step: &step{}, db: newStepDB(t), seen: map[string]int{}}
}

func (i *instance) start(t *testing.T) {
	t.Helper()
	nc, err := nats.Connect(i.url, nats.Name("instance "+i.name))
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	hooks := i.hooks
	hooks.AfterCommit = func(in events.Envelope) error {
		i.mu.Lock()
		dead := i.dead
		i.mu.Unlock()
		if dead {
			return errDied
		}
		if i.hooks.AfterCommit != nil {
			return i.hooks.AfterCommit(in)
		}
		return nil
	}
	hooks.AfterPublish = func(in events.Envelope) error {
		i.mu.Lock()
		defer i.mu.Unlock()
		i.seen[in.CheckoutID]++
		return nil
	}
	route := Route{Subject: input, Handle: i.step.handle}
	if i.replayed {
		route.Outcomes, route.Replay = []events.Subject{output}, replayStep
	}
	r, err := New(Config{Name: consumer, Routes: []Route{route}, JS: js, DB: i.db,
		Log:   slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo})).With("instance", i.name),
		Hooks: hooks, Rebuild: true, PinnedTTL: testPinnedTTL, WarmEvery: 200 * time.Millisecond, AckWait: time.Second, Concurrency: cmp.Or(i.concurrency, 4)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	result := sync.OnceValue(func() error { return <-done })
	i.mu.Lock()
	i.runner, i.stop, i.result, i.dead = r, stop, result, false
	i.mu.Unlock()
	go func() {
		err := r.Run(ctx)
		if errors.Is(err, errDied) {
			nc.Close() // a dead process's connection goes with it
		}
		done <- err
	}()
	t.Cleanup(func() {
		stop()
		if err := result(); err != nil && !errors.Is(err, errDied) {
			t.Errorf("instance %s stopped with %v", i.name, err)
		}
		nc.Close()
	})
}

// die makes the instance crash at its next message, after the commit, before the publish
// and the ack: it handles nothing more, and its connection goes.
func (i *instance) die() {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.dead = true
}

// wantDead waits for the instance's Run to return its crash, as a process dies.
func (i *instance) wantDead(t *testing.T) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- i.result() }()
	select {
	case err := <-done:
		if !errors.Is(err, errDied) {
			t.Fatalf("instance %s: Run returned %v, want its crash", i.name, err)
		}
	case <-time.After(wait):
		t.Fatalf("instance %s crashed, and its Run did not return", i.name)
	}
}

// shutDown stops the instance as SIGTERM does, and waits for it.
func (i *instance) shutDown(t *testing.T) {
	t.Helper()
	i.stop()
	if err := i.result(); err != nil {
		t.Fatalf("instance %s stopped with %v", i.name, err)
	}
}

// restart starts the instance again on its file, as a new process.
func (i *instance) restart(t *testing.T) {
	t.Helper()
	i.start(t)
}

func (i *instance) live() int {
	i.mu.Lock()
	defer i.mu.Unlock()
	n := 0
	for _, c := range i.seen {
		n += c
	}
	return n
}

func (i *instance) handled(checkoutID string) bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.seen[checkoutID] > 0
}

// holderOf waits for one of the instances to hold the pin, and returns it first.
func holderOf(t *testing.T, env *natstest.Env, a, b *instance) (holder, other *instance) {
	t.Helper()
	natstest.Eventually(t, wait, func() bool {
		info := consumerInfo(t, env)
		switch {
		case a.runner.holdsPin(info):
			holder, other = a, b
		case b.runner.holdsPin(info):
			holder, other = b, a
		}
		return holder != nil
	}, "neither instance holds the pin")
	return holder, other
}

func consumerInfo(t *testing.T, env *natstest.Env) *jetstream.ConsumerInfo {
	t.Helper()
	cons, err := env.JS.Consumer(context.Background(), events.StreamCheckout, consumer)
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// publishSlowly publishes n checkouts' inputs, one every `every`; the channel closes after.
func publishSlowly(t *testing.T, env *natstest.Env, n int, every time.Duration) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		for k := range n {
			publishInput(t, env, fmt.Sprintf("co-%d", k))
			time.Sleep(every)
		}
	}()
	return done
}

func publishInput(t *testing.T, env *natstest.Env, checkoutID string) {
	in := events.Must(checkoutID, input, map[string]string{"note": "please handle"})
	data, err := in.Encode()
	if err != nil {
		t.Error(err)
		return
	}
	if _, err := env.JS.Publish(context.Background(), string(input), data, jetstream.WithMsgID(in.ID)); err != nil {
		t.Errorf("publish %s: %v", checkoutID, err)
	}
}

func lastInput(t *testing.T, env *natstest.Env) uint64 {
	t.Helper()
	stream, err := env.JS.Stream(context.Background(), events.StreamCheckout)
	if err != nil {
		t.Fatal(err)
	}
	m, err := stream.GetLastMsgForSubject(context.Background(), string(input))
	if err != nil {
		t.Fatal(err)
	}
	return m.Sequence
}

// waitAllAcked waits until the consumer has acked every input in the stream.
func waitAllAcked(t *testing.T, env *natstest.Env) {
	t.Helper()
	last := lastInput(t, env)
	natstest.Eventually(t, 4*wait, func() bool {
		info := consumerInfo(t, env)
		return info.AckFloor.Stream >= last && info.NumAckPending == 0 && info.NumPending == 0
	}, "the consumer did not ack every input")
}

// wantOutputsOnce checks that the stream holds n outputs, one per checkout the watcher saw.
func wantOutputsOnce(t *testing.T, env *natstest.Env, w *natstest.Watcher, n int) {
	t.Helper()
	h := &harness{env: env}
	natstest.Eventually(t, wait, func() bool { return h.outputsInStream(t) >= uint64(n) }, "fewer than %d outputs in the stream", n)
	if got := h.outputsInStream(t); got != uint64(n) {
		t.Errorf("%d outputs in the stream for %d checkouts, want one each", got, n)
	}
}

// wantViewOfFullRebuild compares the instance's view (its effects and handled records) with
// a view rebuilt from the stream's start into a new file, and wants each of n checkouts
// applied once.
func wantViewOfFullRebuild(t *testing.T, env *natstest.Env, i *instance, n int) {
	t.Helper()
	rebuilt := newStepDB(t)
	r, err := New(Config{Name: consumer, Routes: []Route{{Subject: input, Handle: (&step{}).handle}}, JS: env.JS, DB: rebuilt,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Rebuild: true})
	if err != nil {
		t.Fatal(err)
	}
	last := lastInput(t, env)
	if _, err := r.Rebuild(context.Background(), 1, last, last); err != nil {
		t.Fatal(err)
	}
	want, got := viewOf(t, rebuilt), viewOf(t, i.db)
	if len(want[string(effectsBucket)]) != n {
		t.Errorf("the full rebuild applied %d checkouts, want %d", len(want[string(effectsBucket)]), n)
	}
	for bucket, w := range want {
		if !maps.Equal(got[bucket], w) {
			t.Errorf("instance %s: bucket %s holds %d keys that differ from the full rebuild's %d", i.name, bucket, len(got[bucket]), len(w))
		}
	}
}

// viewOf is the effects of a file, and the events it recorded as handled (their records'
// times are whoever's wrote them first), by bucket and key.
func viewOf(t *testing.T, db *bolt.DB) map[string]map[string]string {
	t.Helper()
	view := map[string]map[string]string{}
	err := db.View(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{effectsBucket, processedBucket} {
			m := map[string]string{}
			if err := tx.Bucket(name).ForEach(func(k, v []byte) error {
				if m[string(k)] = string(v); string(name) == string(processedBucket) {
					m[string(k)] = ""
				}
				return nil
			}); err != nil {
				return err
			}
			view[string(name)] = m
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return view
}

// freezer is a TCP proxy in front of the server that can stall both directions, as a
// paused process's connection stalls: the server sees no pull and no heartbeat from it.
type freezer struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	frozen bool
	thawed *sync.Cond
}

func newFreezer(t *testing.T, serverURL string) *freezer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	f := &freezer{ln: ln, target: serverURL[len("nats://"):]}
	f.thawed = sync.NewCond(&f.mu)
	go f.accept()
	return f
}

func (f *freezer) url() string { return "nats://" + f.ln.Addr().String() }

func (f *freezer) accept() {
	for {
		client, err := f.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", f.target)
		if err != nil {
			client.Close()
			continue
		}
		go f.pipe(client, server)
		go f.pipe(server, client)
	}
}

func (f *freezer) pipe(from, to net.Conn) {
	defer to.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := from.Read(buf)
		if n > 0 {
			f.waitThawed()
			if _, werr := to.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (f *freezer) waitThawed() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for f.frozen {
		f.thawed.Wait()
	}
}

func (f *freezer) freeze() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.frozen = true
}

func (f *freezer) thaw() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.frozen = false
	f.thawed.Broadcast()
}
