package notifications

import (
	"log/slog"
	"strings"
	"testing"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/jetcheckout/jetcheckout/internal/steptest"
	"github.com/jetcheckout/jetcheckout/runner"
	bolt "go.etcd.io/bbolt"
)

// A lost notifications.db is rebuilt from the stream: confirmations and failure notices
// sent, a notice not sent on purpose (no trusted address) and one the mail server refused.
// The rebuilt view equals the lost one, no email is sent again, a copy of a handled event
// sends nothing, and a new confirmation goes out.
func TestLostViewIsRebuiltWithoutSendingAgain(t *testing.T) {
	server := startSMTP(t, &smtpServer{noSuchUser: "nobody@example.com"})
	build := func(db *bolt.DB, log *slog.Logger) (*Service, error) {
		return New(db, log, Config{Transport: TransportSMTP, SMTP: SMTPConfig{Addr: server.Addr}})
	}
	h, svc := steptest.Start(t, runner.Config{Name: "notifications", Rebuild: true}, build)
	anonymous, refused := failedCheckout(events.CodeCardDeclined), failedCheckout(events.CodeCardDeclined)
	anonymous.CustomerEmail, refused.CustomerEmail = "", "nobody@example.com"
	confirmation := events.Must("co-a", events.ConfirmationRequested, jpyOrder("co-a"))
	for _, in := range []events.Envelope{
		confirmation, events.Must("co-b", events.ConfirmationRequested, jpyOrder("co-b")),
		events.Must("co-c", events.Failed, failedCheckout(events.CodeCardDeclined, events.StepProcessPayment)),
		events.Must("co-anon", events.Failed, anonymous), events.Must("co-refused", events.Failed, refused),
	} {
		h.Env.Publish(t, in)
	}
	h.Wait(t, "co-a", events.ConfirmationSent)
	h.Wait(t, "co-b", events.ConfirmationSent)
	h.Wait(t, "co-c", events.FailureNoticeSent)
	h.Wait(t, "co-refused", events.Rejected)
	h.Idle(t)
	lost, sent := steptest.DumpDB(t, h.DB), len(server.messages())
	if sent != 3 {
		t.Fatalf("%d emails sent, want 3", sent)
	}

	svc = steptest.LoseView(t, h, build)
	natstest.Eventually(t, steptest.Timeout, func() bool { return strings.Contains(h.Logs(), "view rebuilt from the stream") },
		"the view was not rebuilt")
	h.PublishCopy(t, confirmation, "another-msg-id")
	h.Idle(t)
	steptest.SameView(t, lost, steptest.DumpDB(t, h.DB))
	if n := len(server.messages()); n != sent {
		t.Errorf("%d emails sent again", n-sent)
	}
	if _, found, err := svc.FailureNotice("co-c"); !found || err != nil {
		t.Errorf("the rebuilt view has no notice of co-c (%v)", err)
	}

	h.Env.Publish(t, events.Must("co-d", events.ConfirmationRequested, jpyOrder("co-d")))
	h.Wait(t, "co-d", events.ConfirmationSent)
	if n := len(server.messages()); n != sent+1 {
		t.Errorf("%d emails after one more confirmation, want %d", n, sent+1)
	}
}
