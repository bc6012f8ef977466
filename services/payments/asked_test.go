package payments_test

import (
	"encoding/json"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/nats-io/nats.go/micro"
)

// answer is what the test's coordinator says to checkouts.step.active.
type answer int

const (
	paymentRuns answer = iota
	noPayment
	readFailed // an error reply: the coordinator could not read its bucket
	noAnswer   // the request is lost (it went to a NATS server that died)
)

// coordinator answers checkouts.step.active on the test's NATS, as the coordinator's
// endpoint does, with say's answer for each request, until the test ends.
func (h *harness) coordinator(t *testing.T, say func(req events.StepActiveRequest) answer) {
	t.Helper()
	svc, err := micro.AddService(h.Env.NC, micro.Config{Name: events.ServiceCoordinator, Version: "1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop() })
	err = svc.AddEndpoint("step-active", micro.HandlerFunc(func(r micro.Request) {
		var req events.StepActiveRequest
		if err := json.Unmarshal(r.Data(), &req); err != nil || req.Step != events.StepProcessPayment {
			t.Errorf("checkouts.step.active request %s (%v)", r.Data(), err)
			_ = r.Error("400", "bad request", nil)
			return
		}
		switch say(req) {
		case paymentRuns:
			_ = r.RespondJSON(events.StepActiveReply{Active: true})
		case noPayment:
			_ = r.RespondJSON(events.StepActiveReply{Active: false})
		case readFailed:
			_ = r.Error("500", "internal error, please retry", nil)
		}
	}), micro.WithEndpointSubject(string(events.CheckoutsStepActive)))
	if err != nil {
		t.Fatal(err)
	}
}

// A question to the coordinator that is never answered (the request went to a NATS server
// that died) does not wait out the step's deadline: it is given up and asked again, and the
// payment is charged once.
func TestALostAnswerOfTheCoordinatorIsRetried(t *testing.T) {
	var looks atomic.Int32
	h := start(t, options{checked: true})
	h.coordinator(t, func(events.StepActiveRequest) answer {
		if looks.Add(1) == 1 {
			return noAnswer
		}
		return paymentRuns
	})
	q := quote("pm_card_visa", "USD", "10.00")
	h.Env.Publish(t, requested("co_lost_read", q))
	h.captured(t, "co_lost_read", q, 1000)
	if n := looks.Load(); n != 2 {
		t.Errorf("the coordinator asked %d times, want 2", n)
	}
	if n := h.creates.Load(); n != 1 {
		t.Errorf("%d PaymentIntents created, want 1", n)
	}
}

// A payment the coordinator did not ask for (forged, stray, or one of a checkout it has
// failed) is refused before Stripe is called, once a few answers have had the time to catch
// up with the coordinator's write; one it asked for, even at the second look, is charged.
func TestUnaskedPaymentIsRefused(t *testing.T) {
	var looks sync.Map // checkout ID → *atomic.Int32
	h := start(t, options{checked: true})
	h.coordinator(t, func(req events.StepActiveRequest) answer {
		n, _ := looks.LoadOrStore(req.CheckoutID, new(atomic.Int32))
		if req.CheckoutID == "co_asked" && n.(*atomic.Int32).Add(1) > 1 { // the first answer lags
			return paymentRuns
		}
		return noPayment
	})
	q := quote("pm_card_visa", "USD", "10.00")
	h.Env.Publish(t, requested("co_forged", q))
	var f events.StepFailure
	h.Expect(t, "co_forged", events.PaymentFailed, &f, events.PaymentCaptured)
	if f.Code != events.CodeNotRequested || f.Uncertain || !strings.Contains(f.Message, "nothing was charged") {
		t.Errorf("refusal %+v", f)
	}
	if n := h.creates.Load(); n != 0 {
		t.Errorf("%d PaymentIntents created for a payment nobody asked for", n)
	}
	if pis := h.intents(t, "co_forged"); len(pis) != 0 {
		t.Errorf("Stripe holds %d PaymentIntents of co_forged", len(pis))
	}

	h.Env.Publish(t, requested("co_asked", q))
	h.captured(t, "co_asked", q, 1000)
}

// While the coordinator does not answer (down: nobody serves checkouts.step.active), or
// answers that it could not read its state, nothing is charged and nothing is refused: the
// request is retried, and charged once the coordinator says the payment runs.
func TestNothingIsChargedUntilTheCoordinatorAnswers(t *testing.T) {
	h := start(t, options{checked: true})
	q := quote("pm_card_visa", "USD", "10.00")
	h.Env.Publish(t, requested("co_unanswered", q))
	natstest.Eventually(t, 5*time.Second, func() bool {
		return strings.Count(h.Logs(), "no responders") >= 3
	}, "payments did not ask the absent coordinator again:\n%s", h.Logs())

	var failures atomic.Int32
	var says atomic.Int32 // an answer
	says.Store(int32(readFailed))
	h.coordinator(t, func(events.StepActiveRequest) answer {
		a := answer(says.Load())
		if a == readFailed {
			failures.Add(1)
		}
		return a
	})
	natstest.Eventually(t, 5*time.Second, func() bool { return failures.Load() >= 2 },
		"payments did not ask the failing coordinator again")
	if n := h.creates.Load(); n != 0 {
		t.Fatalf("%d PaymentIntents created before the coordinator said the payment runs", n)
	}
	if n := h.Watch.Count("co_unanswered", events.PaymentFailed) + h.Watch.Count("co_unanswered", events.PaymentCaptured); n != 0 {
		t.Fatalf("%d outcomes of co_unanswered before the coordinator said the payment runs", n)
	}

	says.Store(int32(paymentRuns))
	h.captured(t, "co_unanswered", q, 1000)
	if pis := h.intents(t, "co_unanswered"); len(pis) != 1 {
		t.Errorf("Stripe holds %d PaymentIntents of co_unanswered, want 1", len(pis))
	}
}
