package httpapi

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/synadia-io/orbit.go/jetstreamext"
)

// A read model made anew (api.db deleted, a new machine, a file a crash left dirty) while
// the API's consumer has delivered messages before would show only what comes after: the
// consumer goes on from its position. So before consuming, the projector folds the stream
// in again from its first message up to the last one the consumer was given, read in
// batches of direct gets (the stream allows them, and the API's user may make them); what
// the consumer delivers again after that is skipped by the store as already there.

// recover rebuilds a fresh read model from the stream, when the consumer has gone past the
// stream's start.
func (p *Projector) recover(ctx context.Context, cons jetstream.Consumer) error {
	if !p.Store.fresh {
		return nil
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return fmt.Errorf("api consumer info: %w", err)
	}
	if last := info.Delivered.Stream; last > 0 {
		p.Log.Warn("read model: the file is new but the consumer has delivered messages before: rebuilding it from the stream", "delivered", last)
		start := time.Now()
		n, err := p.rebuild(ctx, last)
		if err != nil {
			return fmt.Errorf("read model: rebuild: %w", err)
		}
		p.Log.Warn("read model: rebuilt from the stream", "events", n, "took", time.Since(start).Round(time.Millisecond))
	}
	return p.Store.rebuilt()
}

// rebuild folds the stream's checkout events up to sequence last into the store, a batch
// of direct gets per commit, and returns how many it folded. Every message of the stream is
// a checkout event, so a batch that ends before last was answered by a replica behind the
// leader: it asks again, and fails (the API starts again) if the stream never gets there.
func (p *Projector) rebuild(ctx context.Context, last uint64) (int, error) {
	n, behind := 0, 0
	for from := uint64(1); from <= last; {
		msgs, err := jetstreamext.GetBatch(ctx, p.JS, events.StreamCheckout, batchSize,
			jetstreamext.GetBatchSeq(from), jetstreamext.GetBatchSubject(events.CheckoutSubjects))
		if err != nil {
			return n, err
		}
		var evs []StreamEvent
		read := 0
		for m, err := range msgs {
			if errors.Is(err, jetstreamext.ErrNoMessages) {
				break
			}
			if err != nil {
				return n, err
			}
			read++
			from = m.Sequence + 1
			if m.Sequence > last {
				break
			}
			if e, ok := p.decode(stored{subject: m.Subject, header: m.Header, data: m.Data, seq: m.Sequence, at: m.Time}); ok {
				evs = append(evs, e)
			}
		}
		if _, err := p.Store.Append(evs); err != nil {
			return n, err
		}
		n += len(evs)
		if read > 0 {
			behind = 0
			continue
		}
		if behind++; behind > replicaWaits {
			return n, fmt.Errorf("the stream answered nothing after sequence %d, below %d which the consumer was given", from-1, last)
		}
		select {
		case <-ctx.Done():
			return n, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return n, nil
}

// replicaWaits is how many times (100 ms apart) the rebuild asks again for messages a replica
// behind the stream's leader may not have yet.
const replicaWaits = 50
