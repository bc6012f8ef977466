package fraud

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/jetcheckout/jetcheckout/internal/steptest"
	"github.com/jetcheckout/jetcheckout/runner"
	"github.com/nats-io/nats.go/micro"
)

// reviewQuote is a quote whose customer's domain lands in the review band (risk 0.52).
func reviewQuote() events.Quote {
	q := testQuote()
	q.CustomerEmail = "ada@review.test"
	return q
}

// held publishes a checkout that is held for review, validated at the test's clock (the
// review's window runs from then), and waits for its Waiting event.
func (h harness) held(t *testing.T, checkoutID string) events.Waiting {
	t.Helper()
	in := events.Must(checkoutID, events.CartValidated, reviewQuote())
	in.Time = h.clock.now()
	h.Env.Publish(t, in)
	var w events.Waiting
	h.Expect(t, checkoutID, events.FraudReviewPending, &w, events.FraudCleared, events.FraudFailed)
	return w
}

// request sends body to an endpoint and returns the error reply's code and description,
// or decodes the reply into v.
func (h harness) request(t *testing.T, subject events.Subject, body string, v any) (code, desc string) {
	t.Helper()
	msg, err := h.Env.NC.Request(string(subject), []byte(body), steptest.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	if code = msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		return code, msg.Header.Get(micro.ErrorHeader)
	}
	if err := json.Unmarshal(msg.Data, v); err != nil {
		t.Fatalf("%s reply %s: %v", subject, msg.Data, err)
	}
	return "", ""
}

// decide asks for a decision and expects it accepted.
func (h harness) decide(t *testing.T, checkoutID, decision string) {
	t.Helper()
	var reply ReviewReply
	body := `{"checkout_id":"` + checkoutID + `","decision":"` + decision + `","reviewer":"alice","note":"called the customer"}`
	if code, desc := h.request(t, events.FraudReview, body, &reply); code != "" {
		t.Fatalf("%s %s: %s %s", decision, checkoutID, code, desc)
	}
	if reply != (ReviewReply{CheckoutID: checkoutID, Decision: decision, Accepted: true}) {
		t.Fatalf("reply = %+v", reply)
	}
}

func (h harness) pending(t *testing.T) []Review {
	t.Helper()
	var list []Review
	if code, desc := h.request(t, events.FraudReviews, "", &list); code != "" {
		t.Fatalf("list: %s %s", code, desc)
	}
	return list
}

func (h harness) review(t *testing.T, checkoutID string) Review {
	t.Helper()
	r, found, err := h.svc.Review(checkoutID)
	if err != nil || !found {
		t.Fatalf("review of %s: found=%v err=%v", checkoutID, found, err)
	}
	return r
}

func TestReviewIsRequested(t *testing.T) {
	h := start(t)
	w := h.held(t, "co_review")

	until := h.clock.now().Add(30 * time.Minute)
	if !w.Until.Equal(until) {
		t.Errorf("until = %s, want %s", w.Until, until)
	}
	for _, want := range []string{"manual fraud review", "risk 0.52", "review.test is on the review list"} {
		if !strings.Contains(w.Reason, want) {
			t.Errorf("reason %q does not mention %q", w.Reason, want)
		}
	}
	r := h.review(t, "co_review")
	if r.Status != ReviewPending || !r.Risk.Equal(dec("0.52")) || !r.Amount.Equal(dec("19.98")) || r.Currency != "USD" ||
		r.CustomerEmail != "ada@review.test" || !r.Until.Equal(until) || !r.RequestedAt.Equal(h.clock.now()) ||
		len(r.Reasons) != 1 || r.Decision != nil {
		t.Errorf("review = %+v", r)
	}
	if a, _, _ := h.svc.Assessment("co_review"); !a.HeldForReview || a.Rejected {
		t.Errorf("assessment = %+v, want held for review", a)
	}
	list := h.pending(t)
	if len(list) != 1 || list[0].CheckoutID != "co_review" || !list[0].Until.Equal(until) || list[0].CustomerEmail != "ada@review.test" {
		t.Errorf("pending reviews = %+v", list)
	}
}

func TestApprovedReviewClears(t *testing.T) {
	h := start(t)
	h.held(t, "co_approve")
	h.clock.advance(time.Minute)
	h.decide(t, "co_approve", events.ReviewApprove)

	var got events.RiskAssessment
	h.Expect(t, "co_approve", events.FraudCleared, &got, events.FraudFailed)
	if !got.Risk.Equal(dec("0.52")) || len(got.Reasons) != 2 ||
		got.Reasons[1] != "approved in a manual review by alice: called the customer" {
		t.Errorf("cleared = %+v", got)
	}
	r := h.review(t, "co_approve")
	if r.Status != ReviewApproved || r.Decision == nil || r.Decision.Reviewer != "alice" || !r.DecidedAt.Equal(h.clock.now()) {
		t.Errorf("review = %+v", r)
	}
	if list := h.pending(t); len(list) != 0 {
		t.Errorf("pending after approval: %+v", list)
	}
	code, desc := h.request(t, events.FraudReview, `{"checkout_id":"co_approve","decision":"deny","reviewer":"bob"}`, nil)
	if code != "409" || !strings.Contains(desc, "already approved by alice") {
		t.Errorf("second decision: %s %q, want 409 already approved", code, desc)
	}
}

