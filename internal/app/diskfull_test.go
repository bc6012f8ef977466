package app

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/nats-io/nats.go/jetstream"
)

// TestDiskFullRecovers runs the whole system as `make run` does with its data directory on
// a 64 MB tmpfs, publishes checkouts, and fills the disk. /healthz (HEALTH_ADDR and the
// HTTP API's) must go unhealthy and say why, and nats-server's own error must reach our log.
// After the filler is removed the system must take checkouts again without a restart, and
// every checkout whose checkout.requested was acknowledged must end completed, or failed
// with a reason, with stock consistent: nothing sold twice, nothing left reserved.
func TestDiskFullRecovers(t *testing.T) {
	if raceDetector {
		// nats-server 2.15.2's EnableJetStream, which the restart calls, replaces the API's
		// request queues while a client's API request may read them (jetstream_api.go:1110
		// against :1023): a race in the server, flagged whatever this code does. make test
		// runs this test again without the detector.
		t.Skip("restarts JetStream in-process, which races inside nats-server under the race detector; make test runs it without")
	}
	dir := mountTmpfs(t, "64m")
	logs := &natstest.LogBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	t.Cleanup(func() {
		if t.Failed() {
			all := logs.String()
			t.Logf("log (last 8 KB):\n%s", all[max(0, len(all)-8<<10):])
		}
	})
	cfg := testConfig(dir)
	cfg.HTTPAddr = "127.0.0.1:0"
	// A step whose publish the wedged server never answered gives up after this and
	// retries: 30 s by default, shortened to keep the test short.
	cfg.HandlerTimeout = 5 * time.Second
	sys, err := Start(context.Background(), cfg, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sys.Stop)
	a, err := startAPI(context.Background(), cfg, log, sys.NC, sys.JS, sys.Keys, nil, sys.Ready, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Stop() })
	healthAddr := serveTestHealth(t, sys)
	health := func(url string) (int, string) { return get(t, url) }
	natstest.Eventually(t, wait, func() bool { c, _ := health(healthAddr); return c == http.StatusOK }, "never healthy")
	initial := map[string]events.Stock{}
	for _, s := range allStock(t, sys) {
		initial[s.ProductID] = s
	}

	load := startLoad(t, sys)
	natstest.Eventually(t, wait, func() bool { return load.ackedCount() >= 5 }, "no checkout acknowledged before the disk filled")
	filler := filepath.Join(dir, "filler")
	fillDisk(t, filler)

	natstest.Eventually(t, wait, func() bool { c, _ := health(healthAddr); return c == http.StatusServiceUnavailable },
		"HEALTH_ADDR stayed healthy with the disk full")
	if c, body := health(healthAddr); c != http.StatusServiceUnavailable || !strings.Contains(body, "JetStream cannot store") {
		t.Errorf("HEALTH_ADDR with the disk full: %d %q", c, body)
	}
	if c, body := health(a.URL + "/healthz"); c != http.StatusServiceUnavailable || !strings.Contains(body, "no space left on device") {
		t.Errorf("the API's /healthz with the disk full: %d %q", c, body)
	}
	if !logLine(logs.String(), "component=nats-server", "no space left on device") {
		t.Errorf("nats-server's store error did not reach our log")
	}
	// Under load while full: a checkout.requested goes unanswered.
	natstest.Eventually(t, wait, func() bool { return load.failedCount() > 0 }, "every publish was acknowledged with the disk full")

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 30*time.Second, func() bool { c, _ := health(healthAddr); return c == http.StatusOK },
		func() string { _, b := health(healthAddr); return "not healthy again after the disk has room: " + b })
	if c, body := health(a.URL + "/healthz"); c != http.StatusOK {
		t.Errorf("the API's /healthz after recovery: %d %q", c, body)
	}
	since := load.ackedCount()
	natstest.Eventually(t, wait, func() bool { return load.ackedCount() >= since+5 }, "no checkout acknowledged after recovery")
	acked := load.stop()
	select {
	case <-sys.Failed():
		t.Fatalf("a service stopped: %v", sys.Err())
	case err := <-a.Done():
		t.Fatalf("the API stopped: %v", err)
	default:
	}

	var ends map[string]events.Envelope
	var readErr error
	waitFor(t, wait, func() bool {
		if ends, readErr = storedTerminals(sys.JS); readErr != nil {
			return false
		}
		for id := range acked {
			if _, ok := ends[id]; !ok {
				return false
			}
		}
		return true
	}, func() string {
		return fmt.Sprintf("acknowledged checkouts without a terminal event: %v (reading the stream: %v)", missing(acked, ends), readErr)
	})
	// A publish that timed out may have been stored all the same: let every service
	// finish what the stream holds before counting what was sold.
	env := &natstest.Env{JS: sys.JS}
	for _, name := range Services {
		env.WaitIdle(t, name)
	}
	if ends, err = storedTerminals(sys.JS); err != nil {
		t.Fatal(err)
	}
	sold := map[string]int{}
	for id, e := range ends {
		items, ours := load.items(id)
		if !ours {
			continue
		}
		switch e.Type {
		case events.Completed:
			for _, it := range items {
				sold[it.ProductID] += it.Quantity
			}
		case events.Failed:
			var f events.CheckoutFailed
			if err := e.DecodePayload(&f); err != nil || f.Message == "" {
				t.Errorf("%s failed without a reason: %s", id, e.Payload)
			}
		}
	}
	for _, s := range allStock(t, sys) {
		was := initial[s.ProductID]
		if s.Reserved != 0 || s.Sold-was.Sold != sold[s.ProductID] || s.Available != was.Available-sold[s.ProductID] || s.Available < 0 {
			t.Errorf("%s: %+v, was %+v, completed checkouts bought %d", s.ProductID, s, was, sold[s.ProductID])
		}
	}
	t.Logf("%d checkouts acknowledged, %d ended (%d units of hoodie-saga sold)", len(acked), len(ends), sold["hoodie-saga"])
}

