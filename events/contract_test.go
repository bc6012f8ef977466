package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

// The contract's golden files: testdata/contract/v<N>/<subject>.json is the wire form of one
// sample event of each subject as version N writes it, and schema.txt the shape of every
// payload type. The files of older versions are what that release wrote (v1: release
// v0.1.0, generated there from the same samples): they never change. -update rewrites the
// current version's files and the schema, for a change that follows the rules
// (ARCHITECTURE.md, "Changing the event contract").
var update = flag.Bool("update", false, "rewrite the current version's golden files and schema")

const contractDir = "testdata/contract"

// goldenTime is the time every sample carries.
var goldenTime = time.Date(2026, 12, 7, 10, 0, 0, 0, time.UTC)

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// goldenQuote is the quote inside every sample that carries one, as the current version
// writes it.
func goldenQuote() Quote {
	addr := Address{Name: "Ada Lovelace", Line1: "12 St James's Square", City: "London", PostalCode: "SW1Y 4JH", Country: "GB"}
	rate := dec("0.2")
	return Quote{CartID: "cart_1", CustomerID: "cus_1", CustomerEmail: "ada@example.com", PaymentMethodID: "pm_card_visa",
		ShippingAddress: addr, BillingAddress: addr, ReturnURL: "https://shop.example/return", Currency: "USD",
		Lines:    []Line{{ProductID: "sku-1", Name: "Analytical Engine", Quantity: 2, UnitPrice: dec("10.50"), Total: dec("21.00")}},
		Subtotal: dec("21.00"), Tax: dec("4.20"), TaxRate: &rate, Shipping: dec("19.00"), Total: dec("44.20")}
}

// goldenPayload is the sample payload of a subject, every field set.
func goldenPayload(t *testing.T, subject Subject) any {
	q := goldenQuote()
	order := Order{ID: "ord_1", Number: "JC-000001", CheckoutID: "chk_golden", PaymentIntentID: "pi_1", Status: "created", CreatedAt: goldenTime, Quote: q}
	items := []ReservedItem{{ProductID: "sku-1", Quantity: 2}}
	failure := StepFailure{Step: StepProcessPayment, Code: "card_declined", Message: "Your card was declined.", Uncertain: true,
		Products: []string{"Analytical Engine"}, Reference: "pi_1"}
	typ, ok := payloadType(subject)
	if !ok {
		t.Fatalf("%s: no payload type", subject)
	}
	switch typ.Name() {
	case "Quote":
		return q
	case "Reservation":
		return Reservation{ReservationID: "res_1", Items: items}
	case "RiskAssessment":
		return RiskAssessment{Risk: dec("0.12"), Reasons: []string{"new customer"}}
	case "Payment":
		return Payment{PaymentIntentID: "pi_1", Amount: q.Total, Currency: q.Currency, Quote: q}
	case "Order":
		return order
	case "EmailSent":
		return EmailSent{OrderID: "ord_1", To: "ada@example.com", MessageID: "<m1@jetcheckout.local>"}
	case "Shipment":
		return Shipment{Label: ShippingLabel{OrderID: "ord_1", Carrier: "demo-post", TrackingNumber: "TRK1", Address: q.ShippingAddress, CreatedAt: goldenTime}, Order: order}
	case "PickQueued":
		return PickQueued{OrderID: "ord_1", PickRequestID: "pick_1"}
	case "Compensation":
		return Compensation{Reason: "payment failed"}
	case "Release":
		return Release{ReservationID: "res_1", Items: items}
	case "Refund":
		return Refund{PaymentIntentID: "pi_1", RefundID: "re_1", Amount: q.Total, Currency: q.Currency,
			Swept: []SweptIntent{{PaymentIntentID: "pi_2", Found: "succeeded", Action: "refunded", RefundID: "re_2", Refunded: dec("44.20"), Received: dec("44.20")}}}
	case "CheckoutCompleted":
		return CheckoutCompleted{OrderID: "ord_1", OrderNumber: "JC-000001", PaymentIntentID: "pi_1", Total: q.Total, Currency: q.Currency,
			Warnings: []StepFailure{failure}, NeedsAttention: true}
	case "CheckoutFailed":
		return CheckoutFailed{Step: StepProcessPayment, Code: "card_declined", Message: "Your card was declined.", Compensated: []StepName{StepReserveInventory},
			AlsoFailed: []StepFailure{failure}, CustomerEmail: "ada@example.com", CartID: "cart_1", Products: []string{"Analytical Engine"}}
	case "Sale":
		return Sale{ReservationID: "res_1"}
	case "RejectedInput":
		return RejectedInput{Subject: "checkout.cart.validated", Consumer: "inventory", StreamSequence: 42, Reason: "malformed event: missing id"}
	case "Waiting":
		return Waiting{Reason: "3-D Secure", Until: goldenTime, NextAction: "https://hooks.stripe.com/3ds", Reference: "pi_1"}
	case "ReviewDecision":
		return ReviewDecision{Decision: ReviewApprove, Reviewer: "ops@example.com", Note: "known customer"}
	case "DeadlineReached":
		return DeadlineReached{Step: StepProcessPayment, Deadline: goldenTime}
	case "StuckWork":
		return StuckWork{Subject: "checkout.payment.refund", Consumer: "payments", Attempts: 7, Error: "stripe: 503"}
	case "Cancellation":
		return Cancellation{OrderID: "ord_1", OrderNumber: "JC-000001"}
	case "Recheck":
		return Recheck{PaymentIntentID: "pi_1", Until: goldenTime, Number: 2}
	case "Expiry":
		return Expiry{ReservationID: "res_1"}
	case "PickRequest":
		return PickRequest{OrderID: "ord_1", OrderNumber: "JC-000001", Carrier: "demo-post", TrackingNumber: "TRK1", Items: items, ShipTo: q.ShippingAddress}
	case "StepFailure":
		return failure
	case "Redrive":
		return Redrive{By: "ops@example.com", Reason: "the carrier is back", Steps: []StepName{StepCreateLabel}, Attempt: 1}
	case "RedriveOutcome":
		return RedriveOutcome{Attempt: 1, Warnings: []StepFailure{failure}, NeedsAttention: true}
	case "DeadLetterRedrive":
		return DeadLetterRedrive{By: "ops@example.com", Reason: "the signing key is deployed", Service: ServiceInventory,
			Subject: string(Completed), StreamSequence: 42, LetterReason: "checkout.completed: forged"}
	}
	t.Fatalf("%s: no sample of payload type %s: add one", subject, typ.Name())
	return nil
}

