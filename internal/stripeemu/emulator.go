package stripeemu

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// APIVersion is the Stripe API version the emulator behaves as: the one stripe-go v76 pins.
const APIVersion = "2023-10-16"

// Emulator is the Stripe API as an http.Handler. Its zero value is not usable: call New.
// It is safe for concurrent use.
type Emulator struct {
	log    *slog.Logger
	now    func() time.Time
	fault  FaultFunc
	apiKey string // when set, the only key accepted

	idem  idempotency
	rules faultRules

	closeOnce sync.Once
	closed    chan struct{} // releases requests held by a hanging fault

	mu      sync.Mutex // guards everything below; held for the whole of a request's work
	intents map[string]*intent
	charges map[string]*charge
	refunds map[string]*refund
	// customers and the payment methods saved to them (test tokens are not kept here).
	customers map[string]*customer
	methods   map[string]*method
	// Creation order, oldest first; lists walk them backwards (newest first, like Stripe).
	intentOrder []*intent
	refundOrder []*refund
}

// Option configures an Emulator.
type Option func(*Emulator)

// WithLogger logs each request at debug level (never the API key).
func WithLogger(log *slog.Logger) Option { return func(e *Emulator) { e.log = log } }

// WithFault injects faults into chosen requests; see Fault.
func WithFault(f FaultFunc) Option { return func(e *Emulator) { e.fault = f } }

// WithAPIKey accepts only this secret key. By default any sk_test_ or rk_test_ key is.
func WithAPIKey(key string) Option { return func(e *Emulator) { e.apiKey = key } }

// WithClock sets the clock for created timestamps and the 24-hour life of idempotency keys.
func WithClock(now func() time.Time) Option { return func(e *Emulator) { e.now = now } }

// New returns an empty emulator.
func New(opts ...Option) *Emulator {
	e := &Emulator{
		log:       slog.New(slog.DiscardHandler),
		now:       time.Now,
		closed:    make(chan struct{}),
		intents:   map[string]*intent{},
		charges:   map[string]*charge{},
		refunds:   map[string]*refund{},
		customers: map[string]*customer{},
		methods:   map[string]*method{},
		idem:      idempotency{keys: map[string]*keyState{}},
	}
	for _, o := range opts {
		o(e)
	}
	return e
}

// Close releases the requests a Hang fault holds. The emulator keeps answering others.
func (e *Emulator) Close() { e.closeOnce.Do(func() { close(e.closed) }) }

// apiCall is what an endpoint handler gets.
type apiCall struct {
	params params
	id     string // the object ID in the path, if any
	host   string // the Host the client used, for URLs the emulator hands out
}

// response is a handler's answer, before encoding.
type response struct {
	status int
	body   any
}

func ok(body any) response { return response{http.StatusOK, body} }

// refuse turns a *failure into its response.
func refuse(err error) response {
	var f *failure
	if !errors.As(err, &f) {
		f = newFailure(http.StatusInternalServerError, typeAPI, "", "", "%v", err)
	}
	return response{f.status, errorBody{f.err}}
}

type endpoint struct {
	method, pattern string // pattern segments: literal, or "{}" for an ID
	handle          func(*Emulator, apiCall) response
}

var endpoints = []endpoint{
	{http.MethodPost, "/v1/payment_intents", (*Emulator).createIntent},
	{http.MethodGet, "/v1/payment_intents", (*Emulator).listIntents},
	{http.MethodGet, "/v1/payment_intents/search", (*Emulator).searchIntents}, // before {}: "search" is no ID
	{http.MethodGet, "/v1/payment_intents/{}", (*Emulator).getIntent},
	{http.MethodPost, "/v1/payment_intents/{}/confirm", (*Emulator).confirmIntent},
	{http.MethodPost, "/v1/payment_intents/{}/capture", (*Emulator).captureIntent},
	{http.MethodPost, "/v1/payment_intents/{}/cancel", (*Emulator).cancelIntent},
	{http.MethodPost, "/v1/refunds", (*Emulator).createRefund},
	{http.MethodGet, "/v1/refunds", (*Emulator).listRefunds},
	{http.MethodGet, "/v1/refunds/{}", (*Emulator).getRefund},
	{http.MethodPost, "/v1/customers", (*Emulator).createCustomer},
	{http.MethodGet, "/v1/customers/{}", (*Emulator).getCustomer},
	{http.MethodGet, "/v1/payment_methods/{}", (*Emulator).getMethod},
	{http.MethodPost, "/v1/payment_methods/{}/attach", (*Emulator).attachMethod},
}

