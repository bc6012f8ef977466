package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// The event contract's versions. An envelope's schema_version says which shape its payload
// has. Readers accept OldestSchemaVersion to SchemaVersion and see every event in the current
// shape (Decode upcasts); writers write SchemaVersion unless held back at an older one during
// a rolling upgrade (HoldWriteVersion), so that instances not yet upgraded can read them.
// ARCHITECTURE.md, "Changing the event contract", has the rules.
const (
	// SchemaVersion is the version this code writes and reads natively. Version 2: a quote
	// records the tax rate it applied (Quote.TaxRate), and the confirmation and the label
	// share one go-ahead (FulfilmentRequested); a checkout can be re-driven (RedriveRequested),
	// and a dead letter (DeadLetterRedriven). Version 3: a quote lists the promotions taken
	// off it (Quote.Discounts), and whether its prices include the tax (Quote.TaxIncluded);
	// a fraud outcome carries the whole assessment, rule by rule (VelocitySince).
	SchemaVersion = 3
	// OldestSchemaVersion is the oldest version readers accept: events of the previous
	// release, in flight or waiting on a schedule, complete under this one.
	OldestSchemaVersion = 1
)

// subjectSince is the version each subject came in, when after the first: a writer held at
// an older version does not write it (Flow.TriggersAt), and an event claiming an older
// version on it is malformed.
var subjectSince = map[Subject]int{FulfilmentRequested: 2, RedriveRequested: 2, RedriveSettled: 2, DeadLetterRedriven: 2}

// DiscountsSince is the version whose quotes list their discounts (Quote.Discounts), and
// TaxIncludedSince the one whose quotes can say their prices include the tax
// (Quote.TaxIncluded): a writer held at an older one applies no coupon and adds the tax on
// top, as that version's readers expect.
const (
	DiscountsSince   = 3
	TaxIncludedSince = 3
)

// VelocitySince is the version whose fraud outcomes carry the whole assessment
// (RiskAssessment.Rules, StepFailure.Assessment, Waiting.Assessment): a writer held at an
// older one applies no rule that counts other checkouts, whose answer a rebuild could not
// find again.
const VelocitySince = 3

// ExistsAt reports whether version v of the contract has subject.
func ExistsAt(subject Subject, v int) bool { return v >= subjectSince[subject] }

// ErrNewerSchema marks an event of a version newer than this code reads: written by an
// upgraded instance while this one is not. It is not malformed: retried, it is read once
// this instance is upgraded, so it is never dead-lettered for it.
var ErrNewerSchema = errors.New("event of a newer schema version")

// NewerSchema reports whether data is an envelope of a version newer than SchemaVersion,
// read leniently: a later version may have envelope fields or subjects this release does
// not know, which a strict decode refuses before it reads the version.
func NewerSchema(data []byte) bool {
	var probe struct {
		SchemaVersion int `json:"schema_version"`
	}
	return json.Unmarshal(data, &probe) == nil && probe.SchemaVersion > SchemaVersion
}

// writeVersion is the version this process writes; 0 is SchemaVersion.
var writeVersion atomic.Int32

// HoldWriteVersion makes this process write events at version v (OldestSchemaVersion to
// SchemaVersion) instead of SchemaVersion: during a rolling upgrade, until every instance
// reads the new version. 0 is SchemaVersion.
func HoldWriteVersion(v int) error {
	if v != 0 && (v < OldestSchemaVersion || v > SchemaVersion) {
		return fmt.Errorf("schema write version %d: this release writes %d to %d", v, OldestSchemaVersion, SchemaVersion)
	}
	writeVersion.Store(int32(v))
	return nil
}

// WriteVersion is the version this process writes.
func WriteVersion() int {
	if v := int(writeVersion.Load()); v != 0 {
		return v
	}
	return SchemaVersion
}

// upcasters turn a payload of version v into version v+1, by subject. A version step whose
// new fields are optional needs none for them: absent is what the older writer meant.
// Version 1 to 2: Quote.TaxRate is not derivable from a version 1 quote (the rate in force
// then is not recorded anywhere), so it stays absent ("not recorded").
var upcasters = map[int]func(Subject, json.RawMessage) (json.RawMessage, error){}

// upcast brings a payload written at version from to SchemaVersion.
func upcast(typ Subject, payload json.RawMessage, from int) (json.RawMessage, error) {
	for v := from; v < SchemaVersion; v++ {
		if up := upcasters[v]; up != nil {
			var err error
			if payload, err = up(typ, payload); err != nil {
				return nil, fmt.Errorf("upcast from version %d: %w", v, err)
			}
		}
	}
	return payload, nil
}

