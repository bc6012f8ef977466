package runner

import (
	"context"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// publish sends the outputs together and waits for every stream ack. A scheduled output
// waits on its schedule subject until the server publishes it at its time.
func (r *Runner) publish(ctx context.Context, outs []events.Envelope) error {
	futures := make([]jetstream.PubAckFuture, 0, len(outs))
	for _, e := range outs {
		data, err := e.Encode()
		if err != nil {
			return err
		}
		msg := &nats.Msg{Subject: string(e.Type), Data: data}
		opts := []jetstream.PublishOpt{jetstream.WithMsgID(e.ID)}
		if e.Schedule != nil {
			msg.Subject = e.ScheduleSubject()
			opts = append(opts, jetstream.WithScheduleAt(ceilSecond(e.Schedule.At)), jetstream.WithScheduleTarget(string(e.Type)))
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

// ceilSecond rounds up to a whole second: schedules are written with second precision, and a
// deadline must never fire early.
func ceilSecond(t time.Time) time.Time {
	if r := t.Truncate(time.Second); !r.Equal(t) {
		return r.Add(time.Second)
	}
	return t
}
