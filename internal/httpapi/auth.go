package httpapi

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"
)

// role is what a request's token lets it do.
type role int

const (
	anonymous role = iota
	reader         // reads customers' personal data: READER_TOKEN
	admin          // that, and decides reviews: ADMIN_TOKEN
)

// bearer is the token of a request's Authorization header ("" when none). The JSON API
// takes a token only from there, so a page of another origin cannot make a browser's
// cookie act on it.
func bearer(r *http.Request) string {
	token, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return token
}

// roleOf is what token lets a request do.
func (s *Server) roleOf(token string) role {
	switch {
	case matches(token, s.cfg.AdminToken):
		return admin
	case matches(token, s.cfg.ReaderToken):
		return reader
	}
	return anonymous
}

func matches(token, want string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(token), []byte(want)) == 1
}

// tokenRole is what the token a request presents lets it do; a wrong token counts against
// its client (RateWrongToken), and a client over that is answered 429 whatever its token,
// so guessing gets no answer.
func (s *Server) tokenRole(w http.ResponseWriter, r *http.Request, token string) (role, error) {
	if token == "" {
		return anonymous, nil
	}
	var who role
	_, d := s.perWrongToken.try(s.clientKey(r), time.Now(), func() bool {
		who = s.roleOf(token)
		return who != anonymous
	})
	if d > 0 {
		return anonymous, s.perWrongToken.refuse(w, d)
	}
	return who, nil
}

// bearerRole is what the request's Authorization bearer lets it do.
func (s *Server) bearerRole(w http.ResponseWriter, r *http.Request) (role, error) {
	return s.tokenRole(w, r, bearer(r))
}

// need guards an API endpoint with a role, from the Authorization header alone.
func (s *Server) need(min role, h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		who, err := s.bearerRole(w, r)
		if err != nil {
			return err
		}
		if err := s.allowed(w, who, min); err != nil {
			return err
		}
		return h(w, r)
	}
}

// allowed refuses a request whose role is below min: 403 when no token for min is
// configured, 401 (with WWW-Authenticate) otherwise.
func (s *Server) allowed(w http.ResponseWriter, have, min role) error {
	switch {
	case have >= min:
		return nil
	case min == admin && s.cfg.AdminToken == "":
		return problem(http.StatusForbidden, "no ADMIN_TOKEN is configured, so the admin endpoints are off")
	case min == reader && s.cfg.AdminToken == "" && s.cfg.ReaderToken == "":
		return problem(http.StatusForbidden, "no READER_TOKEN or ADMIN_TOKEN is configured, so customers' data cannot be read")
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="jetcheckout"`)
	if min == admin {
		return problem(http.StatusUnauthorized, "this endpoint needs the admin token: Authorization: Bearer <ADMIN_TOKEN>")
	}
	return problem(http.StatusUnauthorized, "customers' data needs the reader or admin token: Authorization: Bearer <READER_TOKEN or ADMIN_TOKEN>")
}

// sessionCookie holds the ID of a UI sign-in's session (HttpOnly, SameSite=Strict, Secure
// over TLS), never the token: the server keeps what the ID may do. Only the UI's pages
// read it.
const sessionCookie = "jetcheckout_session"

// sessionTTL is how long a UI sign-in lasts.
const sessionTTL = 12 * time.Hour

// sessions are the UI's sign-ins, in memory: a copied cookie expires, signing out ends it
// here and not only in the browser, and a restart of the API signs everyone out.
type sessions struct {
	ttl  time.Duration
	mu   sync.Mutex
	byID map[[sha256.Size]byte]session // by the SHA-256 of the ID: a lookup's timing tells nothing of an ID
}

// session is what a sign-in may do, and the CSRF token its pages' forms carry: random,
// so another site cannot forge a form that passes.
type session struct {
	role    role
	csrf    string
	expires time.Time
}

func newSessions(ttl time.Duration) *sessions {
	return &sessions{ttl: ttl, byID: map[[sha256.Size]byte]session{}}
}

// start makes a session for who and answers its ID.
func (ss *sessions) start(who role, now time.Time) string {
	id := randomKey() + randomKey() // 256 bits
	ss.mu.Lock()
	defer ss.mu.Unlock()
	for k, s := range ss.byID {
		if now.After(s.expires) {
			delete(ss.byID, k)
		}
	}
	ss.byID[sha256.Sum256([]byte(id))] = session{role: who, csrf: randomKey() + randomKey(), expires: now.Add(ss.ttl)}
	return id
}

// get is the live session of id.
func (ss *sessions) get(id string, now time.Time) (session, bool) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	s, ok := ss.byID[sha256.Sum256([]byte(id))]
	return s, ok && !now.After(s.expires)
}

// end forgets the session of id.
func (ss *sessions) end(id string) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	delete(ss.byID, sha256.Sum256([]byte(id)))
}

// overTLS says whether the browser reached us over TLS: directly, or through a trusted
// proxy that says so (X-Forwarded-Proto), so the session cookie is marked Secure.
func overTLS(r *http.Request, trusted []netip.Prefix) bool {
	if r.TLS != nil {
		return true
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return false
	}
	peer, err := netip.ParseAddr(host)
	return err == nil && isTrusted(peer, trusted) && strings.EqualFold(strings.TrimSpace(r.Header.Get("X-Forwarded-Proto")), "https")
}

// csrfToken is the token the forms of a page signed in by bearer token carry: derived from
// the token, which another site does not know.
func csrfToken(token string) string {
	mac := hmac.New(sha256.New, []byte(token))
	mac.Write([]byte("jetcheckout csrf"))
	return hex.EncodeToString(mac.Sum(nil))
}

// redacted is the view of a checkout for whoever has its status URL: where it is and why,
// without who the customer is.
func (c Checkout) redacted() Checkout {
	c.CustomerID, c.CustomerEmail = "", ""
	c.DeadLetters = slices.Clone(c.DeadLetters)
	for i := range c.DeadLetters {
		c.DeadLetters[i].Reason = "" // may quote the input
	}
	return c
}

// visible is c as a request with role may see it.
func visible(c Checkout, r role) Checkout {
	if r >= reader {
		return c
	}
	return c.redacted()
}
