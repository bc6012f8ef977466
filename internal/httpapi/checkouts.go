package httpapi

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/tracing"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"go.opentelemetry.io/otel/trace"
)

// publishTimeout bounds the wait for the stream's ack of a checkout request.
const publishTimeout = 10 * time.Second

// Accepted202 is the answer to POST /checkout/process.
type Accepted202 struct {
	CheckoutID string `json:"checkout_id"`
	CartID     string `json:"cart_id"`
	Status     string `json:"status"`
	StatusURL  string `json:"status_url"`
}

// processCheckout: POST /checkout/process.
func (s *Server) processCheckout(w http.ResponseWriter, r *http.Request) error {
	if err := s.limitClient(w, r); err != nil {
		return err
	}
	body, err := readBody(w, r)
	if err != nil {
		return err
	}
	req, err := events.DecodeRequest(body)
	if err != nil {
		return decodeProblem(err)
	}
	if err := s.checkRequest(req); err != nil {
		return err // before the email's limit: a request without an email is a 422
	}
	if err := s.limitEmail(w, req.CustomerEmail); err != nil {
		return err
	}
	answer, replayed, err := s.submit(r.Context(), req, r.Header.Get("Idempotency-Key"))
	if err != nil {
		return err
	}
	if replayed {
		w.Header().Set("Idempotent-Replayed", "true")
	}
	w.Header().Set("Location", answer.StatusURL)
	writeJSON(w, http.StatusAccepted, answer)
	return nil
}

// checkRequest answers a request that cannot be a checkout with a 422 and the reason: the
// rules validate_cart applies, its return_url's included, before anything is published.
func (s *Server) checkRequest(req events.CheckoutRequest) error {
	if req.Renewal != nil {
		return problem(http.StatusUnprocessableEntity, "renewal is set by the subscriptions service alone: create a subscription with POST /subscriptions")
	}
	err := req.Validate()
	if err == nil {
		err = s.cfg.ReturnURLs.Check(req.ReturnURL)
	}
	if err != nil {
		return problem(http.StatusUnprocessableEntity, "%v", err)
	}
	return nil
}

// submit validates a checkout request, gives it its checkout ID and publishes it on
// checkout.requested, answering only once the stream acknowledged it. With an idempotency
// key the ID is derived from the key, so a retry is the same checkout. replayed reports a
// request for a checkout that exists already: its answer says where that checkout is now.
//
// The stream decides which request a checkout ID stands for, in one step: it stores the
// first checkout.requested with the ID's Nats-Msg-Id and acks every later one within its
// duplicate window as a duplicate of it. A duplicate is then compared with what the stream
// holds (read back through the read model, which folds every stored request: no read
// grant beyond the API's own consumer): the same request is a replay, another is a 422.
// Checking first and publishing after, as before, let two racing requests both pass the
// check. The read model's answer before publishing covers a retry after the window.
func (s *Server) submit(ctx context.Context, req events.CheckoutRequest, key string) (answer Accepted202, replayed bool, err error) {
	if err := s.checkRequest(req); err != nil {
		return answer, false, err
	}
	switch {
	case key != "":
		if len(key) > 255 {
			return answer, false, problem(http.StatusBadRequest, "Idempotency-Key must be at most 255 characters")
		}
		id := idempotentID(key)
		if req.CheckoutID != "" && req.CheckoutID != id {
			return answer, false, problem(http.StatusBadRequest, "send checkout_id or an Idempotency-Key, not both")
		}
		req.CheckoutID = id
	case req.CheckoutID == "":
		req.CheckoutID = newCheckoutID()
	}
	hash := requestHash(req)
	stored, err := s.storedHash(req.CheckoutID)
	if err != nil {
		return answer, false, err
	}
	if stored == "" {
		ack, err := s.publish(ctx, req)
		if err != nil {
			return answer, false, err
		}
		if !ack.Duplicate {
			s.accept(req, hash)
			return accepted(req), false, nil
		}
		if stored, err = s.awaitStoredHash(ctx, req.CheckoutID); err != nil {
			return answer, false, err
		}
	}
	if stored != hash {
		return answer, false, problem(http.StatusUnprocessableEntity, "this Idempotency-Key (or checkout_id) was used with a different request; use a new key for a new checkout")
	}
	s.log.Info("checkout replayed", "checkout_id", req.CheckoutID, "cart_id", req.CartID)
	return s.replay(req), true, nil
}

