package events

import (
	"encoding/json"
	"errors"
	"reflect"
	"testing"
	"time"
)

// The decoders every message from outside goes through, fuzzed for the properties the
// services rely on. Seeds are in testdata/fuzz/<FuzzName> as well as below.

func FuzzDecode(f *testing.F) {
	good, _ := Must("co_1", CartFailed, StepFailure{Step: StepValidateCart, Code: CodeCartEmpty, Message: "empty"}).Encode()
	f.Add(string(CartFailed), good)
	f.Add(string(CartValidated), good)
	f.Add(string(CartFailed), []byte(`{"id":"a","type":"checkout.cart.failed","checkout_id":"c","schema_version":1,"payload":{},"extra":1}`))
	f.Add(string(Deadline), []byte(`{"id":"a","type":"checkout.deadline","checkout_id":"c","schema_version":1,"time":"2026-01-02T03:04:05.999+01:00","payload":{"step":"x"},"schedule":{"at":"2026-01-02T03:04:05Z","key":"k"}}`))
	f.Add(string(CartFailed), []byte("{\"id\":\"a\",\"type\":\"checkout.cart.failed\",\"checkout_id\":\"c\xff\",\"schema_version\":1,\"payload\":1}"))
	f.Add(string(CartFailed), []byte(`{"id":1}`))
	f.Fuzz(func(t *testing.T, subject string, data []byte) {
		e, err := Decode(subject, data)
		if err != nil {
			if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrNewerSchema) {
				t.Fatalf("error %v wraps neither ErrMalformed nor ErrNewerSchema", err)
			}
			return
		}
		if string(e.Type) != subject || e.ID == "" || !ValidCheckoutID(e.CheckoutID) || len(e.Payload) == 0 ||
			e.SchemaVersion < OldestSchemaVersion || e.SchemaVersion > SchemaVersion {
			t.Fatalf("accepted an envelope the consumers cannot rely on: %+v", e)
		}
		once, err := e.Encode()
		if err != nil {
			t.Fatalf("a decoded envelope does not encode: %v", err)
		}
		again, err := Decode(subject, once)
		if err != nil {
			t.Fatalf("a re-encoded envelope is refused: %v\n%s", err, once)
		}
		if twice, _ := again.Encode(); string(twice) != string(once) {
			t.Fatalf("re-encoding changed the envelope:\n%s\n%s", once, twice)
		}
	})
}

func FuzzRequest(f *testing.F) {
	f.Add([]byte(goodRequest), "", uint64(7))
	f.Add([]byte(`{"checkout_id":"order-42","cart_id":"c"}`), "key-1", uint64(1))
	f.Add([]byte(`{"checkout_id":17}`), "", uint64(0))
	f.Add([]byte(`{"checkout_id":"a b"}`), "", uint64(3))
	f.Add([]byte(`{"cart_id": `), "", uint64(2))
	f.Add([]byte(`[1,2]`), "", uint64(2))
	f.Add([]byte(`"text"`), "", uint64(2))
	f.Add([]byte("\xff\xfe"), "x", uint64(9))
	f.Add([]byte(goodRequest+`{}`), "", uint64(4))
	stored := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, data []byte, msgID string, seq uint64) {
		from := Origin{MsgID: msgID, StreamSeq: seq, Stored: stored}
		e := RequestEnvelope(data, from)
		if !ValidCheckoutID(e.CheckoutID) || e.ID != ID(e.CheckoutID, Requested) || e.Type != Requested {
			t.Fatalf("request envelope without a usable checkout: %+v", e)
		}
		raw, err := e.Encode()
		if err != nil {
			t.Fatalf("request envelope does not encode: %v", err)
		}
		if _, err := Decode(string(Requested), raw); err != nil {
			t.Fatalf("request envelope is not a valid envelope: %v\n%s", err, raw)
		}
		r, err := ParseRequest(e)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v does not wrap ErrMalformed", err)
			}
			return
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("parsed a request that is not valid: %v", err)
		}
		if r.CheckoutID != "" && r.CheckoutID != e.CheckoutID {
			t.Fatalf("request names checkout %q, its envelope %q", r.CheckoutID, e.CheckoutID)
		}
		reencoded, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		e2 := RequestEnvelope(reencoded, from)
		r2, err := ParseRequest(e2)
		if err != nil || !reflect.DeepEqual(r, r2) || e2.CheckoutID != e.CheckoutID {
			t.Fatalf("re-encoded request parses differently: %+v (%v), was %+v", r2, err, r)
		}
	})
}

// FuzzDecodeStrict covers the request bodies of the micro endpoints (microx.Decode calls
// DecodeStrict).
func FuzzDecodeStrict(f *testing.F) {
	f.Add([]byte(`{"customer_id":"cus_1","currency":"USD","items":[{"product_id":"tee","quantity":2}]}`))
	f.Add([]byte(`{"customer_id":"cus_1","currency":"USD","items":[{"product_id":"tee","quantity":-1e99}]}`))
	f.Add([]byte(`{"cart_id":"cart_1"}`))
	f.Add([]byte(`{"decision":"approve","reviewer":"ops","note":"ok"}`))
	f.Add([]byte(`{"items":null,"coupon":"X"}`))
	f.Add([]byte(`{} {}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		roundTrips(t, data, &CreateCart{})
		roundTrips(t, data, &GetCart{})
		roundTrips(t, data, &ReviewDecision{})
	})
}

// roundTrips decodes data strictly into v; what decodes must encode and decode to the same.
func roundTrips[T any](t *testing.T, data []byte, v *T) {
	t.Helper()
	if err := DecodeStrict(data, v); err != nil {
		if !errors.Is(err, ErrMalformed) {
			t.Fatalf("error %v does not wrap ErrMalformed", err)
		}
		return
	}
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("decoded %T does not encode: %v", v, err)
	}
	var again T
	if err := DecodeStrict(raw, &again); err != nil || !reflect.DeepEqual(*v, again) {
		t.Fatalf("%T round trip: %+v (%v), was %+v", v, again, err, *v)
	}
}
