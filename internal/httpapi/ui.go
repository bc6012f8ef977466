package httpapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/money"
)

//go:embed web
var webFS embed.FS

// ui is the run UI: server-rendered pages, a little JavaScript for live updates.
type ui struct {
	s     *Server
	pages map[string]*template.Template
}

func newUI(s *Server) (*ui, error) {
	funcs := template.FuncMap{
		"ts":       func(t time.Time) string { return t.Local().Format("Jan 2 15:04:05.000") },
		"short":    func(t time.Time) string { return t.Local().Format("Jan 2 15:04:05") },
		"dur":      humanDuration,
		"since":    func(a, b time.Time) string { return "+" + humanDuration(b.Sub(a)) },
		"pretty":   prettyJSON,
		"money":    money.Format,
		"add":      func(a, b int) int { return a + b },
		"half":     func(a int) int { return a / 2 },
		"statuses": func() []string { return Statuses },
		"query":    func(k, v string) template.URL { return template.URL(url.Values{k: {v}}.Encode()) },
		"stock":    stockLabel,
		"state":    func(s string) string { return strings.ReplaceAll(s, "_", " ") }, // not_run: "not run"
	}
	pages := map[string]*template.Template{}
	for _, p := range []string{"index", "list", "checkout", "reviews", "store", "subscriptions"} {
		t, err := template.New("").Funcs(funcs).ParseFS(webFS, "web/layout.html", "web/"+p+".html")
		if err != nil {
			return nil, fmt.Errorf("ui template %s: %w", p, err)
		}
		pages[p] = t
	}
	return &ui{s: s, pages: pages}, nil
}

func (u *ui) routes(m *http.ServeMux) {
	static, _ := fs.Sub(webFS, "web/static")
	m.Handle("GET /ui/static/", http.StripPrefix("/ui/static/", http.FileServerFS(static)))
	// The root answers itself, links to the UI and the API: a client that follows no
	// redirects (curl) sees where to go, not an empty 303.
	m.HandleFunc("GET /{$}", u.page(u.index))
	m.HandleFunc("GET /ui/{$}", u.page(u.list))
	m.HandleFunc("GET /ui/checkouts/{id}", u.page(u.checkout))
	m.HandleFunc("GET /ui/checkouts/{id}/fragment", u.page(u.checkout))
	if u.s.cfg.Emulator != nil { // the demo's 3-D Secure button: only with the emulator
		m.HandleFunc("POST /ui/checkouts/{id}/3ds", u.post(u.authenticate))
	}
	m.HandleFunc("GET /ui/reviews", u.page(u.reviews))
	m.HandleFunc("GET /ui/subscriptions", u.page(u.subscriptions))
	m.HandleFunc("POST /ui/subscriptions/{id}/{action}", u.post(u.changeSubscription))
	m.HandleFunc("POST /ui/reviews/{id}", u.post(u.decide))
	m.HandleFunc("POST /ui/checkouts/{id}/redrive", u.post(u.redrive))
	m.HandleFunc("POST /ui/checkouts/{id}/deadletters/{service}/{seq}/redrive", u.post(u.redriveLetter))
	m.HandleFunc("POST /ui/login", u.post(u.login))
	m.HandleFunc("POST /ui/logout", u.post(u.logout))
	m.HandleFunc("GET /ui/store", u.page(u.store))
	m.HandleFunc("POST /ui/store", u.post(u.placeOrder))
}

// crossOrigin refuses a browser's request that another origin's page made (by
// Sec-Fetch-Site, or Origin against Host); a request no browser made passes, and the
// forms that act with the sign-in cookie check their CSRF token too.
var crossOrigin = http.NewCrossOriginProtection()

// post is a UI handler of a form: only from the UI's own pages, its body bounded.
func (u *ui) post(h pageFunc) http.HandlerFunc {
	return u.page(func(w http.ResponseWriter, r *http.Request) (string, any, error) {
		if err := crossOrigin.Check(r); err != nil {
			return "", nil, problem(http.StatusForbidden, "a page of another site cannot post this form")
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBody)
		return h(w, r)
	})
}

// visitor is who a UI request is: what it may do, the CSRF token its forms carry, and
// whether a session signed it in (it may sign out).
type visitor struct {
	role    role
	csrf    string
	session bool
}