// accept records a request the stream stored: GET answers it before the stream's copy is
// folded in.
func (s *Server) accept(req events.CheckoutRequest, hash string) {
	if _, err := s.store.Accept(req.CheckoutID, Accepted{At: time.Now().UTC(), CartID: req.CartID, CustomerID: req.CustomerID,
		CustomerEmail: req.CustomerEmail, RequestHash: hash}); err != nil {
		// The request is in the stream: the checkout runs, and the read model learns of it
		// from there. Only the early answer to GET is lost.
		s.log.Warn("record accepted checkout", "checkout_id", req.CheckoutID, "err", err)
	}
	s.hub.Notify(req.CheckoutID)
	s.log.Info("checkout accepted", "checkout_id", req.CheckoutID, "cart_id", req.CartID)
}

// replay answers a retried request with where its checkout is now.
func (s *Server) replay(req events.CheckoutRequest) Accepted202 {
	a := accepted(req)
	if c, err := s.store.Checkout(req.CheckoutID); err == nil {
		a.Status = c.Status
	}
	return a
}

// requestHash identifies a request: a retry hashes the same, another request not.
func requestHash(req events.CheckoutRequest) string {
	// An address with region (state's old name) is the same request as one with state.
	req.ShippingAddress, req.BillingAddress = req.ShippingAddress.Canonical(), req.BillingAddress.Canonical()
	body, _ := json.Marshal(req) // a struct of strings: cannot fail
	sum := sha256.Sum256(body)
	return hex.EncodeToString(sum[:])
}

// storedHash is the hash of the request the read model knows for checkout id: the one
// this API accepted, or the one the stream holds; "" when it knows none.
func (s *Server) storedHash(id string) (string, error) {
	if a, seen, err := s.store.Accepted(id); err != nil || (seen && a.RequestHash != "") {
		return a.RequestHash, err
	}
	evs, err := s.store.Events(id)
	if errors.Is(err, ErrNotFound) || errors.Is(err, errRebuilding) {
		return "", nil // unknown: the stream's duplicate check tells (awaitStoredHash)
	}
	if err != nil {
		return "", err
	}
	for _, e := range evs {
		if e.Type != events.Requested {
			continue
		}
		var stored events.CheckoutRequest
		if json.Unmarshal(e.Payload, &stored) != nil {
			return "malformed", nil // matches no request
		}
		return requestHash(stored), nil
	}
	return "", nil
}

// awaitStoredHash waits until the read model has folded the request the stream acked ours
// as a duplicate of, and returns its hash.
func (s *Server) awaitStoredHash(ctx context.Context, id string) (string, error) {
	changed, stop := s.hub.Subscribe(id)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	for {
		hash, err := s.storedHash(id)
		if hash != "" || err != nil {
			return hash, err
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return "", problem(http.StatusServiceUnavailable, "checkout %s was requested already and its request is not readable yet; retry with the same Idempotency-Key", id)
		}
	}
}

func accepted(req events.CheckoutRequest) Accepted202 {
	return Accepted202{CheckoutID: req.CheckoutID, CartID: req.CartID, Status: StatusAccepted, StatusURL: "/checkouts/" + req.CheckoutID}
}

// publish stores the request in the CHECKOUT stream and returns the stream's ack. Its
// Nats-Msg-Id is the request's event ID, so the stream keeps one request per checkout
// within its duplicate window and acks the others as duplicates.
func (s *Server) publish(ctx context.Context, req events.CheckoutRequest) (*jetstream.PubAck, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, publishTimeout)
	defer cancel()
	ctx, span := s.startTrace(ctx, req.CheckoutID)
	msg := &nats.Msg{Subject: string(events.Requested), Data: body, Header: nats.Header{}}
	tracing.Inject(ctx, msg.Header)
	span.AddEvent("publish", trace.WithAttributes(tracing.EventID.String(events.ID(req.CheckoutID, events.Requested))))
	ack, err := s.cfg.JS.PublishMsg(ctx, msg, jetstream.WithMsgID(events.ID(req.CheckoutID, events.Requested)))
	tracing.End(span, err)
	if err != nil {
		s.log.Error("publish checkout request", "checkout_id", req.CheckoutID, "err", err)
		return nil, problem(http.StatusServiceUnavailable, "the checkout could not be stored (%v); nothing was started, retry with the same Idempotency-Key", err)
	}
	return ack, nil
}

