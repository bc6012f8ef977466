package chaos

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/services/fraud"
	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"
)

// operator plays the people a checkout may wait for: the fraud reviewer, who approves or
// denies held checkouts as planned (approving any it did not plan), and the customers on
// the 3-D Secure page, who complete it or never come back.
type operator struct {
	driver   driver
	plans    map[string]planned
	stripe   *client.API
	emulator string // the emulator's base URL, for its control API
}

func (o operator) run(ctx context.Context) {
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		o.review()
		o.authenticate(ctx)
	}
}

// review decides every pending fraud review. Errors (fraud is down, the review expired)
// are left for the next round.
func (o operator) review() {
	var pending []fraud.Review
	if err := o.driver.call(events.FraudReviews, struct{}{}, &pending); err != nil {
		return
	}
	for _, r := range pending {
		decision := "approve"
		if o.plans[r.CheckoutID].Kind == kindReviewDeny {
			decision = "deny"
		}
		_ = o.driver.call(events.FraudReview, fraud.ReviewRequest{CheckoutID: r.CheckoutID,
			ReviewDecision: events.ReviewDecision{Decision: decision, Reviewer: "chaos-operator"}}, nil)
	}
}

// authenticate completes 3-D Secure for the customers who planned to.
func (o operator) authenticate(ctx context.Context) {
	p := &stripe.PaymentIntentSearchParams{}
	p.Context = ctx
	p.Query = `status:"requires_action"`
	p.Limit = stripe.Int64(100)
	it := o.stripe.PaymentIntents.Search(p)
	for it.Next() {
		pi := it.PaymentIntent()
		if o.plans[pi.Metadata["checkout_id"]].Kind == kind3DSComplete {
			_ = o.authenticateIntent(ctx, pi.ID)
		}
	}
}

func (o operator) authenticateIntent(ctx context.Context, id string) error {
	return emulatorCall(ctx, o.emulator, http.MethodPost, "/_emulator/payment_intents/"+url.PathEscape(id)+"/authenticate", `{"result":"complete"}`)
}

// emulatorCall sends one request to the emulator's control API.
func emulatorCall(ctx context.Context, base, method, path, body string) error {
	req, err := http.NewRequestWithContext(ctx, method, base+path, strings.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+emulatorKey)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("%s %s: %s", method, path, resp.Status)
	}
	return nil
}

// stripeClient is a stripe-go client of the emulator, for reading what was charged.
func stripeClient(base string) *client.API {
	backend := stripe.GetBackendWithConfig(stripe.APIBackend, &stripe.BackendConfig{
		URL: stripe.String(base), HTTPClient: &http.Client{Timeout: 10 * time.Second},
		LeveledLogger: &stripe.LeveledLogger{Level: stripe.LevelNull},
	})
	return client.New(emulatorKey, &stripe.Backends{API: backend, Connect: backend, Uploads: backend})
}
