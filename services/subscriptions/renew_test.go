package subscriptions

import (
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
)

func active(created time.Time, every time.Duration) events.Subscription {
	return events.Subscription{CreateSubscription: events.CreateSubscription{ID: "sub_t"}, Status: events.SubscriptionActive,
		Interval: events.Duration{Duration: every}, CreatedAt: created, NextRenewal: created}
}

// fired is a renewal the schedule fired at at.
func fired(at time.Time) trigger { return trigger{at: at, schedule: true} }

// endLast ends the latest period as paid.
func endLast(sub *events.Subscription) { sub.Periods[len(sub.Periods)-1].Outcome = events.PeriodPaid }

// One period per renewal due, whatever fires when: early firings, a second firing, a clock
// that goes back, a period still being paid for, a renewal late by several periods.
func TestStartPeriodOncePerPeriod(t *testing.T) {
	day := 24 * time.Hour
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	sub := active(t0, 30*day)

	if !startPeriod(&sub, fired(t0)) || sub.Periods[0].CheckoutID != "sub_t-1" || sub.Periods[0].Attempts != 1 || !sub.NextRenewal.Equal(t0.Add(30*day)) {
		t.Fatalf("the first period did not start at creation: %+v", sub)
	}
	if startPeriod(&sub, fired(t0.Add(30*day))) {
		t.Fatal("a period started while the one before was being paid for")
	}
	endLast(&sub)
	for _, at := range []time.Time{t0.Add(time.Minute), t0.Add(14 * day), t0.Add(-day)} {
		if startPeriod(&sub, fired(at)) {
			t.Fatalf("a renewal at %v, before half a period from the next one, started period %d", at, len(sub.Periods))
		}
	}
	// The schedule fires a little early, then again: one period.
	if !startPeriod(&sub, fired(t0.Add(30*day-time.Second))) || sub.Periods[1].N != 2 {
		t.Fatalf("period 2 did not start: %+v", sub.Periods)
	}
	endLast(&sub)
	if startPeriod(&sub, fired(t0.Add(30*day))) {
		t.Fatal("a second firing started period 3")
	}
	if want := t0.Add(60 * day); !sub.NextRenewal.Equal(want) {
		t.Fatalf("next renewal %v, want %v: the cycle keeps its anchor", sub.NextRenewal, want)
	}
	// The system was down for 100 days: one period, and the cycle moves on from then.
	late := t0.Add(160 * day)
	if !startPeriod(&sub, fired(late)) || sub.Periods[2].N != 3 || !sub.NextRenewal.Equal(late.Add(30*day)) {
		t.Fatalf("a late renewal: periods %+v, next %v", sub.Periods, sub.NextRenewal)
	}
	endLast(&sub)
	if startPeriod(&sub, fired(late.Add(time.Hour))) {
		t.Fatal("the missed periods were charged in a burst")
	}
	sub.Status = events.SubscriptionPaused
	if startPeriod(&sub, fired(late.Add(30*day))) {
		t.Fatal("a paused subscription renewed")
	}
}

// A changed plan waits for the next period, which starts it and restarts the cycle.
func TestChangedPlanStartsWithTheNextPeriod(t *testing.T) {
	day := 24 * time.Hour
	t0 := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	sub := active(t0, 30*day)
	sub.Items, sub.IntervalDays = []events.CartItem{{ProductID: "mug", Quantity: 1}}, 30
	startPeriod(&sub, fired(t0))
	endLast(&sub)
	sub.NextPlan = &events.Plan{Items: []events.CartItem{{ProductID: "mug", Quantity: 2}}, IntervalDays: 7, Interval: events.Duration{Duration: 7 * day}}
	if startPeriod(&sub, fired(t0.Add(7*day))) {
		t.Fatal("the new interval started a period before the old one was due")
	}
	at := t0.Add(30 * day)
	if !startPeriod(&sub, fired(at)) || sub.NextPlan != nil || sub.Items[0].Quantity != 2 || sub.Interval.Duration != 7*day ||
		!sub.NextRenewal.Equal(at.Add(7*day)) {
		t.Fatalf("period 2 with the new plan: %+v", sub)
	}
}

