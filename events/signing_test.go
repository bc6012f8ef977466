package events

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// testKeys are keys for every service, this process holding the seeds of signers.
func testKeys(t *testing.T, signers ...string) (*Keys, map[string]string) {
	t.Helper()
	var public []string
	seeds := map[string]string{}
	for _, s := range Services {
		seed, pub, err := GenerateSeed()
		if err != nil {
			t.Fatal(err)
		}
		public = append(public, s+"="+pub)
		for _, signer := range signers {
			if signer == s {
				seeds[s] = seed
			}
		}
	}
	k, err := NewKeys(public, seeds)
	if err != nil {
		t.Fatal(err)
	}
	return k, seeds
}

func sign(t *testing.T, k *Keys, service string, e Envelope) (string, string, []byte) {
	t.Helper()
	data, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	signer, sig, err := k.Sign(service, e.Type, data)
	if err != nil {
		t.Fatal(err)
	}
	return signer, sig, data
}

func TestAnEventIsBelievedOnlyFromItsProducer(t *testing.T) {
	k, _ := testKeys(t, Services...)
	captured := Must("co_1", PaymentCaptured, Payment{PaymentIntentID: "pi_1"})

	signer, sig, data := sign(t, k, ServicePayments, captured)
	if err := k.Verify(PaymentCaptured, signer, sig, data); err != nil {
		t.Fatalf("payments' own captured event refused: %v", err)
	}

	for name, tc := range map[string]struct {
		subject     Subject
		signer, sig string
		data        []byte
	}{
		"unsigned":                          {PaymentCaptured, "", "", data},
		"signed by inventory":               {PaymentCaptured, ServiceInventory, mustSig(t, k, ServiceInventory, PaymentCaptured, data), data},
		"inventory claiming to be payments": {PaymentCaptured, ServicePayments, mustSig(t, k, ServiceInventory, PaymentCaptured, data), data},
		"data changed after signing":        {PaymentCaptured, signer, sig, []byte(strings.Replace(string(data), "pi_1", "pi_2", 1))},
		"signed for another subject":        {OrderCreated, signer, sig, data},
		"not base64":                        {PaymentCaptured, signer, "%%%", data},
		"a subject outside the flow":        {Subject("checkout.payment.magic"), signer, sig, data},
	} {
		t.Run(name, func(t *testing.T) {
			err := k.Verify(tc.subject, tc.signer, tc.sig, tc.data)
			if !errors.Is(err, ErrForged) || !errors.Is(err, ErrMalformed) {
				t.Fatalf("Verify = %v, want ErrForged (and so ErrMalformed)", err)
			}
		})
	}
}

func mustSig(t *testing.T, k *Keys, service string, subject Subject, data []byte) string {
	t.Helper()
	_, sig, err := k.Sign(service, subject, data)
	if err != nil {
		t.Fatal(err)
	}
	return sig
}

// Any service may announce stuck work; the public request needs no signature.
func TestAnyServiceAndThePublicRequest(t *testing.T) {
	k, _ := testKeys(t, ServiceShipping)
	stuck := Must("co_1", Stuck, StuckWork{Subject: string(LabelRequested), Consumer: ServiceShipping})
	signer, sig, data := sign(t, k, ServiceShipping, stuck)
	if err := k.Verify(Stuck, signer, sig, data); err != nil {
		t.Errorf("stuck work from shipping: %v", err)
	}
	if err := k.Verify(Requested, "", "", []byte(`{"cart_id":"c"}`)); err != nil {
		t.Errorf("checkout.requested needs no signature: %v", err)
	}
	if _, _, err := k.Sign(ServicePayments, PaymentCaptured, data); err == nil {
		t.Error("a process without payments' seed signed as payments")
	}
}

// Every event of the flow but the public request has a signer: a service, or any service.
func TestEveryEventHasASigner(t *testing.T) {
	for _, d := range Checkout.Catalog() {
		signer, found := SignerOf(d.Subject)
		switch {
		case !found:
			t.Errorf("%s: no origin", d.Subject)
		case d.Subject == Requested && signer != "":
			t.Errorf("checkout.requested signed by %q: it is public", signer)
		case d.Subject != Requested && signer == "":
			t.Errorf("%s (producer %q): nobody signs it", d.Subject, d.Producer)
		}
	}
	if s, _ := SignerOf(FraudReviewDecided); s != ServiceFraud {
		t.Errorf("fraud.review.decided is signed by %q, want fraud (it answers the operator's request)", s)
	}
}

// During a rotation a service has two public keys; events signed with either are believed.
func TestRotatedKeys(t *testing.T) {
	oldSeed, oldPub, _ := GenerateSeed()
	newSeed, newPub, _ := GenerateSeed()
	public := []string{"payments=" + oldPub, "payments=" + newPub}
	oldKeys, err := NewKeys(public, map[string]string{ServicePayments: oldSeed})
	if err != nil {
		t.Fatal(err)
	}
	newKeys, err := NewKeys(public, map[string]string{ServicePayments: newSeed})
	if err != nil {
		t.Fatal(err)
	}
	e := Must("co_1", PaymentCaptured, Payment{PaymentIntentID: "pi_1"})
	for _, k := range []*Keys{oldKeys, newKeys} {
		signer, sig, data := sign(t, k, ServicePayments, e)
		if err := newKeys.Verify(PaymentCaptured, signer, sig, data); err != nil {
			t.Error(err)
		}
	}
	if _, err := NewKeys([]string{"payments=" + oldPub}, map[string]string{ServicePayments: newSeed}); err == nil {
		t.Error("a seed whose public key is not listed was accepted")
	}
	for _, bad := range []string{"payments", "nobody=" + oldPub, "payments=UNOTAKEY"} {
		if _, err := NewKeys([]string{bad}, nil); err == nil {
			t.Errorf("public key %q accepted", bad)
		}
	}
}

