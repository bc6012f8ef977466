package stripeemu_test

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/internal/stripeemu"
	"github.com/stripe/stripe-go/v76"
	"github.com/stripe/stripe-go/v76/client"
)

const testKey = "sk_test_emulator"

type harness struct {
	emu    *stripeemu.Emulator
	url    string
	stripe *client.API
}

// start serves a fresh emulator over real HTTP and points a stripe-go client at it.
func start(t *testing.T, opts ...stripeemu.Option) *harness {
	t.Helper()
	emu := stripeemu.New(opts...)
	ts := httptest.NewServer(emu)
	t.Cleanup(ts.Close)
	t.Cleanup(emu.Close) // runs first: releases hanging requests so ts.Close returns
	return &harness{emu: emu, url: ts.URL, stripe: newClient(ts.URL, testKey, 0)}
}

func newClient(url, key string, timeout time.Duration) *client.API {
	backend := stripe.GetBackendWithConfig(stripe.APIBackend, &stripe.BackendConfig{
		URL:               stripe.String(url),
		HTTPClient:        &http.Client{Timeout: timeout},
		MaxNetworkRetries: stripe.Int64(0),
		LeveledLogger:     &stripe.LeveledLogger{Level: stripe.LevelNull},
	})
	return client.New(key, &stripe.Backends{API: backend, Connect: backend, Uploads: backend})
}

// card is a confirmed payment that disables redirects, as the payments service sends it.
func card(pm string, amount int64) *stripe.PaymentIntentParams {
	return &stripe.PaymentIntentParams{
		Amount:        stripe.Int64(amount),
		Currency:      stripe.String("usd"),
		PaymentMethod: stripe.String(pm),
		Confirm:       stripe.Bool(true),
		AutomaticPaymentMethods: &stripe.PaymentIntentAutomaticPaymentMethodsParams{
			Enabled: stripe.Bool(true), AllowRedirects: stripe.String("never"),
		},
		Metadata: map[string]string{"checkout_id": "co_1"},
	}
}

func withKey(p *stripe.PaymentIntentParams, key string) *stripe.PaymentIntentParams {
	p.SetIdempotencyKey(key)
	return p
}

func stripeError(t *testing.T, err error) *stripe.Error {
	t.Helper()
	var se *stripe.Error
	if !errors.As(err, &se) {
		t.Fatalf("want a *stripe.Error, got %v", err)
	}
	return se
}

func TestCardsThatSucceed(t *testing.T) {
	h := start(t)
	for _, pm := range []string{"pm_card_visa", "pm_card_mastercard", "pm_card_amex", "pm_card_visa_debit"} {
		t.Run(pm, func(t *testing.T) {
			pi, err := h.stripe.PaymentIntents.New(card(pm, 1234))
			if err != nil {
				t.Fatal(err)
			}
			if pi.Status != stripe.PaymentIntentStatusSucceeded || pi.AmountReceived != 1234 || pi.LatestCharge == nil || pi.LatestCharge.ID == "" {
				t.Fatalf("got status %s, received %d, charge %+v", pi.Status, pi.AmountReceived, pi.LatestCharge)
			}
			if pi.Metadata["checkout_id"] != "co_1" || pi.Currency != "usd" || pi.PaymentMethod.ID != pm {
				t.Fatalf("got metadata %v currency %s payment method %+v", pi.Metadata, pi.Currency, pi.PaymentMethod)
			}
			get := &stripe.PaymentIntentParams{}
			get.AddExpand("latest_charge")
			got, err := h.stripe.PaymentIntents.Get(pi.ID, get)
			if err != nil {
				t.Fatal(err)
			}
			if got.LatestCharge.AmountCaptured != 1234 || !got.LatestCharge.Paid || got.LatestCharge.PaymentIntent.ID != pi.ID {
				t.Fatalf("expanded charge: %+v", got.LatestCharge)
			}
		})
	}
}