func TestRenewalCheckoutIDsParseBack(t *testing.T) {
	for _, c := range []struct {
		id         string
		sub        string
		n, attempt int
		isOK       bool
	}{
		{"sub_abc-1", "sub_abc", 1, 1, true},
		{"sub_a_b-12", "sub_a_b", 12, 1, true},
		{"sub_abc-3-2", "sub_abc", 3, 2, true},
		{"sub_abc-3-1", "", 0, 0, false}, // the first attempt has no suffix
		{"sub_abc-0", "", 0, 0, false},
		{"sub_abc-01", "", 0, 0, false},
		{"sub_abc-x", "", 0, 0, false},
		{"co_abc-1", "", 0, 0, false},
		{"sub_a-b-1-2", "", 0, 0, false},
	} {
		sub, n, attempt, ok := events.ParseRenewalCheckoutID(c.id)
		if sub != c.sub || n != c.n || attempt != c.attempt || ok != c.isOK {
			t.Errorf("%s: %q %d %d %v, want %q %d %d %v", c.id, sub, n, attempt, ok, c.sub, c.n, c.attempt, c.isOK)
		}
		if ok && events.RenewalCheckoutID(sub, n, attempt) != c.id {
			t.Errorf("%s does not make its ID again", c.id)
		}
	}
}

// Dunning: a declined period is tried again 1, 3 and 7 days after its first decline, one
// attempt at a time, each its own checkout; the last decline cancels the subscription; a
// copy of an attempt's end, or the end of an attempt that is not the latest, changes nothing;
// a failure no retry mends (out of stock) fails the period alone.
func TestDunningRetriesThenCancels(t *testing.T) {
	day := 24 * time.Hour
	d := dunning{days: []int{1, 3, 7}, day: day, final: events.SubscriptionCancelled}
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	sub := active(t0, 30*day)
	startPeriod(&sub, fired(t0))

	declined := t0.Add(time.Minute)
	for attempt, wantGap := range []time.Duration{day, 2 * day, 4 * day} {
		attempt++
		if !d.endAttempt(&sub, 1, attempt, events.CodeCardDeclined, "declined", declined) {
			t.Fatalf("attempt %d's decline changed nothing", attempt)
		}
		p := sub.Periods[0]
		if sub.Status != events.SubscriptionPastDue || p.Outcome != "" || p.RetryAt == nil || !p.RetryAt.Equal(declined.Add(wantGap)) {
			t.Fatalf("after attempt %d: status %s, period %+v; want past due, retried %v later", attempt, sub.Status, p, wantGap)
		}
		if d.endAttempt(&sub, 1, attempt, events.CodeCardDeclined, "declined", declined) {
			t.Fatalf("a copy of attempt %d's end changed the record", attempt)
		}
		if startPeriod(&sub, fired(t0.Add(30*day))) {
			t.Fatal("a new period started while the one before was being retried")
		}
		if retryDue(&sub, trigger{at: p.RetryAt.Add(-2 * time.Second)}) {
			t.Fatal("a retry started early")
		}
		if !retryDue(&sub, trigger{at: *p.RetryAt}) || sub.Periods[0].Attempts != attempt+1 ||
			sub.Periods[0].CheckoutID != events.RenewalCheckoutID("sub_t", 1, attempt+1) {
			t.Fatalf("retry %d did not start: %+v", attempt, sub.Periods[0])
		}
		if retryDue(&sub, trigger{at: *p.RetryAt}) {
			t.Fatal("a retry fired twice started two attempts")
		}
		declined = p.RetryAt.Add(time.Minute)
	}
	if d.endAttempt(&sub, 1, 2, events.CodeCardDeclined, "late", declined) {
		t.Fatal("the end of an earlier attempt changed the record")
	}
	if !d.endAttempt(&sub, 1, 4, events.CodeInsufficientFunds, "no funds", declined) {
		t.Fatal("the last decline changed nothing")
	}
	if p := sub.Periods[0]; sub.Status != events.SubscriptionCancelled || p.Outcome != events.PeriodFailed || p.RetryAt != nil ||
		sub.CancelReason != "period 1 could not be paid after 4 attempts: no funds" {
		t.Fatalf("after the last attempt: %s %q %+v", sub.Status, sub.CancelReason, p)
	}

	other := active(t0, 30*day)
	startPeriod(&other, fired(t0))
	if !d.endAttempt(&other, 1, 1, events.CodeInsufficientStock, "sold out", t0) || other.Status != events.SubscriptionActive ||
		other.Periods[0].Outcome != events.PeriodFailed || other.Periods[0].RetryAt != nil {
		t.Fatalf("out of stock: %s %+v, want the period failed and the subscription active", other.Status, other.Periods[0])
	}
	if !startPeriod(&other, fired(t0.Add(30*day))) {
		t.Fatal("the period after an out-of-stock one did not start")
	}
	if !d.endAttempt(&other, 2, 1, "", "", t0.Add(30*day)) || other.Periods[1].Outcome != events.PeriodPaid {
		t.Fatalf("a paid period: %+v", other.Periods[1])
	}
}

