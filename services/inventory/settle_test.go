package inventory

import (
	"errors"
	"testing"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/runner"
)

// A completed checkout that reserved nothing here (its cart held nothing stocked, say)
// sells nothing, says nothing, and is acknowledged, not retried or rejected.
func TestCompletionThatReservedNothingChangesNothing(t *testing.T) {
	h := start(t, 1)
	h.completed(t, "co-none")
	h.barrier(t)
	for _, typ := range []events.Subject{events.InventoryCommitted, events.Rejected, events.Stuck} {
		if n := h.Watch.Count("co-none", typ); n != 0 {
			t.Errorf("%d %s for a checkout that reserved nothing", n, typ)
		}
	}
	if _, err := h.svc.Reservation("co-none"); !errors.Is(err, ErrNoReservation) {
		t.Errorf("reservation of co-none: %v, want none", err)
	}
	h.wantStock(t, "mug-nats", 100, 0, 0)
	if handled, err := runner.Handled(h.DB, events.ID("co-none", events.Completed)); err != nil || handled {
		t.Errorf("a record kept of the completion that changed nothing: %v %v (it costs a commit)", handled, err)
	}
}