// goldenEvent is the sample event of subject at version v, encoded as a writer at v writes it.
func goldenEvent(t *testing.T, subject Subject, v int) []byte {
	e := Must("chk_golden", subject, goldenPayload(t, subject))
	e.CausationID, e.Time, e.SchemaVersion = "chk_golden:checkout.requested", goldenTime, v
	data, err := e.Encode()
	if err != nil {
		t.Fatalf("%s at version %d: %v", subject, v, err)
	}
	return data
}

// enveloped are the subjects whose events travel in an Envelope: all but the bare request.
func enveloped() []Subject {
	var out []Subject
	for _, d := range Checkout.Catalog() {
		if d.Subject != Requested {
			out = append(out, d.Subject)
		}
	}
	return out
}

// envelopedAt are the enveloped subjects version v has.
func envelopedAt(v int) []Subject {
	return slices.DeleteFunc(enveloped(), func(s Subject) bool { return !ExistsAt(s, v) })
}

func goldenPath(v int, subject Subject) string {
	return filepath.Join(contractDir, fmt.Sprintf("v%d", v), string(subject)+".json")
}

func readGolden(t *testing.T, v int, subject Subject) []byte {
	data, err := os.ReadFile(goldenPath(v, subject))
	if err != nil {
		t.Fatalf("%s has no golden event at version %d (%v): every subject needs one at every version readers accept", subject, v, err)
	}
	return bytes.TrimSpace(data)
}

// TestCurrentVersionIsGolden: what this release writes is what the golden files of the
// current version hold. A payload that changed shape fails here (and in TestSchemaIsGolden).
func TestCurrentVersionIsGolden(t *testing.T) {
	for _, subject := range enveloped() {
		got := goldenEvent(t, subject, SchemaVersion)
		if *update {
			writeFile(t, goldenPath(SchemaVersion, subject), append(got, '\n'))
			continue
		}
		if want := readGolden(t, SchemaVersion, subject); !bytes.Equal(got, want) {
			t.Errorf("%s at version %d changed:\n got %s\nwant %s\n(a change to the contract needs a new schema version: ARCHITECTURE.md, \"Changing the event contract\")", subject, SchemaVersion, got, want)
		}
	}
}

