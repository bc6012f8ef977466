package events

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// discounted is the golden quote with 10% off its subtotal: 21.00 − 2.10, tax 20% of the rest.
func discounted() Quote {
	q := goldenQuote()
	q.Discounts = []Discount{{Code: "WELCOME10", Description: "10% off", Amount: dec("2.10")}}
	q.Tax = dec("3.78")
	q.Total = dec("41.68")
	return q
}

// TestDiscountedQuoteAddsUp: the total is the subtotal less the discounts, plus tax and
// shipping; a discount names its code, takes off a positive amount, and never more than the
// subtotal.
func TestDiscountedQuoteAddsUp(t *testing.T) {
	if err := discounted().Validate(); err != nil {
		t.Fatalf("a discounted quote that adds up: %v", err)
	}
	for name, change := range map[string]func(*Quote){
		"total ignores the discount": func(q *Quote) { q.Total = dec("43.78") },
		"no code":                    func(q *Quote) { q.Discounts[0].Code = "" },
		"a negative discount":        func(q *Quote) { q.Discounts[0].Amount = dec("-2.10"); q.Total = dec("45.88") },
		"more off than the subtotal": func(q *Quote) { q.Discounts[0].Amount = dec("22.00"); q.Tax = dec("0"); q.Total = dec("18.00") },
	} {
		q := discounted()
		change(&q)
		if err := q.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestDiscountsAreVersionThree: a discounted quote is written and read at version 3; a
// writer held at an older version cannot write it (its total would not add up for an older
// reader, which does not know discounts), and an event claiming an older version while
// carrying discounts is refused.
func TestDiscountsAreVersionThree(t *testing.T) {
	e := Must("chk_golden", CartValidated, discounted())
	e.Time = goldenTime
	data, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Decode(string(CartValidated), data)
	if err != nil {
		t.Fatal(err)
	}
	var q Quote
	if err := back.DecodePayload(&q); err != nil || len(q.Discounts) != 1 || !q.Discount().Equal(dec("2.10")) {
		t.Fatalf("read back %+v (%v)", q.Discounts, err)
	}
	if f, _ := reflect.TypeFor[Quote]().FieldByName("Discounts"); sinceOf(f) != DiscountsSince {
		t.Errorf("Quote.Discounts came in version %d, DiscountsSince says %d", sinceOf(f), DiscountsSince)
	}
	for v := OldestSchemaVersion; v < DiscountsSince; v++ {
		held := e
		held.SchemaVersion = v
		if out, err := held.Encode(); err == nil {
			t.Errorf("a discounted quote written at version %d: %s", v, out)
		}
		claimed := bytes.Replace(data, fmt.Appendf(nil, `"schema_version":%d`, SchemaVersion), fmt.Appendf(nil, `"schema_version":%d`, v), 1)
		if _, err := Decode(string(CartValidated), claimed); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "discounts") {
			t.Errorf("a version %d quote with discounts: %v, want ErrMalformed naming discounts", v, err)
		}
	}
}

// TestCouponCodeInRequest: a request may name a coupon by a short code; anything else is a
// malformed request, with the reason.
func TestCouponCodeInRequest(t *testing.T) {
	for code, ok := range map[string]bool{"WELCOME10": true, "summer_sale-2026": true, "NO SPACES": false, strings.Repeat("X", 33): false, "€URO": false} {
		body := strings.Replace(goodRequest, `{"cart_id"`, fmt.Sprintf(`{"coupon_code":%q,"cart_id"`, code), 1)
		r, err := ParseRequest(RequestEnvelope([]byte(body), Origin{MsgID: "m1"}))
		switch {
		case ok && (err != nil || r.CouponCode != code):
			t.Errorf("coupon code %q: %v, read %q", code, err, r.CouponCode)
		case !ok && (!errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "coupon_code")):
			t.Errorf("coupon code %q: %v, want ErrMalformed naming coupon_code", code, err)
		}
	}
}

// TestHeldWriterCarriesALaterPayloadAtTheCurrentVersion: a writer held at an older version
// writes an event whose payload only a later version can say (a discounted quote it got from
// an event of the current version, while the hold is being lifted) at the current version,
// instead of failing to write it until its own hold is lifted; anything else at the hold.
func TestHeldWriterCarriesALaterPayloadAtTheCurrentVersion(t *testing.T) {
	t.Cleanup(func() { _ = HoldWriteVersion(0) })
	if err := HoldWriteVersion(OldestSchemaVersion); err != nil {
		t.Fatal(err)
	}
	q := discounted()
	for _, c := range []struct {
		typ     Subject
		payload any
		want    int
	}{
		{CartValidated, goldenQuote(), OldestSchemaVersion},
		{CartValidated, q, SchemaVersion},
		{PaymentCaptured, Payment{PaymentIntentID: "pi_1", Amount: q.Total, Currency: q.Currency, Quote: q}, SchemaVersion},
		{OrderCreated, Order{ID: "ord_1", Number: "JC-1", Quote: q}, SchemaVersion},
	} {
		e := Must("chk_golden", c.typ, c.payload)
		if e.SchemaVersion != c.want {
			t.Errorf("%s held at %d: written at version %d, want %d", c.typ, OldestSchemaVersion, e.SchemaVersion, c.want)
		}
		if _, err := e.Encode(); err != nil {
			t.Errorf("%s: %v", c.typ, err)
		}
	}
}
