package httpapi

import (
	"net/http"
	"strings"

	"github.com/jetcheckout/jetcheckout/events"
)

// createSubscription: POST /subscriptions (admin; events.CreateSubscription → 201
// events.Subscription, its first period started). The same request again is safe: it answers
// the same subscription. The admin's: a subscription charges a saved card with nobody
// present, so only the shop's back end, which saved the card for this customer, may make one.
func (s *Server) createSubscription(w http.ResponseWriter, r *http.Request) error {
	var req events.CreateSubscription
	if _, err := readJSON(w, r, &req); err != nil {
		return err
	}
	if err := req.Validate(); err != nil {
		return problem(http.StatusUnprocessableEntity, "%v", err)
	}
	var sub events.Subscription
	if err := s.call(r.Context(), events.SubscriptionsCreate, req, &sub); err != nil {
		return err
	}
	w.Header().Set("Location", "/subscriptions/"+sub.ID)
	writeJSON(w, http.StatusCreated, sub)
	return nil
}

// listSubscriptions: GET /subscriptions (reader).
func (s *Server) listSubscriptions(w http.ResponseWriter, r *http.Request) error {
	subs := []events.Subscription{}
	if err := s.call(r.Context(), events.SubscriptionsList, nil, &subs); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"subscriptions": subs})
	return nil
}

// getSubscription: GET /subscriptions/{id} (reader): the plan, status and each period with
// its checkout.
func (s *Server) getSubscription(w http.ResponseWriter, r *http.Request) error {
	return s.subscriptionCall(w, r, events.SubscriptionsGet, events.SubscriptionRef{})
}

// changeSubscription: POST /subscriptions/{id}/{pause|resume|cancel} (admin); a cancel's body
// may say why ({"reason": "..."}).
func (s *Server) changeSubscription(subject events.Subject) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request) error {
		var ref events.SubscriptionRef
		if r.ContentLength != 0 {
			if _, err := readJSON(w, r, &ref); err != nil {
				return err
			}
		}
		return s.subscriptionCall(w, r, subject, ref)
	}
}

// changePlan: POST /subscriptions/{id}/plan (admin, events.ChangeSubscription without its id):
// the items and the interval from the next period on.
func (s *Server) changePlan(w http.ResponseWriter, r *http.Request) error {
	var req events.ChangeSubscription
	if _, err := readJSON(w, r, &req); err != nil {
		return err
	}
	req.ID = r.PathValue("id")
	if !events.ValidSubscriptionID(req.ID) {
		return problem(http.StatusBadRequest, "a subscription ID is sub_ and 1 to 40 letters, digits or '_'")
	}
	if err := req.Validate(); err != nil {
		return problem(http.StatusUnprocessableEntity, "%v", err)
	}
	var sub events.Subscription
	if err := s.call(r.Context(), events.SubscriptionsChange, req, &sub); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, sub)
	return nil
}

func (s *Server) subscriptionCall(w http.ResponseWriter, r *http.Request, subject events.Subject, ref events.SubscriptionRef) error {
	ref.ID = r.PathValue("id")
	if !events.ValidSubscriptionID(ref.ID) {
		return problem(http.StatusBadRequest, "a subscription ID is sub_ and 1 to 40 letters, digits or '_'")
	}
	ref.Reason = strings.TrimSpace(ref.Reason)
	var sub events.Subscription
	if err := s.call(r.Context(), subject, ref, &sub); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, sub)
	return nil
}
