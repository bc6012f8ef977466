// Package jsread reads a stream's messages from the stream's leader.
//
// A direct get ($JS.API.DIRECT.GET) may be answered by any replica, and one that is behind
// answers "no message" for a message the stream has acknowledged: a reader that takes that
// for the end of what is there skips what it must not (a rebuild of a view, the lookup of an
// event's recorded outcome). The leader ($JS.API.STREAM.MSG.GET) has every message it
// acknowledged.
package jsread

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Leader reads one stream from its leader.
type Leader struct {
	nc      *nats.Conn
	subject string // the stream's message get endpoint
	timeout time.Duration
}

// NewLeader reads stream through js's connection and API prefix (or domain).
func NewLeader(js jetstream.JetStream, stream string) Leader {
	o := js.Options()
	prefix := jetstream.DefaultAPIPrefix
	switch {
	case o.Domain != "":
		prefix = "$JS." + o.Domain + ".API."
	case o.APIPrefix != "":
		prefix = strings.TrimSuffix(o.APIPrefix, ".") + "."
	}
	return Leader{nc: js.Conn(), subject: prefix + "STREAM.MSG.GET." + stream, timeout: o.DefaultTimeout}
}

// Next is the first message on subject (wildcards allowed) at or after seq; nil when the
// stream has none.
func (l Leader) Next(ctx context.Context, subject string, seq uint64) (*jetstream.RawStreamMsg, error) {
	return l.get(ctx, getRequest{Seq: seq, NextFor: subject})
}

// Find is the first message on subject, from the stream's start, that match accepts; nil
// when the stream has none. It reads one message at a time: for the few a subject holds.
func (l Leader) Find(ctx context.Context, subject string, match func(*jetstream.RawStreamMsg) bool) (*jetstream.RawStreamMsg, error) {
	for next := uint64(1); ; {
		m, err := l.Next(ctx, subject, next)
		if m == nil || err != nil || match(m) {
			return m, err
		}
		next = m.Sequence + 1
	}
}

// Last is the last message on subject; nil when the stream has none.
func (l Leader) Last(ctx context.Context, subject string) (*jetstream.RawStreamMsg, error) {
	return l.get(ctx, getRequest{LastFor: subject})
}

// At is the message at seq; nil when the stream has none there.
func (l Leader) At(ctx context.Context, seq uint64) (*jetstream.RawStreamMsg, error) {
	return l.get(ctx, getRequest{Seq: seq})
}

type getRequest struct {
	Seq     uint64 `json:"seq,omitempty"`
	NextFor string `json:"next_by_subj,omitempty"`
	LastFor string `json:"last_by_subj,omitempty"`
}

type getResponse struct {
	Error   *jetstream.APIError `json:"error,omitempty"`
	Message *struct {
		Subject string    `json:"subject"`
		Seq     uint64    `json:"seq"`
		Header  []byte    `json:"hdrs,omitempty"`
		Data    []byte    `json:"data,omitempty"`
		Time    time.Time `json:"time"`
	} `json:"message,omitempty"`
}

func (l Leader) get(ctx context.Context, req getRequest) (*jetstream.RawStreamMsg, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	if _, ok := ctx.Deadline(); !ok && l.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, l.timeout)
		defer cancel()
	}
	reply, err := l.nc.RequestWithContext(ctx, l.subject, body)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", l.subject, err)
	}
	var resp getResponse
	if err := json.Unmarshal(reply.Data, &resp); err != nil {
		return nil, fmt.Errorf("%s: %w", l.subject, err)
	}
	switch {
	case resp.Error != nil && resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
		return nil, nil
	case resp.Error != nil:
		return nil, fmt.Errorf("%s: %w", l.subject, resp.Error)
	case resp.Message == nil:
		return nil, fmt.Errorf("%s: %w", l.subject, errors.New("an answer with neither a message nor an error"))
	}
	m := resp.Message
	var hdr nats.Header
	if len(m.Header) > 0 {
		if hdr, err = nats.DecodeHeadersMsg(m.Header); err != nil {
			return nil, fmt.Errorf("%s: message %d's headers: %w", l.subject, m.Seq, err)
		}
	}
	return &jetstream.RawStreamMsg{Subject: m.Subject, Sequence: m.Seq, Header: hdr, Data: m.Data, Time: m.Time}, nil
}
