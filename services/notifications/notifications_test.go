package notifications

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/steptest"
	"github.com/jetcheckout/jetcheckout/internal/store"
	"github.com/jetcheckout/jetcheckout/runner"
	bolt "go.etcd.io/bbolt"
)

type harness struct {
	*steptest.Harness
	svc *Service
}

// start runs the service behind the real runner on an embedded JetStream.
func start(t *testing.T, cfg Config) harness {
	t.Helper()
	return startWith(t, runner.Config{Name: "notifications"}, cfg)
}

// startWith is start with the runner's settings (retry delays...) of rcfg.
func startWith(t *testing.T, rcfg runner.Config, cfg Config) harness {
	t.Helper()
	h, svc := steptest.Start(t, rcfg, func(db *bolt.DB, log *slog.Logger) (*Service, error) {
		return New(db, log, cfg)
	})
	return harness{h, svc}
}

// sent waits for the checkout's confirmation event and checks it against the record.
func (h harness) sent(t *testing.T, checkoutID string) SentEmail {
	t.Helper()
	var ev events.EmailSent
	h.Expect(t, checkoutID, events.ConfirmationSent, &ev)
	rec, found, err := h.svc.Sent(checkoutID)
	if err != nil || !found {
		t.Fatalf("Sent(%s): found=%v err=%v", checkoutID, found, err)
	}
	if ev.OrderID != rec.OrderID || ev.To != rec.To || ev.MessageID != rec.MessageID || rec.SentAt.IsZero() {
		t.Errorf("event %+v, record %+v", ev, rec)
	}
	return rec
}

func TestOutboxHoldsTheConfirmation(t *testing.T) {
	dir := t.TempDir()
	h := start(t, Config{OutboxDir: dir})
	h.Env.Publish(t, events.Must("co_jpy", events.ConfirmationRequested, jpyOrder("co_jpy")))

	rec := h.sent(t, "co_jpy")
	if rec.OrderID != "ord_co_jpy" || rec.To != "hanako@example.jp" || rec.MessageID != "<co_jpy.confirmation@jetcheckout.local>" {
		t.Errorf("record = %+v", rec)
	}
	entries, err := os.ReadDir(dir)
	if err != nil || len(entries) != 1 || entries[0].Name() != "co_jpy.eml" {
		t.Fatalf("outbox holds %v (%v), want only co_jpy.eml", entries, err)
	}
	data, err := os.ReadFile(filepath.Join(dir, "co_jpy.eml"))
	if err != nil {
		t.Fatal(err)
	}
	p := parseEmail(t, data)
	if p.subject != "Your order JC-000001 is confirmed" || p.header.Get("Message-ID") != rec.MessageID {
		t.Errorf("Subject %q, Message-ID %q", p.subject, p.header.Get("Message-ID"))
	}
	if got := p.line(t, "Green tea"); strings.Join(got, " ") != "2 ¥1,400 ¥2,800" {
		t.Errorf("item line %q", got)
	}
	if got := p.line(t, "Total:"); got[0] != "¥4,388" {
		t.Errorf("total %q", got)
	}
}

func TestOutboxRewriteIsIdempotent(t *testing.T) {
	dir := t.TempDir()
	outbox, err := NewOutbox(dir)
	if err != nil {
		t.Fatal(err)
	}
	order := jpyOrder("co_twice")
	m, err := render("co_twice", order, defaultFrom(t), order.CreatedAt)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := outbox.Send(t.Context(), m); err != nil {
			t.Fatal(err)
		}
	}
	entries, _ := os.ReadDir(dir)
	data, err := os.ReadFile(outbox.Path("co_twice"))
	if err != nil || len(entries) != 1 || !bytes.Equal(data, m.Data) {
		t.Errorf("outbox holds %d files, message intact: %v (%v)", len(entries), bytes.Equal(data, m.Data), err)
	}
}

func TestSMTPDeliversWithAuth(t *testing.T) {
	server := startSMTP(t, &smtpServer{user: "mailer", password: "s3cret-pa55"})
	h := start(t, Config{Transport: TransportSMTP, SMTP: SMTPConfig{Addr: server.Addr, Username: "mailer", Password: "s3cret-pa55"}})
	h.Env.Publish(t, events.Must("co_smtp", events.ConfirmationRequested, jpyOrder("co_smtp")))
	rec := h.sent(t, "co_smtp")

	got := server.messages()
	if len(got) != 1 {
		t.Fatalf("server received %d messages, want 1", len(got))
	}
	if got[0].from != "orders@jetcheckout.local" || len(got[0].to) != 1 || got[0].to[0] != "hanako@example.jp" {
		t.Errorf("envelope %s → %v", got[0].from, got[0].to)
	}
	p := parseEmail(t, got[0].data)
	if p.header.Get("Message-ID") != rec.MessageID || p.subject != "Your order JC-000001 is confirmed" {
		t.Errorf("received Message-ID %q, Subject %q", p.header.Get("Message-ID"), p.subject)
	}
	if got := p.line(t, "Cup"); strings.Join(got, " ") != "1 ¥800 ¥800" {
		t.Errorf("item line %q", got)
	}
	if strings.Contains(h.Logs(), "s3cret-pa55") {
		t.Error("the SMTP password was logged")
	}
	if !strings.Contains(h.Logs(), "mailer") {
		t.Error("the SMTP settings were not logged at all: the password check proves nothing")
	}
	cfg := SMTPConfig{Addr: server.Addr, Username: "mailer", Password: "s3cret-pa55"}
	if s := fmt.Sprintf("%v %+v", cfg, cfg); strings.Contains(s, "s3cret-pa55") {
		t.Errorf("the password prints: %s", s)
	}
	if b, err := json.Marshal(cfg); err != nil || strings.Contains(string(b), "s3cret-pa55") {
		t.Errorf("the password encodes: %s (%v)", b, err)
	}
}