func TestDeclines(t *testing.T) {
	h := start(t)
	cases := []struct {
		pm, code, decline string
	}{
		{"pm_card_chargeDeclined", "card_declined", "generic_decline"},
		{"pm_card_visa_chargeDeclined", "card_declined", "generic_decline"},
		{"pm_card_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds"},
		{"pm_card_visa_chargeDeclinedInsufficientFunds", "card_declined", "insufficient_funds"},
		{"pm_card_chargeDeclinedExpiredCard", "expired_card", "expired_card"},
		{"pm_card_chargeDeclinedIncorrectCvc", "incorrect_cvc", "incorrect_cvc"},
	}
	for _, c := range cases {
		t.Run(c.pm, func(t *testing.T) {
			_, err := h.stripe.PaymentIntents.New(card(c.pm, 500))
			se := stripeError(t, err)
			if se.HTTPStatusCode != http.StatusPaymentRequired || se.Type != stripe.ErrorTypeCard ||
				string(se.Code) != c.code || string(se.DeclineCode) != c.decline || se.Msg == "" {
				t.Fatalf("got %d %s %s/%s %q", se.HTTPStatusCode, se.Type, se.Code, se.DeclineCode, se.Msg)
			}
			var cardErr *stripe.CardError
			if !errors.As(se.Err, &cardErr) || string(cardErr.DeclineCode) != c.decline {
				t.Fatalf("want a CardError with decline code %s, got %#v", c.decline, se.Err)
			}
			if se.PaymentIntent == nil || se.PaymentIntent.Status != stripe.PaymentIntentStatusRequiresPaymentMethod {
				t.Fatalf("the error must carry the intent in requires_payment_method, got %+v", se.PaymentIntent)
			}
			pi, err := h.stripe.PaymentIntents.Get(se.PaymentIntent.ID, nil)
			if err != nil {
				t.Fatal(err)
			}
			if pi.Status != stripe.PaymentIntentStatusRequiresPaymentMethod || pi.LastPaymentError == nil ||
				string(pi.LastPaymentError.DeclineCode) != c.decline || pi.AmountReceived != 0 {
				t.Fatalf("stored intent: status %s, last error %+v, received %d", pi.Status, pi.LastPaymentError, pi.AmountReceived)
			}
		})
	}
}

func TestUnknownPaymentMethod(t *testing.T) {
	h := start(t)
	_, err := h.stripe.PaymentIntents.New(card("pm_card_nope", 500))
	se := stripeError(t, err)
	if se.HTTPStatusCode != 400 || se.Code != stripe.ErrorCodeResourceMissing || se.Msg != "No such PaymentMethod: 'pm_card_nope'" {
		t.Fatalf("got %d %s %q", se.HTTPStatusCode, se.Code, se.Msg)
	}
	if n := len(h.emu.PaymentIntents()); n != 0 {
		t.Fatalf("a refused request created %d intents", n)
	}
}

