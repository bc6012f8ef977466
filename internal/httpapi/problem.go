package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"

	"github.com/jetcheckout/jetcheckout/events"
)

// maxBody bounds a request body: a checkout request is well under a kilobyte.
const maxBody = 64 << 10

// Problem is an RFC 9457 problem detail, the body of every error answer.
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail,omitempty"`
}

// problemError is an error that becomes a problem answer.
type problemError struct{ Problem }

func (p *problemError) Error() string { return p.Detail }

// problem builds an error answered with status and a detail that says what to change.
func problem(status int, format string, args ...any) error {
	return &problemError{Problem{Type: "about:blank", Title: http.StatusText(status), Status: status, Detail: fmt.Sprintf(format, args...)}}
}

// writeProblem answers err as application/problem+json; errors that are not problems are
// logged and answered 500 without their text.
func writeProblem(w http.ResponseWriter, log *slog.Logger, r *http.Request, err error) {
	var p *problemError
	if !errors.As(err, &p) {
		log.Error("request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		p = &problemError{Problem{Type: "about:blank", Title: http.StatusText(http.StatusInternalServerError),
			Status: http.StatusInternalServerError, Detail: "internal error, please retry"}}
	}
	w.Header().Set("Content-Type", "application/problem+json")
	w.WriteHeader(p.Status)
	_ = json.NewEncoder(w).Encode(p.Problem)
}

// writeJSON answers v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

// readJSON decodes a JSON body strictly into v: at most maxBody bytes, no unknown fields,
// nothing after the object.
func readJSON(w http.ResponseWriter, r *http.Request, v any) ([]byte, error) {
	body, err := readBody(w, r)
	if err != nil {
		return nil, err
	}
	return body, decodeProblem(events.DecodeStrict(body, v))
}

// readBody reads a JSON body of at most maxBody bytes.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return nil, problem(http.StatusRequestEntityTooLarge, "the body is larger than %d bytes", maxBody)
	case err != nil:
		return nil, problem(http.StatusBadRequest, "reading the body: %v", err)
	case len(body) == 0:
		return nil, problem(http.StatusBadRequest, "the body must be a JSON object")
	}
	return body, nil
}

// decodeProblem answers a body that does not decode: a 400, or a 422 naming the fields an
// address does not have (the body is JSON, its content is wrong). The problem's title
// says what; its detail is the decoder's why, without the sentinel.
func decodeProblem(err error) error {
	if err == nil {
		return nil
	}
	status := http.StatusBadRequest
	if unknown := (*events.UnknownFieldsError)(nil); errors.As(err, &unknown) {
		status = http.StatusUnprocessableEntity
	}
	return problem(status, "%s", strings.TrimPrefix(err.Error(), events.ErrMalformed.Error()+": "))
}

// handlerFunc is a handler that returns its error; handle answers it as a problem.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

func (s *Server) handle(h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			writeProblem(w, s.log, r, err)
		}
	}
}