// A slow mail server holds up its own checkout's email, not the others': the first
// connection waits until another checkout's email reaches the server meanwhile. Sent from
// inside the store's transaction, the sends would queue behind it, and the first would be
// turned away and sent again.
func TestASlowMailServerDoesNotHoldOtherCheckouts(t *testing.T) {
	server := startSMTP(t, &smtpServer{holdFirst: true})
	h := startWith(t, runner.Config{Name: "notifications", Concurrency: 4},
		Config{Transport: TransportSMTP, SMTP: SMTPConfig{Addr: server.Addr}, RetryFor: time.Second})
	const checkouts = 6
	for i := range checkouts {
		id := fmt.Sprintf("co_%d", i)
		h.Env.Publish(t, events.Must(id, events.ConfirmationRequested, jpyOrder(id)))
	}
	for i := range checkouts {
		h.sent(t, fmt.Sprintf("co_%d", i))
	}
	if n := len(server.messages()); n != checkouts {
		t.Errorf("the server received %d messages, want %d", n, checkouts)
	}
	if n := server.connections(); n != checkouts {
		t.Errorf("%d connections for %d emails: the first send held the others up", n, checkouts)
	}
}

func TestSMTPUpgradesWithSTARTTLS(t *testing.T) {
	serverTLS, roots := selfSigned(t)
	server := startSMTP(t, &smtpServer{tls: serverTLS, user: "mailer", password: "pw"})
	h := start(t, Config{Transport: TransportSMTP, SMTP: SMTPConfig{Addr: server.Addr, Username: "mailer", Password: "pw", RootCAs: roots}})
	h.Env.Publish(t, events.Must("co_tls", events.ConfirmationRequested, jpyOrder("co_tls")))
	h.sent(t, "co_tls")

	got := server.messages()
	if len(got) != 1 || !got[0].overTLS {
		t.Fatalf("received %d messages, first over TLS: %v; want 1 over TLS", len(got), len(got) > 0 && got[0].overTLS)
	}
	if p := parseEmail(t, got[0].data); p.subject != "Your order JC-000001 is confirmed" {
		t.Errorf("Subject %q", p.subject)
	}
}

func TestSMTPRefusesAnUntrustedServer(t *testing.T) {
	serverTLS, _ := selfSigned(t)
	server := startSMTP(t, &smtpServer{tls: serverTLS})
	order := jpyOrder("co_mitm")
	m, err := render("co_mitm", order, defaultFrom(t), order.CreatedAt)
	if err != nil {
		t.Fatal(err)
	}
	sender := &SMTP{cfg: SMTPConfig{Addr: server.Addr, HelloName: "localhost", Timeout: 5 * time.Second}}
	if err := sender.Send(t.Context(), m); err == nil || !strings.Contains(err.Error(), "starttls") {
		t.Errorf("Send to a server with an untrusted certificate: %v, want a starttls error", err)
	}
	if n := len(server.messages()); n != 0 {
		t.Errorf("%d messages went out after the TLS upgrade failed", n)
	}
}

func TestSMTPRetriesUntilTheServerAccepts(t *testing.T) {
	server := startSMTP(t, &smtpServer{failFirst: 2})
	h := start(t, Config{Transport: TransportSMTP, SMTP: SMTPConfig{Addr: server.Addr}, RetryInitial: 20 * time.Millisecond})
	h.Env.Publish(t, events.Must("co_flaky", events.ConfirmationRequested, jpyOrder("co_flaky")))
	h.sent(t, "co_flaky")
	h.Idle(t)

	if n, conns := len(server.messages()), server.connections(); n != 1 || conns != 3 {
		t.Errorf("%d messages over %d connections, want 1 over 3", n, conns)
	}
	// The retries happened inside the step: the runner delivered the event once.
	if n := h.deliveries(t); n != 1 {
		t.Errorf("the event was delivered %d times, want 1", n)
	}
}

