package stripeemu

import (
	"fmt"
	"net/http"
	"strings"
)

// Stripe's error types.
const (
	typeInvalidRequest = "invalid_request_error"
	typeCard           = "card_error"
	typeIdempotency    = "idempotency_error"
	typeAPI            = "api_error"
)

// apiError is Stripe's error object: the body of a failed request under "error", and a
// PaymentIntent's last_payment_error.
type apiError struct {
	Type          string      `json:"type"`
	Code          string      `json:"code,omitempty"`
	DeclineCode   string      `json:"decline_code,omitempty"`
	Message       string      `json:"message"`
	Param         string      `json:"param,omitempty"`
	Charge        string      `json:"charge,omitempty"`
	DocURL        string      `json:"doc_url,omitempty"`
	PaymentIntent *intentJSON `json:"payment_intent,omitempty"`
	PaymentMethod *methodJSON `json:"payment_method,omitempty"`
}

// failure is a refused request: its HTTP status and Stripe error. It is an error so that
// parameter parsing can return it up to the handler.
type failure struct {
	status int
	err    *apiError
}

func (f *failure) Error() string { return f.err.Message }

func newFailure(status int, typ, code, param, format string, args ...any) *failure {
	e := &apiError{Type: typ, Code: code, Param: param, Message: fmt.Sprintf(format, args...), DocURL: docURL(code)}
	return &failure{status: status, err: e}
}

// docURL is the page Stripe links an error code to.
func docURL(code string) string {
	if code == "" {
		return ""
	}
	return "https://stripe.com/docs/error-codes/" + strings.ReplaceAll(code, "_", "-")
}

// invalid is a 400 invalid_request_error.
func invalid(code, param, format string, args ...any) *failure {
	return newFailure(http.StatusBadRequest, typeInvalidRequest, code, param, format, args...)
}

func unknownParam(key string) *failure {
	return invalid("parameter_unknown", key, "Received unknown parameter: %s", key)
}

func missingParam(key string) *failure {
	return invalid("parameter_missing", key, "Missing required param: %s.", key)
}

// noSuch is Stripe's resource_missing for an ID in a parameter (400) or in the path (404).
func noSuch(status int, object, param, id string) *failure {
	return newFailure(status, typeInvalidRequest, "resource_missing", param, "No such %s: '%s'", object, id)
}

func unexpectedState(format string, args ...any) *failure {
	return invalid("payment_intent_unexpected_state", "", format, args...)
}

func unrecognizedURL(method, path string) *failure {
	return newFailure(http.StatusNotFound, typeInvalidRequest, "", "",
		"Unrecognized request URL (%s: %s). Please see https://stripe.com/docs or we can help at https://support.stripe.com/.", method, path)
}

// errorBody is the JSON body of every failed request.
type errorBody struct {
	Error *apiError `json:"error"`
}
