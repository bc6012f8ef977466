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

// endLast ends the latest period as paid.
func endLast(sub *events.Subscription) { sub.Periods[len(sub.Periods)-1].Outcome = events.PeriodPaid }

// One period per renewal due, whatever fires when: early firings, a second firing, a clock
// that goes back, a period still being paid for, a renewal late by several periods.
func TestStartPeriodOncePerPeriod(t *testing.T) {
	day := 24 * time.Hour
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	sub := active(t0, 30*day)

	if !startPeriod(&sub, t0) || sub.Periods[0].CheckoutID != "sub_t-1" || !sub.NextRenewal.Equal(t0.Add(30*day)) {
		t.Fatalf("the first period did not start at creation: %+v", sub)
	}
	if startPeriod(&sub, t0.Add(30*day)) {
		t.Fatal("a period started while the one before was being paid for")
	}
	endLast(&sub)
	for _, at := range []time.Time{t0.Add(time.Minute), t0.Add(14 * day), t0.Add(-day)} {
		if startPeriod(&sub, at) {
			t.Fatalf("a renewal at %v, before half a period from the next one, started period %d", at, len(sub.Periods))
		}
	}
	// The schedule fires a little early, then again: one period.
	if !startPeriod(&sub, t0.Add(30*day-time.Second)) || sub.Periods[1].N != 2 {
		t.Fatalf("period 2 did not start: %+v", sub.Periods)
	}
	endLast(&sub)
	if startPeriod(&sub, t0.Add(30*day)) {
		t.Fatal("a second firing started period 3")
	}
	if want := t0.Add(60 * day); !sub.NextRenewal.Equal(want) {
		t.Fatalf("next renewal %v, want %v: the cycle keeps its anchor", sub.NextRenewal, want)
	}
	// The system was down for 100 days: one period, and the cycle moves on from then.
	late := t0.Add(160 * day)
	if !startPeriod(&sub, late) || sub.Periods[2].N != 3 || !sub.NextRenewal.Equal(late.Add(30*day)) {
		t.Fatalf("a late renewal: periods %+v, next %v", sub.Periods, sub.NextRenewal)
	}
	endLast(&sub)
	if startPeriod(&sub, late.Add(time.Hour)) {
		t.Fatal("the missed periods were charged in a burst")
	}
	sub.Status = events.SubscriptionPaused
	if startPeriod(&sub, late.Add(30*day)) {
		t.Fatal("a paused subscription renewed")
	}
}

func TestRenewalCheckoutIDsParseBack(t *testing.T) {
	for _, c := range []struct {
		id   string
		sub  string
		n    int
		isOK bool
	}{
		{"sub_abc-1", "sub_abc", 1, true},
		{"sub_a_b-12", "sub_a_b", 12, true},
		{"sub_abc-0", "", 0, false},
		{"sub_abc-01", "", 0, false},
		{"sub_abc-x", "", 0, false},
		{"co_abc-1", "", 0, false},
		{"sub_a-b-1", "", 0, false},
	} {
		sub, n, ok := events.ParseRenewalCheckoutID(c.id)
		if sub != c.sub || n != c.n || ok != c.isOK {
			t.Errorf("%s: %q %d %v, want %q %d %v", c.id, sub, n, ok, c.sub, c.n, c.isOK)
		}
	}
}