// visitor is who the request is, by its Authorization bearer or its session cookie. A
// cookie of no live session (forged, expired, from before a restart) is nobody; it is not
// counted as a wrong token, since a browser sends a stale one on every page.
func (u *ui) visitor(w http.ResponseWriter, r *http.Request) (visitor, error) {
	if token := bearer(r); token != "" {
		who, err := u.s.tokenRole(w, r, token)
		return visitor{role: who, csrf: csrfToken(token)}, err
	}
	if c, err := r.Cookie(sessionCookie); err == nil {
		if s, ok := u.s.sessions.get(c.Value, time.Now()); ok {
			return visitor{role: s.role, csrf: s.csrf, session: true}, nil
		}
	}
	return visitor{}, nil
}

// notices are what a page shows after a form's redirect, by the code in its URL. A page
// never shows text from its URL: a link could put an attacker's words ("call this number")
// on the shop's own page.
var notices = map[string]string{
	"approved":      "Approved: the checkout goes on.",
	"denied":        "Denied: the checkout releases what it holds and fails.",
	"3ds-completed": "3-D Secure completed; the payment step looks at it again shortly.",
	"3ds-failed":    "3-D Secure failed; the payment step looks at it again shortly.",
	"3ds-refused":   "The Stripe emulator refused the 3-D Secure answer.",
	"redriven":      "Re-driven: the failed steps run again; their outcome appears here.",
	"retried":       "Re-driven: a new checkout tries this one again (linked above).",
	"letter":        "Re-driven: the dead letter was published again as it came; what its service does with it appears here.",
	"paused":        "Paused: no period starts until it is resumed.",
	"resumed":       "Resumed: a period that fell due while paused starts now.",
	"cancelled":     "Cancelled: nothing more renews; a period being paid for ends as it ends.",
}

// notice is the text of the request's notice code ("" for none or an unknown one).
func notice(r *http.Request) string { return notices[r.URL.Query().Get("notice")] }

// page is a UI handler: it renders a template with data, or an error page.
type pageFunc func(w http.ResponseWriter, r *http.Request) (name string, data any, err error)

