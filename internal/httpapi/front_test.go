package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/httpapi"
	"github.com/jetcheckout/jetcheckout/services/fraud"
	"github.com/nats-io/nats.go/jetstream"
)

// These tests try the front door as an attacker (or an unlucky client) would.

// answer is one HTTP answer.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// TestIdempotencyKeyRaceHasOneWinner: requests racing with one Idempotency-Key and two
// different bodies both got 202 (the check and the publish were two steps), and the read
// model then showed the cart that did not run. Now the stream picks one request: every
// copy of it gets 202 for the same checkout, every copy of the other 422, and the
// checkout that runs is the winner's.
func TestIdempotencyKeyRaceHasOneWinner(t *testing.T) {
	e := start(t)
	for round := range 3 {
		carts := []events.Cart{e.cart(t, events.CartItem{ProductID: "tee-jetstream", Quantity: 1}), e.cart(t, events.CartItem{ProductID: "mug-nats", Quantity: 1})}
		key := fmt.Sprintf("race-%d", round)
		answers := make([]answer, 6) // bodies A, B, A, B, A, B
		var wg sync.WaitGroup
		ready := make(chan struct{})
		for i := range answers {
			wg.Go(func() {
				<-ready
				status, hdr, raw := e.do(t, "POST", "/checkout/process", request(carts[i%2].ID, "ada@example.com", "pm_card_visa"), "Idempotency-Key", key)
				answers[i] = answer{status, hdr, raw}
			})
		}
		close(ready)
		wg.Wait()
		winners := map[string]string{} // cart → checkout
		for i, a := range answers {
			switch a.status {
			case http.StatusAccepted:
				var got httpapi.Accepted202
				if err := json.Unmarshal(a.body, &got); err != nil {
					t.Fatal(err)
				}
				winners[carts[i%2].ID] = got.CheckoutID
			case http.StatusUnprocessableEntity:
			default:
				t.Fatalf("round %d request %d: %d %s", round, i, a.status, a.body)
			}
		}
		if len(winners) != 1 {
			t.Fatalf("round %d: 202 for %d different requests with one key: %v", round, len(winners), answers)
		}
		for i, a := range answers {
			if _, won := winners[carts[i%2].ID]; won != (a.status == http.StatusAccepted) {
				t.Fatalf("round %d: request %d (cart %s) answered %d %s; winners %v", round, i, carts[i%2].ID, a.status, a.body, winners)
			}
		}
		for cart, id := range winners {
			c := e.ended(t, id)
			if c.CartID != cart || c.Status != httpapi.StatusCompleted {
				t.Errorf("round %d: checkout %s ran cart %s and %s, want the winner's %s completed", round, id, c.CartID, c.Status, cart)
			}
			// A retry after it ended says where it is now, not "accepted".
			again := ok[httpapi.Accepted202](t, e, http.StatusAccepted, "POST", "/checkout/process", request(cart, "ada@example.com", "pm_card_visa"), "Idempotency-Key", key)
			if again.CheckoutID != id || again.Status != httpapi.StatusCompleted {
				t.Errorf("round %d: retry answered %+v, want %s completed", round, again, id)
			}
		}
	}
}

// requested counts the checkout requests the stream holds.
func (e *env) requested(t *testing.T) uint64 {
	t.Helper()
	st, err := e.sys.JS.Stream(context.Background(), events.StreamCheckout)
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(context.Background(), jetstream.WithSubjectFilter(string(events.Requested)))
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Subjects[string(events.Requested)]
}

// limited checks a 429: Retry-After in seconds, a problem saying why.
func limited(t *testing.T, status int, hdr http.Header, raw []byte, why string) {
	t.Helper()
	var p httpapi.Problem
	_ = json.Unmarshal(raw, &p)
	if retry, err := strconv.Atoi(hdr.Get("Retry-After")); status != http.StatusTooManyRequests || err != nil || retry < 1 ||
		hdr.Get("Content-Type") != "application/problem+json" || !strings.Contains(p.Detail, why) {
		t.Fatalf("over the limit: %d %v %s, want 429 with Retry-After and a problem about the %s", status, hdr, raw, why)
	}
}