func TestAuthenticationRequired(t *testing.T) {
	h := start(t)
	withReturn := card("pm_card_authenticationRequired", 700)
	withReturn.AutomaticPaymentMethods = nil
	withReturn.ReturnURL = stripe.String("https://shop.example/return")
	pi, err := h.stripe.PaymentIntents.New(withReturn)
	if err != nil {
		t.Fatal(err)
	}
	if pi.Status != stripe.PaymentIntentStatusRequiresAction || pi.NextAction == nil ||
		pi.NextAction.Type != stripe.PaymentIntentNextActionTypeRedirectToURL ||
		pi.NextAction.RedirectToURL.ReturnURL != "https://shop.example/return" || pi.NextAction.RedirectToURL.URL == "" {
		t.Fatalf("got status %s next action %+v", pi.Status, pi.NextAction)
	}
	if err := h.emu.CompleteAuthentication(pi.ID, true); err != nil {
		t.Fatal(err)
	}
	if got, _ := h.stripe.PaymentIntents.Get(pi.ID, nil); got.Status != stripe.PaymentIntentStatusSucceeded || got.AmountReceived != 700 {
		t.Fatalf("after authentication: %s, received %d", got.Status, got.AmountReceived)
	}

	pi, err = h.stripe.PaymentIntents.New(card("pm_card_threeDSecure2Required", 700))
	if err != nil {
		t.Fatal(err)
	}
	if pi.Status != stripe.PaymentIntentStatusRequiresAction || pi.NextAction.Type != stripe.PaymentIntentNextActionTypeUseStripeSDK {
		t.Fatalf("without return_url: status %s next action %+v", pi.Status, pi.NextAction)
	}
	if err := h.emu.CompleteAuthentication(pi.ID, false); err != nil {
		t.Fatal(err)
	}
	got, _ := h.stripe.PaymentIntents.Get(pi.ID, nil)
	if got.Status != stripe.PaymentIntentStatusRequiresPaymentMethod || got.LastPaymentError.Code != stripe.ErrorCodePaymentIntentAuthenticationFailure {
		t.Fatalf("after a failed authentication: %s %+v", got.Status, got.LastPaymentError)
	}
}

func TestReturnURLRule(t *testing.T) {
	h := start(t)
	cases := []struct {
		name   string
		adjust func(p *stripe.PaymentIntentParams)
		refuse bool
	}{
		{"automatic payment methods by default", func(p *stripe.PaymentIntentParams) { p.AutomaticPaymentMethods = nil }, true},
		{"automatic payment methods enabled", func(p *stripe.PaymentIntentParams) { p.AutomaticPaymentMethods.AllowRedirects = nil }, true},
		{"allow_redirects=always", func(p *stripe.PaymentIntentParams) {
			p.AutomaticPaymentMethods.AllowRedirects = stripe.String("always")
		}, true},
		{"allow_redirects=never", func(p *stripe.PaymentIntentParams) {}, false},
		{"with a return_url", func(p *stripe.PaymentIntentParams) {
			p.AutomaticPaymentMethods, p.ReturnURL = nil, stripe.String("https://shop.example/r")
		}, false},
		{"payment_method_types=[card]", func(p *stripe.PaymentIntentParams) {
			p.AutomaticPaymentMethods, p.PaymentMethodTypes = nil, []*string{stripe.String("card")}
		}, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := card("pm_card_visa", 900)
			c.adjust(p)
			pi, err := h.stripe.PaymentIntents.New(p)
			if !c.refuse {
				if err != nil || pi.Status != stripe.PaymentIntentStatusSucceeded {
					t.Fatalf("want success, got %v", err)
				}
				return
			}
			se := stripeError(t, err)
			if se.HTTPStatusCode != 400 || se.Type != stripe.ErrorTypeInvalidRequest || !strings.Contains(se.Msg, "A `return_url` must be specified") {
				t.Fatalf("got %d %s %q", se.HTTPStatusCode, se.Type, se.Msg)
			}
		})
	}

	// The rule holds on the confirm endpoint too.
	pi, err := h.stripe.PaymentIntents.New(&stripe.PaymentIntentParams{Amount: stripe.Int64(900), Currency: stripe.String("usd")})
	if err != nil || pi.Status != stripe.PaymentIntentStatusRequiresPaymentMethod {
		t.Fatalf("create without confirming: %v", err)
	}
	_, err = h.stripe.PaymentIntents.Confirm(pi.ID, &stripe.PaymentIntentConfirmParams{PaymentMethod: stripe.String("pm_card_visa")})
	if se := stripeError(t, err); !strings.Contains(se.Msg, "`return_url`") {
		t.Fatalf("confirm without return_url: %q", se.Msg)
	}
	pi, err = h.stripe.PaymentIntents.Confirm(pi.ID, &stripe.PaymentIntentConfirmParams{
		PaymentMethod: stripe.String("pm_card_visa"), ReturnURL: stripe.String("https://shop.example/r"),
	})
	if err != nil || pi.Status != stripe.PaymentIntentStatusSucceeded {
		t.Fatalf("confirm with return_url: %v", err)
	}
	_, err = h.stripe.PaymentIntents.Confirm(pi.ID, &stripe.PaymentIntentConfirmParams{ReturnURL: stripe.String("https://shop.example/r")})
	if se := stripeError(t, err); se.Code != stripe.ErrorCodePaymentIntentUnexpectedState {
		t.Fatalf("confirming a succeeded intent: %s %q", se.Code, se.Msg)
	}
}

