package events

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

// benchOrder is an order.created envelope as the checkout makes it (three lines).
func benchOrder(b *testing.B) []byte {
	b.Helper()
	addr := Address{Name: "Ada Lovelace", Line1: "1 Market St", City: "San Francisco", State: "CA", PostalCode: "94105", Country: "US"}
	line := Line{ProductID: "tee-jetstream", Name: "JetStream tee", Quantity: 1, UnitPrice: decimal.RequireFromString("25.00"), Total: decimal.RequireFromString("25.00")}
	q := Quote{CartID: "cart_1", CustomerID: "cus_1", CustomerEmail: "ada@example.com", PaymentMethodID: "pm_card_visa",
		ShippingAddress: addr, BillingAddress: addr, Currency: "USD", Lines: []Line{line, line, line},
		Subtotal: decimal.RequireFromString("75.00"), Tax: decimal.RequireFromString("6.19"), Shipping: decimal.RequireFromString("5.00"), Total: decimal.RequireFromString("86.19")}
	e := Must("co_0123456789abcdef", OrderCreated, Order{ID: "ord_1", Number: "JC-000001", CheckoutID: "co_0123456789abcdef", PaymentIntentID: "pi_1", Status: "created", CreatedAt: time.Now().UTC(), Quote: q})
	e.CausationID, e.Time = ID("co_0123456789abcdef", OrderRequested), time.Now().UTC()
	data, err := e.Encode()
	if err != nil {
		b.Fatal(err)
	}
	return data
}

// BenchmarkDecodeOrderCreated: what a consumer spends on an event: the strict envelope, then
// its payload.
func BenchmarkDecodeOrderCreated(b *testing.B) {
	data := benchOrder(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		e, err := Decode(string(OrderCreated), data)
		if err != nil {
			b.Fatal(err)
		}
		var o Order
		if err := e.DecodePayload(&o); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUnmarshalOrderCreated is the same decoding without strictness, for comparison.
func BenchmarkUnmarshalOrderCreated(b *testing.B) {
	data := benchOrder(b)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		var e Envelope
		if err := json.Unmarshal(data, &e); err != nil {
			b.Fatal(err)
		}
		var o Order
		if err := json.Unmarshal(e.Payload, &o); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEncodeOrderCreated: what a producer spends on the wire form of an event.
func BenchmarkEncodeOrderCreated(b *testing.B) {
	data := benchOrder(b)
	e, err := Decode(string(OrderCreated), data)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := e.Encode(); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSign and BenchmarkVerify: what signing adds to publishing an event, and checking
// it to consuming one (compare with BenchmarkDecodeOrderCreated).
func BenchmarkSign(b *testing.B) {
	data := benchOrder(b)
	k := benchKeys(b)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if _, _, err := k.Sign(ServiceOrders, OrderCreated, data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	data := benchOrder(b)
	k := benchKeys(b)
	signer, sig, err := k.Sign(ServiceOrders, OrderCreated, data)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		if err := k.Verify(OrderCreated, signer, sig, data); err != nil {
			b.Fatal(err)
		}
	}
}

func benchKeys(b *testing.B) *Keys {
	b.Helper()
	seed, pub, err := GenerateSeed()
	if err != nil {
		b.Fatal(err)
	}
	k, err := NewKeys([]string{ServiceOrders + "=" + pub}, map[string]string{ServiceOrders: seed})
	if err != nil {
		b.Fatal(err)
	}
	return k
}
