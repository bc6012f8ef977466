package events

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

const goodRequest = `{"cart_id":"cart_1","customer_id":"cus_1","customer_email":"ada@example.com",
 "payment_method_id":"pm_card_visa",
 "shipping_address":{"line1":"1 Main St","city":"Springfield","postal_code":"12345","country":"US","region":"CA"},
 "billing_address":{"line1":"1 Main St","city":"Springfield","postal_code":"12345","country":"US"}}`

func TestRequestEnvelopeIDs(t *testing.T) {
	stored := time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)
	at7 := Origin{StreamSeq: 7, Stored: stored}
	a := RequestEnvelope([]byte(goodRequest), at7)
	b := RequestEnvelope([]byte(goodRequest), at7) // a redelivery of the same message
	if a.CheckoutID != b.CheckoutID || !strings.HasPrefix(a.CheckoutID, "co_") {
		t.Errorf("derived IDs %q and %q: want the same co_ ID for the same message", a.CheckoutID, b.CheckoutID)
	}
	if c := RequestEnvelope([]byte(goodRequest), Origin{StreamSeq: 8, Stored: stored}); c.CheckoutID == a.CheckoutID {
		t.Error("the same JSON published again got the same checkout ID")
	}
	k1 := RequestEnvelope([]byte(goodRequest), Origin{MsgID: "client-key-1", StreamSeq: 9})
	k2 := RequestEnvelope([]byte(goodRequest), Origin{MsgID: "client-key-1", StreamSeq: 90})
	if k1.CheckoutID != k2.CheckoutID || k1.CheckoutID == a.CheckoutID {
		t.Error("a publisher's retry with the same Nats-Msg-Id must name the same checkout")
	}
	chosen := strings.Replace(goodRequest, `{"cart_id"`, `{"checkout_id":"order-42","cart_id"`, 1)
	if e := RequestEnvelope([]byte(chosen), Origin{MsgID: "x"}); e.CheckoutID != "order-42" || e.ID != "order-42:checkout.requested" {
		t.Errorf("client checkout_id not kept: %+v", e)
	}
	if !ValidCheckoutID(a.CheckoutID) {
		t.Errorf("derived ID %q is not a valid checkout ID", a.CheckoutID)
	}
}

func TestParseRequest(t *testing.T) {
	if _, err := ParseRequest(RequestEnvelope([]byte(goodRequest), Origin{})); err != nil {
		t.Fatalf("good request refused: %v", err)
	}
	bad := map[string]string{
		"not json":         `{"cart_id": `,
		"array":            `[1,2]`,
		"unknown field":    strings.Replace(goodRequest, `"cart_id"`, `"coupon":"X","cart_id"`, 1),
		"wrong type":       strings.Replace(goodRequest, `"cart_1"`, `17`, 1),
		"missing cart":     strings.Replace(goodRequest, `"cart_1"`, `""`, 1),
		"card number":      strings.Replace(goodRequest, `pm_card_visa`, `4242424242424242`, 1),
		"bad email":        strings.Replace(goodRequest, `ada@example.com`, `ada`, 1),
		"bad country":      strings.Replace(goodRequest, `"country":"US","region"`, `"country":"USA","region"`, 1),
		"bad checkout id":  strings.Replace(goodRequest, `{"cart_id"`, `{"checkout_id":"a b","cart_id"`, 1),
		"trailing garbage": goodRequest + `{}`,
	}
	for name, body := range bad {
		_, err := ParseRequest(RequestEnvelope([]byte(body), Origin{}))
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}

func TestDecodeEnvelope(t *testing.T) {
	e := Must("co_1", CartFailed, StepFailure{Step: StepValidateCart, Code: CodeCartEmpty, Message: "empty"})
	raw, _ := e.Encode()
	if _, err := Decode(string(CartFailed), raw); err != nil {
		t.Fatalf("round trip: %v", err)
	}
	if _, err := Decode(string(CartValidated), raw); !errors.Is(err, ErrMalformed) {
		t.Errorf("type/subject mismatch accepted: %v", err)
	}
	for name, body := range map[string]string{
		"invalid json":  `{`,
		"unknown field": `{"id":"a","type":"checkout.cart.failed","checkout_id":"c","schema_version":1,"payload":{},"extra":1}`,
		"no checkout":   `{"id":"a","type":"checkout.cart.failed","schema_version":1,"payload":{}}`,
		"bad checkout":  `{"id":"a","type":"checkout.cart.failed","checkout_id":"a.b","schema_version":1,"payload":{}}`,
		"old schema":    `{"id":"a","type":"checkout.cart.failed","checkout_id":"c","schema_version":0,"payload":{}}`,
	} {
		if _, err := Decode(string(CartFailed), []byte(body)); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", name, err)
		}
	}
}

