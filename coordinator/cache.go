package coordinator

import "sync"

// cachedStates bounds the states kept. Only running checkouts are kept (an ended one's
// state leaves the cache with its last event), so this is a second of checkouts at a
// thousand a second; past it an arbitrary one is dropped (its next event reads the bucket).
const cachedStates = 1024

// stateCache keeps the state this coordinator last wrote for a checkout, with the revision
// it wrote, so the checkout's next event starts from it instead of reading and decoding
// the key again (at saturation the read and the decoding were a tenth of the process's CPU).
// A checkout's events come one after another on its runner lane, and take hands the state
// over (it leaves the cache), so no two events ever change one State at once.
type stateCache struct {
	mu     sync.Mutex
	states map[string]cachedState
	max    int
}

type cachedState struct {
	st  *State
	rev uint64
}

func newStateCache(max int) *stateCache {
	return &stateCache{states: map[string]cachedState{}, max: max}
}

// take removes and returns the checkout's cached state and its revision.
func (c *stateCache) take(checkoutID string) (*State, uint64, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.states[checkoutID]
	delete(c.states, checkoutID)
	return e.st, e.rev, ok
}

// put keeps st as written at revision rev; the caller no longer changes it.
func (c *stateCache) put(st *State, rev uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.states) >= c.max {
		for id := range c.states {
			delete(c.states, id)
			break
		}
	}
	c.states[st.CheckoutID] = cachedState{st: st, rev: rev}
}
