package coordinator

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/microx"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// Version of the coordinator's micro service.
const Version = "1.0.0"

// Serve starts the "coordinator" micro service: for operators, checkouts.redrive
// (events.RedriveRequest → events.RedriveReply) and deadletters.redrive
// (events.DeadLetterRedriveRequest → events.DeadLetterRedriveReply); for the steps,
// checkouts.step.active (stepactive.go). Error codes: "400" malformed, "404" no such
// checkout or letter, "409" one that cannot be re-driven, with the reason. Stop the
// returned service to stop serving.
func (c *Coordinator) Serve(nc *nats.Conn, keys *events.Keys) (micro.Service, error) {
	return microx.AddService(nc, c.log, micro.Config{
		Name:        events.ServiceCoordinator,
		Version:     Version,
		Description: "Re-drives: a completed checkout's steps that failed after its order, run again; a dead letter published again. Whether a checkout's step runs.",
	},
		microx.Endpoint{Name: "redrive", Subject: events.CheckoutsRedrive, Handle: func(data []byte) (any, error) { return c.redrive(keys, data) }},
		microx.Endpoint{Name: "redrive-deadletter", Subject: events.DeadLettersRedrive, Handle: func(data []byte) (any, error) { return c.redriveDeadLetter(keys, data) }},
		microx.Endpoint{Name: "step-active", Subject: events.CheckoutsStepActive, Handle: func(data []byte) (any, error) { return c.answerStepActive(keys, data) }},
	)
}

// redrive decides whether a checkout can be re-driven and publishes the request, which the
// coordinator's runner then applies (applyRedrive checks again).
//
// A completed checkout's steps that failed after its order run again: the order stands and
// is paid, and each of those steps does its work once per order (one email, one label, one
// pick), so running it again can finish what failed and cannot double anything. A failed
// checkout was undone (its stock released, its payment refunded or never taken): running its
// steps again would take money without stock, so it is tried again as a new checkout
// (retry). A running one is refused: its own deadlines end it.
func (c *Coordinator) redrive(keys *events.Keys, data []byte) (any, error) {
	var req events.RedriveRequest
	if err := microx.Decode(events.CheckoutsRedrive, data, &req); err != nil {
		return nil, err
	}
	switch {
	case !events.ValidCheckoutID(req.CheckoutID):
		return nil, microx.BadRequest("checkout_id must be 1 to 64 letters, digits, '-' or '_', got %q", req.CheckoutID)
	case strings.TrimSpace(req.By) == "" || strings.TrimSpace(req.Reason) == "":
		return nil, microx.BadRequest("%s request: by and reason are required (who re-drives, and why)", events.CheckoutsRedrive)
	case !events.ExistsAt(events.RedriveRequested, events.WriteVersion()):
		return nil, microx.Conflict("this coordinator writes schema version %d (SCHEMA_WRITE_VERSION) during an upgrade: re-drive once every instance runs this release", events.WriteVersion())
	}
	ctx, cancel := context.WithTimeout(context.Background(), publishTimeout)
	defer cancel()
	st, found, err := c.State(ctx, req.CheckoutID)
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, microx.NotFound("no checkout %s", req.CheckoutID)
	}
	steps := st.Redrivable(c.rules.flow)
	switch {
	case st.Status == StatusFailed:
		return c.retry(ctx, keys, req, st)
	case !st.terminal():
		return nil, microx.Conflict("checkout %s is still %s: its steps and their deadlines end it", req.CheckoutID, st.Status)
	case st.redriving():
		return nil, microx.Conflict("re-drive %d of checkout %s is still running", st.Redrives, req.CheckoutID)
	case len(steps) == 0:
		return nil, microx.Conflict("checkout %s completed with nothing to re-drive: no step failed after its order", req.CheckoutID)
	}
	rd := events.Redrive{By: req.By, Reason: req.Reason, Steps: steps, Attempt: st.Redrives + 1}
	if err := c.publishRedrive(ctx, keys, req.CheckoutID, events.Completed, rd); err != nil {
		return nil, err
	}
	c.log.Info("re-drive submitted", "checkout_id", req.CheckoutID, "attempt", rd.Attempt, "steps", steps, "by", req.By, "reason", req.Reason)
	return events.RedriveReply{CheckoutID: req.CheckoutID, Attempt: rd.Attempt, Steps: steps}, nil
}

// publishRedrive records re-drive rd of a checkout that ended with end; a second request
// for the same attempt is refused.
func (c *Coordinator) publishRedrive(ctx context.Context, keys *events.Keys, checkoutID string, end events.Subject, rd events.Redrive) error {
	e := events.Must(checkoutID, events.RedriveRequested, rd)
	e.ID, e.CausationID, e.Time = events.RedriveID(checkoutID, rd.Attempt), events.ID(checkoutID, end), time.Now().UTC()
	ack, err := microx.Publish(ctx, c.js, keys, events.ServiceCoordinator, e)
	if err != nil {
		return fmt.Errorf("checkout %s: publish %s: %w", checkoutID, e.Type, err)
	}
	if ack.Duplicate {
		return microx.Conflict("re-drive %d of checkout %s was already submitted", rd.Attempt, checkoutID)
	}
	return nil
}

// publishTimeout bounds a read of the state and the wait for the stream's ack of a request.
const publishTimeout = 5 * time.Second
