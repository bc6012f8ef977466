package stripeemu

import (
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"
)

// Call is a request as a FaultFunc sees it.
type Call struct {
	Method, Path   string
	IdempotencyKey string // "" when none was sent (or on a GET)
	Params         url.Values
	// PaymentMethod is the payment method the request is about: its payment_method
	// parameter, else that of the PaymentIntent it names (in its path, or as the
	// payment_intent of a refund). "" when none.
	PaymentMethod string

	body []byte // of a request to /_emulator/
}

// Fault is what to do to one request instead of answering it normally. The zero Fault
// does nothing.
//
// A fault before the run (AfterRun false) models a failure in front of Stripe's API: the
// request never reached it, nothing is saved under its idempotency key, so a retry with
// the same key runs it. A fault after the run models a lost answer: the request ran (the
// card was charged) and its result was saved, so a retry with the same key replays it.
type Fault struct {
	// Delay holds the request this long before handling it (latency).
	Delay time.Duration
	// Status answers with this error status instead: 500, 502, 503 or 504 as Stripe's
	// api_error, 429 as its rate-limit error.
	Status int
	// Hang never answers: the request is held until the client gives up (its timeout) or
	// the emulator is closed, then the connection is dropped.
	Hang bool
	// AfterRun applies Status or Hang after the request ran, instead of before.
	AfterRun bool
}

// ChargeThenTimeout runs the request (the card is charged, the result saved under the
// idempotency key) and never answers it.
var ChargeThenTimeout = Fault{Hang: true, AfterRun: true}

// FaultFunc chooses the fault of each request. It is called concurrently.
type FaultFunc func(Call) Fault

// When faults every request that m matches with f.
func When(m FaultMatch, f Fault) FaultFunc {
	return func(c Call) Fault {
		if m.Matches(c) {
			return f
		}
		return Fault{}
	}
}

// FaultMatch chooses requests; an empty field matches anything.
type FaultMatch struct {
	Method string `json:"method,omitempty"` // "POST", "GET"
	// Path is a path.Match pattern: "/v1/payment_intents", "/v1/payment_intents/*/cancel".
	Path          string `json:"path,omitempty"`
	PaymentMethod string `json:"payment_method,omitempty"` // see Call.PaymentMethod
}

// Matches reports whether c is one of the requests m chooses.
func (m FaultMatch) Matches(c Call) bool {
	if m.Method != "" && !strings.EqualFold(m.Method, c.Method) {
		return false
	}
	if m.PaymentMethod != "" && m.PaymentMethod != c.PaymentMethod {
		return false
	}
	if m.Path == "" {
		return true
	}
	ok, err := path.Match(m.Path, c.Path)
	return ok && err == nil
}

func (f Fault) breaks() bool { return f.Status != 0 || f.Hang }

// inject answers with the fault.
func (e *Emulator) inject(w http.ResponseWriter, r *http.Request, call Call, f Fault) {
	e.log.Debug("stripe request faulted", "method", call.Method, "path", call.Path,
		"idempotency_key", call.IdempotencyKey, "status", f.Status, "hang", f.Hang, "after_run", f.AfterRun)
	if f.Hang {
		select {
		case <-r.Context().Done():
		case <-e.closed:
		}
		panic(http.ErrAbortHandler) // drop the connection without an answer
	}
	var err *failure
	switch {
	case f.Status == http.StatusTooManyRequests:
		err = newFailure(f.Status, typeInvalidRequest, "rate_limit", "",
			"Too many requests hit the API too quickly. We recommend an exponential backoff of your requests.")
	case f.Status >= 500:
		err = newFailure(f.Status, typeAPI, "", "",
			"Sorry, something went wrong. We've already been notified of the problem, but if you need any help, you can reach us at support.stripe.com/contact.")
	default:
		err = newFailure(f.Status, typeInvalidRequest, "", "", "Injected fault: HTTP %d.", f.Status)
	}
	out := encode(refuse(err))
	w.WriteHeader(out.status)
	_, _ = w.Write(out.body)
}
