package httpapi_test

import (
	"bytes"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/httpapi"
)

// The read model is a view of the stream: lost (api.db deleted) or left by a crash (its
// dirty mark), it is rebuilt from the stream before the API consumes again, and shows every
// run as before: the same views, the same histories.
func TestLostReadModelIsRebuiltFromTheStream(t *testing.T) {
	e := start(t)
	var ids []string
	for _, pm := range []string{"pm_card_visa", "pm_card_chargeDeclined"} {
		cart := e.cart(t, events.CartItem{ProductID: "stickers", Quantity: 1})
		a := ok[httpapi.Accepted202](t, e, http.StatusAccepted, "POST", "/checkout/process", request(cart.ID, "ada@example.com", pm))
		e.ended(t, a.CheckoutID)
		ids = append(ids, a.CheckoutID)
	}
	before := e.settledRuns(t, ids) // events come after the terminal one too (the failure notice, the sale)

	path := filepath.Join(e.cfg.DataDir, "api.db")
	for name, lose := range map[string]func() error{
		"deleted": func() error { return os.Remove(path) },
		"left dirty by a crash": func() error {
			return os.WriteFile(path+".dirty", nil, 0o600) // what a process that never closed it leaves
		},
	} {
		e.stop()
		if err := lose(); err != nil {
			t.Fatal(err)
		}
		e.serve(t)
		after := e.runs(t, ids)
		for i, id := range ids {
			if !bytes.Equal(before[i], after[i]) {
				t.Errorf("%s: checkout %s after the rebuild:\n%s\nbefore:\n%s", name, id, after[i], before[i])
			}
		}
	}
}

// settledRuns is runs once two reads a little apart agree: nothing more is coming.
func (e *env) settledRuns(t *testing.T, ids []string) [][]byte {
	t.Helper()
	last := e.runs(t, ids)
	for range 50 {
		time.Sleep(100 * time.Millisecond)
		now := e.runs(t, ids)
		if slices.EqualFunc(last, now, bytes.Equal) {
			return now
		}
		last = now
	}
	t.Fatal("the runs kept changing for 5 s")
	return nil
}

// runs is each checkout's view and history as the API answers them, to the admin.
func (e *env) runs(t *testing.T, ids []string) [][]byte {
	t.Helper()
	var out [][]byte
	for _, id := range ids {
		var run []byte
		for _, path := range []string{"/checkouts/" + id, "/checkouts/" + id + "/events"} {
			status, _, raw := e.do(t, "GET", path, nil, asAdmin...)
			if status != http.StatusOK {
				t.Fatalf("GET %s: %d %s", path, status, raw)
			}
			run = append(append(run, raw...), '\n')
		}
		out = append(out, run)
	}
	return out
}
