package httpapi

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/microx"
	"github.com/jetcheckout/jetcheckout/services/fraud"
	"github.com/nats-io/nats.go"
)

// requestTimeout bounds a request to a service's endpoint.
const requestTimeout = 5 * time.Second

// call asks a service's request-reply endpoint and decodes its reply into out. An error
// reply of the service (micro's codes "400", "404", "409", "503") becomes the problem of the
// same HTTP status, with the service's words; no answer at all is a 503.
func (s *Server) call(ctx context.Context, subject events.Subject, req, out any) error {
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	err := microx.Request(ctx, s.cfg.NC, subject, req, out)
	var reply *microx.Error
	switch {
	case errors.Is(err, nats.ErrNoResponders) || errors.Is(err, context.DeadlineExceeded):
		return problem(http.StatusServiceUnavailable, "%s did not answer; is its service running?", subject)
	case errors.As(err, &reply):
		status, _ := strconv.Atoi(reply.Code)
		if status != http.StatusServiceUnavailable && (status < 400 || status > 499) {
			status = http.StatusBadGateway
		}
		return problem(status, "%s", reply.Description)
	}
	return err
}

// createCart: POST /carts (events.CreateCart → events.Cart).
func (s *Server) createCart(w http.ResponseWriter, r *http.Request) error {
	var req events.CreateCart
	if _, err := readJSON(w, r, &req); err != nil {
		return err
	}
	if strings.HasPrefix(req.CartID, "sub_") {
		return problem(http.StatusUnprocessableEntity, "cart IDs starting with sub_ are the subscriptions' own: choose another, or none")
	}
	var cart events.Cart
	if err := s.call(r.Context(), events.CartsCreate, req, &cart); err != nil {
		return err
	}
	w.Header().Set("Location", "/carts/"+cart.ID)
	writeJSON(w, http.StatusCreated, cart)
	return nil
}

// getCart: GET /carts/{id}.
func (s *Server) getCart(w http.ResponseWriter, r *http.Request) error {
	var cart events.Cart
	if err := s.call(r.Context(), events.CartsGet, events.GetCart{CartID: r.PathValue("id")}, &cart); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, cart)
	return nil
}

// listProducts: GET /products, each product with its available units (catalog.list).
func (s *Server) listProducts(w http.ResponseWriter, r *http.Request) error {
	products, err := s.products(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, products)
	return nil
}

func (s *Server) products(ctx context.Context) ([]events.ListedProduct, error) {
	var products []events.ListedProduct
	err := s.call(ctx, events.CatalogList, nil, &products)
	return products, err
}

// reviewCheckout: POST /checkouts/{id}/review (admin).
func (s *Server) reviewCheckout(w http.ResponseWriter, r *http.Request) error {
	var body events.ReviewDecision
	if _, err := readJSON(w, r, &body); err != nil {
		return err
	}
	reply, err := s.decide(r.Context(), r.PathValue("id"), body)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, reply)
	return nil
}

// decide hands an operator's decision to the fraud service, which publishes it.
func (s *Server) decide(ctx context.Context, id string, d events.ReviewDecision) (fraud.ReviewReply, error) {
	var reply fraud.ReviewReply
	if !events.ValidCheckoutID(id) {
		return reply, problem(http.StatusBadRequest, "checkout ID must be 1 to 64 letters, digits, '-' or '_'")
	}
	if err := d.Validate(); err != nil {
		return reply, problem(http.StatusUnprocessableEntity, "%v", err)
	}
	err := s.call(ctx, events.FraudReview, fraud.ReviewRequest{CheckoutID: id, ReviewDecision: d}, &reply)
	if err == nil {
		s.log.Info("review decided", "checkout_id", id, "decision", d.Decision, "reviewer", d.Reviewer)
	}
	return reply, err
}

// RedriveBody is the body of POST /checkouts/{id}/redrive: why, and who (the admin by
// default).
type RedriveBody struct {
	By     string `json:"by,omitempty"`
	Reason string `json:"reason"`
}