// TestCheckoutRateLimits: 2,000 unauthenticated checkouts in 34 s sent 2,000 emails. Now a
// client, and a customer email, gets so many checkouts, then a 429 with Retry-After, and
// nothing is published for a refused request.
func TestCheckoutRateLimits(t *testing.T) {
	t.Run("client", func(t *testing.T) {
		e := start(t, func(c *httpapi.Config) { c.RateClient = httpapi.Rate{N: 3, Per: time.Hour} })
		for i := range 3 {
			ok[httpapi.Accepted202](t, e, http.StatusAccepted, "POST", "/checkout/process", request(fmt.Sprintf("cart_%d", i), fmt.Sprintf("c%d@example.com", i), "pm_card_visa"))
		}
		before := e.requested(t)
		// Another address in X-Forwarded-For changes nothing: no proxy is trusted.
		status, hdr, raw := e.do(t, "POST", "/checkout/process", request("cart_x", "x@example.com", "pm_card_visa"), "X-Forwarded-For", "192.0.2.7")
		limited(t, status, hdr, raw, "client")
		if after := e.requested(t); after != before || before != 3 {
			t.Errorf("checkout requests in the stream: %d before the refused one, %d after; want 3 and 3", before, after)
		}
	})
	t.Run("email", func(t *testing.T) {
		e := start(t, func(c *httpapi.Config) { c.RateEmail = httpapi.Rate{N: 2, Per: time.Hour} })
		ok[httpapi.Accepted202](t, e, http.StatusAccepted, "POST", "/checkout/process", request("cart_1", "victim@example.com", "pm_card_visa"))
		ok[httpapi.Accepted202](t, e, http.StatusAccepted, "POST", "/checkout/process", request("cart_2", "victim@example.com", "pm_card_visa"))
		status, hdr, raw := e.do(t, "POST", "/checkout/process", request("cart_3", "Victim@Example.COM", "pm_card_visa"))
		limited(t, status, hdr, raw, "customer email")
		// A +tag is the same mailbox: it gets no budget of its own.
		status, hdr, raw = e.do(t, "POST", "/checkout/process", request("cart_5", "victim+2@example.com", "pm_card_visa"))
		limited(t, status, hdr, raw, "customer email")
		if n := e.requested(t); n != 2 {
			t.Errorf("%d checkout requests in the stream, want 2", n)
		}
		ok[httpapi.Accepted202](t, e, http.StatusAccepted, "POST", "/checkout/process", request("cart_4", "other@example.com", "pm_card_visa"))
	})
}

// signIn posts the UI's sign-in form (with header) and returns its answer and the cookie it
// set (nil when none), without following the redirect.
func (e *env) signIn(t *testing.T, token string, header ...string) (*http.Response, *http.Cookie) {
	t.Helper()
	return e.postForm(t, "/ui/login", url.Values{"token": {token}, "next": {"/ui/reviews"}}, header...)
}

// postForm posts a UI form from the UI's own origin (with header) and returns its answer
// and the cookie it set (nil when none), without following a redirect.
func (e *env) postForm(t *testing.T, path string, form url.Values, header ...string) (*http.Response, *http.Cookie) {
	t.Helper()
	req, _ := http.NewRequest("POST", e.base+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", e.base)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if cs := resp.Cookies(); len(cs) > 0 {
		return resp, cs[0]
	}
	return resp, nil
}