func TestSMTPOutageOutlastingRetriesIsRedelivered(t *testing.T) {
	// At most 4 attempts fit in 200ms when the first retry waits 50ms ±50%, so 5 refusals
	// outlast one delivery.
	server := startSMTP(t, &smtpServer{failFirst: 5})
	h := start(t, Config{Transport: TransportSMTP, SMTP: SMTPConfig{Addr: server.Addr},
		RetryInitial: 50 * time.Millisecond, RetryFor: 200 * time.Millisecond})
	h.Env.Publish(t, events.Must("co_outage", events.ConfirmationRequested, jpyOrder("co_outage")))
	h.sent(t, "co_outage")
	h.Idle(t)

	if n := len(server.messages()); n != 1 {
		t.Errorf("%d messages received, want 1", n)
	}
	if n := h.deliveries(t); n < 2 {
		t.Errorf("the event was delivered %d times, want a redelivery", n)
	}
	if n := h.Watch.Count("co_outage", events.ConfirmationSent); n != 1 {
		t.Errorf("%d confirmations announced, want 1", n)
	}
}

func TestDuplicatesSendOnce(t *testing.T) {
	server := startSMTP(t, &smtpServer{})
	h := start(t, Config{Transport: TransportSMTP, SMTP: SMTPConfig{Addr: server.Addr}})
	in := events.Must("co_dup", events.ConfirmationRequested, jpyOrder("co_dup"))
	h.Env.Publish(t, in)
	first := h.sent(t, "co_dup")

	// The same event under another Nats-Msg-Id, and a new event of the same checkout.
	h.PublishCopy(t, in, "another-msg-id")
	replay := in
	replay.ID += ":replayed"
	h.Env.Publish(t, replay)
	h.WaitCount(t, "co_dup", events.ConfirmationSent, 2) // the replayed order event is answered
	h.Idle(t)

	if n := len(server.messages()); n != 1 {
		t.Errorf("%d messages received, want 1", n)
	}
	if again, _, _ := h.svc.Sent("co_dup"); again != first {
		t.Errorf("record changed to %+v, was %+v", again, first)
	}
}

func TestMalformedOrderIsRejected(t *testing.T) {
	dir := t.TempDir()
	h := start(t, Config{OutboxDir: dir})
	badEmail := jpyOrder("co_bademail")
	badEmail.CustomerEmail = "Eve <eve@example.com>"
	h.Env.Publish(t, events.Must("co_bademail", events.ConfirmationRequested, badEmail))
	unknown := events.Must("co_unknown", events.ConfirmationRequested, jpyOrder("co_unknown"))
	unknown.Payload = json.RawMessage(`{"order_id":"ord_1","coupon":"FREE"}`)
	h.Env.Publish(t, unknown)

	for _, id := range []string{"co_bademail", "co_unknown"} {
		h.Refusal(t, id, events.ConfirmationFailed, events.ConfirmationSent)
		if _, found, _ := h.svc.Sent(id); found {
			t.Errorf("%s: a malformed order was recorded as sent", id)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("outbox holds %d files after malformed input", len(entries))
	}
}

// deliveries is how many times the runner's consumer delivered a message, redeliveries
// included.
func (h harness) deliveries(t *testing.T) uint64 {
	t.Helper()
	c, err := h.Env.JS.Consumer(t.Context(), events.StreamCheckout, "notifications")
	if err != nil {
		t.Fatal(err)
	}
	info, err := c.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return info.Delivered.Consumer
}

// A message recorded as sent while another send of it was under way (a copy of the event
// outside its checkout's lane) stays recorded, and is the one announced.
func TestRecordSentKeepsTheFirstRecord(t *testing.T) {
	db := steptest.DB(t, "notifications")
	if err := store.EnsureBuckets(db, sentBucket); err != nil {
		t.Fatal(err)
	}
	first := SentEmail{OrderID: "ord_1", To: "ada@example.com", MessageID: "<first@jetcheckout>", SentAt: time.Now().UTC()}
	second := first
	second.MessageID = "<second@jetcheckout>"
	commit := func(sent SentEmail) events.EmailSent {
		t.Helper()
		var got events.EmailSent
		err := db.Update(func(tx *bolt.Tx) error {
			outs, err := recordSent(sentBucket, "co_1", sent, events.Must("co_1", events.ConfirmationSent, sent.event()))(context.Background(), tx, events.Envelope{})
			if err != nil {
				return err
			}
			return outs[0].DecodePayload(&got)
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := commit(first); got.MessageID != first.MessageID {
		t.Fatalf("announced %s, want %s", got.MessageID, first.MessageID)
	}
	if got := commit(second); got.MessageID != first.MessageID {
		t.Errorf("a second send announced %s, want the first record's %s", got.MessageID, first.MessageID)
	}
	if rec, _, err := (&Service{db: db}).Sent("co_1"); err != nil || rec.MessageID != first.MessageID {
		t.Errorf("record %+v (%v), want the first", rec, err)
	}
}