// route finds the endpoint of a request and the ID in its path.
func route(method, path string) (endpoint, string, bool) {
	got := strings.Split(path, "/")
	for _, ep := range endpoints {
		want := strings.Split(ep.pattern, "/")
		if ep.method != method || len(want) != len(got) {
			continue
		}
		id, match := "", true
		for i, w := range want {
			switch {
			case w == "{}" && got[i] != "":
				id = got[i]
			case w != got[i]:
				match = false
			}
		}
		if match {
			return ep, id, true
		}
	}
	return endpoint{}, "", false
}

// reply is an encoded response, as sent and as saved for an idempotency key.
type reply struct {
	status   int
	body     []byte
	replayed bool
	original string // request ID of the saved response a replay repeats
}

func encode(r response) reply {
	body, err := json.MarshalIndent(r.body, "", "  ")
	if err != nil {
		body = []byte(`{"error": {"type": "api_error", "message": "encode response"}}`)
		r.status = http.StatusInternalServerError
	}
	return reply{status: r.status, body: append(body, '\n')}
}

// ServeHTTP authenticates, applies any injected fault, runs the endpoint under its
// idempotency key and answers in Stripe's shapes.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	requestID := "req_" + randomID(14)
	h := w.Header()
	h.Set("Request-Id", requestID)
	h.Set("Stripe-Version", APIVersion)
	h.Set("Content-Type", "application/json")

	apiKey, err := e.authenticate(r)
	if err != nil {
		e.send(w, Call{Method: r.Method, Path: r.URL.Path}, encode(refuse(err)))
		return
	}
	call, err := e.readCall(w, r)
	if err != nil {
		e.send(w, call, encode(refuse(err)))
		return
	}
	if strings.HasPrefix(call.Path, controlPrefix) {
		e.send(w, call, encode(e.control(r, call)))
		return
	}
	call.PaymentMethod = e.paymentMethodOf(call)
	fault := Fault{}
	if e.fault != nil {
		fault = e.fault(call)
	}
	if fault == (Fault{}) {
		fault = e.rules.choose(call)
	}
	if !e.wait(r, fault.Delay) {
		return
	}
	if fault.breaks() && !fault.AfterRun {
		e.inject(w, r, call, fault)
		return
	}
	out := e.execute(apiKey, call, requestID, r.Host)
	if fault.breaks() {
		e.inject(w, r, call, fault) // it ran and its result is saved; the answer is lost
		return
	}
	if out.replayed {
		h.Set("Idempotent-Replayed", "true")
		h.Set("Original-Request", out.original)
	}
	e.send(w, call, out)
}

// readCall parses the request: parameters from the query of a GET, the form body of a POST.
// The body of a request to /_emulator/ is JSON, kept in call.body.
func (e *Emulator) readCall(w http.ResponseWriter, r *http.Request) (Call, error) {
	call := Call{Method: r.Method, Path: r.URL.Path}
	if r.Method == http.MethodPost {
		call.IdempotencyKey = strings.TrimSpace(r.Header.Get("Idempotency-Key"))
	}
	raw := r.URL.RawQuery
	if r.Method != http.MethodGet {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
		if err != nil {
			return call, invalid("", "", "Could not read the request body: %v", err)
		}
		raw = string(body)
	}
	if strings.HasPrefix(call.Path, controlPrefix) {
		call.body = []byte(raw)
		return call, nil
	}
	values, err := url.ParseQuery(raw)
	if err != nil {
		return call, invalid("", "", "Invalid request: the parameters are not valid application/x-www-form-urlencoded data (%v).", err)
	}
	call.Params = values
	if len(call.IdempotencyKey) > 255 {
		return call, invalid("", "", "Idempotency-Key must be at most 255 characters long.")
	}
	return call, nil
}

