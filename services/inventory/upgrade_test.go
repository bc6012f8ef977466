package inventory

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/jetcheckout/jetcheckout/internal/steptest"
	"github.com/jetcheckout/jetcheckout/internal/store"
	bolt "go.etcd.io/bbolt"
)

// The first start of this version on the previous version's inventory.db (synced,
// authoritative, holding sales older than CHECKOUT's 30 days) must not lose it to a kill
// before its first snapshot is stored: the stream cannot bring back what it no longer holds,
// and the units sold would be available again. Here the stream holds none of the sales (they
// are older than its retention), and the process is killed after it recorded the seed from
// the view's totals, before its first snapshot.
func TestUpgradeKilledBeforeTheFirstSnapshotKeepsOldSales(t *testing.T) {
	env := natstest.Start(t)
	path := filepath.Join(t.TempDir(), "inventory.db")
	old, err := store.Open(path) // the previous version's file
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(old, steptest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.Seed(map[string]int{"lamp": 5}); err != nil {
		t.Fatal(err)
	}
	err = old.Update(func(tx *bolt.Tx) error {
		items := []events.ReservedItem{{ProductID: "lamp", Quantity: 2}}
		if err := moveStock(tx, items, reserveUnits); err != nil {
			return err
		}
		return moveStock(tx, items, sellUnits)
	})
	if err != nil {
		t.Fatal(err)
	}
	old.Close()

	// The first start of this version, killed before its first snapshot.
	v, err := store.OpenView(path)
	if err != nil {
		t.Fatal(err)
	}
	first, err := New(v.DB, steptest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.RecordedSeed(context.Background(), env.JS, nil, map[string]int{"lamp": 5}); err != nil {
		t.Fatal(err)
	}
	v.DB.Close() // the kill: the dirty mark stays

	v, err = store.OpenView(path)
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	again, err := New(v.DB, steptest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	stock, err := again.RecordedSeed(context.Background(), env.JS, nil, map[string]int{"lamp": 5})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := again.Seed(stock); err != nil {
		t.Fatal(err)
	}
	if st, _ := again.Stock("lamp"); st.Available != 3 || st.Sold != 2 {
		t.Errorf("lamp after the killed first start: %+v, want 3 available and 2 sold as the previous version's file held", st)
	}
}