// TestPersonalDataNeedsAToken: GET /checkouts, a checkout's events and the UI showed every
// customer's email and addresses to anyone. Now they need the reader or admin token; a
// checkout's status URL still answers anyone, without who the customer is.
func TestPersonalDataNeedsAToken(t *testing.T) {
	const readerToken = "test-reader-token"
	e := start(t, func(c *httpapi.Config) { c.ReaderToken = readerToken })
	cart := e.cart(t, events.CartItem{ProductID: "stickers", Quantity: 1})
	a := ok[httpapi.Accepted202](t, e, http.StatusAccepted, "POST", "/checkout/process", request(cart.ID, "ada@example.com", "pm_card_visa"))
	e.ended(t, a.CheckoutID)
	personal := []string{"ada@example.com", "cus_ada", "1 Market St"}
	leaks := func(raw []byte) []string {
		var found []string
		for _, p := range personal {
			if strings.Contains(string(raw), p) {
				found = append(found, p)
			}
		}
		return found
	}
	reader := []string{"Authorization", "Bearer " + readerToken}
	_, cookie := e.signIn(t, readerToken)
	if cookie == nil || cookie.Value == "" {
		t.Fatal("signing in with the reader token set no cookie")
	}
	withCookie := []string{"Cookie", cookie.String()}
	for _, c := range []struct {
		path      string
		anonymous int      // the status without a token
		shows     []string // what the token shows
	}{
		{"/checkouts", http.StatusUnauthorized, personal[:2]},
		{"/checkouts/" + a.CheckoutID + "/events", http.StatusUnauthorized, personal},
		{"/checkouts/" + a.CheckoutID, http.StatusOK, personal[:2]},
		{"/checkouts/" + a.CheckoutID + "/stream", http.StatusOK, personal[:2]},
		{"/ui/", http.StatusUnauthorized, personal[:2]},
		{"/ui/checkouts/" + a.CheckoutID, http.StatusOK, personal},
	} {
		status, _, raw := e.do(t, "GET", c.path, nil)
		if status != c.anonymous || len(leaks(raw)) > 0 {
			t.Errorf("anonymous GET %s: %d showing %v, want %d showing none", c.path, status, leaks(raw), c.anonymous)
		}
		header := reader
		if strings.HasPrefix(c.path, "/ui/") {
			header = withCookie
		}
		status, _, raw = e.do(t, "GET", c.path, nil, header...)
		if status != http.StatusOK || len(leaks(raw)) < len(c.shows) {
			t.Errorf("GET %s with the reader token: %d showing %v, want 200 showing %v", c.path, status, leaks(raw), c.shows)
		}
	}
	// The status URL of the 202 still tells its customer how it went.
	if c := ok[httpapi.Checkout](t, e, http.StatusOK, "GET", a.StatusURL, nil); c.Status != httpapi.StatusCompleted || c.CartID != cart.ID {
		t.Errorf("anonymous status URL: %+v", c)
	}
	// Reading is all the reader token does.
	if status, _, _ := e.do(t, "GET", "/reviews", nil, reader...); status != http.StatusUnauthorized {
		t.Errorf("GET /reviews with the reader token: %d, want 401", status)
	}
}