func TestReturnURLRule(t *testing.T) {
	hostile := []string{
		"javascript:alert(document.cookie)", "data:text/html,<script>alert(1)</script>",
		"//evil.example/x", "/relative", "https://shop.example@evil.example/", "https:///nohost",
		"https://" + strings.Repeat("a", 2000) + ".example/",
	}
	for _, raw := range hostile {
		if _, err := parseWebURL("return_url", raw); err == nil {
			t.Errorf("%.40q parsed as a web URL", raw)
		}
		if err := (ReturnURLRule{}).Check(raw); err == nil || strings.Contains(err.Error(), raw) {
			t.Errorf("%.40q: the zero rule said %v; want a refusal that does not quote it", raw, err)
		}
	}
	zero := ReturnURLRule{}
	for raw, ok := range map[string]bool{
		"": true, "https://shop.example/return?co=1": true,
		"http://evil.example/": false, "http://localhost:8080/back": false, "ftp://shop.example/": false,
	} {
		if err := zero.Check(raw); (err == nil) != ok {
			t.Errorf("zero rule, %q: %v, want ok %v", raw, err, ok)
		}
	}

	allow, err := ParseReturnURLAllow(" https://shop.example, http://localhost:8080 ,https://pay.example/checkout/")
	if err != nil {
		t.Fatal(err)
	}
	for raw, ok := range map[string]bool{
		"https://shop.example":                      true,
		"https://SHOP.example/any/path?x=1":         true,
		"http://localhost:8080/ui/return":           true,
		"https://pay.example/checkout/done":         true,
		"https://pay.example/other":                 false,
		"https://pay.example/checkout/../x":         false,
		"http://localhost:9999/":                    false,
		"http://shop.example/":                      false, // the origin is https
		"https://shop.example.evil.example/":        false,
		"https://evil.example/":                     false,
		"javascript:alert(1)//https://shop.example": false,
	} {
		if err := allow.Check(raw); (err == nil) != ok {
			t.Errorf("allow-list, %q: %v, want ok %v", raw, err, ok)
		}
	}
	for _, bad := range []string{"shop.example", "https://shop.example/checkout", "https://x.example/?a=1", "javascript:x"} {
		if _, err := ParseReturnURLAllow(bad); err == nil {
			t.Errorf("allow-list %q accepted", bad)
		}
	}
	if got := allow.String(); got != "https://shop.example,http://localhost:8080,https://pay.example/checkout/" {
		t.Errorf("String() = %q", got)
	}
}

func TestRequestReturnURLSyntax(t *testing.T) {
	for raw, ok := range map[string]bool{"": true, "https://shop.example/r": true, "http://evil.example/": true, "javascript:alert(1)": false} {
		body := strings.Replace(goodRequest, `{"cart_id"`, `{"return_url":`+strconv.Quote(raw)+`,"cart_id"`, 1)
		_, err := ParseRequest(RequestEnvelope([]byte(body), Origin{}))
		if (err == nil) != ok {
			t.Errorf("return_url %q: %v, want ok %v", raw, err, ok)
		}
	}
}