func TestDeniedReviewFails(t *testing.T) {
	h := start(t)
	h.held(t, "co_deny")
	h.decide(t, "co_deny", events.ReviewDeny)

	var f events.StepFailure
	h.Expect(t, "co_deny", events.FraudFailed, &f, events.FraudCleared)
	if f.Step != events.StepCheckFraud || f.Code != events.CodeFraudReviewDenied || f.Uncertain ||
		!strings.Contains(f.Message, "declined after a manual fraud review") {
		t.Errorf("failure = %+v", f)
	}
	if r := h.review(t, "co_deny"); r.Status != ReviewDenied || r.Decision.Decision != events.ReviewDeny {
		t.Errorf("review = %+v", r)
	}
}

func TestDecisionAfterTheWindowChangesNothing(t *testing.T) {
	h := start(t)
	h.held(t, "co_late")
	h.clock.advance(30*time.Minute + time.Second)

	code, desc := h.request(t, events.FraudReview, `{"checkout_id":"co_late","decision":"approve","reviewer":"alice"}`, nil)
	if code != "409" || !strings.Contains(desc, "expired") {
		t.Errorf("late decision: %s %q, want 409 expired", code, desc)
	}
	if list := h.pending(t); len(list) != 0 {
		t.Errorf("an expired review is listed: %+v", list)
	}
	// The same decision straight onto the stream, as if the endpoint had been fooled.
	late := events.Must("co_late", events.FraudReviewDecided, events.ReviewDecision{Decision: events.ReviewApprove, Reviewer: "alice"})
	late.Time = h.clock.now()
	h.Env.Publish(t, late)
	h.Idle(t)

	if n := h.Watch.Count("co_late", events.FraudCleared) + h.Watch.Count("co_late", events.FraudFailed); n != 0 {
		t.Errorf("%d outcomes after the window closed", n)
	}
	if r := h.review(t, "co_late"); r.Status != ReviewPending || r.Decision != nil {
		t.Errorf("review = %+v, want it undecided", r)
	}
	if !strings.Contains(h.Logs(), "after the review window closed") {
		t.Error("the late decision was not logged")
	}
}

func TestDuplicateDecisionsHaveOneOutcome(t *testing.T) {
	h := start(t)
	h.held(t, "co_twice")
	h.decide(t, "co_twice", events.ReviewApprove)
	// At once, before or after the first is applied: refused either way.
	code, desc := h.request(t, events.FraudReview, `{"checkout_id":"co_twice","decision":"deny","reviewer":"bob"}`, nil)
	if code != "409" {
		t.Errorf("second decision: %s %q, want 409", code, desc)
	}
	h.Wait(t, "co_twice", events.FraudCleared)

	// A copy of the decision under another Nats-Msg-Id, and a different decision event.
	again := events.Must("co_twice", events.FraudReviewDecided, events.ReviewDecision{Decision: events.ReviewApprove, Reviewer: "alice"})
	h.PublishCopy(t, again, "copy")
	deny := events.Must("co_twice", events.FraudReviewDecided, events.ReviewDecision{Decision: events.ReviewDeny, Reviewer: "bob"})
	deny.ID += ":forged"
	h.Env.Publish(t, deny)
	h.Idle(t)

	if c, f := h.Watch.Count("co_twice", events.FraudCleared), h.Watch.Count("co_twice", events.FraudFailed); c != 1 || f != 0 {
		t.Errorf("%d cleared and %d failed, want one cleared", c, f)
	}
	if r := h.review(t, "co_twice"); r.Status != ReviewApproved || r.Decision.Reviewer != "alice" {
		t.Errorf("review = %+v", r)
	}
	// A re-issued trigger gets the decided answer, not a new review.
	replay := events.Must("co_twice", events.CartValidated, reviewQuote())
	replay.ID += ":replayed"
	h.Env.Publish(t, replay)
	h.WaitCount(t, "co_twice", events.FraudCleared, 2)
	if n := h.Watch.Count("co_twice", events.FraudReviewPending); n != 1 {
		t.Errorf("%d review requests", n)
	}
}