// idempotentID is the checkout ID of an idempotency key: the same key, the same checkout.
func idempotentID(key string) string {
	sum := sha256.Sum256([]byte("idempotency-key:" + key))
	return "co_" + hex.EncodeToString(sum[:12])
}

func newCheckoutID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return "co_" + hex.EncodeToString(b)
}

// getCheckout: GET /checkouts/{id}.
func (s *Server) getCheckout(w http.ResponseWriter, r *http.Request) error {
	who, err := s.bearerRole(w, r)
	if err != nil {
		return err
	}
	c, err := s.checkout(r.PathValue("id"))
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, visible(c, who))
	return nil
}

// checkout reads one checkout, answering a problem for a bad or unknown ID.
func (s *Server) checkout(id string) (Checkout, error) {
	if !events.ValidCheckoutID(id) {
		return Checkout{}, problem(http.StatusBadRequest, "checkout ID must be 1 to 64 letters, digits, '-' or '_'")
	}
	c, err := s.store.Checkout(id)
	if errors.Is(err, ErrNotFound) {
		return c, problem(http.StatusNotFound, "no checkout %s", id)
	}
	return c, err
}

// checkoutEvents: GET /checkouts/{id}/events.
func (s *Server) checkoutEvents(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if _, err := s.checkout(id); err != nil {
		return err
	}
	evs, err := s.store.Events(id)
	if err != nil {
		return err
	}
	if evs == nil {
		evs = []Event{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"checkout_id": id, "events": evs})
	return nil
}

// Listing limits.
const (
	defaultLimit = 50
	maxLimit     = 500
)

// listCheckouts: GET /checkouts?status=&q=&limit=&cursor=.
func (s *Server) listCheckouts(w http.ResponseWriter, r *http.Request) error {
	q, err := parseQuery(r)
	if err != nil {
		return err
	}
	page, err := s.store.List(q)
	if errors.Is(err, ErrBadCursor) {
		return problem(http.StatusBadRequest, "%v", err)
	}
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, page)
	return nil
}

func parseQuery(r *http.Request) (Query, error) {
	v := r.URL.Query()
	q := Query{Status: v.Get("status"), Search: v.Get("q"), Cursor: v.Get("cursor"), Limit: defaultLimit}
	if q.Status != "" && !slices.Contains(Statuses, q.Status) {
		return q, problem(http.StatusBadRequest, "status must be one of %v, got %q", Statuses, q.Status)
	}
	if l := v.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > maxLimit {
			return q, problem(http.StatusBadRequest, "limit must be a number from 1 to %d, got %q", maxLimit, l)
		}
		q.Limit = n
	}
	return q, nil
}

// streamCheckout: GET /checkouts/{id}/stream, server-sent events. Each change sends the
// whole checkout as a "checkout" event; the stream ends after the terminal state.
func (s *Server) streamCheckout(w http.ResponseWriter, r *http.Request) error {
	who, err := s.bearerRole(w, r)
	if err != nil {
		return err
	}
	id := r.PathValue("id")
	if _, err := s.checkout(id); err != nil {
		return err
	}
	flusher, ok := w.(http.Flusher)
	if !ok {
		return errors.New("response writer cannot stream")
	}
	changed, stop := s.hub.Subscribe(id)
	defer stop()
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	keepalive := time.NewTicker(15 * time.Second)
	defer keepalive.Stop()
	for {
		c, err := s.store.Checkout(id)
		if err != nil {
			return nil // the headers are out: end the stream, the client reconnects
		}
		raw, _ := json.Marshal(visible(c, who))
		if _, err := fmt.Fprintf(w, "event: checkout\nid: %d\ndata: %s\n\n", c.Events, raw); err != nil {
			return nil
		}
		flusher.Flush()
		if c.Terminal() {
			return nil
		}
		if !waitChange(r.Context(), w, flusher, changed, keepalive.C) {
			return nil
		}
	}
}

// waitChange waits for a change, writing a comment line now and then so that proxies keep
// the connection; false when the client has gone.
func waitChange(ctx context.Context, w http.ResponseWriter, f http.Flusher, changed <-chan struct{}, tick <-chan time.Time) bool {
	for {
		select {
		case <-ctx.Done():
			return false
		case <-changed:
			return true
		case <-tick:
			if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil {
				return false
			}
			f.Flush()
		}
	}
}