// paymentMethodOf is the payment method a request names, or that of the intent it acts on.
func (e *Emulator) paymentMethodOf(c Call) string {
	if pm := c.Params.Get("payment_method"); pm != "" {
		return pm
	}
	if rest, found := strings.CutPrefix(c.Path, "/v1/payment_methods/"); found {
		pm, _, _ := strings.Cut(rest, "/")
		return pm
	}
	id := c.Params.Get("payment_intent")
	if rest, found := strings.CutPrefix(c.Path, "/v1/payment_intents/"); found {
		id, _, _ = strings.Cut(rest, "/")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	pi, found := e.intents[id]
	switch {
	case !found:
		return ""
	case pi.method == nil && pi.latestCharge != nil:
		return pi.latestCharge.paymentMethod // detached by a failed attempt
	}
	return pi.methodID()
}

// authenticate returns the secret key of the request.
func (e *Emulator) authenticate(r *http.Request) (string, error) {
	key := ""
	if auth := r.Header.Get("Authorization"); strings.HasPrefix(auth, "Bearer ") {
		key = strings.TrimSpace(strings.TrimPrefix(auth, "Bearer "))
	} else if user, _, ok := r.BasicAuth(); ok {
		key = user
	}
	if key == "" {
		return "", newFailure(http.StatusUnauthorized, typeInvalidRequest, "", "",
			"You did not provide an API key. You need to provide your API key in the Authorization header, using Bearer auth (e.g. 'Authorization: Bearer YOUR_SECRET_KEY'). See https://stripe.com/docs/api#authentication for details, or we can help at https://support.stripe.com/.")
	}
	testKey := strings.HasPrefix(key, "sk_test_") || strings.HasPrefix(key, "rk_test_")
	if !testKey || (e.apiKey != "" && key != e.apiKey) {
		return "", newFailure(http.StatusUnauthorized, typeInvalidRequest, "", "", "Invalid API Key provided: %s", redact(key))
	}
	return key, nil
}

// redact shows a key the way Stripe does in its errors: the prefix and the last four.
func redact(key string) string {
	prefix := ""
	if i := strings.LastIndex(key, "_"); i >= 0 && i < 12 {
		prefix = key[:i+1]
	}
	if len(key)-len(prefix) <= 4 {
		return prefix + "****"
	}
	return prefix + "****" + key[len(key)-4:]
}

// execute runs the endpoint, through the idempotency layer for a POST with a key.
func (e *Emulator) execute(apiKey string, call Call, requestID, host string) reply {
	ep, id, found := route(call.Method, call.Path)
	if !found {
		return encode(refuse(unrecognizedURL(call.Method, call.Path)))
	}
	run := func() reply {
		e.mu.Lock()
		defer e.mu.Unlock()
		return encode(ep.handle(e, apiCall{params: params(call.Params), id: id, host: host}))
	}
	if call.IdempotencyKey == "" {
		return run()
	}
	return e.idem.do(apiKey, call, requestID, e.now(), run)
}

// wait sleeps for a Delay fault; false when the client gave up meanwhile.
func (e *Emulator) wait(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	case <-e.closed:
		return true
	}
}

func (e *Emulator) send(w http.ResponseWriter, call Call, out reply) {
	if call.IdempotencyKey != "" {
		w.Header().Set("Idempotency-Key", call.IdempotencyKey)
	}
	w.WriteHeader(out.status)
	_, _ = w.Write(out.body)
	e.log.Debug("stripe request", "method", call.Method, "path", call.Path, "status", out.status,
		"idempotency_key", call.IdempotencyKey, "replayed", out.replayed)
}

// randomID is a base62 string of n characters, like the tails of Stripe's IDs.
func randomID(n int) string {
	const alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	b := make([]byte, n)
	_, _ = rand.Read(b)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)]
	}
	return string(b)
}