// TestUIFormsRefuseOtherOrigins: the review form, signed in by cookie, took a post from any
// page, and /ui/login stored any value as the cookie. Now sign-in checks the token before
// setting a cookie, a form from another origin is refused, a form without the page's CSRF
// token is refused, the JSON API ignores the cookie, and the review stays pending through
// all of it; the review page's own form still decides.
func TestUIFormsRefuseOtherOrigins(t *testing.T) {
	e := start(t)
	cart := e.cart(t, events.CartItem{ProductID: "keyboard-bbolt", Quantity: 1})
	a := ok[httpapi.Accepted202](t, e, http.StatusAccepted, "POST", "/checkout/process", request(cart.ID, "eve@review.test", "pm_card_visa"))
	e.until(t, a.CheckoutID, "held for review", func(c httpapi.Checkout) bool { return c.Status == httpapi.StatusWaiting })

	if resp, cookie := e.signIn(t, "guessed-token"); cookie != nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("sign-in with a wrong token: %d, cookie %v", resp.StatusCode, cookie)
	}
	_, cookie := e.signIn(t, adminToken)
	if cookie == nil || cookie.Value == "" {
		t.Fatal("sign-in with the admin token set no cookie")
	}
	jar := []string{"Cookie", cookie.String()}
	_, _, page := e.do(t, "GET", "/ui/reviews", nil, jar...)
	m := regexp.MustCompile(`name="csrf" value="([0-9a-f]{64})"`).FindSubmatch(page)
	if m == nil {
		t.Fatalf("the review page has no CSRF token:\n%s", page)
	}
	var after []byte // the page after the last approve
	approve := func(csrf string, header ...string) int {
		form := url.Values{"decision": {"approve"}, "reviewer": {"mallory"}, "csrf": {csrf}}.Encode()
		status, _, page := e.do(t, "POST", "/ui/reviews/"+a.CheckoutID, form, append(append([]string{"Content-Type", "application/x-www-form-urlencoded"}, jar...), header...)...)
		after = page
		return status
	}
	for name, status := range map[string]int{
		"another origin":            approve(string(m[1]), "Origin", "http://evil.example"),
		"another site (fetch meta)": approve(string(m[1]), "Sec-Fetch-Site", "cross-site"),
		"no CSRF token":             approve("", "Origin", e.base),
		"a wrong CSRF token":        approve(strings.Repeat("0", 64), "Origin", e.base),
	} {
		if status != http.StatusForbidden {
			t.Errorf("approve from %s: %d, want 403", name, status)
		}
	}
	// A text/plain form can post JSON to the API: the cookie does not sign it in there.
	status, _, _ := e.do(t, "POST", "/checkouts/"+a.CheckoutID+"/review", `{"decision":"approve","reviewer":"mallory"}`,
		append([]string{"Content-Type", "text/plain"}, jar...)...)
	if status != http.StatusUnauthorized {
		t.Errorf("JSON review with the cookie alone: %d, want 401", status)
	}
	reviews := ok[struct{ Reviews []fraud.Review }](t, e, http.StatusOK, "GET", "/reviews", nil, asAdmin...).Reviews
	if len(reviews) != 1 || reviews[0].CheckoutID != a.CheckoutID {
		t.Fatalf("reviews after the refused posts: %+v, want %s still pending", reviews, a.CheckoutID)
	}
	if order, found, _ := e.sys.Orders.OrderByCheckout(a.CheckoutID); found {
		t.Fatalf("an order was made: %+v", order)
	}
	if status := approve(string(m[1]), "Origin", e.base); status != http.StatusOK || !strings.Contains(string(after), "Approved: the checkout goes on.") {
		t.Fatalf("approve from the review page: %d, want 200 (after its redirect to the queue) saying it was approved:\n%s", status, after)
	}
	if c := e.ended(t, a.CheckoutID); c.Status != httpapi.StatusCompleted {
		t.Errorf("approved checkout ended %s", c.Status)
	}
}

