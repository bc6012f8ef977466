package notifications

import (
	"encoding/json"
	"fmt"
	"html"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/runner"
)

func failedCheckout(code string, compensated ...events.StepName) events.CheckoutFailed {
	return events.CheckoutFailed{Step: events.StepProcessPayment, Code: code, Message: "stripe said " + code,
		Compensated: compensated, CustomerEmail: "ada@example.com", CartID: "cart-7"}
}

// Every code a step reports has its own words: none of them reaches the customer raw.
func TestEveryKnownCodeIsExplained(t *testing.T) {
	for _, code := range []string{
		events.CodeInvalidRequest, events.CodeCartNotFound, events.CodeCartEmpty, events.CodeCartCheckedOut,
		events.CodeCartInCheckout, events.CodeProductNotFound, events.CodeCurrencyMismatch, events.CodeInvalidQuantity,
		events.CodeUnsupportedCountry, events.CodeInsufficientStock, events.CodeFraudRejected, events.CodeCardDeclined,
		events.CodeInsufficientFunds, events.CodePaymentFailed, events.CodeOrderFailed, events.CodeAuthenticationFailed, events.CodeAuthenticationAbandoned,
		events.CodeCheckoutCancelled, events.CodeDeadlineExceeded, events.CodeRetriesExhausted, events.CodeStepFailed,
		events.CodeFraudReviewDenied, events.CodeReservationExpired, events.CodeHoldLimitExceeded, events.CodeReturnURLNotAllowed,
		events.CodeCouponNotApplicable, events.CodeCouponUsedUp, events.CodeAuthenticationRequired,
	} {
		if _, ok := explanations[code]; !ok {
			t.Errorf("code %s has no explanation", code)
		}
	}
}

func TestRenderFailureNotice(t *testing.T) {
	date := time.Date(2025, 4, 1, 9, 45, 0, 0, time.UTC)
	tests := []struct {
		name    string
		failed  events.CheckoutFailed
		mention []string // in the text and html bodies
		refund  bool
	}{
		{"declined card", failedCheckout(events.CodeCardDeclined, events.StepReserveInventory),
			[]string{"card was declined", "another card"}, false},
		{"insufficient funds", failedCheckout(events.CodeInsufficientFunds, events.StepReserveInventory),
			[]string{"not enough funds", "another card"}, false},
		{"out of stock", failedCheckout(events.CodeInsufficientStock),
			[]string{"no longer in stock", "quantities in your cart"}, false},
		{"fraud review denied", failedCheckout(events.CodeFraudReviewDenied, events.StepReserveInventory),
			[]string{"reviewed this order and could not approve it", "contact us"}, false},
		{"fraud rejected", failedCheckout(events.CodeFraudRejected, events.StepReserveInventory),
			[]string{"security checks could not approve", "contact us"}, false},
		{"authentication not completed", failedCheckout(events.CodeAuthenticationAbandoned, events.StepReserveInventory),
			[]string{"confirm the payment", "complete your bank's confirmation"}, false},
		{"deadline after the charge", failedCheckout(events.CodeDeadlineExceeded, events.StepProcessPayment, events.StepReserveInventory),
			[]string{"a technical problem on our side", "try again in a few minutes"}, true},
		{"retries exhausted", failedCheckout(events.CodeRetriesExhausted, events.StepReserveInventory),
			[]string{"a technical problem on our side"}, false},
		{"order failed after the charge", failedCheckout(events.CodeOrderFailed, events.StepProcessPayment, events.StepReserveInventory),
			[]string{"a technical problem on our side"}, true},
		{"reservation expired", failedCheckout(events.CodeReservationExpired, events.StepReserveInventory),
			[]string{"took too long", "check out again"}, false},
		{"unknown cart", failedCheckout(events.CodeCartNotFound),
			[]string{"could not find your cart", "add the items to your cart again"}, false},
		{"cart already checked out", failedCheckout(events.CodeCartCheckedOut),
			[]string{"already been checked out", "earlier order"}, false},
	}
	const shopMade = "co_0123456789abcdef01234567" // a checkout ID the shop made: quoted
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := renderFailure(shopMade, tt.failed, defaultFrom(t), date)
			if err != nil {
				t.Fatal(err)
			}
			p := parseEmail(t, m.Data)
			if p.subject != "We could not complete your order" {
				t.Errorf("Subject = %q", p.subject)
			}
			if id := p.header.Get("Message-ID"); id != "<"+shopMade+".failure@jetcheckout.local>" || id != m.ID || m.Name != shopMade+".failure" {
				t.Errorf("Message-ID %q, message says %q, name %q", id, m.ID, m.Name)
			}
			if to, err := p.header.AddressList("To"); err != nil || len(to) != 1 || to[0].Address != "ada@example.com" || m.To != "ada@example.com" {
				t.Errorf("To = %v (%v), envelope %q", to, err, m.To)
			}
			if d, err := p.header.Date(); err != nil || !d.Equal(date) {
				t.Errorf("Date = %v (%v)", d, err)
			}
			for _, body := range []string{p.text, html.UnescapeString(p.html)} {
				for _, want := range append(tt.mention, "What happened:", "What you can do:", "Your reference: "+shopMade+", cart cart-7.") {
					if !strings.Contains(body, want) {
						t.Errorf("body lacks %q:\n%s", want, body)
					}
				}
				if body := strings.ReplaceAll(body, shopMade, ""); strings.Contains(body, tt.failed.Code) || strings.Contains(body, "_") || strings.Contains(body, "stripe said") {
					t.Errorf("body shows the code or the internal message:\n%s", body)
				}
				refunded, notCharged := strings.Contains(body, "has been refunded"), strings.Contains(body, "not been charged")
				if refunded != tt.refund || notCharged == tt.refund {
					t.Errorf("refunded %v, not charged %v; want a refund: %v\n%s", refunded, notCharged, tt.refund, body)
				}
			}
		})
	}
}