// mountTmpfs mounts a tmpfs of size on a new directory, unmounted when the test ends, or
// skips the test when it cannot (not root, or no mount in a container).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipped: mounting a small tmpfs to fill needs root (CI runs as root)")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("skipped: cannot mount a tmpfs on %s: %v: %s", dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fillDisk writes path until the file system is full.
func fillDisk(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 1<<16)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !strings.Contains(err.Error(), "no space left") {
				t.Fatal(err)
			}
			return
		}
	}
}

// serveTestHealth serves the system's health as HEALTH_ADDR does and returns its URL.
func serveTestHealth(t *testing.T, sys *System) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	h := &health{}
	h.set(sys.Ready)
	if err := serveHealth(t.Context(), addr, h, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	return healthURL(addr)
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// load publishes checkouts one after another, as a shop would, until stopped: each with a
// cart of its own of a sticker pack, every third with the limited hoodie too (3 in stock),
// so some fail and release what they reserved. Carts made in advance keep the checkouts
// coming while the catalog cannot store new ones.
type load struct {
	sys    *System
	spare  []events.Cart // made before the disk filled
	cancel context.CancelFunc
	done   chan struct{}
	mu     sync.Mutex
	carts  map[string][]events.CartItem // every checkout published, acknowledged or not
	acked  map[string]bool
	failed int // publishes not acknowledged
}

func startLoad(t *testing.T, sys *System) *load {
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{sys: sys, cancel: cancel, done: make(chan struct{}), carts: map[string][]events.CartItem{}, acked: map[string]bool{}}
	for range 10 {
		l.spare = append(l.spare, createCart(t, sys, "USD", events.CartItem{ProductID: "stickers", Quantity: 1}))
	}
	go func() {
		defer close(l.done)
		for i := 0; ctx.Err() == nil; i++ {
			l.checkout(ctx, i)
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return l
}

func (l *load) checkout(ctx context.Context, i int) {
	items := []events.CartItem{{ProductID: "stickers", Quantity: 1}}
	if i%3 == 0 {
		items = append(items, events.CartItem{ProductID: "hoodie-saga", Quantity: 1})
	}
	cart, err := l.newCart(items)
	if err != nil && len(l.spare) > 0 { // the catalog cannot store it either while the disk is full
		cart, items, err = l.spare[0], l.spare[0].Items, nil
		l.spare = l.spare[1:]
	}
	if err != nil {
		return
	}
	id := fmt.Sprintf("co-disk-%04d", i)
	l.mu.Lock()
	l.carts[id] = items
	l.mu.Unlock()
	pubCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = l.sys.JS.Publish(pubCtx, string(events.Requested), checkoutRequest(id, cart.ID, "pm_card_visa", california),
		jetstream.WithMsgID(events.ID(id, events.Requested)))
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.failed++
		return
	}
	l.acked[id] = true
}

func (l *load) failedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failed
}

func (l *load) newCart(items []events.CartItem) (events.Cart, error) {
	var cart events.Cart
	raw, _ := json.Marshal(events.CreateCart{CustomerID: "cus_ada", Currency: "USD", Items: items})
	reply, err := l.sys.NC.Request(string(events.CartsCreate), raw, 2*time.Second)
	if err == nil && reply.Header.Get("Nats-Service-Error-Code") != "" {
		err = errors.New(reply.Header.Get("Nats-Service-Error"))
	}
	if err == nil {
		err = json.Unmarshal(reply.Data, &cart)
	}
	return cart, err
}

func (l *load) ackedCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

func (l *load) items(id string) ([]events.CartItem, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	items, ok := l.carts[id]
	return items, ok
}

// stop stops publishing and returns the acknowledged checkouts.
func (l *load) stop() map[string]bool {
	l.cancel()
	<-l.done
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.acked
}

// storedTerminals reads every checkout.completed and checkout.failed the CHECKOUT stream
// holds, by checkout: what was stored, not merely published.
func storedTerminals(js jetstream.JetStream) (map[string]events.Envelope, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := js.CreateConsumer(ctx, events.StreamCheckout, jetstream.ConsumerConfig{
		FilterSubjects: []string{string(events.Completed), string(events.Failed)},
		AckPolicy:      jetstream.AckNonePolicy, InactiveThreshold: time.Minute})
	if err != nil {
		return nil, err
	}
	defer func() { _ = js.DeleteConsumer(ctx, events.StreamCheckout, cons.CachedInfo().Name) }()
	out := map[string]events.Envelope{}
	for n := -1; n != 0; { // until a fetch waits its whole second for nothing
		batch, err := cons.Fetch(100, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			return nil, err
		}
		n = 0
		for m := range batch.Messages() {
			n++
			var e events.Envelope
			if json.Unmarshal(m.Data(), &e) == nil {
				out[e.CheckoutID] = e
			}
		}
		if err := batch.Error(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func missing(acked map[string]bool, ends map[string]events.Envelope) []string {
	var out []string
	for id := range acked {
		if _, ok := ends[id]; !ok {
			out = append(out, id)
		}
	}
	return out
}

// waitFor polls cond until it holds, failing the test with why() after timeout.
func waitFor(t *testing.T, timeout time.Duration, cond func() bool, why func() string) {
	t.Helper()
	for end := time.Now().Add(timeout); !cond(); time.Sleep(100 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal(why())
		}
	}
}

// logLine reports a line of log holding every one of parts.
func logLine(log string, parts ...string) bool {
	for line := range strings.Lines(log) {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}
