package coordinator

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/microx"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/nats-io/nats.go"
)

// TestAnOldDeadLetterIsNotRedriven: past the time the consumers keep what they handled, a
// letter is refused (one that handled the original might handle a copy); within it, the
// same letter is published again, marked, and leaves DEADLETTER.
func TestAnOldDeadLetterIsNotRedriven(t *testing.T) {
	env := natstest.Start(t)
	c := newCoordinator(t, env)
	data := []byte(`{"checkout_id":"co_old","type":"checkout.completed"}`)
	original, err := env.JS.Publish(context.Background(), string(events.Completed), data)
	if err != nil {
		t.Fatal(err)
	}
	letter := nats.NewMsg(events.DeadLetterSubject(events.ServiceInventory))
	letter.Data = data
	letter.Header.Set(events.HeaderDeadSubject, string(events.Completed))
	letter.Header.Set(events.HeaderDeadSequence, strconv.FormatUint(original.Sequence, 10))
	letter.Header.Set(events.HeaderDeadReason, "checkout.completed: a bug")
	if _, err := env.JS.PublishMsg(context.Background(), letter); err != nil {
		t.Fatal(err)
	}
	req, _ := json.Marshal(events.DeadLetterRedriveRequest{Service: events.ServiceInventory, StreamSequence: original.Sequence, By: "ops", Reason: "fixed"})

	within := c.redriveWithin
	c.redriveWithin = 0 // every letter is too old
	_, err = c.redriveDeadLetter(nil, req)
	c.redriveWithin = within
	var refused *microx.Error
	if !errors.As(err, &refused) || !strings.Contains(err.Error(), "could handle a copy twice") {
		t.Fatalf("an old letter: %v, want a refusal", err)
	}

	w := env.Watch(t, string(events.Completed))
	reply, err := c.redriveDeadLetter(nil, req)
	if err != nil {
		t.Fatal(err)
	}
	if r := reply.(events.DeadLetterRedriveReply); r.CheckoutID != "co_old" || r.Subject != string(events.Completed) {
		t.Errorf("reply %+v", r)
	}
	natstest.Eventually(t, 5*time.Second, func() bool {
		for _, m := range w.Msgs("co_old") {
			if m.Header.Get(events.HeaderRedriveOf) == events.ServiceInventory+":"+strconv.FormatUint(original.Sequence, 10) {
				return true
			}
		}
		return false
	}, "no copy of the letter on checkout.completed")
	if _, err := c.redriveDeadLetter(nil, req); err == nil || !strings.Contains(err.Error(), "holds no letter") {
		t.Errorf("the letter re-driven again: %v, want it gone", err)
	}
}
