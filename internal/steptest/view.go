package steptest

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	bolt "go.etcd.io/bbolt"
)

// Dump reads every bucket of a closed bbolt file: bucket → key → value.
func Dump(t testing.TB, path string) map[string]map[string][]byte {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	return DumpDB(t, db)
}

// DumpDB reads every bucket of an open bbolt file, as Dump.
func DumpDB(t testing.TB, db *bolt.DB) map[string]map[string][]byte {
	t.Helper()
	out := map[string]map[string][]byte{}
	err := db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			kv := map[string][]byte{}
			out[string(name)] = kv
			return b.ForEach(func(k, v []byte) error {
				kv[string(k)] = bytes.Clone(v)
				return nil
			})
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// SameView compares a rebuilt file with the lost one, byte for byte per bucket, except the
// runner's handled_at index: its keys are when this process wrote each record (for pruning),
// a local fact; it has one entry per record all the same.
func SameView(t testing.TB, live, rebuilt map[string]map[string][]byte) {
	t.Helper()
	for _, bucket := range slices.Sorted(maps.Keys(live)) {
		if bucket == "runner.handled_at" {
			if len(rebuilt[bucket]) != len(live[bucket]) {
				t.Errorf("%s: %d entries, want %d", bucket, len(rebuilt[bucket]), len(live[bucket]))
			}
			continue
		}
		for k, v := range live[bucket] {
			if got, ok := rebuilt[bucket][k]; !ok {
				t.Errorf("%s: %s is missing from the rebuilt view", bucket, k)
			} else if !bytes.Equal(got, v) {
				t.Errorf("%s: %s differs:\n rebuilt %s\n    live %s", bucket, k, got, v)
			}
		}
		for k := range rebuilt[bucket] {
			if _, ok := live[bucket][k]; !ok {
				t.Errorf("%s: %s is in the rebuilt view only", bucket, k)
			}
		}
	}
	for bucket := range rebuilt {
		if _, ok := live[bucket]; !ok {
			t.Errorf("bucket %s is in the rebuilt view only", bucket)
		}
	}
}

// Unscheduled removes the scheduled outputs from view's records of handled inputs of type
// typ, for a route whose replay cannot give them again: a payment's look at its intent that
// found it still waiting scheduled the next look, which is not in CHECKOUT, and the look's
// replay has no outcome to derive it from (it records none; an unacknowledged look is not
// replayed but handled again).
func Unscheduled(t testing.TB, view map[string]map[string][]byte, typ events.Subject) {
	t.Helper()
	for id, raw := range view["runner.processed"] {
		if !strings.Contains(id, ":"+string(typ)) {
			continue
		}
		var record struct { // the runner's, in its field order
			Seq     uint64            `json:"seq"`
			Outputs []json.RawMessage `json:"outputs,omitempty"`
		}
		if err := json.Unmarshal(raw, &record); err != nil {
			t.Fatal(err)
		}
		record.Outputs = slices.DeleteFunc(record.Outputs, func(out json.RawMessage) bool {
			var e events.Envelope
			return json.Unmarshal(out, &e) == nil && e.Schedule != nil
		})
		rewritten, err := json.Marshal(record)
		if err != nil {
			t.Fatal(err)
		}
		view["runner.processed"][id] = rewritten
	}
}