func (u *ui) page(h pageFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name, data, err := h(w, r)
		if err != nil {
			var p *problemError
			if !errors.As(err, &p) {
				u.s.log.Error("ui request failed", "path", r.URL.Path, "err", err)
				p = &problemError{Problem{Status: http.StatusInternalServerError, Title: "Internal error", Detail: "something went wrong; please retry"}}
			}
			w.WriteHeader(p.Status)
			name, data = "list", listData{Error: p.Detail, Page: Page{}, SignIn: p.Status == http.StatusUnauthorized}
		}
		if name == "" {
			return // redirected
		}
		tmpl := "layout"
		if strings.HasSuffix(r.URL.Path, "/fragment") {
			tmpl = "content"
		}
		var buf bytes.Buffer
		if err := u.pages[name].ExecuteTemplate(&buf, tmpl, data); err != nil {
			u.s.log.Error("render", "page", name, "err", err)
			http.Error(w, "render failed", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:")
		_, _ = buf.WriteTo(w)
	}
}

func (u *ui) index(w http.ResponseWriter, r *http.Request) (string, any, error) {
	v, err := u.visitor(w, r)
	if err != nil {
		return "", nil, err
	}
	return "index", struct{ SignOut bool }{v.session}, nil
}

type listData struct {
	Error   string
	SignIn  bool // offer the sign-in form
	SignOut bool // offer the sign-out button (every page's data has it)
	Query   Query
	Page    Page
	Counts  map[string]int
}

func (u *ui) list(w http.ResponseWriter, r *http.Request) (string, any, error) {
	v, err := u.visitor(w, r)
	if err != nil {
		return "", nil, err
	}
	if err := u.s.allowed(w, v.role, reader); err != nil {
		return "", nil, err
	}
	q, err := parseQuery(r)
	if err != nil {
		return "", nil, err
	}
	page, err := u.s.store.List(q)
	if errors.Is(err, ErrBadCursor) {
		return "", nil, problem(http.StatusBadRequest, "%v", err)
	}
	return "list", listData{Query: q, Page: page, SignOut: v.session}, err
}

type checkoutData struct {
	Checkout
	DAG       dag
	Waterfall []bar
	Events    []Event
	// ThreeDS is the PaymentIntent waiting for 3-D Secure, when the demo can play the
	// customer on the emulator.
	ThreeDS string
	Message string
	// SignedOut: the page shows no customer and no events (they hold addresses).
	SignedOut bool
	SignOut   bool
	// Redrive: an admin may re-drive the failed steps of this completed checkout (CSRF
	// goes with the form); Admin: and its dead letters.
	Redrive, Admin bool
	CSRF           string
	// Trace is the checkout's trace in the trace UI (Config.TraceURL), when one is configured.
	Trace string
}

func (u *ui) checkout(w http.ResponseWriter, r *http.Request) (string, any, error) {
	v, err := u.visitor(w, r)
	if err != nil {
		return "", nil, err
	}
	id := r.PathValue("id")
	c, err := u.s.checkout(id)
	if err != nil {
		return "", nil, err
	}
	d := checkoutData{Checkout: visible(c, v.role), DAG: layoutDAG(c.Steps), Waterfall: waterfall(c), Message: notice(r),
		SignedOut: v.role < reader, SignOut: v.session, Trace: u.s.traceLink(id)}
	if !d.SignedOut {
		if d.Events, err = u.s.store.Events(id); err != nil {
			return "", nil, err
		}
	}
	if u.s.cfg.Emulator != nil {
		d.ThreeDS = awaitingAuthentication(c)
	}
	if v.role == admin {
		d.Admin, d.Redrive, d.CSRF = true, redrivable(c), v.csrf
	}
	return "checkout", d, nil
}

// redrivable: a failed checkout not retried yet, or a completed one with a failed step
// after its order and none running.
func redrivable(c Checkout) bool {
	if c.Status == StatusFailed {
		return c.RetriedAs == ""
	}
	if c.Status != StatusCompleted || len(c.Warnings) == 0 {
		return false
	}
	return !slices.ContainsFunc(c.Steps, func(s StepView) bool { return s.State == StepRunning || s.State == StepWaiting })
}

// redrive re-drives a checkout from its run page (admin); a refusal is shown there.
func (u *ui) redrive(w http.ResponseWriter, r *http.Request) (string, any, error) {
	return u.redriveFrom(w, r, func(id string, why RedriveBody) (string, error) {
		reply, err := u.s.redrive(r.Context(), id, why)
		if reply.NewCheckoutID != "" {
			return "retried", err
		}
		return "redriven", err
	})
}

// redriveLetter re-drives one of a checkout's dead letters from its run page (admin).
func (u *ui) redriveLetter(w http.ResponseWriter, r *http.Request) (string, any, error) {
	return u.redriveFrom(w, r, func(_ string, why RedriveBody) (string, error) {
		_, err := u.s.redriveLetter(r.Context(), r.PathValue("service"), r.PathValue("seq"), why)
		return "letter", err
	})
}

// redriveFrom runs a re-drive posted from a checkout's run page, then shows the page again
// with the re-drive's notice, or with the refusal (never from a URL).
func (u *ui) redriveFrom(w http.ResponseWriter, r *http.Request, redrive func(id string, why RedriveBody) (notice string, err error)) (string, any, error) {
	if err := u.adminForm(w, r, "the run page (no valid CSRF token); open the checkout again"); err != nil {
		return "", nil, err
	}
	id := r.PathValue("id")
	done, err := redrive(id, RedriveBody{By: "admin (run UI)", Reason: r.FormValue("reason")})
	if err != nil {
		var p *problemError
		if !errors.As(err, &p) {
			return "", nil, err
		}
		name, data, err := u.checkout(w, r)
		if d, ok := data.(checkoutData); ok {
			d.Message = p.Detail
			data = d
		}
		return name, data, err
	}
	http.Redirect(w, r, "/ui/checkouts/"+url.PathEscape(id)+"?notice="+done, http.StatusSeeOther)
	return "", nil, nil
}

// awaitingAuthentication is the PaymentIntent of checkout c that waits for 3-D Secure, as
// the payment step reported it; "" when none does.
func awaitingAuthentication(c Checkout) string {
	for _, s := range c.Steps {
		if s.Name == events.StepProcessPayment && s.State == StepWaiting && s.Waiting != nil && strings.HasPrefix(s.Waiting.Reference, "pi_") {
			return s.Waiting.Reference
		}
	}
	return ""
}

// authenticate plays the customer on the emulator's 3-D Secure page, for the intent this
// checkout's payment step waits on: the intent comes from the checkout's own events, never
// from the form, and the emulator checks that the intent is this checkout's.
func (u *ui) authenticate(w http.ResponseWriter, r *http.Request) (string, any, error) {
	id := r.PathValue("id")
	c, err := u.s.checkout(id)
	if err != nil {
		return "", nil, err
	}
	emu := u.s.cfg.Emulator
	result := r.FormValue("result")
	if result != "complete" && result != "fail" {
		return "", nil, problem(http.StatusBadRequest, "result must be complete or fail")
	}
	pi := awaitingAuthentication(c)
	if pi == "" {
		return "", nil, problem(http.StatusConflict, "checkout %s waits for no 3-D Secure", id)
	}
	if named := r.FormValue("payment_intent"); named != "" && named != pi {
		return "", nil, problem(http.StatusForbidden, "that PaymentIntent is not the payment of checkout %s", id)
	}
	body, _ := json.Marshal(map[string]string{"result": result, "checkout_id": id})
	ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, emu.URL+"/_emulator/payment_intents/"+url.PathEscape(pi)+"/authenticate", bytes.NewReader(body))
	if err != nil {
		return "", nil, err
	}
	req.Header.Set("Authorization", "Bearer "+emu.Key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", nil, problem(http.StatusBadGateway, "the Stripe emulator did not answer: %v", err)
	}
	resp.Body.Close()
	code := "3ds-completed"
	if result == "fail" {
		code = "3ds-failed"
	}
	if resp.StatusCode >= 300 {
		u.s.log.Warn("the emulator refused 3-D Secure", "checkout_id", id, "status", resp.Status)
		code = "3ds-refused"
	}
	http.Redirect(w, r, "/ui/checkouts/"+id+"?notice="+code, http.StatusSeeOther)
	return "", nil, nil
}

