package events

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Envelope is what every event except the public checkout.requested travels in.
type Envelope struct {
	// ID is derived from the checkout and the event type (see ID), so a step that runs
	// again after a crash emits the same IDs and every consumer can drop what it has seen.
	ID            string          `json:"id"`
	Type          Subject         `json:"type"`
	CheckoutID    string          `json:"checkout_id"`
	CausationID   string          `json:"causation_id,omitempty"`
	Time          time.Time       `json:"time"`
	SchemaVersion int             `json:"schema_version"`
	Payload       json.RawMessage `json:"payload"`
	// Schedule, when set, asks the server to publish the event at a later time: it waits in
	// its producer's timer stream (ScheduleSubject), and a later event with the same key
	// replaces it.
	Schedule *Schedule `json:"schedule,omitempty"`
}

// Schedule is when a scheduled event is due, and the key that names its slot.
type Schedule struct {
	At  time.Time `json:"at"`
	Key string    `json:"key"`
	// Cancel, in an output, asks the runner to remove what waits in the slot instead of
	// scheduling anything (CancelSchedule): it is never published.
	Cancel bool `json:"cancel,omitempty"`
}

// CancelSchedule is the output that removes the pending scheduled event of type typ in the
// slot key of a checkout, if one waits there (a timer no longer needed, which would
// otherwise fire and be handled for nothing).
func CancelSchedule(checkoutID string, typ Subject, key string) Envelope {
	return Envelope{ID: ID(checkoutID, typ) + ":cancel", Type: typ, CheckoutID: checkoutID, SchemaVersion: WriteVersion(),
		Schedule: &Schedule{Key: key, Cancel: true}}
}

// ErrMalformed marks input that can never be processed: retrying it cannot help.
var ErrMalformed = errors.New("malformed event")

// ID is the ID of the event of type typ in a checkout: one of each type per checkout.
func ID(checkoutID string, typ Subject) string {
	return checkoutID + ":" + string(typ)
}

// New builds the envelope of an event of checkout checkoutID, at the version this process
// writes (WriteVersion). The caller (the runner) stamps causation and time.
func New(checkoutID string, typ Subject, payload any) (Envelope, error) {
	raw, err := json.Marshal(payload)
	if err != nil {
		return Envelope{}, fmt.Errorf("%s payload: encode: %w", typ, err)
	}
	return Envelope{
		ID:            ID(checkoutID, typ),
		Type:          typ,
		CheckoutID:    checkoutID,
		SchemaVersion: versionFor(typ, raw),
		Payload:       raw,
	}, nil
}

// Must is New for payloads that cannot fail to encode (plain structs of strings,
// numbers and decimals).
func Must(checkoutID string, typ Subject, payload any) Envelope {
	e, err := New(checkoutID, typ, payload)
	if err != nil {
		panic(err)
	}
	return e
}

// Decode parses an envelope strictly: unknown fields, a missing ID, type or checkout ID,
// a schema version older than OldestSchemaVersion or a type that differs from the subject it
// came on are errors wrapping ErrMalformed; a version newer than SchemaVersion wraps
// ErrNewerSchema. An event of an older version keeps its SchemaVersion (a copy of it is
// written as it was) and comes out with its payload in the current shape. Errors read
// "<subject>: malformed event: <why>".
func Decode(subject string, data []byte) (Envelope, error) {
	e, err := decode(subject, data)
	if err != nil {
		return Envelope{}, fmt.Errorf("%s: %w", subject, err)
	}
	return e, nil
}

func decode(subject string, data []byte) (Envelope, error) {
	var e Envelope
	if err := strictUnmarshal(data, &e); err != nil {
		if NewerSchema(data) {
			return Envelope{}, fmt.Errorf("%w, whose envelope this release cannot read: upgrade it", ErrNewerSchema)
		}
		return Envelope{}, err
	}
	switch {
	case e.ID == "":
		return Envelope{}, fmt.Errorf("%w: missing id", ErrMalformed)
	case !ValidCheckoutID(e.CheckoutID):
		return Envelope{}, fmt.Errorf("%w: checkout_id %q is not 1 to 64 letters, digits, '-' or '_'", ErrMalformed, e.CheckoutID)
	case e.SchemaVersion > SchemaVersion:
		return Envelope{}, fmt.Errorf("%w: schema_version %d, and this release reads %d to %d: upgrade it", ErrNewerSchema, e.SchemaVersion, OldestSchemaVersion, SchemaVersion)
	case e.SchemaVersion < OldestSchemaVersion:
		return Envelope{}, fmt.Errorf("%w: schema_version %d, and this release reads %d to %d", ErrMalformed, e.SchemaVersion, OldestSchemaVersion, SchemaVersion)
	case !ExistsAt(e.Type, e.SchemaVersion):
		return Envelope{}, fmt.Errorf("%w: %s is not an event of schema_version %d", ErrMalformed, e.Type, e.SchemaVersion)
	case string(e.Type) != subject:
		return Envelope{}, fmt.Errorf("%w: type %q published on subject %q", ErrMalformed, e.Type, subject)
	case len(e.Payload) == 0:
		return Envelope{}, fmt.Errorf("%w: missing payload", ErrMalformed)
	case !e.derivedID():
		return Envelope{}, fmt.Errorf("%w: id %q is not this event's: want %q, or that and a ':' suffix", ErrMalformed, e.ID, ID(e.CheckoutID, e.Type))
	}
	if e.SchemaVersion < SchemaVersion {
		if late := lateFields(e.Type, e.Payload, e.SchemaVersion); len(late) > 0 {
			return Envelope{}, fmt.Errorf("%w: %s came after schema_version %d, which the event claims", ErrMalformed, strings.Join(late, ", "), e.SchemaVersion)
		}
		payload, err := upcast(e.Type, e.Payload, e.SchemaVersion)
		if err != nil {
			return Envelope{}, fmt.Errorf("%w: %w", ErrMalformed, err)
		}
		e.Payload = payload
	}
	return e, nil
}

