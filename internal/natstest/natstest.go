// Package natstest starts a real JetStream server for tests: in-process, on a free
// loopback port, file storage in t.TempDir(), with the checkout topology created.
package natstest

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natsserver"
	"github.com/jetcheckout/jetcheckout/internal/topology"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Env is a running server and a client connected to it.
type Env struct {
	Server *server.Server
	URL    string
	NC     *nats.Conn
	JS     jetstream.JetStream
}

// Start runs the server and connects; everything stops when the test ends.
func Start(t testing.TB) *Env {
	t.Helper()
	s, err := natsserver.Start(natsserver.Config{Port: -1, StoreDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Shutdown)
	nc, err := nats.Connect(s.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := topology.Ensure(ctx, js); err != nil {
		t.Fatal(err)
	}
	return &Env{Server: s, URL: s.ClientURL(), NC: nc, JS: js}
}

// Publish stores an envelope in its stream, with its ID as Nats-Msg-Id.
func (e *Env) Publish(t testing.TB, env events.Envelope) {
	t.Helper()
	data, err := env.Encode()
	if err != nil {
		t.Fatal(err)
	}
	e.PublishRaw(t, string(env.Type), data, env.ID)
}

// PublishRaw stores raw bytes on subject; msgID may be empty.
func (e *Env) PublishRaw(t testing.TB, subject string, data []byte, msgID string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var opts []jetstream.PublishOpt
	if msgID != "" {
		opts = append(opts, jetstream.WithMsgID(msgID))
	}
	if _, err := e.JS.Publish(ctx, subject, data, opts...); err != nil {
		t.Fatalf("publish %s: %v", subject, err)
	}
}

// Republish stores a copy of a message as it came, headers (its signature) included, under
// a Nats-Msg-Id of its own: what a producer that publishes again does.
func (e *Env) Republish(t testing.TB, m *nats.Msg, msgID string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c := &nats.Msg{Subject: m.Subject, Data: m.Data, Header: nats.Header{}}
	for _, h := range []string{events.SignerHeader, events.SignatureHeader} {
		if v := m.Header.Get(h); v != "" {
			c.Header.Set(h, v)
		}
	}
	if _, err := e.JS.PublishMsg(ctx, c, jetstream.WithMsgID(msgID)); err != nil {
		t.Fatalf("publish %s: %v", m.Subject, err)
	}
}

// Watcher records every envelope published on a subject pattern after it started.
type Watcher struct {
	mu   sync.Mutex
	seen []events.Envelope
	raw  []*nats.Msg
}

// Watch subscribes to patterns (e.g. "checkout.>").
func (e *Env) Watch(t testing.TB, patterns ...string) *Watcher {
	t.Helper()
	w := &Watcher{}
	for _, pattern := range patterns {
		sub, err := e.NC.Subscribe(pattern, func(m *nats.Msg) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.raw = append(w.raw, m)
			var env events.Envelope
			if json.Unmarshal(m.Data, &env) == nil && env.ID != "" {
				w.seen = append(w.seen, env)
			}
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	if err := e.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	return w
}

// Msg is the message of the first envelope of type typ checkout id has seen, as it came.
func (w *Watcher) Msg(id string, typ events.Subject) *nats.Msg {
	for _, m := range w.Msgs(id) {
		if m.Subject == string(typ) {
			return m
		}
	}
	return nil
}

// Msgs are the messages of checkout id's envelopes, as they came, in arrival order.
func (w *Watcher) Msgs(id string) []*nats.Msg {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []*nats.Msg
	for _, m := range w.raw {
		var env events.Envelope
		if json.Unmarshal(m.Data, &env) == nil && env.CheckoutID == id {
			out = append(out, m)
		}
	}
	return out
}

// All returns the envelopes of checkout id (every checkout when id is ""), in arrival order.
func (w *Watcher) All(id string) []events.Envelope {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []events.Envelope
	for _, e := range w.seen {
		if id == "" || e.CheckoutID == id {
			out = append(out, e)
		}
	}
	return out
}

// Count is how many events of type typ checkout id has seen.
func (w *Watcher) Count(id string, typ events.Subject) int {
	n := 0
	for _, e := range w.All(id) {
		if e.Type == typ {
			n++
		}
	}
	return n
}

// Wait returns the first event of one of the types for checkout id, failing the test
// after timeout.
func (w *Watcher) Wait(t testing.TB, id string, timeout time.Duration, types ...events.Subject) events.Envelope {
	t.Helper()
	var got events.Envelope
	Eventually(t, timeout, func() bool {
		for _, e := range w.All(id) {
			for _, typ := range types {
				if e.Type == typ {
					got = e
					return true
				}
			}
		}
		return false
	}, "checkout %s: none of %v arrived; saw %v", id, types, w.types(id))
	return got
}

func (w *Watcher) types(id string) []events.Subject {
	var out []events.Subject
	for _, e := range w.All(id) {
		out = append(out, e.Type)
	}
	return out
}

// Eventually polls cond until it holds, failing the test with msg after timeout.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf(msg, args...)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// Runner is anything that consumes until its context ends (runner.Runner).
type Runner interface {
	Run(ctx context.Context) error
}

// Run runs r until the test ends, then stops it and checks it stopped cleanly.
func Run(t testing.TB, r Runner) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("runner stopped with %v", err)
		}
	})
}

// WaitIdle waits until a durable consumer of the CHECKOUT stream has handled every message
// on its subjects that is in the stream now: acknowledged (or terminated) up to the last
// of them, and nothing unacknowledged. (Its pending count alone can read zero a moment
// before the server has counted a message just stored.)
func (e *Env) WaitIdle(t testing.TB, consumer string) {
	t.Helper()
	Eventually(t, 15*time.Second, func() bool { return e.idle(consumer) },
		"consumer %s did not handle everything on its subjects", consumer)
}

func (e *Env) idle(consumer string) bool {
	ctx := context.Background()
	cons, err := e.JS.Consumer(ctx, events.StreamCheckout, consumer)
	if err != nil {
		return false // not created yet
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return false
	}
	stream, err := e.JS.Stream(ctx, events.StreamCheckout)
	if err != nil {
		return false
	}
	filters := info.Config.FilterSubjects
	if info.Config.FilterSubject != "" {
		filters = append(filters, info.Config.FilterSubject)
	}
	var last uint64
	for _, f := range filters {
		if m, err := stream.GetLastMsgForSubject(ctx, f); err == nil {
			last = max(last, m.Sequence)
		}
	}
	return info.AckFloor.Stream >= last && info.NumAckPending == 0
}
