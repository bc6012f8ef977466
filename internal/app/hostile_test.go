// The hostile-input corpus: every consumed subject gets malformed, forged and replayed
// events; each must be rejected with a reason, fail the checkout it names with one, or, for a
// well-formed success of a checkout nobody requested, be undone. Stock and money must end
// as they were. The corpus is signed by each subject's producer, as a producer with a bug
// would publish it, so that what the services check behind the signature is tested too; its
// forged-origin part (unsigned, signed by another service, a service claiming another's name)
// must be rejected outright. `make test` runs it; `make hostile` runs it alone.

package app

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/coordinator"
	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// consumedSubjects is every subject a service consumes, derived from the DAG: the steps'
// triggers, outcomes, waits and undos, and the events around them.
func consumedSubjects() []events.Subject {
	subjects := []events.Subject{events.Requested, events.Deadline, events.Completed, events.Failed,
		events.FraudReviewDecided, events.PaymentRecheck, events.InventoryExpire, events.InventoryExpired, events.RedriveRequested}
	for _, s := range events.Checkout.Steps {
		subjects = append(subjects, s.Trigger, s.LegacyTrigger, s.Done, s.Failed, s.Compensate, s.Compensated, s.Waiting)
	}
	subjects = slices.DeleteFunc(subjects, func(s events.Subject) bool { return s == "" })
	slices.Sort(subjects)
	return slices.Compact(subjects)
}

// sample is one hostile message and the checkout it names, if it names one.
type sample struct {
	name, subject, checkoutID string
	seq                       uint64
}

// hostileCorpus is what gets published on subject: n numbers the checkouts it names.
func hostileCorpus(subject events.Subject, n *int) []sample {
	var out []sample
	add := func(name, checkoutID, data string) {
		out = append(out, sample{name: name, subject: string(subject), checkoutID: checkoutID, seq: 0})
		out[len(out)-1].name = name + "\x00" + data // the data travels with the name until published
	}
	envelope := func(checkoutID, id string, payload any) string {
		raw, _ := json.Marshal(map[string]any{"id": id, "type": subject, "checkout_id": checkoutID,
			"schema_version": events.SchemaVersion, "time": time.Now().UTC(), "payload": payload})
		return string(raw)
	}
	next := func() string { *n++; return fmt.Sprintf("hx-%d", *n) }
	quote := func(currency, product string, quantity any) map[string]any {
		return map[string]any{"cart_id": "cart_x", "customer_id": "cus_x", "customer_email": "x@example.com",
			"payment_method_id": "pm_card_visa", "shipping_address": california, "billing_address": california,
			"currency": currency, "lines": []map[string]any{{"product_id": product, "name": "x", "quantity": quantity, "unit_price": "1.00", "total": "1.00"}},
			"subtotal": "1.00", "tax": "0", "shipping": "0", "total": "1.00"}
	}

	add("invalid JSON", "", `{"id":`)
	add("invalid UTF-8", "", "\xff\xfe\xfd")
	add("not an object", "", `[1,2,3]`)
	id := next()
	add("wrong types", id, fmt.Sprintf(`{"id":1,"type":%q,"checkout_id":%q,"schema_version":"1","payload":{}}`, subject, id))
	add("missing fields", "", fmt.Sprintf(`{"type":%q,"schema_version":1}`, subject))
	id = next()
	add("unknown envelope field", id, strings.Replace(envelope(id, id+":"+string(subject), map[string]any{}), `{`, `{"evil":true,`, 1))
	add("invalid UTF-8 checkout", "", strings.Replace(envelope("hx-utf8", "x", map[string]any{}), "hx-utf8", "hx-\xff\xfe", 1))
	id = next()
	add("empty payload", id, envelope(id, events.ID(id, subject), map[string]any{}))
	id = next()
	add("unknown payload field", id, envelope(id, events.ID(id, subject), map[string]any{"nope": 1}))
	id = next()
	add("payload of the wrong type", id, envelope(id, events.ID(id, subject), []int{1}))
	for _, q := range []struct {
		name string
		v    map[string]any
	}{
		{"negative quantity", quote("USD", "tee-jetstream", -3)},
		{"zero quantity", quote("USD", "tee-jetstream", 0)},
		{"huge quantity", quote("USD", "tee-jetstream", 1<<62)},
		{"quantity beyond int", quote("USD", "tee-jetstream", json.Number("1e40"))},
		{"unknown product", quote("USD", "no-such-product", 1)},
		{"unknown currency", quote("XXX", "tee-jetstream", 1)},
	} {
		id = next()
		add(q.name, id, envelope(id, events.ID(id, subject), q.v))
	}
	// Forged: an event that names another checkout in its ID, and a late outcome for the
	// real checkout that already completed.
	id = next()
	add("ID of another checkout", id, envelope(id, events.ID("co-hostile-real", subject), quote("USD", "no-such-product", 1)))
	add("forged for a finished checkout", "co-hostile-real", envelope("co-hostile-real", "forged:"+string(subject),
		events.StepFailure{Step: events.StepProcessPayment, Code: events.CodeCardDeclined, Message: "forged"}))
	return out
}

