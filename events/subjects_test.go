package events

import (
	"errors"
	"slices"
	"testing"
)

// From version 3 an event goes on its checkout's subject, and a reader takes both forms.
func TestSubjectsNameTheirCheckout(t *testing.T) {
	for _, tt := range []struct {
		typ        Subject
		checkoutID string
		version    int
		want       string
	}{
		{CartValidated, "co_1", 3, "checkout.co_1.cart.validated"},
		{Completed, "co_1", 3, "checkout.co_1.completed"},
		{CartValidated, "co_1", 1, "checkout.cart.validated"},                 // held at an older version
		{CartValidated, "cart", 3, "checkout.cart.validated"},                 // lower-case letters alone: its old form
		{Failed, "cart", 3, "checkout.failed"},                                // not checkout.cart.failed, cart's failure
		{Requested, "co_1", 3, "checkout.requested"},                          // the public input
		{Deadline, "co_1", 3, "checkout.deadline"},                            // scheduled: fired back on its name
		{InventoryExpire, "co-1", 3, "checkout.inventory.expire"},             // scheduled
		{FraudReviewDecided, "Co-1", 3, "checkout.Co-1.fraud.review_decided"}, // any valid ID with more than lower-case letters
	} {
		got := OnCheckoutSubject(tt.typ, tt.checkoutID, tt.version)
		if got != tt.want {
			t.Errorf("%s of %s at version %d: %s, want %s", tt.typ, tt.checkoutID, tt.version, got, tt.want)
		}
		if typ := TypeOf(got); typ != tt.typ {
			t.Errorf("TypeOf(%s) = %s, want %s", got, typ, tt.typ)
		}
	}
	for subject, want := range map[string]struct {
		typ Subject
		id  string
	}{
		"checkout.cart.failed":             {CartFailed, ""},
		"checkout.co_1.failed":             {Failed, "co_1"},
		"checkout.co_1.cart.failed":        {CartFailed, "co_1"},
		"checkout.requested":               {Requested, ""},
		"checkout.*.cart.validated":        {"checkout.*.cart.validated", ""},
		"warehouse.pick":                   {WarehousePick, ""},
		"checkout.payment.action_required": {PaymentActionPending, ""},
	} {
		if typ, id := ParseSubject(subject); typ != want.typ || id != want.id {
			t.Errorf("ParseSubject(%s) = %s, %q; want %s, %q", subject, typ, id, want.typ, want.id)
		}
	}
	if got := Filters(CartValidated); !slices.Equal(got, []string{"checkout.cart.validated", "checkout.*.cart.validated"}) {
		t.Errorf("filters of %s: %v", CartValidated, got)
	}
	if got := Filters(Deadline); !slices.Equal(got, []string{"checkout.deadline"}) {
		t.Errorf("filters of %s: %v", Deadline, got)
	}
	for _, tt := range []struct {
		filter string
		v      int
		want   bool
	}{{"checkout.*.cart.validated", 2, false}, {"checkout.*.cart.validated", 3, true}, {"checkout.cart.validated", 1, true},
		{"checkout.fulfilment.requested", 1, false}, {"checkout.*.fulfilment.requested", 3, true}} {
		if got := FilterExistsAt(tt.filter, tt.v); got != tt.want {
			t.Errorf("FilterExistsAt(%s, %d) = %v", tt.filter, tt.v, got)
		}
	}
}

// An event is read on its name or on its own checkout's subject, never on another's.
func TestDecodeChecksTheCheckoutOnTheSubject(t *testing.T) {
	e := Must("co_1", CartValidated, goldenQuote())
	data, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	for _, subject := range []string{"checkout.cart.validated", "checkout.co_1.cart.validated"} {
		if _, err := Decode(subject, data); err != nil {
			t.Errorf("on %s: %v", subject, err)
		}
	}
	for _, subject := range []string{"checkout.co_2.cart.validated", "checkout.co_1.inventory.reserved", "checkout.co_1.cart.failed"} {
		if _, err := Decode(subject, data); !errors.Is(err, ErrMalformed) {
			t.Errorf("on %s: %v, want malformed", subject, err)
		}
	}
	if got := e.Subject(); got != "checkout.co_1.cart.validated" {
		t.Errorf("published on %s", got)
	}
}
