package topology

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// MigrationStream holds CHECKOUT's history, sequence for sequence, while Migrate makes
// CHECKOUT anew; its consumers hold the old consumers' configurations and positions.
const MigrationStream = events.StreamCheckout + "_MIGRATION"

// resumeKey is the metadata of a consumer kept on MigrationStream: the stream sequence its
// original resumes from (its ack floor + 1).
const resumeKey = "jetcheckout_resume_seq"

// ErrNeedsMigration: CHECKOUT predates the timer streams (it allows message schedules, so
// any publisher could purge it with a roll-up header), or its migration has not finished.
// Migrate, run with the operator's credentials, makes it anew; until then the services wait.
var ErrNeedsMigration = errors.New("the CHECKOUT stream predates the timer streams (or its migration has not finished): " +
	"migrate it once with the operator's credentials, `jetcheckout setup -once -migrate` (`make migrate` for the compose stack); the services wait until then")

// Migrate makes a CHECKOUT stream that allows message schedules into today's (none, no roll-
// ups, no purge), keeping every event at its sequence, every consumer at its position, and
// every pending schedule, which moves into its producer's timer stream. An existing stream's
// schedules cannot be switched off, so the stream is made anew, in steps that each leave a
// state the next run recognises, so a migration stopped anywhere goes on where it stopped:
//  1. CHECKOUT is sealed (publishes fail and are retried by their publishers) and mirrored
//     into MigrationStream (a mirror keeps the sequences); each durable consumer is recorded
//     there, unused, with its position in its metadata.
//  2. CHECKOUT is deleted and made again as a mirror of MigrationStream; the consumers are
//     made again on it at their positions, and the pending schedules again in the timer
//     streams; then it is promoted to a stream of its own with today's configuration.
//  3. MigrationStream goes.
//
// Nothing consumes CHECKOUT until it is promoted: the services wait (Missing reports it; stop
// the services of the previous version first, which do not). It runs with the operator's
// credentials (it deletes CHECKOUT, and reads and makes every consumer and schedule), and
// one at a time: two at once could put live consumers back.
// It reports whether there was anything to migrate; step tells what it is doing.
func Migrate(ctx context.Context, js jetstream.JetStream, step func(string), opts ...Option) (bool, error) {
	o := options{replicas: 1}
	for _, opt := range opts {
		opt(&o)
	}
	if step == nil {
		step = func(string) {}
	}
	old, err := streamConfig(ctx, js, events.StreamCheckout)
	if err != nil {
		return false, err
	}
	kept, err := streamConfig(ctx, js, MigrationStream)
	if err != nil {
		return false, err
	}
	if kept == nil && (old == nil || !old.AllowMsgSchedules) {
		return false, nil
	}
	for _, producer := range events.Timekeepers() {
		if err := ensureStream(ctx, js, timerStream(producer, o.replicas), o.changed); err != nil {
			return true, err
		}
	}
	if old != nil && old.AllowMsgSchedules {
		step("sealing CHECKOUT and copying it, sequence for sequence")
		if err := keepHistory(ctx, js, *old); err != nil {
			return true, err
		}
		step("deleting the old CHECKOUT")
		if err := js.DeleteStream(ctx, events.StreamCheckout); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return true, err
		}
		old = nil
	}
	if old != nil && old.Mirror == nil {
		// Promoted before a stop: the copy goes only if CHECKOUT holds all it held (a
		// CHECKOUT made empty meanwhile, by hand, must not cost the history).
		if err := covers(ctx, js); err != nil {
			return true, err
		}
	}
	if old == nil || old.Mirror != nil {
		// Until it is promoted, CHECKOUT is a mirror nobody consumes (Missing reports it), so
		// all of this can be done again after a stop.
		step("making CHECKOUT again from the copy")
		replicas, err := mirrorCopy(ctx, js, o.replicas)
		if err != nil {
			return true, err
		}
		step("putting the consumers back at their positions")
		if err := restoreConsumers(ctx, js); err != nil {
			return true, err
		}
		step("moving the pending schedules into the timer streams")
		if err := moveSchedules(ctx, js); err != nil {
			return true, err
		}
		step("promoting CHECKOUT to a stream of its own")
		want := checkoutStream(replicas)
		if _, err := js.UpdateStream(ctx, want); err != nil {
			return true, fmt.Errorf("promote CHECKOUT: %w", err)
		}
	}
	step("removing the copy")
	if err := js.DeleteStream(ctx, MigrationStream); err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
		return true, err
	}
	return true, nil
}