// downcast writes a current payload in the shape of version v: every field added after v
// (tagged `since:"N"`, N > v, and omitempty) is cleared, which drops it from the JSON. A
// payload whose type the catalog does not know, or that is not of its type, is written as
// it is.
func downcast(typ Subject, payload json.RawMessage, v int) (json.RawMessage, error) {
	proto, ok := payloadType(typ)
	if !ok || !hasFieldsSince(proto, v) {
		return payload, nil
	}
	ptr := reflect.New(proto)
	if json.Unmarshal(payload, ptr.Interface()) != nil {
		// Not a payload of its type (a copy of a garbled input): nothing of ours to
		// reshape, and whoever reads it refuses it.
		return payload, nil
	}
	clearSince(ptr.Elem(), v)
	// A payload whose later fields carry meaning the older shape cannot express (a quote's
	// discounts, which its total already reflects) would reach an older reader as a payload
	// that does not add up: it is not written at that version.
	if p, ok := ptr.Interface().(interface{ Validate() error }); ok {
		if err := p.Validate(); err != nil {
			return nil, fmt.Errorf("%s cannot be written at schema version %d: without the fields added since, %w: %w", typ, v, errNotExpressible, err)
		}
	}
	return json.Marshal(ptr.Interface())
}

// errNotExpressible: a payload whose later fields carry what an older shape cannot say.
var errNotExpressible = errors.New("not expressible at that version")

// versionFor is the version a writer at WriteVersion writes payload of typ at: that version,
// unless the payload carries what only a later one can say. Such a payload came from an
// event of the current version (a held writer does not make one itself: the catalog applies
// no coupon and adds tax on top while held), and such events are written only once the hold
// is being lifted, when every process runs this release and reads it: so it is written at
// the current version rather than refused until the writer's own hold is lifted.
func versionFor(typ Subject, payload json.RawMessage) int {
	v := WriteVersion()
	if v < SchemaVersion {
		if _, err := downcast(typ, payload, v); errors.Is(err, errNotExpressible) {
			return SchemaVersion
		}
	}
	return v
}

// lateFields names the fields of a payload written at version v that came after v: an
// event claiming an older version while carrying them is forged or garbled. Checked on the
// payload as written, before an upcaster adds what it derives.
func lateFields(typ Subject, payload json.RawMessage, v int) []string {
	proto, ok := payloadType(typ)
	if !ok || !hasFieldsSince(proto, v) {
		return nil
	}
	ptr := reflect.New(proto)
	if json.Unmarshal(payload, ptr.Interface()) != nil {
		return nil // not of its type: DecodePayload says why
	}
	return fieldsAfter(ptr.Elem(), v)
}

// payloadType is the Go type of a subject's payload.
func payloadType(typ Subject) (reflect.Type, bool) {
	if p, ok := payloads[typ]; ok {
		return reflect.TypeOf(p), true
	}
	if PayloadOf(typ) == "StepFailure" {
		return reflect.TypeFor[StepFailure](), true
	}
	return nil, false
}

// sinceOf is the version a struct field was added in (its `since` tag), 0 when it was always
// there.
func sinceOf(f reflect.StructField) int {
	v, _ := strconv.Atoi(f.Tag.Get("since"))
	return v
}

// sinceFields caches hasFieldsSince by type and version: it is asked for every older event
// read, and a payload type's fields never change.
var sinceFields sync.Map // typeVersion → bool

type typeVersion struct {
	t reflect.Type
	v int
}

// hasFieldsSince reports whether t holds, at any depth, a field added after version v.
func hasFieldsSince(t reflect.Type, v int) bool {
	key := typeVersion{t, v}
	if found, ok := sinceFields.Load(key); ok {
		return found.(bool)
	}
	found := findFieldsSince(t, v)
	sinceFields.Store(key, found)
	return found
}

func findFieldsSince(t reflect.Type, v int) bool {
	found := false
	walkFields(t, map[reflect.Type]bool{}, func(f reflect.StructField) {
		if sinceOf(f) > v {
			found = true
		}
	})
	return found
}

func walkFields(t reflect.Type, seen map[reflect.Type]bool, fn func(reflect.StructField)) {
	for t.Kind() == reflect.Pointer || t.Kind() == reflect.Slice || t.Kind() == reflect.Array || t.Kind() == reflect.Map {
		t = t.Elem()
	}
	if t.Kind() != reflect.Struct || seen[t] {
		return
	}
	seen[t] = true
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		fn(f)
		walkFields(f.Type, seen, fn)
	}
}

// clearSince zeroes every field of v, at any depth, added after version ver.
func clearSince(v reflect.Value, ver int) {
	visitSince(v, ver, func(_ reflect.StructField, field reflect.Value) { field.SetZero() })
}

// fieldsAfter names the fields of v, at any depth, that are set although they were added
// after version ver: an event claiming an older version while carrying them is forged or
// garbled.
func fieldsAfter(v reflect.Value, ver int) []string {
	var out []string
	visitSince(v, ver, func(f reflect.StructField, field reflect.Value) {
		if !field.IsZero() {
			out = append(out, jsonName(f))
		}
	})
	return out
}

// visitSince calls fn with every field of v, at any depth, added after version ver.
func visitSince(v reflect.Value, ver int, fn func(reflect.StructField, reflect.Value)) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			visitSince(v.Elem(), ver, fn)
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			visitSince(v.Index(i), ver, fn)
		}
	case reflect.Struct:
		t := v.Type()
		for i := range t.NumField() {
			f := t.Field(i)
			switch {
			case !f.IsExported():
			case sinceOf(f) > ver:
				fn(f, v.Field(i))
			default:
				visitSince(v.Field(i), ver, fn)
			}
		}
	}
}

func jsonName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
	if name == "" {
		return f.Name
	}
	return name
}
