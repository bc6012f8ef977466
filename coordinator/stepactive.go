package coordinator

import (
	"context"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/microx"
)

// stepReadTimeout bounds the read behind an answer of checkouts.step.active, below the
// asker's own wait (payments gives up after 5s), so that a read that hangs comes back as an
// error reply rather than as nothing.
const stepReadTimeout = 4 * time.Second

// answerStepActive answers checkouts.step.active: whether a checkout's step is running or
// waiting, what a service asks before work it must do only when the coordinator asked for
// it. A read that fails is a "500": the asker retries, and does no work on it.
func (c *Coordinator) answerStepActive(_ *events.Keys, data []byte) (any, error) {
	var req events.StepActiveRequest
	if err := microx.Decode(events.CheckoutsStepActive, data, &req); err != nil {
		return nil, err
	}
	if !events.ValidCheckoutID(req.CheckoutID) {
		return nil, microx.BadRequest("checkout_id must be 1 to 64 letters, digits, '-' or '_', got %q", req.CheckoutID)
	}
	if _, ok := c.rules.flow.Step(req.Step); !ok {
		return nil, microx.BadRequest("%s request: no step %q in the checkout's flow", events.CheckoutsStepActive, req.Step)
	}
	ctx, cancel := context.WithTimeout(context.Background(), stepReadTimeout)
	defer cancel()
	active, err := c.stepActive(ctx, req.CheckoutID, req.Step)
	if err != nil {
		return nil, err
	}
	return events.StepActiveReply{Active: active}, nil
}

// stepActive reports whether a checkout's step is running or waiting. It reads the bucket's
// leader: a replica may answer yes for a step the coordinator has just given up on, or no
// for one it has just started. The answer can still go stale the moment after (a step past
// its deadline fails, and its late success is undone).
func (c *Coordinator) stepActive(ctx context.Context, checkoutID string, step events.StepName) (bool, error) {
	st, rev, err := readLeader(ctx, c.js, checkoutID)
	if err != nil || rev == 0 {
		return false, err
	}
	return st.Steps[step].active(), nil
}