// derivedID reports whether the ID is the one ID derives from the checkout and type,
// optionally with a suffix for events a checkout has several of (deadlines, expiries).
// Consumers remember handled events by ID, so an event carrying another checkout's ID
// would otherwise make the real one look handled already.
func (e Envelope) derivedID() bool {
	base := ID(e.CheckoutID, e.Type)
	return e.ID == base || strings.HasPrefix(e.ID, base+":")
}

// Encode is the wire form of an envelope, its payload in the shape of its SchemaVersion (the
// fields added after it dropped).
func (e Envelope) Encode() ([]byte, error) {
	if e.SchemaVersion >= OldestSchemaVersion && !ExistsAt(e.Type, e.SchemaVersion) {
		return nil, fmt.Errorf("%s: no such event at schema_version %d (Flow.TriggersAt says what that version writes)", e.Type, e.SchemaVersion)
	}
	if e.SchemaVersion >= OldestSchemaVersion && e.SchemaVersion < SchemaVersion && len(e.Payload) > 0 {
		payload, err := downcast(e.Type, e.Payload, e.SchemaVersion)
		if err != nil {
			return nil, err
		}
		e.Payload = payload
	}
	return json.Marshal(e)
}

// DecodePayload decodes the payload strictly into v and validates it when v has a
// Validate method. Errors wrap ErrMalformed and read "<subject> payload: malformed event:
// <why>".
func (e Envelope) DecodePayload(v any) error {
	if err := strictUnmarshal(e.Payload, v); err != nil {
		return payloadError(e.Type, err)
	}
	if val, ok := v.(interface{ Validate() error }); ok {
		if err := val.Validate(); err != nil {
			return payloadError(e.Type, fmt.Errorf("%w: %w", ErrMalformed, err))
		}
	}
	return nil
}

// payloadError puts the subject in front of err, which wraps ErrMalformed: every event
// error reads "<where>: <sentinel>: <why>", whatever found it.
func payloadError(typ Subject, err error) error {
	return fmt.Errorf("%s payload: %w", typ, err)
}

// DecodeStrict decodes data into v the way payloads are decoded: unknown fields, wrong
// types and trailing data are errors wrapping ErrMalformed, with a reason a person can act
// on. Unlike DecodePayload it does not call v's Validate. For bodies that are not an
// event's payload, e.g. requests to the services' endpoints.
func DecodeStrict(data []byte, v any) error { return strictUnmarshal(data, v) }

// strictUnmarshal rejects unknown fields, wrong types and trailing data, wrapping
// ErrMalformed with a reason a person can act on.
func strictUnmarshal(data []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var typeErr *json.UnmarshalTypeError
		var unknown *UnknownFieldsError
		switch {
		case errors.As(err, &typeErr):
			return fmt.Errorf("%w: field %q must be %s, not %s", ErrMalformed, typeErr.Field, typeErr.Type, typeErr.Value)
		case errors.As(err, &unknown):
			return fmt.Errorf("%w: %w", ErrMalformed, unknown)
		}
		// The decoder's "json: " says nothing the sentinel does not.
		return fmt.Errorf("%w: %s", ErrMalformed, strings.TrimPrefix(err.Error(), "json: "))
	}
	if dec.More() {
		return fmt.Errorf("%w: trailing data after the JSON object", ErrMalformed)
	}
	return nil
}

// ProbeCheckoutID finds the checkout a message names, even one that is not a valid event
// (a rejected input, a dead letter); "unknown" when it names none.
func ProbeCheckoutID(data []byte) string {
	var p struct {
		CheckoutID string `json:"checkout_id"`
	}
	if json.Unmarshal(data, &p) == nil && ValidCheckoutID(p.CheckoutID) {
		return p.CheckoutID
	}
	return "unknown"
}

// Duration is a time.Duration written in JSON as in Go ("10m", "1h30m").
type Duration struct{ time.Duration }

func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("a duration is a string like \"10m\": %w", err)
	}
	v, err := time.ParseDuration(s)
	d.Duration = v
	return err
}