// TestThreeDSButtonActsOnItsOwnCheckout: the demo's 3-D Secure button completed whatever
// PaymentIntent the form named. Now checkout A's button refuses B's intent (B's stays
// requires_action), the emulator refuses an intent of another checkout, and without the
// embedded emulator the button does not exist.
func TestThreeDSButtonActsOnItsOwnCheckout(t *testing.T) {
	e := start(t)
	waiting := map[string]string{} // checkout → its intent
	var ids []string
	for range 2 {
		cart := e.cart(t, events.CartItem{ProductID: "mug-nats", Quantity: 1})
		a := ok[httpapi.Accepted202](t, e, http.StatusAccepted, "POST", "/checkout/process", request(cart.ID, "ada@example.com", "pm_card_authenticationRequired"))
		e.until(t, a.CheckoutID, "waiting for 3-D Secure", func(c httpapi.Checkout) bool { return c.Status == httpapi.StatusWaiting })
		pis := intents(e.sys, a.CheckoutID)
		if len(pis) != 1 || pis[0].Status != "requires_action" {
			t.Fatalf("intents of %s: %+v", a.CheckoutID, pis)
		}
		waiting[a.CheckoutID] = pis[0].ID
		ids = append(ids, a.CheckoutID)
	}
	a, b := ids[0], ids[1]
	form := url.Values{"payment_intent": {waiting[b]}, "result": {"complete"}}.Encode()
	status, _, _ := e.do(t, "POST", "/ui/checkouts/"+a+"/3ds", form, "Content-Type", "application/x-www-form-urlencoded", "Origin", e.base)
	if status != http.StatusForbidden {
		t.Errorf("A's button with B's intent: %d, want 403", status)
	}
	// The emulator itself: B's intent named as A's.
	body := `{"result":"complete","checkout_id":"` + a + `"}`
	req, _ := http.NewRequest("POST", e.sys.StripeURL+"/_emulator/payment_intents/"+waiting[b]+"/authenticate", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer sk_test_jetcheckout_emulator")
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("emulator: B's intent authenticated for A: %d, want 404", resp.StatusCode)
	}
	for _, id := range ids {
		if pis := intents(e.sys, id); pis[0].Status != "requires_action" {
			t.Errorf("intent of %s is %s after the refused attempts, want requires_action", id, pis[0].Status)
		}
	}
	// A's own button (no intent in the form) completes A, and only A.
	status, _, page := e.do(t, "POST", "/ui/checkouts/"+a+"/3ds", "result=complete", "Content-Type", "application/x-www-form-urlencoded", "Origin", e.base)
	if status != http.StatusOK || !strings.Contains(string(page), "3-D Secure completed") {
		t.Fatalf("A's own button: %d, want 200 (after its redirect to the run page) saying 3-D Secure completed", status)
	}
	if c := e.ended(t, a); c.Status != httpapi.StatusCompleted {
		t.Errorf("A ended %s", c.Status)
	}
	if pis := intents(e.sys, b); pis[0].Status != "requires_action" {
		t.Errorf("B's intent is %s, want requires_action", pis[0].Status)
	}

	t.Run("no emulator", func(t *testing.T) {
		e := start(t, func(c *httpapi.Config) { c.Emulator = nil })
		status, _, _ := e.do(t, "POST", "/ui/checkouts/"+a+"/3ds", "result=complete", "Content-Type", "application/x-www-form-urlencoded")
		if status != http.StatusNotFound {
			t.Errorf("the 3-D Secure button without the emulator: %d, want 404", status)
		}
	})
}

// TestUIShowsNoTextFromTheURL: the review queue and the run page showed whatever
// ?message= said, so a link could put "call this number" on the shop's own page. Now a
// page shows only the notices of a fixed set of codes; any other text in its URL is not
// on the page.
func TestUIShowsNoTextFromTheURL(t *testing.T) {
	e := start(t)
	cart := e.cart(t, events.CartItem{ProductID: "stickers", Quantity: 1})
	a := ok[httpapi.Accepted202](t, e, http.StatusAccepted, "POST", "/checkout/process", request(cart.ID, "ada@example.com", "pm_card_visa"))
	e.ended(t, a.CheckoutID)
	const phish = "Your payment failed. Call 0800 555 0199 to keep your order"
	lure := url.Values{"message": {phish}, "notice": {phish}, "msg": {phish}, "error": {phish}}.Encode()
	for _, path := range []string{"/ui/reviews", "/ui/checkouts/" + a.CheckoutID, "/ui/checkouts/" + a.CheckoutID + "/fragment", "/ui/store", "/ui/"} {
		for _, header := range [][]string{nil, asAdmin} {
			status, _, page := e.do(t, "GET", path+"?"+lure, nil, header...)
			if strings.Contains(string(page), "0800 555 0199") {
				t.Errorf("GET %s?%s (signed in: %v): %d showing the URL's text", path, lure, header != nil, status)
			}
		}
	}
	// A known code shows its own text.
	if _, _, page := e.do(t, "GET", "/ui/checkouts/"+a.CheckoutID+"?notice=3ds-refused", nil); !strings.Contains(string(page), "refused the 3-D Secure answer") {
		t.Error("the run page does not show the notice of a known code")
	}
}

