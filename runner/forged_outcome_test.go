package runner

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// signedKeys are keys of the payments (this runner, the outcome's producer) and of the
// coordinator (the input's producer).
func signedKeys(t *testing.T) *events.Keys {
	t.Helper()
	var public []string
	seeds := map[string]string{}
	for _, s := range []string{events.ServicePayments, events.ServiceCoordinator} {
		seed, pub, err := events.GenerateSeed()
		if err != nil {
			t.Fatal(err)
		}
		public, seeds[s] = append(public, s+"="+pub), seed
	}
	keys, err := events.NewKeys(public, seeds)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// An unsigned message that carries an outcome's Nats-Msg-Id (the bare event ID, which anyone
// allowed to publish the subject can make) and lands between the input and its genuine,
// signed outcome is read past by the rebuild, which takes the genuine one, as live handling
// did (its signature check drops the junk).
func TestRebuildTakesTheSignedOutcomeNotACopyOfItsID(t *testing.T) {
	keys := signedKeys(t)
	c := &caller{step: &step{}}
	h := newHarness(t, c.step, func(cfg *Config) {
		replayedCaller(c)(cfg)
		cfg.Name, cfg.Keys = events.ServicePayments, keys
	})
	in := events.Must("co-1", input, map[string]string{"note": "please handle"})
	data, err := in.Encode()
	if err != nil {
		t.Fatal(err)
	}
	signer, sig, err := keys.Sign(events.ServiceCoordinator, input, data)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	msg := nats.NewMsg(string(input))
	msg.Data = data
	msg.Header.Set(events.SignerHeader, signer)
	msg.Header.Set(events.SignatureHeader, sig)
	if _, err := h.env.JS.PublishMsg(ctx, msg, jetstream.WithMsgID(in.ID)); err != nil {
		t.Fatal(err)
	}
	// The junk: unsigned, under the outcome's bare event ID (no signature needed to make it).
	junk := nats.NewMsg(string(output))
	junk.Data = []byte(`{"id":"x"}`)
	if _, err := h.env.JS.PublishMsg(ctx, junk, jetstream.WithMsgID(events.ID("co-1", output))); err != nil {
		t.Fatal(err)
	}
	// Rebuilds read from the stream's leader, never by a direct get (a replica that is
	// behind answers one with "no message"): watch for both.
	direct, leader := countRequests(t, h, "$JS.API.DIRECT.GET.>"), countRequests(t, h, "$JS.API.STREAM.MSG.GET.>")
	h.run(t)
	natstest.Eventually(t, wait, func() bool { return h.watch.Count("co-1", output) >= 1 }, "no outcome published")
	wantEffects(t, h, "co-1", 1) // live: applied once

	h.restartOnLostView(t)
	natstest.Eventually(t, wait, func() bool { ok, _ := Handled(h.db, in.ID); return ok }, "not rebuilt")
	wantEffects(t, h, "co-1", 1) // rebuilt: the genuine outcome is in the stream
	if n := direct(); n != 0 {
		t.Errorf("%d direct gets of the stream, want none: a rebuild reads from the leader", n)
	}
	if leader() == 0 {
		t.Error("the rebuild read nothing from the stream's leader")
	}
}

// countRequests counts the requests on subject from now on.
func countRequests(t *testing.T, h *harness, subject string) func() int {
	t.Helper()
	var n atomic.Int64
	sub, err := h.env.NC.Subscribe(subject, func(*nats.Msg) { n.Add(1) })
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sub.Unsubscribe() })
	if err := h.env.NC.Flush(); err != nil {
		t.Fatal(err)
	}
	return func() int { return int(n.Load()) }
}
