//go:build !unix

package store

import (
	"context"
	"errors"
	"time"
)

// LockPoll: see lock.go.
const LockPoll = 200 * time.Millisecond

// Lock needs flock, which only Unix-like systems have; replicas taking turns is a Linux
// (container) deployment.
func Lock(ctx context.Context, path string, wait func()) (func() error, error) {
	return nil, errors.New("store.Lock: replicas taking turns needs a Unix-like system")
}