// TestSignInCookieIsNotTheToken: the UI's sign-in cookie held the admin token itself, so
// a copied cookie was the token for good. Now it holds the ID of a session the server
// keeps (HttpOnly, SameSite=Strict, Secure over TLS): a forged or old-style cookie signs
// nobody in, and signing out ends the session on the server too.
func TestSignInCookieIsNotTheToken(t *testing.T) {
	e := start(t, func(c *httpapi.Config) { c.TrustedProxies, _ = httpapi.ParsePrefixes("127.0.0.1") })
	resp, cookie := e.signIn(t, adminToken)
	if resp.StatusCode != http.StatusSeeOther || cookie == nil || cookie.Name != "jetcheckout_session" {
		t.Fatalf("sign-in: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	for _, raw := range resp.Header.Values("Set-Cookie") {
		if strings.Contains(raw, adminToken) {
			t.Fatalf("the cookie holds the token: %s", raw)
		}
	}
	if !cookie.HttpOnly || cookie.SameSite != http.SameSiteStrictMode || cookie.Secure || cookie.MaxAge <= 0 {
		t.Errorf("cookie over plain HTTP: %s, want HttpOnly, SameSite=Strict, a Max-Age, not Secure", cookie)
	}
	// Through a TLS-terminating proxy the cookie is Secure.
	if _, c := e.signIn(t, adminToken, "X-Forwarded-Proto", "https"); c == nil || !c.Secure {
		t.Errorf("cookie behind a TLS proxy: %v, want Secure", c)
	}
	// Reader sign-ins are sessions too, each its own.
	if _, c := e.signIn(t, adminToken); c == nil || c.Value == cookie.Value {
		t.Error("a second sign-in got the first one's session")
	}

	reviews := func(cookie string) (int, bool) {
		status, _, page := e.do(t, "GET", "/ui/reviews", nil, "Cookie", cookie)
		return status, strings.Contains(string(page), "Nothing waits for a decision") // the empty queue, as the admin sees it
	}
	if status, admin := reviews("jetcheckout_session=" + cookie.Value); status != http.StatusOK || !admin {
		t.Fatalf("review queue with the session: %d, admin %v", status, admin)
	}
	if status, _, page := e.do(t, "GET", "/ui/", nil, "Cookie", "jetcheckout_session="+cookie.Value); status != http.StatusOK || !strings.Contains(string(page), `action="/ui/logout"`) {
		t.Errorf("list with the session: %d, or no sign-out button", status)
	}
	for _, forged := range []string{
		"jetcheckout_session=" + adminToken,
		"jetcheckout_token=" + adminToken, // the old cookie
		"jetcheckout_session=" + strings.Repeat("ab", 32),
		"jetcheckout_session=" + otherLast(cookie.Value),
	} {
		if _, admin := reviews(forged); admin {
			t.Errorf("%s signs in as admin", forged)
		}
		if status, _, _ := e.do(t, "GET", "/ui/", nil, "Cookie", forged); status != http.StatusUnauthorized {
			t.Errorf("list with %s: %d, want 401", forged, status)
		}
	}

	out, cleared := e.postForm(t, "/ui/logout", nil, "Cookie", "jetcheckout_session="+cookie.Value)
	if out.StatusCode != http.StatusSeeOther || cleared == nil || cleared.Name != "jetcheckout_session" || cleared.Value != "" || cleared.MaxAge >= 0 {
		t.Fatalf("sign-out: %d, cookie %v; want 303 clearing the cookie", out.StatusCode, cleared)
	}
	// A copy of the cookie kept from before is dead too.
	if status, admin := reviews("jetcheckout_session=" + cookie.Value); status != http.StatusOK || admin {
		t.Errorf("review queue with the signed-out session: %d, admin %v", status, admin)
	}
}

// TestWrongTokensAreLimited: nothing limited guessing the admin token, by the UI's sign-in
// or by bearer. Now a client gets so many wrong tokens (right ones do not count), then a
// 429 with Retry-After for every token, the right one too; other clients and sessions
// already signed in are not affected.
func TestWrongTokensAreLimited(t *testing.T) {
	e := start(t, func(c *httpapi.Config) {
		c.RateWrongToken = httpapi.Rate{N: 3, Per: time.Hour}
		c.TrustedProxies, _ = httpapi.ParsePrefixes("127.0.0.1") // X-Forwarded-For names other clients
	})
	for range 5 {
		ok[struct{}](t, e, http.StatusOK, "GET", "/reviews", nil, asAdmin...)
	}
	_, session := e.signIn(t, adminToken)
	for i := range 3 {
		if resp, c := e.signIn(t, fmt.Sprintf("guess-%d", i)); resp.StatusCode != http.StatusUnauthorized || c != nil {
			t.Fatalf("wrong token %d: %d, cookie %v; want 401", i, resp.StatusCode, c)
		}
	}
	for _, token := range []string{"guess-3", adminToken} {
		resp, c := e.signIn(t, token)
		if retry, err := strconv.Atoi(resp.Header.Get("Retry-After")); resp.StatusCode != http.StatusTooManyRequests || err != nil || retry < 1 || c != nil {
			t.Errorf("sign-in with %s over the limit: %d, Retry-After %q, cookie %v; want 429 with Retry-After and no cookie", token, resp.StatusCode, resp.Header.Get("Retry-After"), c)
		}
	}
	status, hdr, raw := e.do(t, "GET", "/reviews", nil, asAdmin...)
	limited(t, status, hdr, raw, "wrong tokens")
	// The status URL with the right token does not show the customer either.
	status, hdr, raw = e.do(t, "GET", "/checkouts/co_nothing", nil, asAdmin...)
	limited(t, status, hdr, raw, "wrong tokens")
	// A session signed in before is not a guess.
	if status, _, _ := e.do(t, "GET", "/ui/", nil, "Cookie", "jetcheckout_session="+session.Value); status != http.StatusOK {
		t.Errorf("earlier session: %d, want 200", status)
	}

	// Another client signs in; wrong bearer tokens count as sign-ins do.
	other := []string{"X-Forwarded-For", "192.0.2.9"}
	if resp, c := e.signIn(t, adminToken, other...); resp.StatusCode != http.StatusSeeOther || c == nil {
		t.Fatalf("another client's sign-in: %d, want 303 with a cookie", resp.StatusCode)
	}
	for i := range 3 {
		if status, _, _ := e.do(t, "GET", "/checkouts", nil, append([]string{"Authorization", "Bearer guess"}, other...)...); status != http.StatusUnauthorized {
			t.Fatalf("wrong bearer %d: %d, want 401", i, status)
		}
	}
	status, hdr, raw = e.do(t, "GET", "/checkouts", nil, append(append([]string{}, asAdmin...), other...)...)
	limited(t, status, hdr, raw, "wrong tokens")
}

// TestRootIsAnIndex: GET / answered 303 to /ui/, so a client that follows no redirects
// (curl without -L) saw a 31-byte body. Now / is a page of its own that links the UI and the API.
func TestRootIsAnIndex(t *testing.T) {
	e := start(t)
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := noRedirect.Get(e.base + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	page, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %s, want 200 text/html", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	for _, link := range []string{`href="/ui/"`, `href="/ui/store"`, `href="/ui/reviews"`, `href="/openapi.yaml"`, `href="/products"`} {
		if !bytes.Contains(page, []byte(link)) {
			t.Errorf("GET / links no %s", link)
		}
	}
	// Only the root: an unknown path is still the API's 404.
	if status, _, _ := e.do(t, "GET", "/nothing-here", nil); status != http.StatusNotFound {
		t.Errorf("GET /nothing-here: %d, want 404", status)
	}
}

// otherLast is s with its last character changed: a session ID one character off.
func otherLast(s string) string {
	last := "0"
	if strings.HasSuffix(s, "0") {
		last = "1"
	}
	return s[:len(s)-1] + last
}