func TestReviewRequestErrors(t *testing.T) {
	h := start(t)
	h.held(t, "co_err")
	tests := []struct{ name, body, code, mention string }{
		{"unknown checkout", `{"checkout_id":"co_nobody","decision":"approve","reviewer":"alice"}`, "404", "co_nobody is not held"},
		{"checkout cleared without review", `{"checkout_id":"co_clean","decision":"approve","reviewer":"alice"}`, "404", "co_clean"},
		{"empty", ``, "400", "JSON object"},
		{"not JSON", `approve!`, "400", "invalid character"},
		{"unknown field", `{"checkout_id":"co_err","decision":"approve","reviewer":"alice","why":"x"}`, "400", "unknown field"},
		{"wrong type", `{"checkout_id":"co_err","decision":true,"reviewer":"alice"}`, "400", "decision"},
		{"bad decision", `{"checkout_id":"co_err","decision":"maybe","reviewer":"alice"}`, "400", `"maybe"`},
		{"no reviewer", `{"checkout_id":"co_err","decision":"deny","reviewer":" "}`, "400", "reviewer is required"},
		{"bad checkout id", `{"checkout_id":"co err","decision":"deny","reviewer":"alice"}`, "400", "checkout_id"},
	}
	h.Env.Publish(t, events.Must("co_clean", events.CartValidated, testQuote()))
	h.Wait(t, "co_clean", events.FraudCleared)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, desc := h.request(t, events.FraudReview, tt.body, nil)
			if code != tt.code || !strings.Contains(desc, tt.mention) {
				t.Errorf("reply %s %q, want %s mentioning %q", code, desc, tt.code, tt.mention)
			}
		})
	}
	if code, desc := h.request(t, events.FraudReviews, `{"all":true}`, nil); code != "400" {
		t.Errorf("list with a parameter: %s %q, want 400", code, desc)
	}
	if r := h.review(t, "co_err"); r.Status != ReviewPending {
		t.Errorf("review = %+v", r)
	}
}

func TestMalformedDecisionIsRejected(t *testing.T) {
	h := start(t)
	h.held(t, "co_bad")
	bad := events.Must("co_bad", events.FraudReviewDecided, events.ReviewDecision{Decision: "maybe", Reviewer: "alice"})
	h.Env.Publish(t, bad)
	h.Rejection(t, "co_bad", events.FraudCleared, events.FraudFailed)
	stray := events.Must("co_stray", events.FraudReviewDecided, events.ReviewDecision{Decision: events.ReviewApprove, Reviewer: "alice"})
	h.Env.Publish(t, stray)
	if why := h.Rejection(t, "co_stray", events.FraudCleared); !strings.Contains(why.Reason, "not held for a fraud review") {
		t.Errorf("rejection = %+v", why)
	}
	if r := h.review(t, "co_bad"); r.Status != ReviewPending {
		t.Errorf("review = %+v", r)
	}
}

func TestPendingReviewsListsOnlyPendingNewestFirst(t *testing.T) {
	h := start(t)
	for _, id := range []string{"co_old", "co_decided", "co_new"} {
		h.held(t, id)
		h.clock.advance(time.Minute)
	}
	h.Env.Publish(t, events.Must("co_clean", events.CartValidated, testQuote()))
	h.Wait(t, "co_clean", events.FraudCleared)
	h.decide(t, "co_decided", events.ReviewDeny)
	h.Wait(t, "co_decided", events.FraudFailed)

	list := h.pending(t)
	if len(list) != 2 || list[0].CheckoutID != "co_new" || list[1].CheckoutID != "co_old" {
		t.Fatalf("pending = %+v, want co_new then co_old", list)
	}
	// co_old's window closes a minute before co_new's.
	h.clock.advance(30*time.Minute - 2*time.Minute + time.Second)
	if list := h.pending(t); len(list) != 1 || list[0].CheckoutID != "co_new" {
		t.Errorf("pending = %+v, want co_new only", list)
	}
}

// A checkout that fails for another reason while it waits for review leaves the queue.
func TestAFailedCheckoutClosesItsReview(t *testing.T) {
	h := start(t)
	q := testQuote()
	q.CustomerEmail = "eve@review.test"
	h.Env.Publish(t, events.Must("co_closed", events.CartValidated, q))
	h.Expect(t, "co_closed", events.FraudReviewPending, nil, events.FraudCleared, events.FraudFailed)
	h.Env.Publish(t, events.Must("co_closed", events.Failed, events.CheckoutFailed{Step: events.StepReserveInventory, Code: events.CodeInsufficientStock, Message: "no stock"}))
	natstest.Eventually(t, steptest.Timeout, func() bool {
		r, found, err := h.svc.Review("co_closed")
		return err == nil && found && r.Status == ReviewClosed
	}, "the review stayed open")
	if pending, err := h.svc.PendingReviews(); err != nil || len(pending) != 0 {
		t.Errorf("pending reviews %v (%v)", pending, err)
	}

	// A failed checkout that was never held for review changes nothing and is acknowledged.
	h.Env.Publish(t, events.Must("co_never", events.Failed, events.CheckoutFailed{Step: events.StepValidateCart, Code: events.CodeInvalidRequest, Message: "bad"}))
	h.Env.Publish(t, events.Must("co_after", events.CartValidated, testQuote())) // handled after it
	h.Expect(t, "co_after", events.FraudCleared, nil, events.FraudFailed, events.FraudReviewPending)
	h.Idle(t)
	if _, found, err := h.svc.Review("co_never"); err != nil || found {
		t.Errorf("review of co_never: found %v (%v)", found, err)
	}
	if n := h.Watch.Count("co_never", events.Rejected); n != 0 {
		t.Errorf("%d rejections of a failed checkout never reviewed", n)
	}
	if handled, err := runner.Handled(h.DB, events.ID("co_never", events.Failed)); err != nil || handled {
		t.Errorf("a record kept of the failure that changed nothing: %v %v (it costs a commit)", handled, err)
	}
}
