package app

import (
	"context"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/runner"
	bolt "go.etcd.io/bbolt"
)

// Fault fails the handler of route for in when it returns an error, as if the handler had:
// in the handler's transaction, after the call to the outside world of a route that makes
// one. Permanent marks an error that retrying cannot fix.
type Fault func(route events.Subject, in events.Envelope) error

// Permanent is an error of a Fault that retrying cannot fix (runner.Permanent): a step's
// trigger is given up at once, an undo announced as stuck.
func Permanent(err error) error { return runner.Permanent(err) }

// middleware is the service's Faults, each wrapping its routes' handlers.
func (c Config) middleware(service string) []runner.Middleware {
	var mw []runner.Middleware
	for _, fault := range c.Faults[service] {
		mw = append(mw, func(route events.Subject, next runner.Handler) runner.Handler {
			return func(ctx context.Context, tx *bolt.Tx, in events.Envelope) ([]events.Envelope, error) {
				if err := fault(route, in); err != nil {
					return nil, err
				}
				return next(ctx, tx, in)
			}
		})
	}
	return mw
}