func TestCheckScheduler(t *testing.T) {
	expire := Must("co_1", InventoryExpire, Expiry{})
	expire.Schedule = &Schedule{At: time.Now(), Key: "inventory.expire"}
	if err := CheckScheduler(expire, "timer.inventory.wait.co_1.inventory.expire"); err != nil {
		t.Errorf("inventory's own expiry: %v", err)
	}
	if err := CheckScheduler(expire, ""); err != nil {
		t.Errorf("not fired from a schedule: %v", err)
	}
	deadline := Must("co_1", Deadline, DeadlineReached{})
	deadline.Schedule = &Schedule{At: time.Now(), Key: "deadline.check_fraud"}
	if err := CheckScheduler(deadline, "timer.coordinator.wait.co_1.deadline.check_fraud"); err != nil {
		t.Errorf("the coordinator's deadline: %v", err)
	}

	// The attack: inventory's slot fires a payment.captured (its data copied from anywhere).
	captured := Must("co_1", PaymentCaptured, Payment{PaymentIntentID: "pi_1"})
	forged := map[string]struct {
		e         Envelope
		scheduler string
	}{
		"a captured payment from inventory's slot":     {captured, "timer.inventory.wait.co_1.inventory.expire"},
		"an expiry fired from another checkout's slot": {expire, "timer.inventory.wait.co_2.inventory.expire"},
		"a deadline from inventory's slot":             {deadline, "timer.inventory.wait.co_1.inventory.expire"},
		"a deadline from inventory's timers":           {deadline, "timer.inventory.wait.co_1.deadline.check_fraud"},
	}
	captured.Schedule = &Schedule{At: time.Now(), Key: "payment.captured"}
	forged["a captured payment scheduled in its own name"] = struct {
		e         Envelope
		scheduler string
	}{captured, "timer.payments.wait.co_1.payment.captured"}
	for name, tc := range forged {
		if err := CheckScheduler(tc.e, tc.scheduler); !errors.Is(err, ErrForged) {
			t.Errorf("%s: %v, want ErrForged", name, err)
		}
	}
}

// Whoever may publish into the stream can derive an event's ID, but not its Msg-Id: that
// carries the start of the producer's signature of the ID, the same whatever the event's
// bytes, so every copy of the event is dropped by the stream as one.
func TestMsgIDCannotBePreempted(t *testing.T) {
	k, _ := testKeys(t, ServiceCoordinator)
	refund := Must("co_1", PaymentRefund, Compensation{})
	id, err := k.MsgID(ServiceCoordinator, refund)
	if err != nil || id == refund.ID || !IsMsgIDOf(id, refund.ID) {
		t.Fatalf("Msg-Id %q (%v): want the event ID and more, recognised as the event's", id, err)
	}
	again := refund
	again.Time = time.Now() // decided again after a crash: other bytes, the same event
	if other, _ := k.MsgID(ServiceCoordinator, again); other != id {
		t.Error("the same event made again got another Msg-Id: the stream would keep both")
	}
	other, _ := testKeys(t, ServiceCoordinator)
	if theirs, _ := other.MsgID(ServiceCoordinator, refund); theirs == id {
		t.Error("another key made the same Msg-Id")
	}
	if IsMsgIDOf(refund.ID+"#forged", refund.ID) || IsMsgIDOf("co_1:checkout.payment.refunded", refund.ID) {
		t.Error("a Msg-Id nobody signed was taken for the event's")
	}
	pick := Must("co_1", WarehousePick, PickRequest{})
	if p, _ := k.MsgID(ServiceCoordinator, pick); p != pick.ID {
		t.Error("the pick's Msg-Id is the warehouse's idempotency key: it must stay the event ID")
	}
	if p, _ := (*Keys)(nil).MsgID(ServiceCoordinator, refund); p != refund.ID {
		t.Error("without keys an event keeps its ID as Msg-Id")
	}
}

// Each producer's scheduled events wait in its own timer stream and fire onto subjects
// that only that stream's source into CHECKOUT maps back.
func TestTimers(t *testing.T) {
	want := map[string][]Subject{
		ServiceCoordinator: {Deadline},
		ServiceInventory:   {InventoryExpire},
		ServicePayments:    {PaymentRecheck},
	}
	if got := Timed(); !reflect.DeepEqual(got, want) {
		t.Errorf("timed = %v, want %v", got, want)
	}
	e := Must("co_1", InventoryExpire, Expiry{})
	e.Schedule = &Schedule{At: time.Now(), Key: "inventory.expire"}
	if got := e.ScheduleSubject(); got != "timer.inventory.wait.co_1.inventory.expire" {
		t.Errorf("slot = %s", got)
	}
	if got := e.FireSubject(); got != "timer.inventory.fire.inventory.expire" || got != FireSubject(ServiceInventory, InventoryExpire) {
		t.Errorf("fire subject = %s", got)
	}
	if got := TimerSlots(ServiceInventory, InventoryExpire); got != "timer.inventory.wait.*.inventory.expire" {
		t.Errorf("slots = %s", got)
	}
}
