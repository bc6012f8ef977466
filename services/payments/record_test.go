package payments

import (
	"strings"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
)

// The client secret in the authentication page's URL never reaches the event log.
func TestWaitingEventCarriesNoClientSecret(t *testing.T) {
	r := Record{CheckoutID: "co_1", Status: AwaitingAction, AuthUntil: time.Now(), PaymentIntentID: "pi_1",
		NextAction: "http://127.0.0.1:12111/_emulator/3ds/pi_1?client_secret=pi_1_secret_abc"}
	var w events.Waiting
	if err := r.outcome().DecodePayload(&w); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(w.NextAction, "secret") || !strings.HasSuffix(w.NextAction, "/_emulator/3ds/pi_1") {
		t.Errorf("next_action %q", w.NextAction)
	}
	if w.Reference != "pi_1" {
		t.Errorf("reference %q, want the PaymentIntent", w.Reference)
	}
}
