package stripeemu

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// controlPrefix is where the emulator's own endpoints live, beside the Stripe API.
const controlPrefix = "/_emulator/"

// Fault kinds of the HTTP control surface.
const (
	KindLatency           = "latency"             // answer late: delay
	KindStatus            = "status"              // answer with an error status instead (after_run: after running)
	KindTimeout           = "timeout"             // never answer, and do not run
	KindChargeThenTimeout = "charge_then_timeout" // run (charge the card), then never answer
)

// faultJSON is a FaultRule on the wire.
type faultJSON struct {
	ID          string     `json:"id,omitempty"`
	Object      string     `json:"object,omitempty"`
	Match       FaultMatch `json:"match"`
	Kind        string     `json:"kind"`
	Delay       string     `json:"delay,omitempty"` // a Go duration: "250ms", "2s"
	Status      int        `json:"status,omitempty"`
	AfterRun    bool       `json:"after_run,omitempty"`
	Count       int        `json:"count,omitempty"`
	Probability float64    `json:"probability,omitempty"`
}

func (j faultJSON) rule() (FaultRule, error) {
	r := FaultRule{Match: j.Match, Count: j.Count, Probability: j.Probability}
	if j.Delay != "" {
		d, err := time.ParseDuration(j.Delay)
		if err != nil {
			return r, fmt.Errorf("delay %q is not a duration like \"500ms\" or \"2s\"", j.Delay)
		}
		r.Fault.Delay = d
	}
	if j.AfterRun && j.Kind != KindStatus {
		return r, fmt.Errorf("after_run applies to kind %q only", KindStatus)
	}
	switch j.Kind {
	case KindLatency:
		if r.Fault.Delay <= 0 {
			return r, fmt.Errorf("kind %q needs a delay", KindLatency)
		}
	case KindStatus:
		if j.Status == 0 {
			return r, fmt.Errorf("kind %q needs a status", KindStatus)
		}
		r.Fault.Status, r.Fault.AfterRun = j.Status, j.AfterRun
	case KindTimeout:
		r.Fault.Hang = true
	case KindChargeThenTimeout:
		r.Fault.Hang, r.Fault.AfterRun = true, true
	default:
		return r, fmt.Errorf("kind must be one of %s, %s, %s, %s; got %q",
			KindLatency, KindStatus, KindTimeout, KindChargeThenTimeout, j.Kind)
	}
	return r, r.validate()
}

func ruleJSON(r FaultRule) faultJSON {
	j := faultJSON{ID: r.ID, Object: "emulator.fault", Match: r.Match, Status: r.Fault.Status,
		AfterRun: r.Fault.AfterRun && !r.Fault.Hang, Count: r.Count, Probability: r.Probability}
	if r.Fault.Delay > 0 {
		j.Delay = r.Fault.Delay.String()
	}
	switch {
	case r.Fault.Hang && r.Fault.AfterRun:
		j.Kind = KindChargeThenTimeout
	case r.Fault.Hang:
		j.Kind = KindTimeout
	case r.Fault.Status != 0:
		j.Kind = KindStatus
	default:
		j.Kind = KindLatency
	}
	return j
}

// authenticationJSON is the body of POST /_emulator/payment_intents/{id}/authenticate.
type authenticationJSON struct {
	Result string `json:"result"` // "complete" or "fail"
	// CheckoutID, when set, must be the intent's metadata.checkout_id: the demo's button
	// acts for one checkout and never completes another's intent.
	CheckoutID string `json:"checkout_id,omitempty"`
}

// control serves the emulator's own endpoints (see the package documentation).
func (e *Emulator) control(r *http.Request, c Call) response {
	rest := strings.TrimPrefix(c.Path, controlPrefix)
	switch parts := strings.Split(rest, "/"); {
	case rest == "faults" && c.Method == http.MethodPost:
		var j faultJSON
		if err := decodeStrict(c.body, &j); err != nil {
			return refuse(invalid("", "", "Invalid fault: %v", err))
		}
		rule, err := j.rule()
		if err != nil {
			return refuse(invalid("", "", "Invalid fault: %v", err))
		}
		if rule.ID, err = e.AddFault(rule); err != nil {
			return refuse(invalid("", "", "%v", err))
		}
		return response{http.StatusCreated, ruleJSON(rule)}
	case rest == "faults" && c.Method == http.MethodGet:
		list := listJSON{Object: "list", Data: []any{}, URL: c.Path}
		for _, rule := range e.FaultRules() {
			list.Data = append(list.Data, ruleJSON(rule))
		}
		return ok(list)
	case rest == "faults" && c.Method == http.MethodDelete:
		return ok(map[string]any{"object": "emulator.faults", "deleted": e.ClearFaults()})
	case len(parts) == 2 && parts[0] == "faults" && c.Method == http.MethodDelete:
		if !e.RemoveFault(parts[1]) {
			return refuse(noSuch(http.StatusNotFound, "fault", "id", parts[1]))
		}
		return ok(map[string]any{"id": parts[1], "object": "emulator.fault", "deleted": true})
	case len(parts) == 3 && parts[0] == "payment_intents" && parts[2] == "authenticate" && c.Method == http.MethodPost:
		var j authenticationJSON
		if err := decodeStrict(c.body, &j); err != nil || (j.Result != "complete" && j.Result != "fail") {
			return refuse(invalid("", "result", `The body must be {"result": "complete"} or {"result": "fail"}.`))
		}
		pi, err := e.authenticate3DS(parts[1], j.CheckoutID, j.Result == "complete")
		if err != nil {
			return refuse(err)
		}
		return ok(pi)
	}
	return refuse(unrecognizedURL(r.Method, c.Path))
}

// decodeStrict decodes one JSON object with no unknown fields.
func decodeStrict(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return fmt.Errorf("trailing data after the JSON object")
	}
	return nil
}