func TestIdempotentReplay(t *testing.T) {
	h := start(t)
	first, err := h.stripe.PaymentIntents.New(withKey(card("pm_card_visa", 1500), "k-success"))
	if err != nil {
		t.Fatal(err)
	}
	second, err := h.stripe.PaymentIntents.New(withKey(card("pm_card_visa", 1500), "k-success"))
	if err != nil {
		t.Fatal(err)
	}
	if second.ID != first.ID || second.LastResponse.Header.Get("Idempotent-Replayed") != "true" ||
		string(second.LastResponse.RawJSON) != string(first.LastResponse.RawJSON) {
		t.Fatalf("want the saved response replayed: ids %s %s, replayed %q", first.ID, second.ID, second.LastResponse.Header.Get("Idempotent-Replayed"))
	}
	if first.LastResponse.Header.Get("Idempotent-Replayed") != "" {
		t.Fatal("the first response is not a replay")
	}

	// A decline ran (a charge was attempted), so it is saved and replayed too.
	_, err = h.stripe.PaymentIntents.New(withKey(card("pm_card_chargeDeclined", 1500), "k-decline"))
	d1 := stripeError(t, err)
	_, err = h.stripe.PaymentIntents.New(withKey(card("pm_card_chargeDeclined", 1500), "k-decline"))
	d2 := stripeError(t, err)
	if d1.HTTPStatusCode != 402 || d2.HTTPStatusCode != 402 || d1.PaymentIntent.ID != d2.PaymentIntent.ID ||
		d2.LastResponse.Header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("decline replay: %d %d %s %s", d1.HTTPStatusCode, d2.HTTPStatusCode, d1.PaymentIntent.ID, d2.PaymentIntent.ID)
	}
	if n := len(h.emu.PaymentIntents()); n != 2 {
		t.Fatalf("want 2 intents (one per key), got %d", n)
	}
}

func TestIdempotencyKeyReusedWithOtherParameters(t *testing.T) {
	h := start(t)
	if _, err := h.stripe.PaymentIntents.New(withKey(card("pm_card_visa", 1500), "k1")); err != nil {
		t.Fatal(err)
	}
	_, err := h.stripe.PaymentIntents.New(withKey(card("pm_card_visa", 1600), "k1"))
	se := stripeError(t, err)
	if se.HTTPStatusCode != 400 || se.Type != stripe.ErrorTypeIdempotency || !strings.Contains(se.Msg, "same parameters") {
		t.Fatalf("got %d %s %q", se.HTTPStatusCode, se.Type, se.Msg)
	}
	var idemErr *stripe.IdempotencyError
	if !errors.As(se.Err, &idemErr) {
		t.Fatalf("want an IdempotencyError, got %#v", se.Err)
	}
	refund := &stripe.RefundParams{PaymentIntent: stripe.String("pi_x")}
	refund.SetIdempotencyKey("k1")
	_, err = h.stripe.Refunds.New(refund)
	if se := stripeError(t, err); se.Type != stripe.ErrorTypeIdempotency || !strings.Contains(se.Msg, "same endpoint") {
		t.Fatalf("key reused on another endpoint: %s %q", se.Type, se.Msg)
	}
	if n := len(h.emu.PaymentIntents()); n != 1 {
		t.Fatalf("want 1 intent, got %d", n)
	}
}