type reviewsData struct {
	Admin    bool
	Enabled  bool
	Reviews  any
	Message  string
	Reviewer string
	CSRF     string // the decision forms' token
	SignOut  bool
}

func (u *ui) reviews(w http.ResponseWriter, r *http.Request) (string, any, error) {
	return u.reviewsPage(w, r, notice(r))
}

// reviewsPage is the review queue with message, the server's own words.
func (u *ui) reviewsPage(w http.ResponseWriter, r *http.Request, message string) (string, any, error) {
	v, err := u.visitor(w, r)
	if err != nil {
		return "", nil, err
	}
	d := reviewsData{Enabled: u.s.cfg.AdminToken != "", Admin: v.role == admin, Message: message, Reviewer: "operator", SignOut: v.session}
	if d.Admin {
		d.CSRF = v.csrf
		reviews, err := u.s.reviews(r.Context())
		if err != nil {
			return "", nil, err
		}
		d.Reviews = reviews
	}
	return "reviews", d, nil
}

type subscriptionsData struct {
	Subscriptions []events.Subscription
	SignIn        bool // not signed in: the page asks for a token
	SignOut       bool
	// Admin: pause, resume and cancel buttons (CSRF goes with the forms).
	Admin   bool
	CSRF    string
	Message string
}

// subscriptions lists every subscription with its periods, each linked to its checkout
// (reader); an admin may pause, resume or cancel each.
func (u *ui) subscriptions(w http.ResponseWriter, r *http.Request) (string, any, error) {
	return u.subscriptionsPage(w, r, notice(r))
}

// subscriptionsPage is the subscriptions page with message, the server's own words.
func (u *ui) subscriptionsPage(w http.ResponseWriter, r *http.Request, message string) (string, any, error) {
	v, err := u.visitor(w, r)
	if err != nil {
		return "", nil, err
	}
	d := subscriptionsData{SignOut: v.session, Message: message}
	if u.s.allowed(w, v.role, reader) != nil {
		d.SignIn = true
		return "subscriptions", d, nil
	}
	if v.role == admin {
		d.Admin, d.CSRF = true, v.csrf
	}
	if err := u.s.call(r.Context(), events.SubscriptionsList, nil, &d.Subscriptions); err != nil {
		return "", nil, err
	}
	return "subscriptions", d, nil
}

// subscriptionActions are the subscriptions page's buttons: the request each sends, and the
// notice of its success.
var subscriptionActions = map[string]struct {
	subject events.Subject
	notice  string
}{
	"pause": {events.SubscriptionsPause, "paused"}, "resume": {events.SubscriptionsResume, "resumed"},
	"cancel": {events.SubscriptionsCancel, "cancelled"},
}

