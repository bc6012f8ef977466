package loadgen

import (
	"context"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// counter is a stream's write count (its last sequence: every stored message, including
// ones later replaced or removed) and the bytes it holds.
type counter struct{ seq, bytes uint64 }

// streamCounters reads every stream of the account but the ceiling's own.
func streamCounters(ctx context.Context, js jetstream.JetStream) (map[string]counter, error) {
	out := map[string]counter{}
	names := js.StreamNames(ctx)
	for name := range names.Name() {
		if strings.HasPrefix(name, ceilingStream) {
			continue
		}
		s, err := js.Stream(ctx, name)
		if err != nil {
			return nil, fmt.Errorf("stream %s: %w", name, err)
		}
		st := s.CachedInfo().State
		out[name] = counter{seq: st.LastSeq, bytes: st.Bytes}
	}
	if err := names.Err(); err != nil {
		return nil, fmt.Errorf("list streams: %w", err)
	}
	return out, nil
}

// StreamUse is what the checkouts of a run wrote to one stream, per ended checkout.
type StreamUse struct {
	Messages    uint64  `json:"messages"`
	PerCheckout float64 `json:"messages_per_checkout"`
	// BytesPerCheckout is the growth of the bytes the stream holds: for the KV bucket,
	// which keeps one revision per key, less than what was written.
	BytesPerCheckout float64 `json:"bytes_held_per_checkout"`
}

// perCheckout is each stream's writes between two readings, divided by the checkouts.
func perCheckout(before, after map[string]counter, checkouts uint64) map[string]StreamUse {
	out := map[string]StreamUse{}
	var total StreamUse
	for name, a := range after {
		b := before[name]
		u := StreamUse{Messages: a.seq - b.seq}
		if checkouts > 0 {
			u.PerCheckout = float64(u.Messages) / float64(checkouts)
			u.BytesPerCheckout = (float64(a.bytes) - float64(b.bytes)) / float64(checkouts)
		}
		out[name] = u
		total.Messages += u.Messages
		total.PerCheckout += u.PerCheckout
		total.BytesPerCheckout += u.BytesPerCheckout
	}
	out["all"] = total
	return out
}
