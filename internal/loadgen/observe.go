package loadgen

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/nats-io/nats.go"
)

// observer watches every event on checkout.> and times each checkout of this run: from
// the request's publish to its terminal event, and each step from its trigger to its
// outcome. A checkout is forgotten once it ends, so memory does not grow with the run.
type observer struct {
	sub      *nats.Subscription
	subjects map[string]int // the subjects timed, by slot in track.seen

	mu       sync.Mutex
	open     map[string]*track
	e2e      *Histogram
	steps    map[events.StepName]*Histogram
	ended    func() // called (with mu held, so it must not block) as each checkout ends
	finished struct{ completed, failed uint64 }
	last     time.Time         // the latest terminal event
	stray    uint64            // terminal events of checkouts not started by this run
	failures map[string]uint64 // failed checkouts by "step: code"
}

// track is one open checkout: when each timed subject was first seen.
type track struct {
	seen []time.Time
}

func newObserver(nc *nats.Conn, ended func()) (*observer, error) {
	o := &observer{subjects: map[string]int{}, open: map[string]*track{}, e2e: NewHistogram(), steps: map[events.StepName]*Histogram{}, ended: ended, failures: map[string]uint64{}}
	for _, subj := range timedSubjects() {
		if _, ok := o.subjects[string(subj)]; !ok {
			o.subjects[string(subj)] = len(o.subjects)
		}
	}
	for _, s := range events.Checkout.Steps {
		o.steps[s.Name] = NewHistogram()
	}
	sub, err := nc.Subscribe(events.CheckoutSubjects, o.handle)
	if err != nil {
		return nil, err
	}
	// Never drop an event because the observer fell behind: a lost terminal event would
	// read as a checkout that never ended.
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return nil, err
	}
	o.sub = sub
	return o, nil
}

func timedSubjects() []events.Subject {
	out := []events.Subject{events.Requested, events.Completed, events.Failed}
	for _, s := range events.Checkout.Steps {
		out = append(out, s.Trigger, s.Done, s.Failed)
	}
	return out
}

// start records a checkout's request as published at t.
func (o *observer) start(checkoutID string, t time.Time) {
	tr := &track{seen: make([]time.Time, len(o.subjects))}
	tr.seen[o.subjects[string(events.Requested)]] = t
	o.mu.Lock()
	o.open[checkoutID] = tr
	o.mu.Unlock()
}

func (o *observer) handle(msg *nats.Msg) {
	now := time.Now()
	slot, timed := o.subjects[msg.Subject]
	if !timed || msg.Subject == string(events.Requested) {
		return // the request's time is its publish; scheduled and other events are not timed
	}
	id := checkoutIDOf(msg.Data)
	o.mu.Lock()
	defer o.mu.Unlock()
	tr, ok := o.open[id]
	if !ok {
		if msg.Subject == string(events.Completed) || msg.Subject == string(events.Failed) {
			o.stray++
		}
		return
	}
	if tr.seen[slot].IsZero() {
		tr.seen[slot] = now
	}
	switch msg.Subject {
	case string(events.Completed):
		o.finish(id, tr, true, now)
	case string(events.Failed):
		o.failures[failureOf(msg.Data)]++
		o.finish(id, tr, false, now)
	}
}

// finish records a checkout's latencies and forgets it. Called with mu held.
func (o *observer) finish(id string, tr *track, completed bool, now time.Time) {
	delete(o.open, id)
	latency := now.Sub(tr.seen[o.subjects[string(events.Requested)]])
	o.e2e.Record(latency)
	for _, s := range events.Checkout.Steps {
		from := tr.seen[o.subjects[string(s.Trigger)]]
		to := tr.seen[o.subjects[string(s.Done)]]
		if to.IsZero() {
			to = tr.seen[o.subjects[string(s.Failed)]]
		}
		if !from.IsZero() && !to.IsZero() {
			o.steps[s.Name].Record(to.Sub(from))
		}
	}
	if completed {
		o.finished.completed++
	} else {
		o.finished.failed++
	}
	o.last = now
	if o.ended != nil {
		o.ended()
	}
}

// abandon forgets a checkout whose request never reached the stream.
func (o *observer) abandon(checkoutID string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if _, ok := o.open[checkoutID]; ok {
		delete(o.open, checkoutID)
		if o.ended != nil {
			o.ended()
		}
	}
}

// pending is how many checkouts of this run have not ended yet.
func (o *observer) pending() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.open)
}

func (o *observer) stop() { _ = o.sub.Unsubscribe() }

// checkoutIDOf reads an envelope's checkout_id without decoding the whole event: the
// observer sees every event of the run, and a full decode would cost more CPU than some
// steps. The envelope's own field comes before its payload.
func checkoutIDOf(data []byte) string {
	const key = `"checkout_id":"`
	if i := bytes.Index(data, []byte(key)); i >= 0 {
		rest := data[i+len(key):]
		if j := bytes.IndexByte(rest, '"'); j >= 0 {
			return string(rest[:j])
		}
	}
	var e struct {
		CheckoutID string `json:"checkout_id"`
	}
	_ = json.Unmarshal(data, &e)
	return strings.TrimSpace(e.CheckoutID)
}

// failureOf names why a checkout failed: its step and code.
func failureOf(data []byte) string {
	e, err := events.Decode(string(events.Failed), data)
	if err != nil {
		return "undecodable checkout.failed"
	}
	var f events.CheckoutFailed
	if err := json.Unmarshal(e.Payload, &f); err != nil {
		return "undecodable checkout.failed"
	}
	return fmt.Sprintf("%s: %s", f.Step, f.Code)
}
