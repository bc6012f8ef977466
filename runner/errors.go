package runner

import (
	"errors"

	"github.com/jetcheckout/jetcheckout/events"
)

type permanentError struct{ err error }

func (p permanentError) Error() string { return p.err.Error() }
func (p permanentError) Unwrap() error { return p.err }

// Permanent marks an error that retrying cannot fix: the runner terminates the message and
// announces it on checkout.rejected instead of redelivering it. Business failures (a
// declined card, no stock) are not errors at all: they are failure events the handler returns.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

func isPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p) || errors.Is(err, events.ErrMalformed)
}

// Unchanged is what a route's bbolt handler returns for an event that changed nothing,
// caused nothing, and would change nothing if it came again (a timer that finds its work
// already done): the runner rolls the transaction back and keeps no record of it, so the
// event costs no commit (two fsyncs), and acknowledges it. Outputs returned with it are
// dropped. Not for a step's trigger, which must always answer with its outcome (the runner
// fails the step, Permanent), and not for a consumer with its own CommitFunc, where it is an
// error like any other.
var Unchanged = errors.New("the event changed nothing")
