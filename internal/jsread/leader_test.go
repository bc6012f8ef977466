package jsread_test

import (
	"context"
	"testing"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/jsread"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The leader answers the next message on a subject (or a wildcard) with its headers, the
// message at a sequence, the last on a subject, and nothing past the end.
func TestLeaderReadsNextAndAt(t *testing.T) {
	env := natstest.Start(t)
	ctx := context.Background()
	for i, subject := range []events.Subject{events.Requested, events.CartValidated, events.Requested} {
		m := nats.NewMsg(string(subject))
		m.Data = []byte{byte('a' + i)}
		m.Header.Set("Test-Index", string(rune('0'+i)))
		if _, err := env.JS.PublishMsg(ctx, m); err != nil {
			t.Fatal(err)
		}
	}
	l := jsread.NewLeader(env.JS, events.StreamCheckout)
	m, err := l.Next(ctx, string(events.Requested), 2)
	if err != nil || m == nil || m.Sequence != 3 || string(m.Data) != "c" || m.Header.Get("Test-Index") != "2" || m.Time.IsZero() {
		t.Fatalf("Next(requested, 2) = %+v, %v; want the third message", m, err)
	}
	if m, err := l.Next(ctx, "checkout.>", 2); err != nil || m == nil || m.Subject != string(events.CartValidated) {
		t.Fatalf("Next(checkout.>, 2) = %+v, %v; want the validated cart", m, err)
	}
	if m, err := l.At(ctx, 1); err != nil || m == nil || string(m.Data) != "a" {
		t.Fatalf("At(1) = %+v, %v", m, err)
	}
	if m, err := l.Next(ctx, string(events.Requested), 4); err != nil || m != nil {
		t.Fatalf("Next past the end = %+v, %v; want nothing", m, err)
	}
	if m, err := l.Last(ctx, string(events.Requested)); err != nil || m == nil || m.Sequence != 3 {
		t.Fatalf("Last(requested) = %+v, %v; want the third message", m, err)
	}
	if m, err := l.Last(ctx, string(events.Completed)); err != nil || m != nil {
		t.Fatalf("Last(completed) = %+v, %v; want nothing", m, err)
	}
	byIndex := func(i string) func(*jetstream.RawStreamMsg) bool {
		return func(m *jetstream.RawStreamMsg) bool { return m.Header.Get("Test-Index") == i }
	}
	if m, err := l.Find(ctx, string(events.Requested), byIndex("2")); err != nil || m == nil || m.Sequence != 3 {
		t.Fatalf("Find(requested, index 2) = %+v, %v; want the third message", m, err)
	}
	if m, err := l.Find(ctx, string(events.Requested), byIndex("1")); err != nil || m != nil {
		t.Fatalf("Find(requested, index 1) = %+v, %v; want nothing: that one is another subject's", m, err)
	}
	if _, err := jsread.NewLeader(env.JS, "NO_SUCH_STREAM").At(ctx, 1); err == nil {
		t.Fatal("a read of a stream that does not exist succeeded")
	}
}
