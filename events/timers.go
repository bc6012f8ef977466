package events

import (
	"maps"
	"slices"
	"strings"
	"sync"
	"time"
)

// A scheduled event waits in its producer's own timer stream, not in CHECKOUT: a stream that
// allows message schedules must allow roll-ups, and a roll-up header on any publish purges
// the stream, so CHECKOUT, which every service publishes to, allows neither (and denies purges
// and deletes). Each producer that schedules owns one timer stream that only it may write:
// its slots wait on timer.<producer>.wait.<checkout_id>.<key>, the server fires each due one
// onto timer.<producer>.fire.<event>, and CHECKOUT sources exactly the fire subjects of the
// events that producer schedules, turned back into the event's own subject. A slot holder
// can therefore neither fire an event of another producer into CHECKOUT nor touch another's
// timers.
const timerPrefix = "timer."

// TimerStream is the stream holding producer's scheduled events.
func TimerStream(producer string) string { return "TIMERS_" + strings.ToUpper(producer) }

// TimerSubjects are the subjects of producer's timer stream.
func TimerSubjects(producer string) string { return timerPrefix + producer + ".>" }

// TimerSlots are the subjects producer's schedules wait on for an event of type typ: the
// slot of one checkout is TimerSlots(...) with "*" replaced by its ID (Envelope.ScheduleSubject).
func TimerSlots(producer string, typ Subject) string {
	return timerPrefix + producer + ".wait.*." + eventName(typ)
}

// FireSubject is where the server publishes producer's scheduled event of type typ when it
// is due; CHECKOUT's source from the timer stream maps it back to typ.
func FireSubject(producer string, typ Subject) string {
	return timerPrefix + producer + ".fire." + eventName(typ)
}

// Timed lists, by producer, the events each producer schedules, from the flow's catalog.
var Timed = sync.OnceValue(func() map[string][]Subject {
	m := map[string][]Subject{}
	for _, d := range Checkout.Catalog() {
		if o := origins()[d.Subject]; o.scheduled {
			m[o.signer] = append(m[o.signer], d.Subject)
		}
	}
	return m
})

// Timekeepers are the producers that schedule events, sorted.
func Timekeepers() []string { return slices.Sorted(maps.Keys(Timed())) }

// eventName is an event's subject without the leading "checkout.".
func eventName(typ Subject) string { return strings.TrimPrefix(string(typ), "checkout.") }

// ScheduleSubject is the slot a scheduled event waits on until it is due, in its producer's
// timer stream; a later event with the same key replaces it.
func (e Envelope) ScheduleSubject() string {
	signer, _ := SignerOf(e.Type)
	return timerPrefix + signer + ".wait." + e.CheckoutID + "." + e.Schedule.Key
}

// FireSubject is where the server publishes the scheduled event e when it is due.
func (e Envelope) FireSubject() string {
	signer, _ := SignerOf(e.Type)
	return FireSubject(signer, e.Type)
}

// CeilSecond rounds up to a whole second: schedules are written with second precision, and a
// timer must never fire early.
func CeilSecond(t time.Time) time.Time {
	if r := t.Truncate(time.Second); !r.Equal(t) {
		return r.Add(time.Second)
	}
	return t
}
