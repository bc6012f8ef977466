package coordinator

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/jsread"
	"github.com/jetcheckout/jetcheckout/internal/microx"
	"github.com/nats-io/nats.go/jetstream"
)

// retry re-drives a failed checkout as a new attempt: a new checkout (events.NextAttemptID)
// of the same request (cart, customer, payment method, addresses). The failed one was
// undone, so the new one starts from nothing: its own reservation, its own PaymentIntent (its
// ID is the idempotency key), and its cart, which the failure freed, validated again. The
// failed checkout records it (checkout.redrive.requested with new_checkout_id) and is retried
// once: a new attempt that fails too is re-driven in its turn.
func (c *Coordinator) retry(ctx context.Context, keys *events.Keys, req events.RedriveRequest, st *State) (any, error) {
	if st.RetriedAs != "" {
		return nil, microx.Conflict("checkout %s was retried as %s already: re-drive that one", req.CheckoutID, st.RetriedAs)
	}
	newID, ok := events.NextAttemptID(req.CheckoutID)
	if !ok {
		return nil, microx.Conflict("checkout %s failed and was undone; its ID leaves no room for an attempt's suffix (64 characters at most): start a new checkout for its cart", req.CheckoutID)
	}
	request, err := c.request(ctx, st)
	if err != nil {
		return nil, err
	}
	request.CheckoutID = newID
	data, err := json.Marshal(request)
	if err != nil {
		return nil, err
	}
	// The new checkout first: a retry of this call after a crash asks for it again, and the
	// stream (its ID within the duplicate window) or the coordinator (the same request for a
	// known checkout) takes it as one.
	if _, err := c.js.Publish(ctx, string(events.Requested), data, jetstream.WithMsgID(events.ID(newID, events.Requested))); err != nil {
		return nil, fmt.Errorf("checkout %s: publish %s: %w", newID, events.Requested, err)
	}
	rd := events.Redrive{By: req.By, Reason: req.Reason, Attempt: st.Redrives + 1, NewCheckoutID: newID}
	if err := c.publishRedrive(ctx, keys, req.CheckoutID, events.Failed, rd); err != nil {
		return nil, err
	}
	c.log.Info("failed checkout retried", "checkout_id", req.CheckoutID, "new_checkout_id", newID, "by", req.By, "reason", req.Reason)
	return events.RedriveReply{CheckoutID: req.CheckoutID, Attempt: rd.Attempt, NewCheckoutID: newID}, nil
}

// request is the checkout.requested a checkout started from, read from the stream's leader
// at the sequence the checkout's state recorded.
func (c *Coordinator) request(ctx context.Context, st *State) (events.CheckoutRequest, error) {
	a, seen := st.Applied[events.ID(st.CheckoutID, events.Requested)]
	if !seen {
		return events.CheckoutRequest{}, microx.Conflict("checkout %s: its request is not in its state: start a new checkout for its cart", st.CheckoutID)
	}
	m, err := jsread.NewLeader(c.js, events.StreamCheckout).At(ctx, a.Seq)
	if err != nil {
		return events.CheckoutRequest{}, fmt.Errorf("checkout %s: read its request: %w", st.CheckoutID, err)
	}
	if m == nil || m.Subject != string(events.Requested) {
		return events.CheckoutRequest{}, microx.Conflict("checkout %s: its request is no longer in the stream: start a new checkout for its cart", st.CheckoutID)
	}
	return events.DecodeRequest(m.Data)
}
