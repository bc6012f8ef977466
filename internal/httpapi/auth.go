package httpapi

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"strings"
)

// role is what a request's token lets it do.
type role int

const (
	anonymous role = iota
	reader         // reads customers' personal data: READER_TOKEN
	admin          // that, and decides reviews: ADMIN_TOKEN
)

// signInCookie carries the token of the UI's sign-in (HttpOnly, SameSite=Strict). Only the
// UI's pages read it: the JSON API takes a token only from the Authorization header, so a
// page of another origin cannot make a browser's cookie act on it.
const signInCookie = "jetcheckout_token"

// credential is the token a request presents: its Authorization bearer or, for the UI's
// pages (cookie true), the cookie its sign-in set.
func credential(r *http.Request, cookie bool) string {
	if token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
		return token
	}
	if c, err := r.Cookie(signInCookie); err == nil && cookie {
		return c.Value
	}
	return ""
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

// need guards an API endpoint with a role, from the Authorization header alone.
func (s *Server) need(min role, h handlerFunc) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		if err := s.allowed(w, s.roleOf(credential(r, false)), min); err != nil {
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

// csrfToken is the token a signed-in page's forms carry: derived from the sign-in token,
// which another site does not know, so it cannot forge a form that passes.
func csrfToken(signIn string) string {
	mac := hmac.New(sha256.New, []byte(signIn))
	mac.Write([]byte("jetcheckout csrf"))
	return hex.EncodeToString(mac.Sum(nil))
}

// redacted is the view of a checkout for whoever has its status URL: where it is and why,
// without who the customer is.
func (c Checkout) redacted() Checkout {
	c.CustomerID, c.CustomerEmail = "", ""
	return c
}

// visible is c as a request with role may see it.
func visible(c Checkout, r role) Checkout {
	if r >= reader {
		return c
	}
	return c.redacted()
}
