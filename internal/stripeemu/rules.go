package stripeemu

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
)

// FaultRule is a fault switched on while the emulator runs: in Go with AddFault, or over
// HTTP with POST /_emulator/faults (see the package documentation).
type FaultRule struct {
	ID    string // set by AddFault
	Match FaultMatch
	Fault Fault
	// Count is how many matching requests the rule faults before it is spent and removed;
	// 0 is no limit. FaultRules reports what is left.
	Count int
	// Probability is the chance that a matching request is faulted; 0 counts as 1.
	Probability float64
}

func (r FaultRule) validate() error {
	switch {
	case r.Fault == Fault{}:
		return errors.New("the rule has no fault")
	case r.Fault.Delay < 0:
		return errors.New("delay cannot be negative")
	case r.Fault.Status != 0 && (r.Fault.Status < 400 || r.Fault.Status > 599):
		return fmt.Errorf("status must be an HTTP error status (400-599), got %d", r.Fault.Status)
	case r.Fault.Status != 0 && r.Fault.Hang:
		return errors.New("a fault either answers with a status or hangs, not both")
	case r.Fault.AfterRun && !r.Fault.breaks():
		return errors.New("after_run needs a status or a hang")
	case r.Count < 0:
		return errors.New("count cannot be negative")
	case r.Probability < 0 || r.Probability > 1:
		return fmt.Errorf("probability must be between 0 and 1, got %g", r.Probability)
	case r.Match.Path != "" && !strings.HasPrefix(r.Match.Path, "/"):
		return fmt.Errorf("path %q must start with /", r.Match.Path)
	}
	return nil
}

// faultRules are the rules in force, applied in the order they were added.
type faultRules struct {
	mu    sync.Mutex
	rules []*FaultRule
	next  int
}

// AddFault switches a fault on and returns its ID. A request gets the fault of the first
// rule that matches it (and wins its probability draw); a FaultFunc given to WithFault
// goes first. Faults apply to the Stripe API only, never to /_emulator/.
func (e *Emulator) AddFault(r FaultRule) (string, error) {
	if err := r.validate(); err != nil {
		return "", fmt.Errorf("stripe emulator fault: %w", err)
	}
	e.rules.mu.Lock()
	defer e.rules.mu.Unlock()
	e.rules.next++
	r.ID = fmt.Sprintf("flt_%d", e.rules.next)
	e.rules.rules = append(e.rules.rules, &r)
	return r.ID, nil
}

// RemoveFault switches one fault off; false when there is no such rule (or it is spent).
func (e *Emulator) RemoveFault(id string) bool {
	e.rules.mu.Lock()
	defer e.rules.mu.Unlock()
	n := len(e.rules.rules)
	e.rules.rules = slices.DeleteFunc(e.rules.rules, func(r *FaultRule) bool { return r.ID == id })
	return len(e.rules.rules) < n
}

// ClearFaults switches every fault rule off and says how many there were.
func (e *Emulator) ClearFaults() int {
	e.rules.mu.Lock()
	defer e.rules.mu.Unlock()
	n := len(e.rules.rules)
	e.rules.rules = nil
	return n
}

// FaultRules returns the rules in force, with what is left of their counts.
func (e *Emulator) FaultRules() []FaultRule {
	e.rules.mu.Lock()
	defer e.rules.mu.Unlock()
	out := make([]FaultRule, 0, len(e.rules.rules))
	for _, r := range e.rules.rules {
		out = append(out, *r)
	}
	return out
}

// choose returns the fault of the first rule that takes c, and counts it.
func (rs *faultRules) choose(c Call) Fault {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	for i, r := range rs.rules {
		if !r.Match.Matches(c) || (r.Probability > 0 && r.Probability < 1 && rand.Float64() >= r.Probability) {
			continue
		}
		if r.Count > 0 {
			if r.Count--; r.Count == 0 {
				rs.rules = slices.Delete(rs.rules, i, i+1)
			}
		}
		return r.Fault
	}
	return Fault{}
}
