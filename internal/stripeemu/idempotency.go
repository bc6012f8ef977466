package stripeemu

import (
	"maps"
	"net/http"
	"slices"
	"sync"
	"time"
)

// keyLifetime is how long Stripe keeps an idempotency key's result.
const keyLifetime = 24 * time.Hour

// idempotency saves the result of each request sent with an Idempotency-Key, per API key,
// and replays it to a retry, as Stripe does.
type idempotency struct {
	mu   sync.Mutex
	keys map[string]*keyState
}

// keyState is one key's saved result. Its mutex is held while a request with the key runs,
// so two requests with the same key never run at the same time: the second waits and then
// gets the first one's result.
type keyState struct {
	mu    sync.Mutex
	saved *savedReply
}

type savedReply struct {
	method, path string
	params       map[string][]string
	at           time.Time
	requestID    string
	reply        reply
}

// do runs the request once per key. A result is saved when the request ran: a success, or
// a 402 card decline (the decline is the result of the charge). A request refused for its
// parameters is not saved, so the same key can be used again once they are fixed.
func (s *idempotency) do(apiKey string, call Call, requestID string, now time.Time, run func() reply) reply {
	k := s.lock(apiKey + "\x00" + call.IdempotencyKey)
	defer k.mu.Unlock()

	if sv := k.saved; sv != nil && now.Sub(sv.at) > keyLifetime {
		k.saved = nil
	}
	if sv := k.saved; sv != nil {
		if sv.method != call.Method || sv.path != call.Path {
			return encode(refuse(newFailure(http.StatusBadRequest, typeIdempotency, "", "",
				"Keys for idempotent requests can only be used for the same endpoint they were first used for ('%s %s' vs '%s %s'). Try using a key other than '%s' if you meant to execute a different request.",
				sv.method, sv.path, call.Method, call.Path, call.IdempotencyKey)))
		}
		if !maps.EqualFunc(sv.params, call.Params, slices.Equal) {
			return encode(refuse(newFailure(http.StatusBadRequest, typeIdempotency, "", "",
				"Keys for idempotent requests can only be used with the same parameters they were first used with. Try using a key other than '%s' if you meant to execute a different request.",
				call.IdempotencyKey)))
		}
		out := sv.reply
		out.replayed, out.original = true, sv.requestID
		return out
	}
	out := run()
	if out.status < 400 || out.status == http.StatusPaymentRequired {
		k.saved = &savedReply{method: call.Method, path: call.Path, params: maps.Clone(call.Params),
			at: now, requestID: requestID, reply: out}
	}
	return out
}

// lock returns the key's state with its mutex held.
func (s *idempotency) lock(key string) *keyState {
	s.mu.Lock()
	k, ok := s.keys[key]
	if !ok {
		k = &keyState{}
		s.keys[key] = k
	}
	s.mu.Unlock()
	k.mu.Lock()
	return k
}
