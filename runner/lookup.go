package runner

import (
	"context"
	"strings"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/nats-io/nats.go/jetstream"
)

// outputIndex finds, during one rebuild, the stream's copy of an output by its event ID. It
// reads each output subject forward once, remembering the event IDs it reads past (and their
// sequences) for the inputs replayed after: most lookups find nothing (an input has an
// outcome on one of its route's Outcomes subjects, a step's failure is rare), and a scan from
// each input on would read the same messages again and again, or give up before a backlog's
// outputs. It keeps the event ID and sequence of every output it reads (some 100 bytes each)
// until the rebuild ends: minutes of outputs after a snapshot, all of them without one.
type outputIndex struct {
	read messages
	// genuine tells a message its producer signed from a copy that only carries its
	// Nats-Msg-Id (anyone allowed to publish the subject can make that ID): a copy is read
	// past, never taken for the output.
	genuine  func(*jetstream.RawStreamMsg) bool
	subjects map[string]*outputCursor
}

// messages is how a rebuild reads the stream: from its leader (jsread.Leader), which has
// every message it acknowledged. A direct get may be answered by a replica that is behind,
// and its "no message" would end a subject's replay early, or hide an input's outcome.
type messages interface {
	Next(ctx context.Context, subject string, seq uint64) (*jetstream.RawStreamMsg, error)
	At(ctx context.Context, seq uint64) (*jetstream.RawStreamMsg, error)
}

// outputCursor is how far a subject has been read, and what was read past.
type outputCursor struct {
	next uint64
	seen map[string][]uint64 // event ID → stream sequences, ascending
}

func newOutputIndex(read messages, genuine func(*jetstream.RawStreamMsg) bool) *outputIndex {
	return &outputIndex{read: read, genuine: genuine, subjects: map[string]*outputCursor{}}
}

// find returns the first genuine message on subject after stream sequence from (the input
// that caused it) whose Nats-Msg-Id is one of event id's; nil when the stream holds none.
// The inputs are replayed in stream order, so from only grows.
func (x *outputIndex) find(ctx context.Context, subject, id string, from uint64) (*jetstream.RawStreamMsg, error) {
	c := x.subjects[subject]
	if c == nil {
		c = &outputCursor{next: from + 1, seen: map[string][]uint64{}}
		x.subjects[subject] = c
	}
	for _, seq := range c.seen[id] {
		if seq <= from {
			continue
		}
		m, err := x.read.At(ctx, seq)
		if m == nil || err != nil {
			return nil, err
		}
		if events.IsMsgIDOf(m.Header.Get(jetstream.MsgIDHeader), id) && x.genuine(m) {
			return m, nil
		}
	}
	for {
		m, err := x.read.Next(ctx, subject, c.next)
		if m == nil || err != nil {
			return nil, err // read to the end: asked again next time, for what came since
		}
		c.next = m.Sequence + 1
		msgID := m.Header.Get(jetstream.MsgIDHeader)
		key := eventIDOf(msgID) // kept also when found: another input may have the same output
		c.seen[key] = append(c.seen[key], m.Sequence)
		if m.Sequence > from && events.IsMsgIDOf(msgID, id) && x.genuine(m) {
			return m, nil
		}
	}
}

// eventIDOf is the event ID a Nats-Msg-Id was made from (events.Keys.MsgID): without the
// signature it may end with.
func eventIDOf(msgID string) string {
	if i := strings.LastIndexByte(msgID, '#'); i >= 0 && events.IsMsgIDOf(msgID, msgID[:i]) {
		return msgID[:i]
	}
	return msgID
}