// changeSubscription pauses, resumes or cancels a subscription from its page (admin).
func (u *ui) changeSubscription(w http.ResponseWriter, r *http.Request) (string, any, error) {
	if err := u.adminForm(w, r, "the subscriptions page (no valid CSRF token); open it again"); err != nil {
		return "", nil, err
	}
	action, ok := subscriptionActions[r.PathValue("action")]
	id := r.PathValue("id")
	if !ok || !events.ValidSubscriptionID(id) {
		return "", nil, problem(http.StatusNotFound, "no such subscription action")
	}
	ref := events.SubscriptionRef{ID: id}
	if action.subject == events.SubscriptionsCancel {
		ref.Reason = "cancelled by an operator in the run UI"
	}
	var sub events.Subscription
	if err := u.s.call(r.Context(), action.subject, ref, &sub); err != nil {
		var p *problemError
		if !errors.As(err, &p) {
			return "", nil, err
		}
		return u.subscriptionsPage(w, r, id+": "+p.Detail) // shown in answer to the post, never from a URL
	}
	http.Redirect(w, r, "/ui/subscriptions?notice="+action.notice, http.StatusSeeOther)
	return "", nil, nil
}

// login signs in with the admin or the reader token: once it is known to be one of them,
// a session starts and the cookie holds the session's ID. A wrong token counts against the
// client (RateWrongToken).
func (u *ui) login(w http.ResponseWriter, r *http.Request) (string, any, error) {
	who, err := u.s.tokenRole(w, r, r.FormValue("token"))
	if err != nil {
		return "", nil, err
	}
	if who == anonymous {
		return "", nil, problem(http.StatusUnauthorized, "that is neither the admin nor the reader token")
	}
	u.setSession(w, r, u.s.sessions.start(who, time.Now()), int(sessionTTL.Seconds()))
	next := r.FormValue("next")
	if !strings.HasPrefix(next, "/ui/") || strings.ContainsAny(next, "\\\r\n") || strings.HasPrefix(next, "/ui//") {
		next = "/ui/" // only back into the UI, never to another site
	}
	http.Redirect(w, r, next, http.StatusSeeOther)
	return "", nil, nil
}

// logout ends the request's session and clears its cookie.
func (u *ui) logout(w http.ResponseWriter, r *http.Request) (string, any, error) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		u.s.sessions.end(c.Value)
	}
	u.setSession(w, r, "", -1)
	http.Redirect(w, r, "/ui/", http.StatusSeeOther)
	return "", nil, nil
}

// setSession sets the session cookie to id for maxAge seconds (negative: clears it).
func (u *ui) setSession(w http.ResponseWriter, r *http.Request, id string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: id, Path: "/ui/", MaxAge: maxAge,
		HttpOnly: true, Secure: overTLS(r, u.s.cfg.TrustedProxies), SameSite: http.SameSiteStrictMode})
}

// adminForm checks that a form is posted by an admin, from a page of this UI (its CSRF
// token); from says which page, for the refusal.
func (u *ui) adminForm(w http.ResponseWriter, r *http.Request, from string) error {
	v, err := u.visitor(w, r)
	if err != nil {
		return err
	}
	if v.role != admin {
		return problem(http.StatusUnauthorized, "sign in with the admin token first")
	}
	if subtle.ConstantTimeCompare([]byte(r.FormValue("csrf")), []byte(v.csrf)) != 1 {
		return problem(http.StatusForbidden, "this form is not from %s", from)
	}
	return nil
}

func (u *ui) decide(w http.ResponseWriter, r *http.Request) (string, any, error) {
	if err := u.adminForm(w, r, "the review page (no valid CSRF token); open the review queue again"); err != nil {
		return "", nil, err
	}
	id := r.PathValue("id")
	d := events.ReviewDecision{Decision: r.FormValue("decision"), Reviewer: r.FormValue("reviewer"), Note: r.FormValue("note")}
	if _, err := u.s.decide(r.Context(), id, d); err != nil {
		var p *problemError
		if !errors.As(err, &p) {
			return "", nil, err
		}
		return u.reviewsPage(w, r, id+": "+p.Detail) // shown in answer to the post, never from a URL
	}
	code := "approved"
	if d.Decision == events.ReviewDeny {
		code = "denied"
	}
	http.Redirect(w, r, "/ui/reviews?notice="+code, http.StatusSeeOther)
	return "", nil, nil
}

// Cards the demo store offers, and what each shows.
var demoCards = []struct{ Value, Label, Note string }{
	{"visa", "Visa 4242", "succeeds (pm_card_visa)"},
	{"declined", "Declined card", "declined by the bank (pm_card_chargeDeclined)"},
	{"3ds", "3-D Secure card", "the bank asks the customer to authenticate (pm_card_authenticationRequired)"},
	{"review", "Held for review", "succeeds, but fraud holds it for an operator (email at review.test)"},
}

