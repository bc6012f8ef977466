package httpapi

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
)

// TestPruneRemovesOnlyOldRuns: a checkout whose last change is before the cutoff leaves
// every bucket; one created as long ago but changed since, and a recent one, stay.
func TestPruneRemovesOnlyOldRuns(t *testing.T) {
	s, err := OpenStore(filepath.Join(t.TempDir(), "api.db"))
	if err == nil {
		err = s.rebuilt() // nothing to rebuild: no projector here
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	now := time.Now().UTC()
	old, stillGoing := now.Add(-48*time.Hour), now.Add(-47*time.Hour)
	ev := func(id string, seq uint64, typ events.Subject, at time.Time) StreamEvent {
		return StreamEvent{CheckoutID: id, Event: Event{Seq: seq, ID: events.ID(id, typ), Type: typ, Time: at, Payload: json.RawMessage(`{}`)}}
	}
	for id, at := range map[string]time.Time{"co-old": old, "co-active": stillGoing, "co-new": now} {
		if _, err := s.Accept(id, Accepted{At: at, CartID: "cart_" + id}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.Append([]StreamEvent{
		ev("co-old", 1, events.Requested, old), ev("co-old", 2, events.Completed, old.Add(time.Second)),
		ev("co-active", 3, events.Requested, stillGoing), ev("co-active", 4, events.InventoryRelease, now),
		ev("co-new", 5, events.Requested, now),
	}); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Prune(now.Add(-24 * time.Hour)); err != nil || n != 1 {
		t.Fatalf("Prune removed %d (%v), want the one old checkout", n, err)
	}
	if _, err := s.Checkout("co-old"); !errors.Is(err, ErrNotFound) {
		t.Errorf("co-old after Prune: %v, want not found", err)
	}
	if _, found, _ := s.Accepted("co-old"); found {
		t.Error("co-old's accepted request is still there")
	}
	page, err := s.List(Query{Limit: 10})
	if err != nil || len(page.Checkouts) != 2 {
		t.Fatalf("listing after Prune: %+v (%v), want co-active and co-new", page.Checkouts, err)
	}
	// Its events are gone too: the same events stored again make a fresh checkout of one run.
	if _, err := s.Append([]StreamEvent{ev("co-old", 1, events.Requested, old)}); err != nil {
		t.Fatal(err)
	}
	if evs, err := s.Events("co-old"); err != nil || len(evs) != 1 {
		t.Errorf("co-old stored again: %d events (%v), want 1", len(evs), err)
	}
}