// forgery is how a forged-origin sample is signed: nobody, or a service that is not the
// subject's producer, under its own name or the producer's.
type forgery int

const (
	signedByProducer forgery = iota
	unsigned
	signedByAnother
	anotherClaimingTheProducer
)

var forgeries = map[forgery]string{unsigned: "unsigned", signedByAnother: "signed by another service",
	anotherClaimingTheProducer: "signed by another service in the producer's name"}

// signFor signs data on subject as f says, with keys holding every service's seed.
func signFor(t *testing.T, keys *events.Keys, subject events.Subject, data []byte, f forgery) nats.Header {
	t.Helper()
	producer, _ := events.SignerOf(subject)
	if producer == "" || f == unsigned {
		return nats.Header{} // checkout.requested is public: signatures mean nothing there
	}
	other := events.ServiceShipping
	if producer == other || producer == "*" {
		other = events.ServiceOrders
	}
	signer := producer
	if signer == "*" || f != signedByProducer {
		signer = other
	}
	h, err := keys.Header(signer, subject, data)
	if err != nil {
		t.Fatal(err)
	}
	if f == anotherClaimingTheProducer {
		h[events.SignerHeader] = []string{producer}
	}
	return h
}

func TestHostileInput(t *testing.T) {
	sys := startSystem(t, t.TempDir())
	env := &natstest.Env{NC: sys.NC, JS: sys.JS}
	w := env.Watch(t, "checkout.>")
	ctx := context.Background()

	// A real checkout, whose events are replayed out of order below.
	cart := createCart(t, sys, "USD", events.CartItem{ProductID: "tee-jetstream", Quantity: 1})
	publishCheckout(t, sys, checkoutRequest("co-hostile-real", cart.ID, "pm_card_visa", california))
	if done := w.Wait(t, "co-hostile-real", wait, events.Completed, events.Failed); done.Type != events.Completed {
		t.Fatalf("the real checkout ended in %s: %s", done.Type, done.Payload)
	}
	for _, name := range events.Services {
		env.WaitIdle(t, name)
	}
	before := allStock(t, sys)

	subjects := consumedSubjects()
	for _, name := range events.Services {
		cons, err := sys.JS.Consumer(ctx, events.StreamCheckout, name)
		if err != nil {
			t.Fatal(err)
		}
		info, err := cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range append(info.Config.FilterSubjects, info.Config.FilterSubject) {
			if f != "" && !slices.Contains(subjects, events.Subject(f)) {
				t.Errorf("%s consumes %s, which the corpus does not cover", name, f)
			}
		}
	}

	publish := func(subject string, data []byte, h nats.Header, msgID string) (uint64, error) {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		ack, err := sys.JS.PublishMsg(pctx, &nats.Msg{Subject: subject, Data: data, Header: h}, jetstream.WithMsgID(msgID))
		if err != nil {
			return 0, err
		}
		return ack.Sequence, nil
	}
	var corpus []sample
	forged := map[uint64]string{} // the forged-origin samples: they must be rejected outright
	n := 0
	for _, subject := range subjects {
		for _, s := range hostileCorpus(subject, &n) {
			name, data, _ := strings.Cut(s.name, "\x00")
			s.name = name
			seq, err := publish(s.subject, []byte(data), signFor(t, sys.Keys, subject, []byte(data), signedByProducer), fmt.Sprintf("hostile-%d", len(corpus)))
			if err != nil {
				t.Fatalf("publish %s on %s: %v", name, s.subject, err)
			}
			s.seq = seq
			if subject == events.Requested {
				s.checkoutID = events.RequestEnvelope([]byte(data), events.Origin{MsgID: fmt.Sprintf("hostile-%d", len(corpus))}).CheckoutID
			}
			corpus = append(corpus, s)
		}
		if _, err := publish(string(subject), make([]byte, 1<<20), nil, "hostile-huge-"+string(subject)); err == nil {
			t.Errorf("a 1 MiB message on %s was accepted", subject)
		}
		if subject == events.Requested {
			continue // public: nothing to forge
		}
		// Forged origin: the real checkout's own event of this subject where it has one (a
		// replay that would be dropped as a copy if believed), else a well-formed one for a
		// checkout of its own.
		data := []byte(forgedEvent(t, w, subject, &n))
		for f, how := range forgeries {
			seq, err := publish(string(subject), data, signFor(t, sys.Keys, subject, data, f), fmt.Sprintf("forged-%s-%d", subject, f))
			if err != nil {
				t.Fatalf("publish %s %s: %v", how, subject, err)
			}
			forged[seq] = how + " on " + string(subject)
			corpus = append(corpus, sample{name: how, subject: string(subject), seq: seq})
		}
	}
	// Replays: the real checkout's events again, latest first, as new messages, signed as
	// they came.
	real := w.Msgs("co-hostile-real")
	for i := len(real) - 1; i >= 0; i-- {
		if _, err := publish(real[i].Subject, real[i].Data, signatureOf(real[i]), fmt.Sprintf("replay-%d", i)); err != nil {
			t.Fatalf("replay %s: %v", real[i].Subject, err)
		}
	}
	// Every service settles: payments refuses what the coordinator did not ask for before
	// calling Stripe, and the coordinator asks no refund for a checkout it never saw.
	settled := events.Services
	start := time.Now()
	for _, name := range settled {
		env.WaitIdle(t, name)
	}
	t.Logf("%d hostile messages on %d subjects and %d replays handled in %s", len(corpus), len(subjects), len(real), time.Since(start))

	select {
	case <-sys.Failed():
		t.Fatalf("a service stopped: %v", sys.Err())
	default:
	}
	for _, name := range settled {
		cons, _ := sys.JS.Consumer(ctx, events.StreamCheckout, name)
		info, err := cons.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if info.NumRedelivered > 0 || info.NumAckPending > 0 {
			t.Errorf("%s: %d messages redelivered, %d waiting for an ack", name, info.NumRedelivered, info.NumAckPending)
		}
	}

	// Every hostile message was refused with a reason, or failed the checkout it named.
	rejected := map[uint64][]string{}
	for _, e := range w.All("") {
		var r events.RejectedInput
		if e.Type == events.Rejected && e.DecodePayload(&r) == nil && r.Reason != "" {
			rejected[r.StreamSequence] = append(rejected[r.StreamSequence], r.Consumer+": "+r.Reason)
		}
	}
	for seq, what := range forged {
		if len(rejected[seq]) == 0 {
			t.Errorf("%s (seq %d) was not rejected", what, seq)
		}
		for _, reason := range rejected[seq] {
			if !strings.Contains(reason, "not from its producer") {
				t.Errorf("%s (seq %d) rejected for another reason: %s", what, seq, reason)
			}
		}
	}
	for _, s := range corpus {
		if len(rejected[s.seq]) > 0 || (s.checkoutID != "" && s.checkoutID != "co-hostile-real" && (failedWithReason(w, s.checkoutID) || undone(w, s.checkoutID))) {
			continue
		}
		if s.subject == string(events.Requested) && s.checkoutID == "co-hostile-real" {
			continue // a request is idempotent by checkout ID: a later one is dropped (checked below)
		}
		t.Errorf("%s on %s (seq %d, checkout %q): neither rejected nor failed its checkout; saw %v",
			s.name, s.subject, s.seq, s.checkoutID, eventTypes(w.All(s.checkoutID)))
	}

	// Nothing the corpus or the replays did changed stock or money.
	if after := allStock(t, sys); !slices.Equal(after, before) {
		t.Errorf("stock changed by hostile input:\nbefore %+v\nafter  %+v", before, after)
	}
	if pis := intents(sys, "co-hostile-real"); len(pis) != 1 || pis[0].AmountRefunded != 0 || pis[0].Status != "succeeded" {
		t.Errorf("the real checkout's payment after the replays: %+v", pis)
	}
	if st, _, err := sys.Coordinator.State(ctx, "co-hostile-real"); err != nil || st.Status != coordinator.StatusCompleted {
		t.Errorf("the real checkout after the corpus and the replays: %s (%v)", st.Status, err)
	}
	// Payments charges only what the coordinator asked for: no forged checkout reached Stripe.
	for _, pi := range sys.Emulator.Emulator.PaymentIntents() {
		if strings.HasPrefix(pi.Metadata["checkout_id"], "hx-") {
			t.Errorf("a PaymentIntent for forged checkout %s: %+v", pi.Metadata["checkout_id"], pi)
		}
	}

	// A real checkout still goes through.
	tee := stock(t, sys, "tee-jetstream")
	cart = createCart(t, sys, "USD", events.CartItem{ProductID: "tee-jetstream", Quantity: 2})
	publishCheckout(t, sys, checkoutRequest("co-after-hostile", cart.ID, "pm_card_visa", california))
	if done := w.Wait(t, "co-after-hostile", wait, events.Completed, events.Failed); done.Type != events.Completed {
		t.Fatalf("checkout after the corpus ended in %s: %s", done.Type, done.Payload)
	}
	natstest.Eventually(t, wait, func() bool {
		now := stock(t, sys, "tee-jetstream")
		return now.Sold == tee.Sold+2 && now.Available == tee.Available-2 && now.Reserved == tee.Reserved
	}, "stock after the checkout: %+v, before %+v", stock(t, sys, "tee-jetstream"), tee)
	if pis := intents(sys, "co-after-hostile"); len(pis) != 1 || pis[0].Status != "succeeded" {
		t.Errorf("payment intents %+v, want one succeeded", pis)
	}
}