func TestRefusedRequestIsNotSaved(t *testing.T) {
	h := start(t)
	bad := withKey(card("pm_card_visa", 1500), "k-fix-me")
	bad.AddExtra("colour", "blue")
	_, err := h.stripe.PaymentIntents.New(bad)
	if se := stripeError(t, err); se.HTTPStatusCode != 400 || se.Msg != "Received unknown parameter: colour" {
		t.Fatalf("got %d %q", se.HTTPStatusCode, se.Msg)
	}
	noReturn := withKey(card("pm_card_visa", 1500), "k-fix-me")
	noReturn.AutomaticPaymentMethods = nil
	if _, err := h.stripe.PaymentIntents.New(noReturn); stripeError(t, err).HTTPStatusCode != 400 {
		t.Fatal("want the return_url rule")
	}
	pi, err := h.stripe.PaymentIntents.New(withKey(card("pm_card_visa", 1500), "k-fix-me"))
	if err != nil || pi.Status != stripe.PaymentIntentStatusSucceeded {
		t.Fatalf("the key must be usable once the parameters are fixed: %v", err)
	}
	if pi.LastResponse.Header.Get("Idempotent-Replayed") != "" {
		t.Fatal("a refused request must not have been saved")
	}
}

func TestConcurrentRequestsWithOneKeyRunOnce(t *testing.T) {
	h := start(t)
	var wg sync.WaitGroup
	ids := make([]string, 8)
	for i := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pi, err := h.stripe.PaymentIntents.New(withKey(card("pm_card_visa", 2000), "k-race"))
			if err != nil {
				t.Error(err)
				return
			}
			ids[i] = pi.ID
		}()
	}
	wg.Wait()
	for _, id := range ids {
		if id != ids[0] {
			t.Fatalf("requests with one key got different intents: %v", ids)
		}
	}
	if n := len(h.emu.PaymentIntents()); n != 1 {
		t.Fatalf("want 1 intent, got %d", n)
	}
}

func TestRefunds(t *testing.T) {
	h := start(t)
	refund := func(pi string, amount int64) (*stripe.Refund, error) {
		p := &stripe.RefundParams{PaymentIntent: stripe.String(pi)}
		if amount > 0 {
			p.Amount = stripe.Int64(amount)
		}
		return h.stripe.Refunds.New(p)
	}

	full, _ := h.stripe.PaymentIntents.New(card("pm_card_visa", 1000))
	r, err := refund(full.ID, 0)
	if err != nil {
		t.Fatal(err)
	}
	if r.Amount != 1000 || r.Status != stripe.RefundStatusSucceeded || r.PaymentIntent.ID != full.ID || r.Currency != "usd" {
		t.Fatalf("full refund: %+v", r)
	}
	if _, err := refund(full.ID, 0); stripeError(t, err).Code != stripe.ErrorCodeChargeAlreadyRefunded {
		t.Fatalf("refunding twice: %v", err)
	}

	partial, _ := h.stripe.PaymentIntents.New(card("pm_card_visa", 1000))
	if r, err := refund(partial.ID, 300); err != nil || r.Amount != 300 {
		t.Fatalf("partial refund: %v", err)
	}
	_, err = refund(partial.ID, 800)
	if se := stripeError(t, err); se.Code != stripe.ErrorCodeAmountTooLarge || se.Param != "amount" {
		t.Fatalf("over-refund: %s %q", se.Code, se.Msg)
	}
	if _, err := refund(partial.ID, 700); err != nil {
		t.Fatalf("refunding the rest: %v", err)
	}
	view, _ := h.emu.PaymentIntent(partial.ID)
	if view.AmountRefunded != 1000 || view.Status != "succeeded" {
		t.Fatalf("intent after refunds: %+v", view)
	}

	_, err = h.stripe.PaymentIntents.New(card("pm_card_chargeDeclined", 1000))
	declined := stripeError(t, err).PaymentIntent.ID
	if _, err := refund(declined, 0); stripeError(t, err).HTTPStatusCode != 400 {
		t.Fatal("a declined intent has nothing to refund")
	}
	if _, err := refund("pi_missing", 0); stripeError(t, err).Code != stripe.ErrorCodeResourceMissing {
		t.Fatal("want resource_missing")
	}

	list := &stripe.RefundListParams{PaymentIntent: stripe.String(partial.ID)}
	var amounts []int64
	for it := h.stripe.Refunds.List(list); it.Next(); {
		amounts = append(amounts, it.Refund().Amount)
	}
	if len(amounts) != 2 || amounts[0] != 700 || amounts[1] != 300 {
		t.Fatalf("refunds of the partial intent, newest first: %v", amounts)
	}
	got, err := h.stripe.Refunds.Get(r.ID, nil)
	if err != nil || got.Amount != 1000 {
		t.Fatalf("get refund: %v", err)
	}
	if n := len(h.emu.Refunds()); n != 3 {
		t.Fatalf("want 3 refunds, got %d", n)
	}
}