// TestHeldWritersWriteWhatTheOldReleaseWrote: a writer held at an older version writes,
// byte for byte, what that release itself wrote for the same event, so its readers take it.
func TestHeldWritersWriteWhatTheOldReleaseWrote(t *testing.T) {
	for v := OldestSchemaVersion; v < SchemaVersion; v++ {
		for _, subject := range envelopedAt(v) {
			if got, want := goldenEvent(t, subject, v), readGolden(t, v, subject); !bytes.Equal(got, want) {
				t.Errorf("%s held at version %d:\n got %s\nwant %s (what that release wrote)", subject, v, got, want)
			}
		}
	}
}

// TestOlderVersionsAreReadInTheCurrentShape: every supported older version's event decodes,
// is brought to the current version, and its payload is the current sample without the
// fields added since (absent: the old writer did not know them).
func TestOlderVersionsAreReadInTheCurrentShape(t *testing.T) {
	for v := OldestSchemaVersion; v < SchemaVersion; v++ {
		for _, subject := range envelopedAt(v) {
			e, err := Decode(string(subject), readGolden(t, v, subject))
			if err != nil {
				t.Errorf("%s at version %d: %v", subject, v, err)
				continue
			}
			if e.SchemaVersion != v {
				t.Errorf("%s: decoded as version %d, written at %d", subject, e.SchemaVersion, v)
			}
			if again, err := e.Encode(); err != nil || !bytes.Equal(again, readGolden(t, v, subject)) {
				t.Errorf("%s at version %d: written again as %s (%v), not as it came", subject, v, again, err)
			}
			typ, _ := payloadType(subject)
			got := reflect.New(typ)
			if err := e.DecodePayload(got.Interface()); err != nil {
				t.Errorf("%s at version %d: payload: %v", subject, v, err)
				continue
			}
			want := reflect.New(typ)
			want.Elem().Set(reflect.ValueOf(goldenPayload(t, subject)))
			clearSince(want.Elem(), v)
			gotJSON, _ := json.Marshal(got.Interface())
			wantJSON, _ := json.Marshal(want.Interface())
			if !bytes.Equal(gotJSON, wantJSON) {
				t.Errorf("%s at version %d read as\n %s\nwant\n %s", subject, v, gotJSON, wantJSON)
			}
		}
	}
}

// TestSchemaIsGolden: the shape of every payload type (JSON names, Go types, options, the
// version each field came in) is testdata/contract/schema.txt. A field added, removed,
// renamed or retyped fails here even when no sample sets it.
func TestSchemaIsGolden(t *testing.T) {
	got := []byte(contractSchema())
	path := filepath.Join(contractDir, "schema.txt")
	if *update {
		writeFile(t, path, got)
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("the payloads' shape changed (version %d): a new field is a new schema version with `since` on it and golden files; "+
			"ARCHITECTURE.md, \"Changing the event contract\". Now:\n%s", SchemaVersion, got)
	}
}

// contractSchema describes every payload type, one line per field, depth first.
func contractSchema() string {
	var b strings.Builder
	fmt.Fprintf(&b, "schema_version %d (reads %d to %d)\n", SchemaVersion, OldestSchemaVersion, SchemaVersion)
	seen := map[reflect.Type]bool{}
	subjects := enveloped()
	slices.Sort(subjects)
	for _, subject := range subjects {
		typ, _ := payloadType(subject)
		fmt.Fprintf(&b, "%s: %s\n", subject, typ.Name())
	}
	var describe func(t reflect.Type)
	describe = func(t reflect.Type) {
		for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Map {
			t = t.Elem()
		}
		if t.Kind() != reflect.Struct || seen[t] || t.PkgPath() != reflect.TypeFor[Quote]().PkgPath() {
			return
		}
		seen[t] = true
		fmt.Fprintf(&b, "type %s\n", t.Name())
		for i := range t.NumField() {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			fmt.Fprintf(&b, "  %s %s json:%q", f.Name, f.Type, f.Tag.Get("json"))
			if s := f.Tag.Get("since"); s != "" {
				fmt.Fprintf(&b, " since:%s", s)
			}
			b.WriteString("\n")
		}
		for i := range t.NumField() {
			if t.Field(i).IsExported() {
				describe(t.Field(i).Type)
			}
		}
	}
	for _, subject := range subjects {
		typ, _ := payloadType(subject)
		describe(typ)
	}
	return b.String()
}