// forgedEvent is a well-formed event of subject: the real checkout's where it has one.
func forgedEvent(t *testing.T, w *natstest.Watcher, subject events.Subject, n *int) string {
	t.Helper()
	if m := w.Msg("co-hostile-real", subject); m != nil {
		return string(m.Data)
	}
	*n++
	id := fmt.Sprintf("hx-%d", *n)
	e := events.Must(id, subject, events.StepFailure{Step: events.StepProcessPayment, Code: events.CodeCardDeclined, Message: "forged"})
	e.Time = time.Now().UTC()
	data, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// signatureOf is the signature a message came with.
func signatureOf(m *nats.Msg) nats.Header {
	h := nats.Header{}
	for _, k := range []string{events.SignerHeader, events.SignatureHeader} {
		if v := m.Header.Get(k); v != "" {
			h.Set(k, v)
		}
	}
	return h
}

func allStock(t *testing.T, sys *System) []events.Stock {
	t.Helper()
	all := request[[]events.Stock](t, sys.NC, events.InventoryStock, map[string]string{})
	slices.SortFunc(all, func(a, b events.Stock) int { return strings.Compare(a.ProductID, b.ProductID) })
	return all
}

// failedWithReason reports a step failure or checkout.failed with a message for checkoutID.
func failedWithReason(w *natstest.Watcher, checkoutID string) bool {
	for _, e := range w.All(checkoutID) {
		if _, ok, found := events.Checkout.Outcome(e.Type); (found && !ok) || e.Type == events.Failed {
			var f struct {
				Message string `json:"message"`
			}
			if json.Unmarshal(e.Payload, &f) == nil && f.Message != "" {
				return true
			}
		}
	}
	return false
}

// undone reports that the coordinator undid a step done for checkoutID, which it never
// heard of, and the undo was confirmed.
func undone(w *natstest.Watcher, checkoutID string) bool {
	for _, e := range w.All(checkoutID) {
		if step, ok := events.Checkout.Compensation(e.Type); ok && w.Count(checkoutID, step.Compensate) > 0 {
			return true
		}
	}
	return false
}

func eventTypes(es []events.Envelope) []events.Subject {
	var out []events.Subject
	for _, e := range es {
		out = append(out, e.Type)
	}
	return out
}