func TestListNewestFirst(t *testing.T) {
	h := start(t)
	var created []string
	for i := range 5 {
		pi, err := h.stripe.PaymentIntents.New(card("pm_card_visa", int64(100+i)))
		if err != nil {
			t.Fatal(err)
		}
		created = append(created, pi.ID)
	}
	params := &stripe.PaymentIntentListParams{}
	params.Limit = stripe.Int64(2)
	it := h.stripe.PaymentIntents.List(params)
	var listed []string
	for it.Next() {
		listed = append(listed, it.PaymentIntent().ID)
	}
	if err := it.Err(); err != nil {
		t.Fatal(err)
	}
	if len(listed) != 5 {
		t.Fatalf("listed %d of 5", len(listed))
	}
	for i, id := range listed {
		if id != created[4-i] {
			t.Fatalf("want newest first %v, got %v", created, listed)
		}
	}

	single := &stripe.PaymentIntentListParams{}
	single.Limit, single.Single, single.StartingAfter = stripe.Int64(2), true, stripe.String(created[4])
	page := h.stripe.PaymentIntents.List(single)
	page.Next()
	if page.PaymentIntent().ID != created[3] || !page.Meta().HasMore {
		t.Fatalf("starting_after the newest: %s, has_more %v", page.PaymentIntent().ID, page.Meta().HasMore)
	}
}

func TestCaptureAndCancel(t *testing.T) {
	h := start(t)
	p := card("pm_card_visa", 5000)
	p.CaptureMethod = stripe.String("manual")
	held, err := h.stripe.PaymentIntents.New(p)
	if err != nil || held.Status != stripe.PaymentIntentStatusRequiresCapture || held.AmountCapturable != 5000 {
		t.Fatalf("manual capture: %v %+v", err, held)
	}
	captured, err := h.stripe.PaymentIntents.Capture(held.ID, &stripe.PaymentIntentCaptureParams{AmountToCapture: stripe.Int64(4000)})
	if err != nil || captured.Status != stripe.PaymentIntentStatusSucceeded || captured.AmountReceived != 4000 {
		t.Fatalf("capture: %v %+v", err, captured)
	}
	_, err = h.stripe.PaymentIntents.Cancel(held.ID, nil)
	if se := stripeError(t, err); se.Code != stripe.ErrorCodePaymentIntentUnexpectedState {
		t.Fatalf("cancelling a succeeded intent: %q", se.Msg)
	}

	waiting, _ := h.stripe.PaymentIntents.New(card("pm_card_authenticationRequired", 5000))
	canceled, err := h.stripe.PaymentIntents.Cancel(waiting.ID, &stripe.PaymentIntentCancelParams{CancellationReason: stripe.String("abandoned")})
	if err != nil || canceled.Status != stripe.PaymentIntentStatusCanceled || canceled.CancellationReason != "abandoned" || canceled.CanceledAt == 0 {
		t.Fatalf("cancel: %v %+v", err, canceled)
	}
	if err := h.emu.CompleteAuthentication(waiting.ID, true); err == nil {
		t.Fatal("a canceled intent cannot be authenticated")
	}
}

