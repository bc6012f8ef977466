package app

import (
	"slices"
	"testing"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
)

// `nats sub 'checkout.<id>.>'` shows one checkout: every event of it but the request (the
// public input, which need not name its checkout) and the scheduled ones, and nothing of the
// checkout running beside it.
func TestOneCheckoutOnItsSubjects(t *testing.T) {
	sys := startSystem(t, t.TempDir())
	env := &natstest.Env{NC: sys.NC}
	all := env.Watch(t, "checkout.>")
	one := env.Watch(t, "checkout.co-watched.>")
	for _, id := range []string{"co-watched", "co-beside"} {
		cart := createCart(t, sys, "USD", events.CartItem{ProductID: "stickers", Quantity: 1})
		publishCheckout(t, sys, checkoutRequest(id, cart.ID, "pm_card_visa", california))
	}
	for _, id := range []string{"co-watched", "co-beside"} {
		if done := all.Wait(t, id, wait, events.Completed, events.Failed); done.Type != events.Completed {
			t.Fatalf("%s ended in %s: %s", id, done.Type, done.Payload)
		}
	}
	natstest.Eventually(t, wait, func() bool { return all.Count("co-watched", events.InventoryCommitted) == 1 }, "the sale was never recorded")
	var want, got []events.Subject
	for _, e := range all.All("co-watched") {
		if e.Type != events.Requested {
			want = append(want, e.Type)
		}
	}
	for _, m := range one.Msgs("co-watched") {
		got = append(got, events.TypeOf(m.Subject))
	}
	if len(one.All("co-beside")) != 0 || !slices.Equal(got, want) {
		t.Errorf("on checkout.co-watched.>: %v (and %d of co-beside); on checkout.>: %v", got, len(one.All("co-beside")), want)
	}
	if len(got) < 10 || !slices.Contains(got, events.Completed) || !slices.Contains(got, events.CartValidated) {
		t.Errorf("the watched checkout's events: %v", got)
	}
}