// covers checks that CHECKOUT holds every sequence MigrationStream holds.
func covers(ctx context.Context, js jetstream.JetStream) error {
	kept, stream, err := bothStreams(ctx, js)
	if err != nil {
		return err
	}
	have, want := stream.CachedInfo().State, kept.CachedInfo().State
	if have.LastSeq < want.LastSeq || (want.Msgs > 0 && have.FirstSeq > want.FirstSeq) {
		return fmt.Errorf("CHECKOUT holds sequences %d to %d, its copy %s %d to %d: not removing the copy; "+
			"delete CHECKOUT (it was made after the migration began) and run the migration again", have.FirstSeq, have.LastSeq, MigrationStream, want.FirstSeq, want.LastSeq)
	}
	return nil
}

// bothStreams are MigrationStream and CHECKOUT.
func bothStreams(ctx context.Context, js jetstream.JetStream) (kept, checkout jetstream.Stream, err error) {
	if kept, err = js.Stream(ctx, MigrationStream); err != nil {
		return nil, nil, fmt.Errorf("the copy of CHECKOUT: %w", err)
	}
	if checkout, err = js.Stream(ctx, events.StreamCheckout); err != nil {
		return nil, nil, err
	}
	return kept, checkout, nil
}

// timed reports whether typ is an event its producer schedules.
func timed(typ events.Subject) bool {
	signer, _ := events.SignerOf(typ)
	return slices.Contains(events.Timed()[signer], typ)
}

// streamConfig is a stream's configuration, nil when there is no such stream.
func streamConfig(ctx context.Context, js jetstream.JetStream, name string) (*jetstream.StreamConfig, error) {
	s, err := js.Stream(ctx, name)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", name, err)
	}
	cfg := s.CachedInfo().Config
	return &cfg, nil
}

// keepHistory seals the old CHECKOUT, waits until MigrationStream mirrors all of it, and
// records its consumers there.
func keepHistory(ctx context.Context, js jetstream.JetStream, old jetstream.StreamConfig) error {
	if !old.Sealed {
		old.Sealed = true
		if _, err := js.UpdateStream(ctx, old); err != nil {
			return fmt.Errorf("seal CHECKOUT: %w", err)
		}
	}
	mirror := jetstream.StreamConfig{
		Name:        MigrationStream,
		Description: "CHECKOUT's history while it is made anew (topology.Migrate): removed when done.",
		Mirror:      &jetstream.StreamSource{Name: events.StreamCheckout},
		Storage:     jetstream.FileStorage,
		MaxAge:      old.MaxAge,
		MaxMsgSize:  old.MaxMsgSize,
		AllowDirect: true,
		Replicas:    old.Replicas,
	}
	if _, err := js.CreateStream(ctx, mirror); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return fmt.Errorf("copy CHECKOUT: %w", err)
	}
	src, err := js.Stream(ctx, events.StreamCheckout)
	if err != nil {
		return err
	}
	if err := caughtUp(ctx, js, MigrationStream, src.CachedInfo().State.LastSeq); err != nil {
		return err
	}
	kept, err := js.Stream(ctx, MigrationStream)
	if err != nil {
		return err
	}
	for cons := range src.ListConsumers(ctx).Info() {
		cfg := cons.Config
		if cfg.Durable == "" {
			continue // an ephemeral one (a CLI's, an ordered reader's): its reader is gone with it
		}
		cfg.Metadata = map[string]string{resumeKey: strconv.FormatUint(cons.AckFloor.Stream+1, 10)}
		if _, err := kept.CreateConsumer(ctx, cfg); err != nil && !errors.Is(err, jetstream.ErrConsumerExists) {
			return fmt.Errorf("record consumer %s: %w", cfg.Durable, err)
		}
	}
	return nil
}