// A renewal's failure notice says what comes next: when its card is tried again, that the
// subscription ended after the last attempt, or, for a failure no retry mends, that the
// subscription carries on.
func TestRenewalFailureNoticeSaysWhatComesNext(t *testing.T) {
	date := time.Date(2026, 12, 8, 9, 30, 0, 0, time.UTC)
	day := events.Duration{Duration: 24 * time.Hour}
	for _, c := range []struct {
		name    string
		code    string
		renewal events.Renewal
		want    string
	}{
		{"retried", events.CodeCardDeclined, events.Renewal{RetryIn: &day, FinalAction: events.SubscriptionCancelled},
			"We will try to charge your saved card again on Wednesday 9 December 2026 at 09:30 UTC."},
		{"last, cancelled", events.CodeInsufficientFunds, events.Renewal{Attempt: 4, FinalAction: events.SubscriptionCancelled},
			"This was our last attempt: your subscription has been cancelled"},
		{"last, paused", events.CodeAuthenticationRequired, events.Renewal{Attempt: 4, FinalAction: events.SubscriptionPaused},
			"your subscription is paused"},
		{"not retried", events.CodeInsufficientStock, events.Renewal{RetryIn: &day},
			"your subscription carries on, and the next renewal comes as planned"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := failedCheckout(c.code)
			c.renewal.SubscriptionID, c.renewal.Period, c.renewal.StripeCustomer = "sub_ada", 3, "cus_1"
			f.Renewal = &c.renewal
			m, err := renderFailure("sub_ada-3", f, defaultFrom(t), date)
			if err != nil {
				t.Fatal(err)
			}
			p := parseEmail(t, m.Data)
			for _, body := range []string{p.text, p.html} {
				if !strings.Contains(body, "we could not renew your subscription") || !strings.Contains(body, c.want) {
					t.Errorf("the notice does not say %q:\n%s", c.want, body)
				}
			}
		})
	}
}