// raw sends a request without stripe-go, to reach what it cannot send.
func raw(t *testing.T, method, url, key, form string) (int, string) {
	t.Helper()
	return send(t, method, url, key, "application/x-www-form-urlencoded", form)
}

// send makes a request with key as its Bearer key and returns the answer.
func send(t *testing.T, method, url, key, contentType, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", contentType)
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	out, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(out)
}

func TestAuthentication(t *testing.T) {
	h := start(t, stripeemu.WithAPIKey(testKey))
	if status, body := raw(t, "GET", h.url+"/v1/payment_intents", "", ""); status != 401 || !strings.Contains(body, "You did not provide an API key") {
		t.Fatalf("no key: %d %s", status, body)
	}
	for _, key := range []string{"sk_live_abcdefgh", "sk_test_other1234"} {
		_, err := newClient(h.url, key, 0).PaymentIntents.Get("pi_x", nil)
		if se := stripeError(t, err); se.HTTPStatusCode != 401 || !strings.Contains(se.Msg, "Invalid API Key provided") || strings.Contains(se.Msg, key) {
			t.Fatalf("key %s: %d %q", key, se.HTTPStatusCode, se.Msg)
		}
	}
}

func TestParameterValidation(t *testing.T) {
	h := start(t)
	const confirmed = "&payment_method=pm_card_visa&confirm=true&payment_method_types[]=card"
	cases := []struct {
		form, code, param string
	}{
		{"currency=usd" + confirmed, "parameter_missing", "amount"},
		{"amount=100" + confirmed, "parameter_missing", "currency"},
		{"amount=ten&currency=usd" + confirmed, "parameter_invalid_integer", "amount"},
		{"amount=0&currency=usd" + confirmed, "parameter_invalid_integer", "amount"},
		{"amount=-5&currency=usd" + confirmed, "parameter_invalid_integer", "amount"},
		{"amount=10&currency=usd" + confirmed, "amount_too_small", "amount"},
		{"amount=100&currency=USD" + confirmed, "parameter_invalid_string", "currency"},
		{"amount=100&currency=usd&confirm=maybe&payment_method=pm_card_visa", "parameter_invalid_boolean", "confirm"},
		{"amount=100&currency=usd&metadata[a]=1&shipping[name]=x" + confirmed, "parameter_unknown", "shipping[name]"},
		{"amount=100&currency=usd&automatic_payment_methods[colour]=red", "parameter_unknown", "automatic_payment_methods[colour]"},
		{"amount=100&currency=usd&automatic_payment_methods[allow_redirects]=never", "parameter_missing", "automatic_payment_methods[enabled]"},
		{"amount=100&currency=usd&return_url=not-a-url" + confirmed, "url_invalid", "return_url"},
	}
	for _, c := range cases {
		t.Run(c.form, func(t *testing.T) {
			status, body := raw(t, "POST", h.url+"/v1/payment_intents", testKey, c.form)
			if status != 400 || !strings.Contains(body, `"code": "`+c.code+`"`) || !strings.Contains(body, `"param": "`+c.param+`"`) {
				t.Fatalf("got %d %s", status, body)
			}
		})
	}
	if n := len(h.emu.PaymentIntents()); n != 0 {
		t.Fatalf("refused requests created %d intents", n)
	}
	if status, body := raw(t, "GET", h.url+"/v1/charges", testKey, ""); status != 404 || !strings.Contains(body, "Unrecognized request URL") {
		t.Fatalf("unknown URL: %d %s", status, body)
	}
	if status, _ := raw(t, "GET", h.url+"/v1/payment_intents/pi_missing", testKey, ""); status != 404 {
		t.Fatalf("unknown intent: %d", status)
	}
}