// TestFieldsSinceAreOptional: a field added in a version is dropped by clearing it, so its
// zero value must not be written (a pointer or slice with omitempty, or omitzero: omitempty
// never omits a struct such as a decimal), it cannot sit in a map (not cleared there), and
// it cannot come from a version this release does not know.
func TestFieldsSinceAreOptional(t *testing.T) {
	for _, subject := range enveloped() {
		typ, _ := payloadType(subject)
		walkFields(typ, map[reflect.Type]bool{}, func(f reflect.StructField) {
			if inner := f.Type; inner.Kind() == reflect.Map {
				for inner.Kind() == reflect.Map || inner.Kind() == reflect.Pointer || inner.Kind() == reflect.Slice {
					inner = inner.Elem()
				}
				if inner.Kind() == reflect.Struct {
					t.Errorf("%s.%s: a map of structs: a field added later inside it could not be dropped", typ.Name(), f.Name)
				}
			}
			since := sinceOf(f)
			if since == 0 {
				return
			}
			if since <= OldestSchemaVersion || since > SchemaVersion {
				t.Errorf("%s.%s: since %d, but readers take versions %d to %d", typ.Name(), f.Name, since, OldestSchemaVersion, SchemaVersion)
			}
			if !droppedWhenCleared(f) {
				t.Errorf("%s.%s: added in version %d, but its zero value is still written (%s %q): a held writer could not drop it", typ.Name(), f.Name, since, f.Type, f.Tag)
			}
		})
	}
}

// droppedWhenCleared reports whether the zero value of field f is left out of its JSON.
func droppedWhenCleared(f reflect.StructField) bool {
	alone := reflect.StructOf([]reflect.StructField{{Name: f.Name, Type: f.Type, Tag: f.Tag}})
	data, err := json.Marshal(reflect.New(alone).Elem().Interface())
	return err == nil && string(data) == "{}"
}

// TestTheOptionalRuleIsWhatAHeldWriterDrops: the rule above takes what encoding/json leaves
// out, not what a tag says: a decimal with omitempty is written as "0" when cleared.
func TestTheOptionalRuleIsWhatAHeldWriterDrops(t *testing.T) {
	type fields struct {
		DecimalOmitEmpty decimal.Decimal  `json:"a,omitempty"`
		DecimalOmitZero  decimal.Decimal  `json:"b,omitzero"`
		Pointer          *decimal.Decimal `json:"c,omitempty"`
		Time             time.Time        `json:"d,omitempty"`
	}
	want := map[string]bool{"DecimalOmitEmpty": false, "DecimalOmitZero": true, "Pointer": true, "Time": false}
	typ := reflect.TypeFor[fields]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		if got := droppedWhenCleared(f); got != want[f.Name] {
			t.Errorf("%s %q dropped when cleared: %v, want %v", f.Type, f.Tag, got, want[f.Name])
		}
	}
}

// TestVersionsOutsideTheRange: a newer event is not malformed (it is kept and read once this
// instance is upgraded); one older than the oldest supported is.
func TestVersionsOutsideTheRange(t *testing.T) {
	current := readGolden(t, SchemaVersion, CartValidated)
	at := func(v int) []byte {
		return bytes.Replace(current, fmt.Appendf(nil, `"schema_version":%d`, SchemaVersion), fmt.Appendf(nil, `"schema_version":%d`, v), 1)
	}
	_, err := Decode(string(CartValidated), at(SchemaVersion+1))
	if !errors.Is(err, ErrNewerSchema) || errors.Is(err, ErrMalformed) {
		t.Errorf("version %d: %v, want ErrNewerSchema and not ErrMalformed", SchemaVersion+1, err)
	}
	if _, err := Decode(string(CartValidated), at(OldestSchemaVersion-1)); !errors.Is(err, ErrMalformed) {
		t.Errorf("version %d: %v, want ErrMalformed", OldestSchemaVersion-1, err)
	}
}

// TestOldVersionCannotCarryNewFields: an event that says it is version 1 but carries a
// version 2 field was not written by a version 1 writer: refused, not silently taken.
func TestOldVersionCannotCarryNewFields(t *testing.T) {
	forged := bytes.Replace(readGolden(t, SchemaVersion, CartValidated), fmt.Appendf(nil, `"schema_version":%d`, SchemaVersion), []byte(`"schema_version":1`), 1)
	if _, err := Decode(string(CartValidated), forged); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "tax_rate") {
		t.Errorf("a version 1 quote with tax_rate: %v, want ErrMalformed naming tax_rate", err)
	}
}

