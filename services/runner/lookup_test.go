package runner

import (
	"context"
	"fmt"
	"testing"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/nats-io/nats.go/jetstream"
)

// countingStream counts the messages read from the stream.
type countingStream struct {
	jetstream.Stream
	reads int
}

func (s *countingStream) GetMsg(ctx context.Context, seq uint64, opts ...jetstream.GetMsgOpt) (*jetstream.RawStreamMsg, error) {
	s.reads++
	return s.Stream.GetMsg(ctx, seq, opts...)
}

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
	js, err := env.JS.Stream(context.Background(), events.StreamCheckout)
	if err != nil {
		t.Fatal(err)
	}
	counted := &countingStream{Stream: js}
	x := newOutputIndex(counted)
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