// onFirst applies fault to the first request to create an intent, and counts them.
func onFirst(fault stripeemu.Fault, calls *atomic.Int32) stripeemu.FaultFunc {
	return func(c stripeemu.Call) stripeemu.Fault {
		if c.Method == "POST" && c.Path == "/v1/payment_intents" && calls.Add(1) == 1 {
			return fault
		}
		return stripeemu.Fault{}
	}
}

// A fault in front of the API (a 5xx from a proxy, a 429 rate limit) saves nothing under
// the key: the retry runs.
func TestFaultBeforeRunIsNotSaved(t *testing.T) {
	for _, c := range []struct {
		status  int
		errType stripe.ErrorType
	}{{500, stripe.ErrorTypeAPI}, {503, stripe.ErrorTypeAPI}, {429, stripe.ErrorTypeInvalidRequest}} {
		t.Run(http.StatusText(c.status), func(t *testing.T) {
			var calls atomic.Int32
			h := start(t, stripeemu.WithFault(onFirst(stripeemu.Fault{Status: c.status}, &calls)))
			_, err := h.stripe.PaymentIntents.New(withKey(card("pm_card_visa", 1000), "k-fault"))
			if se := stripeError(t, err); se.HTTPStatusCode != c.status || se.Type != c.errType {
				t.Fatalf("got %d %s", se.HTTPStatusCode, se.Type)
			}
			if n := len(h.emu.PaymentIntents()); n != 0 {
				t.Fatalf("the failed request created %d intents", n)
			}
			pi, err := h.stripe.PaymentIntents.New(withKey(card("pm_card_visa", 1000), "k-fault"))
			if err != nil || pi.Status != stripe.PaymentIntentStatusSucceeded || pi.LastResponse.Header.Get("Idempotent-Replayed") != "" {
				t.Fatalf("the retry must run: %v", err)
			}
			if n := len(h.emu.PaymentIntents()); n != 1 {
				t.Fatalf("want 1 intent, got %d", n)
			}
		})
	}
}

func TestFaultAfterRunReplaysTheCharge(t *testing.T) {
	for name, fault := range map[string]stripeemu.Fault{
		"500 after the charge":     {Status: 500, AfterRun: true},
		"timeout after the charge": {Hang: true, AfterRun: true},
	} {
		t.Run(name, func(t *testing.T) {
			var calls atomic.Int32
			h := start(t, stripeemu.WithFault(onFirst(fault, &calls)))
			impatient := newClient(h.url, testKey, 300*time.Millisecond)
			if _, err := impatient.PaymentIntents.New(withKey(card("pm_card_visa", 1000), "k-lost")); err == nil {
				t.Fatal("want the answer lost")
			}
			charged := h.emu.PaymentIntents()
			if len(charged) != 1 || charged[0].Status != "succeeded" {
				t.Fatalf("the request must have run: %+v", charged)
			}
			pi, err := impatient.PaymentIntents.New(withKey(card("pm_card_visa", 1000), "k-lost"))
			if err != nil || pi.ID != charged[0].ID || pi.LastResponse.Header.Get("Idempotent-Replayed") != "true" {
				t.Fatalf("the retry must replay the charge: %v", err)
			}
			if n := len(h.emu.PaymentIntents()); n != 1 || calls.Load() != 2 {
				t.Fatalf("want 1 intent from 2 calls, got %d from %d", n, calls.Load())
			}
		})
	}
}

func TestServer(t *testing.T) {
	s, err := stripeemu.Start("127.0.0.1:0", stripeemu.New(stripeemu.WithLogger(slog.New(slog.DiscardHandler))))
	if err != nil {
		t.Fatal(err)
	}
	pi, err := newClient(s.URL, testKey, 0).PaymentIntents.New(card("pm_card_visa", 1000))
	if err != nil || pi.Status != stripe.PaymentIntentStatusSucceeded {
		t.Fatalf("through the server: %v", err)
	}
	if view, found := s.Emulator.PaymentIntent(pi.ID); !found || view.AmountReceived != 1000 {
		t.Fatalf("read back: %+v", view)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}