// TestSubjectsOfALaterVersion: a subject that came in a later version is not written at an
// older one, nor read as one; a coordinator held back writes each step's go-ahead instead.
func TestSubjectsOfALaterVersion(t *testing.T) {
	e := Must("chk_golden", FulfilmentRequested, goldenPayload(t, FulfilmentRequested))
	e.SchemaVersion = 1
	if data, err := e.Encode(); err == nil {
		t.Errorf("%s written at version 1: %s", FulfilmentRequested, data)
	}
	claimed := bytes.Replace(readGolden(t, SchemaVersion, FulfilmentRequested), fmt.Appendf(nil, `"schema_version":%d`, SchemaVersion), []byte(`"schema_version":1`), 1)
	if _, err := Decode(string(FulfilmentRequested), claimed); !errors.Is(err, ErrMalformed) {
		t.Errorf("%s claiming version 1: %v, want ErrMalformed", FulfilmentRequested, err)
	}
	if got := Checkout.TriggersAt(FulfilmentRequested, 1); !slices.Equal(got, []Subject{ConfirmationRequested, LabelRequested}) {
		t.Errorf("at version 1 the go-ahead is %v", got)
	}
	if got := Checkout.TriggersAt(FulfilmentRequested, SchemaVersion); !slices.Equal(got, []Subject{FulfilmentRequested}) {
		t.Errorf("at version %d the go-ahead is %v", SchemaVersion, got)
	}
}

// TestHoldWriteVersion: a held process writes the old version; the hold takes only versions
// this release can write.
func TestHoldWriteVersion(t *testing.T) {
	t.Cleanup(func() { _ = HoldWriteVersion(0) })
	if err := HoldWriteVersion(OldestSchemaVersion); err != nil {
		t.Fatal(err)
	}
	e := Must("chk_golden", CartValidated, goldenQuote())
	data, err := e.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if e.SchemaVersion != OldestSchemaVersion || bytes.Contains(data, []byte("tax_rate")) {
		t.Errorf("held at %d: wrote version %d: %s", OldestSchemaVersion, e.SchemaVersion, data)
	}
	for _, v := range []int{-1, SchemaVersion + 1} {
		if err := HoldWriteVersion(v); err == nil {
			t.Errorf("HoldWriteVersion(%d) accepted", v)
		}
	}
	if err := HoldWriteVersion(0); err != nil || WriteVersion() != SchemaVersion {
		t.Errorf("released: writes %d (%v), want %d", WriteVersion(), err, SchemaVersion)
	}
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestAnUpcastFieldIsNotTakenForForged: an upcaster that derives a later field for an older
// event (as the rules say to, when it can be derived) is not refused by the check that an
// older event carries no later field: that check reads the payload as written.
func TestAnUpcastFieldIsNotTakenForForged(t *testing.T) {
	saved := upcasters[1]
	t.Cleanup(func() { upcasters[1] = saved })
	upcasters[1] = func(typ Subject, payload json.RawMessage) (json.RawMessage, error) {
		if typ != CartValidated {
			return payload, nil
		}
		var q map[string]json.RawMessage
		if err := json.Unmarshal(payload, &q); err != nil {
			return nil, err
		}
		q["tax_rate"] = json.RawMessage(`"0.2"`)
		return json.Marshal(q)
	}
	e, err := Decode(string(CartValidated), readGolden(t, 1, CartValidated))
	if err != nil {
		t.Fatal(err)
	}
	var q Quote
	if err := e.DecodePayload(&q); err != nil || q.TaxRate == nil || !q.TaxRate.Equal(dec("0.2")) {
		t.Errorf("a version 1 quote upcast with a derived tax_rate: %+v, %v", q.TaxRate, err)
	}
}

// TestANewerEnvelopeIsKeptNotMalformed: a later version may add envelope fields; its event
// is still one to keep for an upgraded instance, not malformed.
func TestANewerEnvelopeIsKeptNotMalformed(t *testing.T) {
	current := readGolden(t, SchemaVersion, CartValidated)
	newer := bytes.Replace(current, fmt.Appendf(nil, `"schema_version":%d`, SchemaVersion),
		fmt.Appendf(nil, `"schema_version":%d,"tenant":"eu"`, SchemaVersion+1), 1)
	if _, err := Decode(string(CartValidated), newer); !errors.Is(err, ErrNewerSchema) || errors.Is(err, ErrMalformed) {
		t.Errorf("version %d with an envelope field this release does not know: %v, want ErrNewerSchema", SchemaVersion+1, err)
	}
}