// caughtUp waits until the mirror name has copied its origin up to lastSeq.
func caughtUp(ctx context.Context, js jetstream.JetStream, name string, lastSeq uint64) error {
	for {
		s, err := js.Stream(ctx, name)
		if err != nil {
			return err
		}
		info := s.CachedInfo()
		if info.State.LastSeq >= lastSeq && (info.Mirror == nil || info.Mirror.Lag == 0) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s copied up to %d of %d: %w", name, info.State.LastSeq, lastSeq, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// mirrorCopy makes CHECKOUT as a mirror of MigrationStream and waits until it holds all of
// it; it returns the replicas CHECKOUT has.
func mirrorCopy(ctx context.Context, js jetstream.JetStream, replicas int) (int, error) {
	kept, err := js.Stream(ctx, MigrationStream)
	if err != nil {
		return 0, fmt.Errorf("the copy of CHECKOUT: %w", err)
	}
	if cfg := kept.CachedInfo().Config; cfg.Mirror != nil {
		// A stream of its own first: two streams mirroring each other would be a cycle.
		cfg.Mirror = nil
		if _, err := js.UpdateStream(ctx, cfg); err != nil {
			return 0, fmt.Errorf("detach the copy of CHECKOUT: %w", err)
		}
	}
	mirror := checkoutStream(max(replicas, kept.CachedInfo().Config.Replicas))
	mirror.Subjects, mirror.Sources, mirror.DenyDelete, mirror.DenyPurge = nil, nil, false, false
	mirror.Mirror = &jetstream.StreamSource{Name: MigrationStream}
	if _, err := js.CreateStream(ctx, mirror); err != nil && !errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return 0, fmt.Errorf("make CHECKOUT from the copy: %w", err)
	}
	return mirror.Replicas, caughtUp(ctx, js, events.StreamCheckout, kept.CachedInfo().State.LastSeq)
}

// restoreConsumers makes each consumer recorded on MigrationStream again on CHECKOUT (still a
// mirror) and puts it at its position.
func restoreConsumers(ctx context.Context, js jetstream.JetStream) error {
	kept, stream, err := bothStreams(ctx, js)
	if err != nil {
		return err
	}
	for cons := range kept.ListConsumers(ctx).Info() {
		cfg := cons.Config
		resume, err := strconv.ParseUint(cfg.Metadata[resumeKey], 10, 64)
		if err != nil {
			return fmt.Errorf("consumer %s: no position kept: %w", cfg.Durable, err)
		}
		delete(cfg.Metadata, resumeKey)
		resettable := cfg.DeliverPolicy == jetstream.DeliverAllPolicy || cfg.DeliverPolicy == jetstream.DeliverByStartSequencePolicy
		if !resettable && resume > 1 {
			// A reset is refused for the other delivery policies: start it where it was.
			cfg.DeliverPolicy, cfg.OptStartSeq, cfg.OptStartTime = jetstream.DeliverByStartSequencePolicy, resume, nil
		}
		if _, err := stream.CreateOrUpdateConsumer(ctx, cfg); err != nil {
			return fmt.Errorf("make consumer %s again: %w", cfg.Durable, err)
		}
		if resettable && resume > 1 {
			if _, err := js.ResetConsumerToSequence(ctx, events.StreamCheckout, cfg.Durable, resume); err != nil {
				return fmt.Errorf("put consumer %s at %d: %w", cfg.Durable, resume, err)
			}
		}
	}
	return nil
}

// moveSchedules schedules again, in its producer's timer stream, every schedule CHECKOUT
// still held (the last message of each slot under events.LegacySchedules; a schedule that
// fired was removed by the server). The producer's signature comes along: it covers the
// event's subject and bytes, not where it waited. One already due fires at once.
func moveSchedules(ctx context.Context, js jetstream.JetStream) error {
	stream, err := js.Stream(ctx, events.StreamCheckout)
	if err != nil {
		return err
	}
	// The slots from the stream's subject list, each slot's last message by a direct get: no
	// consumer, and nothing read but the schedules (the setup user may read no more).
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(string(events.LegacySchedules)+".>"))
	if err != nil {
		return err
	}
	for slot := range info.State.Subjects {
		m, err := stream.GetLastMsgForSubject(ctx, slot)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read the schedule %s: %w", slot, err)
		}
		if m.Header.Get("Nats-Schedule") == "" {
			continue // not a schedule (its slot's last message was the server's purge)
		}
		var e events.Envelope
		if err := json.Unmarshal(m.Data, &e); err != nil || e.Schedule == nil || !timed(e.Type) {
			continue // nothing a service scheduled: it would have been refused when it fired
		}
		h := nats.Header{}
		for _, k := range []string{events.SignerHeader, events.SignatureHeader, jetstream.MsgIDHeader} {
			if v := m.Header.Get(k); v != "" {
				h.Set(k, v)
			}
		}
		at := e.Schedule.At.Truncate(time.Second).Add(time.Second)
		if at.Before(time.Now()) {
			at = time.Now().Add(time.Second)
		}
		msg := &nats.Msg{Subject: e.ScheduleSubject(), Data: m.Data, Header: h}
		if _, err := js.PublishMsg(ctx, msg, jetstream.WithScheduleAt(at), jetstream.WithScheduleTarget(e.FireSubject())); err != nil {
			return fmt.Errorf("schedule %s again: %w", msg.Subject, err)
		}
	}
	return nil
}