// redriveCheckout: POST /checkouts/{id}/redrive (admin). The coordinator decides and
// publishes; 202 with the attempt and the steps it runs again, or the reason it will not.
func (s *Server) redriveCheckout(w http.ResponseWriter, r *http.Request) error {
	var body RedriveBody
	if _, err := readJSON(w, r, &body); err != nil {
		return err
	}
	reply, err := s.redrive(r.Context(), r.PathValue("id"), body)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, reply)
	return nil
}

// redrive asks the coordinator to re-drive a checkout.
func (s *Server) redrive(ctx context.Context, id string, body RedriveBody) (events.RedriveReply, error) {
	var reply events.RedriveReply
	if !events.ValidCheckoutID(id) {
		return reply, problem(http.StatusBadRequest, "checkout ID must be 1 to 64 letters, digits, '-' or '_'")
	}
	if strings.TrimSpace(body.Reason) == "" {
		return reply, problem(http.StatusUnprocessableEntity, "reason is required: say why the checkout is re-driven (it goes in its history)")
	}
	if strings.TrimSpace(body.By) == "" {
		body.By = "admin (HTTP API)"
	}
	err := s.call(ctx, events.CheckoutsRedrive, events.RedriveRequest{CheckoutID: id, By: body.By, Reason: body.Reason}, &reply)
	if err == nil {
		s.log.Info("re-drive submitted", "checkout_id", id, "attempt", reply.Attempt, "by", body.By)
	}
	return reply, err
}

// redriveDeadLetter: POST /deadletters/{service}/{seq}/redrive (admin): the dead letter of
// service for the message at stream sequence seq is published again as it came; 202 with
// where the copy is, or the reason it is not.
func (s *Server) redriveDeadLetter(w http.ResponseWriter, r *http.Request) error {
	var body RedriveBody
	if _, err := readJSON(w, r, &body); err != nil {
		return err
	}
	reply, err := s.redriveLetter(r.Context(), r.PathValue("service"), r.PathValue("seq"), body)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusAccepted, reply)
	return nil
}

// redriveLetter asks the coordinator to re-drive a dead letter.
func (s *Server) redriveLetter(ctx context.Context, service, seq string, body RedriveBody) (events.DeadLetterRedriveReply, error) {
	var reply events.DeadLetterRedriveReply
	n, err := strconv.ParseUint(seq, 10, 64)
	if err != nil || n == 0 || !slices.Contains(events.Services, service) {
		return reply, problem(http.StatusBadRequest, "a dead letter is named by its service (one of %s) and the stream sequence of the message it keeps", strings.Join(events.Services, ", "))
	}
	if strings.TrimSpace(body.Reason) == "" {
		return reply, problem(http.StatusUnprocessableEntity, "reason is required: say why the dead letter is re-driven (it goes in its checkout's history)")
	}
	if strings.TrimSpace(body.By) == "" {
		body.By = "admin (HTTP API)"
	}
	err = s.call(ctx, events.DeadLettersRedrive, events.DeadLetterRedriveRequest{Service: service, StreamSequence: n, By: body.By, Reason: body.Reason}, &reply)
	if err == nil {
		s.log.Info("dead letter re-driven", "checkout_id", reply.CheckoutID, "service", service, "stream_seq", n, "copy_seq", reply.Sequence, "by", body.By)
	}
	return reply, err
}

// listReviews: GET /reviews (admin), the checkouts waiting for a decision.
func (s *Server) listReviews(w http.ResponseWriter, r *http.Request) error {
	reviews, err := s.reviews(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"reviews": reviews})
	return nil
}

func (s *Server) reviews(ctx context.Context) ([]fraud.Review, error) {
	reviews := []fraud.Review{}
	err := s.call(ctx, events.FraudReviews, nil, &reviews)
	return reviews, err
}
