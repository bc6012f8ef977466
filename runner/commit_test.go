package runner

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
)

// TestRecordKeepsTheEnvelopesJSON: a handled record holds its outputs as their wire form,
// and its bytes are the JSON json.Marshal wrote when it stored the envelopes themselves, so
// records written before read the same; and they decode back to the outputs, to be
// published again.
func TestRecordKeepsTheEnvelopesJSON(t *testing.T) {
	cause := events.Must("co-1", events.CartValidated, map[string]string{"note": "<&>"})
	deadline := events.Must("co-1", events.Deadline, events.DeadlineReached{Step: events.StepReserveInventory, Deadline: time.Now()})
	deadline.Schedule = &events.Schedule{At: time.Now().Add(time.Minute).UTC(), Key: "deadline.x"}
	outs := []events.Envelope{events.Must("co-1", events.InventoryReserved, map[string]any{"units": 3, "sku": "tee"}), deadline}
	Stamp(outs, cause)

	data, err := wire(outs)
	if err != nil {
		t.Fatal(err)
	}
	got := record{Seq: 7, Outputs: data}.encode()
	want, err := json.Marshal(struct {
		Seq     uint64            `json:"seq"`
		Outputs []events.Envelope `json:"outputs,omitempty"`
	}{7, outs})
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("record\n%s\nwant the envelopes' JSON\n%s", got, want)
	}
	if none, want := (record{Seq: 8}).encode(), []byte(`{"seq":8}`); !bytes.Equal(none, want) {
		t.Errorf("record without outputs %s, want %s", none, want)
	}
	var rec record
	if err := json.Unmarshal(want, &rec); err != nil {
		t.Fatal(err)
	}
	back, err := unwire(rec.Outputs)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, outs) {
		t.Errorf("decoded outputs %+v, want %+v", back, outs)
	}
}

// BenchmarkRecordEncode: the handled record of a step with two outputs, as the runner writes
// it, and through json.Marshal (which compacts the outputs' JSON again) for comparison.
func BenchmarkRecordEncode(b *testing.B) {
	cause := events.Must("co-1", events.CartValidated, map[string]string{})
	outs := []events.Envelope{events.Must("co-1", events.InventoryReserved, map[string]any{"units": 3, "sku": "tee"}),
		events.Must("co-1", events.InventoryExpired, map[string]any{"reservation_id": "res_1"})}
	Stamp(outs, cause)
	data, err := wire(outs)
	if err != nil {
		b.Fatal(err)
	}
	rec := record{Seq: 7, Outputs: data}
	b.Run("encode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = rec.encode()
		}
	})
	b.Run("json.Marshal", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(rec); err != nil {
				b.Fatal(err)
			}
		}
	})
}