// Only a renewal the schedule fired may start a period early (up to half a period: the
// schedule's drift); an attempt that ended, a resume or a restart start only what is due.
func TestOnlyTheScheduleStartsAPeriodEarly(t *testing.T) {
	day := 24 * time.Hour
	t0 := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	sub := active(t0, 10*day)
	startPeriod(&sub, trigger{at: t0})
	endLast(&sub)
	if startPeriod(&sub, trigger{at: t0.Add(7 * day)}) {
		t.Fatal("a period started three days early on something else than its schedule")
	}
	if !startPeriod(&sub, fired(t0.Add(7*day))) {
		t.Fatal("the schedule's firing within half a period did not start the period")
	}
}

// A retry its schedule fired is due whatever RetryAt says (the coordinator's clock may run
// ahead of the server's); anything else waits for RetryAt.
func TestAFiredRetryIsDue(t *testing.T) {
	d := dunning{days: []int{1, 3}, day: time.Hour, final: events.SubscriptionCancelled}
	t0 := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	sub := active(t0, 24*time.Hour)
	startPeriod(&sub, trigger{at: t0})
	d.endAttempt(&sub, 1, 1, events.CodeCardDeclined, "declined", t0.Add(5*time.Second)) // a clock 5 s ahead
	early := t0.Add(time.Hour)
	if retryDue(&sub, trigger{at: early}) {
		t.Fatal("a retry started before RetryAt on something else than its schedule")
	}
	if !retryDue(&sub, trigger{at: early, retry: true}) || sub.Periods[0].Attempts != 2 {
		t.Fatalf("the retry its schedule fired did not start: %+v", sub.Periods[0])
	}
}

// A retry that fails for a reason no retry mends fails its period alone: the subscription is
// active again, not cancelled as after a last decline.
func TestAFailedRetryThatNoRetryMendsKeepsTheSubscription(t *testing.T) {
	d := dunning{days: []int{1}, day: time.Hour, final: events.SubscriptionCancelled}
	t0 := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	sub := active(t0, 24*time.Hour)
	startPeriod(&sub, trigger{at: t0})
	d.endAttempt(&sub, 1, 1, events.CodeCardDeclined, "declined", t0)
	retryDue(&sub, trigger{at: t0.Add(time.Hour)})
	if !d.endAttempt(&sub, 1, 2, events.CodeInsufficientStock, "sold out", t0.Add(time.Hour)) ||
		sub.Status != events.SubscriptionActive || sub.Periods[0].Outcome != events.PeriodFailed || sub.CancelReason != "" {
		t.Fatalf("after a retry out of stock: %s %q %+v", sub.Status, sub.CancelReason, sub.Periods[0])
	}
}
