package chaos

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/jsread"
	"github.com/jetcheckout/jetcheckout/services/notifications"
	"github.com/nats-io/nats.go/jetstream"
)

// redriver plays the operator who fixes a customer's mailbox and then re-drives what it
// refused, while the faults go on: the checkout whose confirmation bounced (it completed
// with a warning), or the dead letter of a failed checkout's notice. Each re-drive is asked
// twice, as a double click, and the second must be refused.
type redriver struct {
	driver driver
	ends   *terminals
	mail   mailbox
	log    func(string, ...any)
	wg     sync.WaitGroup

	mu       sync.Mutex
	redriven map[string]bool // checkout → re-driven (its checkout or its letter)
	problems []string        // what went wrong, as violations
}

// redriveReason is what the operator says each time.
const redriveReason = "the customer's mailbox takes mail again"

func newRedriver(d driver, ends *terminals, mail mailbox, log func(string, ...any)) *redriver {
	return &redriver{driver: d, ends: ends, mail: mail, log: log, redriven: map[string]bool{}}
}

// start makes the mailboxes of the plans waiting for a re-drive refuse mail, and re-drives
// each once it ended.
func (r *redriver) start(ctx context.Context, plans []planned) {
	for _, p := range plans {
		if p.Kind.redriven() {
			r.mail.Refuse(p.Email)
			r.wg.Go(func() { r.redrive(ctx, p) })
		}
	}
}

// wait waits until every planned re-drive was made, or limit passed.
func (r *redriver) wait(limit time.Duration) error {
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-time.After(limit):
		return fmt.Errorf("re-drives not made after %s", limit)
	}
}

// redrive waits for p to end, fixes its customer's mailbox and re-drives what it refused:
// a completed checkout's confirmation (the checkout), or a failed one's notice (its dead
// letter). A good checkout may fail under the faults: its notice is what bounced then.
func (r *redriver) redrive(ctx context.Context, p planned) {
	select {
	case <-ctx.Done():
		return
	case <-r.ends.ended(p.ID):
	}
	var f events.CheckoutFailed
	switch end := r.ends.terminal(p.ID); {
	case end.Type == events.Completed:
		r.mail.Take(p.Email)
		if r.ask(ctx, p.ID, events.CheckoutsRedrive, events.RedriveRequest{CheckoutID: p.ID, By: "chaos-operator", Reason: redriveReason},
			"already submitted", "is still running", "nothing to re-drive") {
			r.done(p.ID)
		}
	case end.DecodePayload(&f) != nil || !notifications.Notifies(f):
		r.mail.Take(p.Email) // no notice was sent
	default:
		seq, found := r.letter(ctx, p.ID)
		if !found {
			return
		}
		r.mail.Take(p.Email)
		if r.ask(ctx, p.ID, events.DeadLettersRedrive, events.DeadLetterRedriveRequest{
			Service: events.ServiceNotifications, StreamSequence: seq, By: "chaos-operator", Reason: redriveReason}, "holds no letter") {
			r.done(p.ID)
		}
	}
}

func (r *redriver) done(id string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.redriven[id] = true
}

// ask sends a re-drive until it is answered: accepted, or, asked again, refused with one of
// lost (an earlier request went through and its reply was lost in a fault). Then it asks
// once more, as a double click, which must be refused. Any other refusal is a problem.
func (r *redriver) ask(ctx context.Context, id string, subject events.Subject, req any, lost ...string) bool {
	for attempt := 0; ; attempt++ {
		err := r.driver.call(subject, req, nil)
		var refused *serviceError
		switch {
		case err == nil, attempt > 0 && errors.As(err, &refused) && slices.ContainsFunc(lost, func(s string) bool { return strings.Contains(refused.text, s) }):
			if err := r.driver.call(subject, req, nil); err == nil {
				r.problem("%s: re-driven twice by a double click on %s", id, subject)
			}
			return true
		case errors.As(err, &refused) && refused.code != "500":
			r.problem("%s: %s refused: %v", id, subject, err)
			return false
		}
		r.log("%s: %s: %v; again", id, subject, err)
		select {
		case <-ctx.Done():
			return false
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// letter waits for the dead letter of checkout id's failure notice and returns the stream
// sequence it names.
func (r *redriver) letter(ctx context.Context, id string) (uint64, bool) {
	read := jsread.NewLeader(r.driver.js, events.StreamDeadLetter)
	ofCheckout := func(m *jetstream.RawStreamMsg) bool { return events.ProbeCheckoutID(m.Data) == id }
	for {
		if m, err := read.Find(ctx, events.DeadLetterSubject(events.ServiceNotifications), ofCheckout); m != nil && err == nil {
			seq, err := strconv.ParseUint(m.Header.Get(events.HeaderDeadSequence), 10, 64)
			return seq, err == nil
		}
		select {
		case <-ctx.Done():
			return 0, false
		case <-time.After(500 * time.Millisecond):
		}
	}
}

func (r *redriver) problem(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.problems = append(r.problems, fmt.Sprintf(format, args...))
}

// reconcile checks what the re-drives promised, once the services stopped: a checkout whose
// confirmation bounced completed with that warning, was re-driven, got exactly one
// confirmation, and its re-drive settled with nothing left; a failed one whose notice
// bounced got exactly one notice through its re-driven dead letter.
func (r *redriver) reconcile(res *Result, plans []planned, s *state) {
	violate := r.problem
	mails := mailsByCheckout(s.mails, &Result{}) // counted in res already
	for _, p := range plans {
		ends := s.terminals[p.ID]
		if !p.Kind.redriven() || len(ends) == 0 {
			continue // no terminal: reconcile said so
		}
		m := mails[p.ID]
		if m == nil {
			m = &customerMail{}
		}
		var f events.CheckoutFailed
		switch end := ends[0]; {
		case end.Type == events.Completed:
			var c events.CheckoutCompleted
			_ = end.DecodePayload(&c)
			if !warned(c, events.StepSendConfirmation) {
				violate("%s (%s): completed without the warning of its bounced confirmation", p.ID, p.Kind)
			}
			checkSettled(p, s.settled[p.ID], violate)
			if len(m.confirmations) != 1 {
				violate("%s (%s): %d confirmations after its re-drive, want 1", p.ID, p.Kind, len(m.confirmations))
			}
			if r.redriven[p.ID] {
				res.Redriven++
			}
		case end.DecodePayload(&f) == nil && notifications.Notifies(f):
			if len(m.notices) != 1 {
				violate("%s (%s): %d failure notices after its dead letter's re-drive, want 1", p.ID, p.Kind, len(m.notices))
			}
			if r.redriven[p.ID] {
				res.LettersRedriven++
			}
		default:
			continue
		}
		if !r.redriven[p.ID] {
			violate("%s (%s): never re-driven", p.ID, p.Kind)
		}
	}
	res.Violations = append(res.Violations, r.problems...)
	slices.Sort(res.Violations)
}

// checkSettled: the checkout's re-drive settled once, with nothing left.
func checkSettled(p planned, settled []events.Envelope, violate func(string, ...any)) {
	if len(settled) != 1 {
		violate("%s (%s): %d re-drives settled, want 1", p.ID, p.Kind, len(settled))
		return
	}
	var out events.RedriveOutcome
	if err := settled[0].DecodePayload(&out); err != nil || len(out.Warnings) > 0 || out.NeedsAttention {
		violate("%s (%s): its re-drive settled with %+v (%v), want nothing left", p.ID, p.Kind, out, err)
	}
}