func TestRenderFailureNoticeOfAnUnknownCode(t *testing.T) {
	m, err := renderFailure("co-8", failedCheckout("flux_overload"), defaultFrom(t), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if p := parseEmail(t, m.Data); !strings.Contains(p.text, "We could not complete your order (reason: flux_overload).") ||
		!strings.Contains(p.text, "try again later") {
		t.Errorf("an unknown code is not named:\n%s", p.text)
	}
	m, err = renderFailure("co-8", failedCheckout("<b>\r\nBcc: eve@example.com"), defaultFrom(t), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if p := parseEmail(t, m.Data); p.header.Get("Bcc") != "" || strings.Contains(p.html, "<b>") || strings.Contains(p.text, "\nBcc") {
		t.Errorf("a hostile code shaped the message:\n%s\n%s", p.text, p.html)
	}
}

func TestFailureNoticeInTheOutbox(t *testing.T) {
	dir := t.TempDir()
	h := start(t, Config{OutboxDir: dir})
	in := events.Must("co-1", events.Failed, failedCheckout(events.CodeCardDeclined, events.StepReserveInventory))
	h.Env.Publish(t, in)

	var ev events.EmailSent
	h.Expect(t, "co-1", events.FailureNoticeSent, &ev)
	rec, found, err := h.svc.FailureNotice("co-1")
	if err != nil || !found {
		t.Fatalf("FailureNotice: found=%v err=%v", found, err)
	}
	if ev.To != "ada@example.com" || ev.MessageID != "<co-1.failure@jetcheckout.local>" || ev.OrderID != "" ||
		rec.To != ev.To || rec.MessageID != ev.MessageID || rec.SentAt.IsZero() {
		t.Errorf("event %+v, record %+v", ev, rec)
	}
	if _, found, _ := h.svc.Sent("co-1"); found {
		t.Error("a failure notice was recorded as a confirmation")
	}
	data, err := os.ReadFile(filepath.Join(dir, "co-1.failure.eml"))
	if err != nil {
		t.Fatal(err)
	}
	p := parseEmail(t, data)
	if !strings.Contains(p.text, "Your card was declined by your bank.") || !strings.Contains(p.text, "You have not been charged.") {
		t.Errorf("notice text:\n%s", p.text)
	}
	if d, err := p.header.Date(); err != nil || d.Unix() == 0 {
		t.Errorf("Date %v (%v)", d, err)
	}
}

// A checkout that failed before its customer's address was known: nobody to tell.
func TestNoFailureNoticeWithoutAnAddress(t *testing.T) {
	dir := t.TempDir()
	h := start(t, Config{OutboxDir: dir})
	f := failedCheckout(events.CodeInvalidRequest)
	f.CustomerEmail, f.CartID = "", ""
	h.Env.Publish(t, events.Must("co-anon", events.Failed, f))
	h.Idle(t)

	if n := h.Watch.Count("co-anon", events.FailureNoticeSent); n != 0 {
		t.Errorf("%d notices announced", n)
	}
	if _, found, _ := h.svc.FailureNotice("co-anon"); found {
		t.Error("a notice was recorded")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("outbox holds %d files", len(entries))
	}
	if !strings.Contains(h.Logs(), "no failure notice") {
		t.Error("the reason for sending nothing was not logged")
	}
}

func TestDuplicateFailuresSendOneNotice(t *testing.T) {
	server := startSMTP(t, &smtpServer{})
	h := start(t, Config{Transport: TransportSMTP, SMTP: SMTPConfig{Addr: server.Addr}})
	in := events.Must("co-dup", events.Failed, failedCheckout(events.CodeOrderFailed, events.StepProcessPayment, events.StepReserveInventory))
	h.Env.Publish(t, in)
	h.Wait(t, "co-dup", events.FailureNoticeSent)
	first, _, _ := h.svc.FailureNotice("co-dup")

	h.PublishCopy(t, in, "another-msg-id")
	replay := in
	replay.ID += ":replayed"
	h.Env.Publish(t, replay)
	h.WaitCount(t, "co-dup", events.FailureNoticeSent, 2) // the replayed event is answered
	h.Idle(t)

	got := server.messages()
	if len(got) != 1 {
		t.Fatalf("%d messages received, want 1", len(got))
	}
	if p := parseEmail(t, got[0].data); !strings.Contains(p.text, "refunded") || !strings.Contains(p.text, "a technical problem on our side") {
		t.Errorf("notice text:\n%s", p.text)
	}
	if again, _, _ := h.svc.FailureNotice("co-dup"); again != first {
		t.Errorf("record changed to %+v, was %+v", again, first)
	}
}

// checkout.failed is not a step's trigger: a malformed one is rejected, not failed.
func TestMalformedFailureIsRejected(t *testing.T) {
	dir := t.TempDir()
	h := start(t, Config{OutboxDir: dir})
	badEmail := failedCheckout(events.CodeCardDeclined)
	badEmail.CustomerEmail = "Eve <eve@example.com>"
	h.Env.Publish(t, events.Must("co-bademail", events.Failed, badEmail))
	unknown := events.Must("co-unknown", events.Failed, failedCheckout(events.CodeCardDeclined))
	unknown.Payload = json.RawMessage(`{"code":"card_declined","customer_email":"ada@example.com","apology":"sorry"}`)
	h.Env.Publish(t, unknown)

	for _, id := range []string{"co-bademail", "co-unknown"} {
		if why := h.Rejection(t, id, events.FailureNoticeSent); why.Subject != string(events.Failed) {
			t.Errorf("%s: rejection %+v", id, why)
		}
		if _, found, _ := h.svc.FailureNotice(id); found {
			t.Errorf("%s: a malformed failure was recorded as notified", id)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("outbox holds %d files after malformed input", len(entries))
	}
}

// A notice that cannot go out is never given up: it is announced as stuck and retried
// until the mail server takes it.
func TestUndeliverableNoticeIsStuckThenSent(t *testing.T) {
	server := startSMTP(t, &smtpServer{failFirst: 1 << 30})
	h := startWith(t, runner.Config{Name: "notifications", MaxDeliver: 2, RetryBase: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond},
		Config{Transport: TransportSMTP, SMTP: SMTPConfig{Addr: server.Addr}, RetryInitial: 5 * time.Millisecond, RetryFor: 20 * time.Millisecond})
	h.Env.Publish(t, events.Must("co-stuck", events.Failed, failedCheckout(events.CodeCardDeclined)))

	var stuck events.StuckWork
	h.Expect(t, "co-stuck", events.Stuck, &stuck, events.FailureNoticeSent, events.Rejected)
	if stuck.Subject != string(events.Failed) || stuck.Consumer != "notifications" || !strings.Contains(stuck.Error, "421") {
		t.Errorf("stuck = %+v", stuck)
	}
	if _, found, _ := h.svc.FailureNotice("co-stuck"); found {
		t.Error("recorded as sent while the server refused it")
	}

	server.mu.Lock()
	server.failFirst = 0
	server.mu.Unlock()
	h.Expect(t, "co-stuck", events.FailureNoticeSent, nil, events.Rejected)
	if n := len(server.messages()); n != 1 {
		t.Errorf("%d messages received, want 1", n)
	}
}

// A mailbox that does not exist (550) will not exist on the next attempt either: the
// notice is rejected with the server's reason (and kept in DEADLETTER), not retried forever.
func TestRefusedNoticeIsRejected(t *testing.T) {
	server := startSMTP(t, &smtpServer{noSuchUser: "nobody@example.com"})
	h := startWith(t, runner.Config{Name: "notifications", MaxDeliver: 2, RetryBase: 10 * time.Millisecond, RetryMax: 50 * time.Millisecond},
		Config{Transport: TransportSMTP, SMTP: SMTPConfig{Addr: server.Addr}, RetryInitial: 5 * time.Millisecond, RetryFor: 20 * time.Millisecond})
	failed := failedCheckout(events.CodeCardDeclined)
	failed.CustomerEmail = "nobody@example.com"
	h.Env.Publish(t, events.Must("co-nobody", events.Failed, failed))

	why := h.Rejection(t, "co-nobody", events.FailureNoticeSent)
	if why.Subject != string(events.Failed) || !strings.Contains(why.Reason, "550") {
		t.Errorf("rejection %+v, want the 550 refusal as the reason", why)
	}
	if _, found, _ := h.svc.FailureNotice("co-nobody"); found {
		t.Error("recorded as sent while the server refused it")
	}
	if n := len(server.messages()); n != 0 {
		t.Errorf("%d messages received", n)
	}
}

// An attacker's POST /checkout/process with a sentence and a link for a cart ID and
// anybody's address: validate_cart fails it, and the shop writes to nobody. A real cart
// that fails for real still gets its notice, naming the products.
func TestFailureNoticeQuotesNoUntrustedText(t *testing.T) {
	server := startSMTP(t, &smtpServer{})
	h := start(t, Config{Transport: TransportSMTP, SMTP: SMTPConfig{Addr: server.Addr}})
	const spam = "Your account is locked. Verify it at https://evil.example/login"
	attack := func(code string) events.CheckoutFailed {
		return events.CheckoutFailed{Step: events.StepValidateCart, Code: code, Message: fmt.Sprintf("cart %q does not exist", spam),
			CustomerEmail: "victim@example.com", CartID: spam}
	}
	for i, code := range []string{events.CodeCartNotFound, events.CodeInvalidRequest, events.CodeReturnURLNotAllowed, events.CodeDeadlineExceeded} {
		h.Env.Publish(t, events.Must(fmt.Sprintf("co-spam-%d", i), events.Failed, attack(code)))
	}
	genuine := failedCheckout(events.CodeInsufficientStock)
	genuine.Step, genuine.Products = events.StepReserveInventory, []string{"Saga Hoodie (hoodie-saga)"}
	h.Env.Publish(t, events.Must("co-real", events.Failed, genuine))
	// A real cart of the attacker's own, a declined card, and a checkout ID chosen to read
	// as a message.
	empty := events.CheckoutFailed{Step: events.StepValidateCart, Code: events.CodeCartEmpty, CustomerEmail: "bob@example.com", CartID: "cart_bob"}
	h.Env.Publish(t, events.Must("ACCOUNT-LOCKED-call-1-800-555-0199", events.Failed, empty))
	h.Wait(t, "co-real", events.FailureNoticeSent)
	h.Wait(t, "ACCOUNT-LOCKED-call-1-800-555-0199", events.FailureNoticeSent)
	h.Idle(t)

	got := server.messages()
	var to []string
	for _, m := range got {
		to = append(to, m.to...)
		if s := string(m.data); strings.Contains(s, "evil.example") || strings.Contains(s, "account is locked") {
			t.Errorf("an email to %v quotes the attacker:\n%s", m.to, s)
		}
		// What a reader sees (the Message-ID header, which mail programs do not show, still
		// names the checkout: it is how a resend is recognised).
		if p := parseEmail(t, m.data); strings.Contains(p.subject+p.text+p.html, "ACCOUNT-LOCKED") {
			t.Errorf("an email to %v quotes a client-chosen checkout ID:\n%s", m.to, p.text)
		}
	}
	if len(got) != 2 || !slices.Contains(to, "ada@example.com") || !slices.Contains(to, "bob@example.com") {
		t.Fatalf("emails to %v, want one to ada@example.com and one to bob@example.com", to)
	}
	for _, m := range got {
		if p := parseEmail(t, m.data); m.to[0] == "ada@example.com" && !strings.Contains(p.text, "no longer in stock in the quantity you asked for: Saga Hoodie (hoodie-saga).") {
			t.Errorf("the out-of-stock notice does not name the product:\n%s", p.text)
		}
	}
	for i := range 4 {
		if n := h.Watch.Count(fmt.Sprintf("co-spam-%d", i), events.FailureNoticeSent); n != 0 {
			t.Errorf("co-spam-%d: %d notices announced", i, n)
		}
	}
	if !strings.Contains(h.Logs(), "email address is not trusted") {
		t.Error("the reason for sending nothing was not logged")
	}
}
