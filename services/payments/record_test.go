package payments

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/store"
	"github.com/jetcheckout/jetcheckout/runner"
	bolt "go.etcd.io/bbolt"
)

// The client secret in the authentication page's URL never reaches the event log, nor the
// record.
func TestWaitingEventCarriesNoClientSecret(t *testing.T) {
	r := Record{CheckoutID: "co_1"}
	r.awaitAction("pi_1", "http://127.0.0.1:12111/_emulator/3ds/pi_1?client_secret=pi_1_secret_abc", time.Now())
	if strings.Contains(r.NextAction, "secret") {
		t.Errorf("the record keeps the client secret: %q", r.NextAction)
	}
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

// The record a call to Stripe began from must still be there when its outcome is saved:
// one written meanwhile is not overwritten, and the event is tried again.
func TestCommitRecordKeepsARecordWrittenDuringTheCall(t *testing.T) {
	db, err := store.Open(filepath.Join(t.TempDir(), "payments.db"), bucketPayments)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	put := func(r Record) {
		t.Helper()
		if err := db.Update(func(tx *bolt.Tx) error { return saveRecord(tx, r, events.Envelope{}) }); err != nil {
			t.Fatal(err)
		}
	}
	get := func() Record {
		t.Helper()
		var r Record
		if _, err := store.View(db, bucketPayments, "co_1", &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	commit := func(h runner.Handler) error {
		return db.Update(func(tx *bolt.Tx) error {
			_, err := h(context.Background(), tx, events.Envelope{})
			return err
		})
	}

	put(Record{CheckoutID: "co_1", Status: AwaitingAction, PaymentIntentID: "pi_1"})
	seen := get()
	captured := seen
	captured.Status = Captured
	handle := commitRecord(seen, true, captured)
	put(Record{CheckoutID: "co_1", Status: Voided, PaymentIntentID: "pi_1"})
	if err := commit(handle); err == nil {
		t.Error("saved over a record written while Stripe was called")
	}
	if got := get(); got.Status != Voided {
		t.Errorf("status %s, want the record written meanwhile (voided)", got.Status)
	}

	if err := commit(commitRecord(get(), true, captured)); err != nil {
		t.Fatalf("record unchanged since the call: %v", err)
	}
	if got := get(); got.Status != Captured {
		t.Errorf("status %s, want captured", got.Status)
	}
	if err := commit(commitRecord(Record{}, false, Record{CheckoutID: "co_1", Status: Failed})); err == nil {
		t.Error("a call that found no record saved over one")
	}

	// A record an older version stored, with a field a Record no longer has, is the one
	// the call began from: the outcome is saved, not tried again for ever.
	if err := db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketPayments).Put([]byte("co_1"), []byte(`{"checkout_id":"co_1","status":"captured","intent_status":"succeeded","amount":"1"}`))
	}); err != nil {
		t.Fatal(err)
	}
	refunded := get()
	refunded.Status = Refunded
	if err := commit(commitRecord(get(), true, refunded)); err != nil {
		t.Fatalf("a record of an older version: %v", err)
	}
}
