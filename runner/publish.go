package runner

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// publish sends the outputs together and waits for every stream ack. A scheduled output
// waits on its schedule subject until the server publishes it at its time. data is the
// outputs' wire form when the caller has it (nil: encoded here).
func (r *Runner) publish(ctx context.Context, outs []events.Envelope, data []json.RawMessage) error {
	if len(data) != len(outs) { // not given, or not theirs: encode them here
		var err error
		if data, err = wire(outs); err != nil {
			return err
		}
	}
	futures := make([]jetstream.PubAckFuture, 0, len(outs))
	for i, e := range outs {
		if e.Schedule != nil && e.Schedule.Cancel {
			if err := r.cancel(ctx, e); err != nil {
				return err
			}
			continue
		}
		h, err := r.cfg.Keys.Header(r.cfg.Name, e.Type, data[i])
		if err != nil {
			return err
		}
		msgID, err := r.cfg.Keys.MsgID(r.cfg.Name, e)
		if err != nil {
			return err
		}
		injectSpan(ctx, h, e)
		msg := &nats.Msg{Subject: string(e.Type), Data: data[i], Header: h}
		opts := []jetstream.PublishOpt{jetstream.WithMsgID(msgID)}
		if e.Schedule != nil {
			msg.Subject = e.ScheduleSubject()
			opts = append(opts, jetstream.WithScheduleAt(events.CeilSecond(e.Schedule.At)), jetstream.WithScheduleTarget(e.FireSubject()))
		}
		f, err := r.cfg.JS.PublishMsgAsync(msg, opts...)
		if err != nil {
			return err
		}
		futures = append(futures, f)
	}
	for _, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return err
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// cancel removes what waits in the slot of e, in the runner's own timer stream: a purge of
// that one subject, idempotent (done again after a crash, it finds nothing).
func (r *Runner) cancel(ctx context.Context, e events.Envelope) error {
	r.timersMu.Lock()
	if r.timers == nil {
		stream, err := r.cfg.JS.Stream(ctx, events.TimerStream(r.cfg.Name))
		if err != nil {
			r.timersMu.Unlock()
			return fmt.Errorf("cancel %s: %w", e.ScheduleSubject(), err)
		}
		r.timers = stream
	}
	timers := r.timers
	r.timersMu.Unlock()
	return timers.Purge(ctx, jetstream.WithPurgeSubject(e.ScheduleSubject()))
}