type storeData struct {
	Products []events.ListedProduct
	Cards    any
	Email    string
	Coupon   string
	Key      string
	Error    string
	SignOut  bool
}

func (u *ui) store(w http.ResponseWriter, r *http.Request) (string, any, error) {
	v, err := u.visitor(w, r)
	if err != nil {
		return "", nil, err
	}
	products, err := u.s.products(r.Context())
	if err != nil {
		return "", nil, err
	}
	return "store", storeData{Products: products, Cards: demoCards, Email: "ada@example.com", Key: randomKey(), SignOut: v.session}, nil
}

// stockLabel says what the store can sell of a product: available is the inventory's
// count, nil when it did not answer in time.
func stockLabel(available *int) string {
	switch {
	case available == nil:
		return "stock unknown"
	case *available == 0:
		return "sold out"
	}
	return strconv.Itoa(*available) + " in stock"
}

// demoAddress is where the demo store ships.
var demoAddress = events.Address{Name: "Ada Lovelace", Line1: "1 Market St", City: "San Francisco", State: "CA", PostalCode: "94105", Country: "US"}

// placeOrder makes a cart of the chosen products and checks it out, as an app would with
// POST /carts and POST /checkout/process; the form's key makes a double submit one order.
func (u *ui) placeOrder(w http.ResponseWriter, r *http.Request) (string, any, error) {
	if err := r.ParseForm(); err != nil {
		return "", nil, problem(http.StatusBadRequest, "bad form: %v", err)
	}
	if key := r.FormValue("key"); key != "" {
		// Submitted twice: the first submission's checkout is the order.
		if _, seen, err := u.s.store.Accepted(idempotentID(key)); err == nil && seen {
			http.Redirect(w, r, "/ui/checkouts/"+idempotentID(key), http.StatusSeeOther)
			return "", nil, nil
		}
	}
	products, err := u.s.products(r.Context())
	if err != nil {
		return "", nil, err
	}
	again := storeData{Products: products, Cards: demoCards, Email: r.FormValue("email"), Coupon: strings.TrimSpace(r.FormValue("coupon")), Key: randomKey()}
	var items []events.CartItem
	for _, p := range products {
		if n, _ := strconv.Atoi(r.FormValue("qty_" + p.ID)); n > 0 {
			items = append(items, events.CartItem{ProductID: p.ID, Quantity: n})
		}
	}
	email, pm := strings.TrimSpace(r.FormValue("email")), "pm_card_visa"
	switch r.FormValue("card") {
	case "declined":
		pm = "pm_card_chargeDeclined"
	case "3ds":
		pm = "pm_card_authenticationRequired"
	case "review":
		local, _, _ := strings.Cut(email, "@")
		email = local + "@review.test"
	}
	if len(items) == 0 {
		again.Error = "Pick at least one product."
		return "store", again, nil
	}
	if err := u.s.limitClient(w, r); err != nil {
		return again.refused(err)
	}
	if err := u.s.limitEmail(w, email); err != nil {
		return again.refused(err)
	}
	customer := "cus_" + strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, strings.ToLower(email))
	var cart events.Cart
	if err := u.s.call(r.Context(), events.CartsCreate, events.CreateCart{CustomerID: customer, Currency: "USD", Items: items}, &cart); err != nil {
		return again.refused(err)
	}
	answer, _, err := u.s.submit(r.Context(), events.CheckoutRequest{CartID: cart.ID, CustomerID: customer, CustomerEmail: email,
		PaymentMethodID: pm, ShippingAddress: demoAddress, BillingAddress: demoAddress, CouponCode: again.Coupon}, r.FormValue("key"))
	if err != nil {
		return again.refused(err)
	}
	http.Redirect(w, r, "/ui/checkouts/"+answer.CheckoutID, http.StatusSeeOther)
	return "", nil, nil
}

// refused shows the store again with what the customer must change, for a request that
// was refused; other errors are the error page's.
func (d storeData) refused(err error) (string, any, error) {
	var p *problemError
	if errors.As(err, &p) && p.Status < 500 {
		d.Error = p.Detail
		return "store", d, nil
	}
	return "", nil, err
}

func randomKey() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}

func prettyJSON(raw json.RawMessage) string {
	var buf bytes.Buffer
	if json.Indent(&buf, raw, "", "  ") != nil {
		return string(raw)
	}
	return buf.String()
}
