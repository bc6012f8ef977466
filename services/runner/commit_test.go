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
// which is the JSON the record held when it stored the envelopes themselves, so records
// written before read the same; and they decode back to the outputs, to be published again.
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
	got, err := json.Marshal(record{Seq: 7, Outputs: data})
	if err != nil {
		t.Fatal(err)
	}
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
