package runner

import (
	"context"
	"fmt"
	"testing"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/jsread"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/nats-io/nats.go/jetstream"
)

// countingReads counts the messages read from the stream.
type countingReads struct {
	jsread.Leader
	reads int
}

func (s *countingReads) Next(ctx context.Context, subject string, seq uint64) (*jetstream.RawStreamMsg, error) {
	s.reads++
	return s.Leader.Next(ctx, subject, seq)
}

func (s *countingReads) At(ctx context.Context, seq uint64) (*jetstream.RawStreamMsg, error) {
	s.reads++
	return s.Leader.At(ctx, seq)
}

func everyCopy(*jetstream.RawStreamMsg) bool { return true }

// A rebuild finds each input's outputs by event ID reading each subject once, however far
// behind its input an output is (a backlog handled in another order) and however many
// inputs have none on a subject; an output another input shares is found again, one
// published after the index read to the end is found too, and one before its input is not.
func TestOutputIndexReadsEachSubjectOnce(t *testing.T) {
	env := natstest.Start(t)
	const n = 600 // more than a scan from each input used to read before giving up (512)
	id := func(i int) string { return events.ID(fmt.Sprintf("co-%03d", i), output) }
	env.PublishRaw(t, string(output), []byte("{}"), events.ID("co-early", output))
	from := uint64(1) // the inputs come after co-early's output
	for i := n - 1; i >= 0; i-- {
		env.PublishRaw(t, string(output), []byte("{}"), id(i)+"#abcdefghijklmnopqrstuv") // signed Msg-Ids
	}
	counted := &countingReads{Leader: jsread.NewLeader(env.JS, events.StreamCheckout)}
	x := newOutputIndex(counted, everyCopy)
	ctx := context.Background()
	for i := range n {
		if m, err := x.find(ctx, string(output), id(i), from); err != nil || m == nil {
			t.Fatalf("output %d: %v, %v", i, m, err)
		}
		if m, err := x.find(ctx, string(events.PaymentFailed), events.ID(fmt.Sprintf("co-%03d", i), events.PaymentFailed), from); err != nil || m != nil {
			t.Fatalf("an output that is not in the stream: %v, %v", m, err)
		}
	}
	if counted.reads > 3*n {
		t.Errorf("%d messages read to find %d outputs and miss %d, want at most %d", counted.reads, n, n, 3*n)
	}
	if m, _ := x.find(ctx, string(output), id(7), from); m == nil {
		t.Error("an output found once is not found for another input")
	}
	if m, _ := x.find(ctx, string(output), events.ID("co-early", output), from); m != nil {
		t.Errorf("an output before its input was found: %d", m.Sequence)
	}
	env.PublishRaw(t, string(output), []byte("{}"), events.ID("co-late", output))
	if m, _ := x.find(ctx, string(output), events.ID("co-late", output), from); m == nil {
		t.Error("an output published after the index read to the end is not found")
	}
}