// Addresses are Stripe's shape: state (region is its old name, still read), line2.
func TestRequestAddresses(t *testing.T) {
	withState := strings.Replace(goodRequest, `"region":"CA"`, `"state":"CA","line2":"Apt 4"`, 1)
	for name, body := range map[string]string{"state": withState, "region": goodRequest} {
		r, err := ParseRequest(RequestEnvelope([]byte(body), Origin{}))
		if err != nil || r.ShippingAddress.State != "CA" {
			t.Fatalf("%s: %+v, %v; want state CA", name, r.ShippingAddress, err)
		}
		if name == "state" && r.ShippingAddress.Line2 != "Apt 4" {
			t.Errorf("line2 lost: %+v", r.ShippingAddress)
		}
	}
	same := strings.Replace(goodRequest, `"region":"CA"`, `"region":"CA","state":"CA"`, 1)
	if r, err := ParseRequest(RequestEnvelope([]byte(same), Origin{})); err != nil || r.ShippingAddress.State != "CA" {
		t.Errorf("state and region agreeing: %+v, %v", r.ShippingAddress, err)
	}
	differ := strings.Replace(goodRequest, `"region":"CA"`, `"region":"CA","state":"NY"`, 1)
	if _, err := ParseRequest(RequestEnvelope([]byte(differ), Origin{})); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "send state only") {
		t.Errorf("state and region differing: %v, want a refusal", err)
	}

	// Unknown fields of an address are named, each with its path, in one error.
	unknown := strings.Replace(goodRequest, `"region":"CA"`, `"region":"CA","county":"SF","Floor":"3"`, 1)
	unknown = strings.Replace(unknown, `"country":"US"}}`, `"country":"US","zip":"1"}}`, 1)
	_, err := ParseRequest(RequestEnvelope([]byte(unknown), Origin{}))
	var fields *UnknownFieldsError
	if !errors.Is(err, ErrMalformed) || !errors.As(err, &fields) ||
		strings.Join(fields.Fields, " ") != "billing_address.zip shipping_address.Floor shipping_address.county" {
		t.Fatalf("unknown address fields: %v (%+v)", err, fields)
	}
	if want := `checkout.requested payload: malformed event: unknown address fields "billing_address.zip", "shipping_address.Floor"`; !strings.HasPrefix(err.Error(), want) {
		t.Errorf("error %q, want it to start %q", err, want)
	}
}

// An event written with "region" is read, and written back byte for byte: a rebuild
// compares the bytes of what it computes again with the stream's.
func TestAddressOldSpellingRoundTrips(t *testing.T) {
	old := `{"name":"Ada","line1":"1 Main St","city":"Springfield","region":"CA","postal_code":"12345","country":"US"}`
	var a Address
	if err := json.Unmarshal([]byte(old), &a); err != nil || a.State != "CA" {
		t.Fatalf("old spelling: %+v, %v", a, err)
	}
	if again, _ := json.Marshal(a); string(again) != old {
		t.Errorf("re-encoded as %s, want %s", again, old)
	}
	if again, _ := json.Marshal(a.Canonical()); !strings.Contains(string(again), `"state":"CA"`) || strings.Contains(string(again), "region") {
		t.Errorf("canonical form %s, want state", again)
	}
	var q Quote
	err := strictUnmarshal([]byte(`{"shipping_address":{"line1":"x","city":"y","postal_code":"1","country":"US","suburb":"z"}}`), &q)
	if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), `"suburb"`) {
		t.Errorf("an unknown field in an event's address: %v, want it named", err)
	}
}

func TestNextAttemptID(t *testing.T) {
	long := strings.Repeat("x", 62)
	for id, want := range map[string]string{
		"co_1":       "co_1-r2",
		"co_1-r2":    "co_1-r3",
		"co_1-r9":    "co_1-r10",
		"co_1-r1":    "co_1-r1-r2", // not a retry's suffix: -r1 is never made
		"co_1-r02":   "co_1-r02-r2",
		"co-rush":    "co-rush-r2",
		long[:59]:    long[:59] + "-r2",
		long + "-r9": "",
	} {
		got, ok := NextAttemptID(id)
		if want == "" {
			if ok {
				t.Errorf("NextAttemptID(%q) = %q, want none: longer than 64", id, got)
			}
			continue
		}
		if got != want || !ok {
			t.Errorf("NextAttemptID(%q) = %q, %v, want %q", id, got, ok, want)
		}
	}
}
