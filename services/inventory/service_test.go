package inventory

import (
	"bytes"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/deploy"
	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/steptest"
	"github.com/jetcheckout/jetcheckout/runner"
	"github.com/shopspring/decimal"
	bolt "go.etcd.io/bbolt"
)

// demoStock is the initial stock of the demo catalog: hoodie-saga 3, mug-nats 100,
// tee-jetstream 50, stickers 500, keyboard-bbolt 12...
func demoStock(t *testing.T) map[string]int {
	t.Helper()
	data, err := deploy.Demo.ReadFile(deploy.CatalogFile)
	if err != nil {
		t.Fatal(err)
	}
	stock, err := LoadStock(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	return stock
}

func newService(t *testing.T) *Service {
	t.Helper()
	svc, err := New(steptest.DB(t, "inventory"), steptest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	return svc
}

type harness struct {
	*steptest.Harness
	svc *Service
}

// start runs the seeded inventory with runners instances of its runner sharing one
// durable consumer, so that messages are handled concurrently when runners > 1.
func start(t *testing.T, runners int) *harness {
	t.Helper()
	return startWith(t, runners, Config{})
}

// startWith is start with the inventory's Config.
func startWith(t *testing.T, runners int, invCfg Config) *harness {
	t.Helper()
	cfg := runner.Config{Name: "inventory", RetryBase: 10 * time.Millisecond}
	sh, svc := steptest.Start(t, cfg, func(db *bolt.DB, log *slog.Logger) (*Service, error) {
		svc, err := NewWithConfig(db, log, invCfg)
		if err == nil {
			_, err = svc.Seed(demoStock(t))
		}
		return svc, err
	})
	h := &harness{sh, svc}
	for range runners - 1 {
		h.AddRunner(t)
	}
	// Once a message has gone through, the runner is past creating its consumer: a test
	// that ends sooner would stop it half-way, which it reports as an error.
	h.barrier(t)
	h.Serve(t, svc.Serve)
	return h
}

func line(productID, name string, qty int) events.Line {
	price := decimal.RequireFromString("10.00")
	return events.Line{ProductID: productID, Name: name, Quantity: qty, UnitPrice: price, Total: price.Mul(decimal.NewFromInt(int64(qty)))}
}

func quote(lines ...events.Line) events.Quote {
	q := events.Quote{CartID: "cart_1", CustomerID: "cus_ada", CustomerEmail: "ada@example.com",
		PaymentMethodID: "pm_card_visa", Currency: "USD", Lines: lines}
	for _, l := range lines {
		q.Subtotal = q.Subtotal.Add(l.Total)
	}
	q.Total = q.Subtotal
	return q
}

func (h *harness) validated(t *testing.T, checkoutID string, q events.Quote) {
	t.Helper()
	h.Env.Publish(t, events.Must(checkoutID, events.CartValidated, q))
}

func (h *harness) releaseCmd(t *testing.T, checkoutID string) {
	t.Helper()
	h.Env.Publish(t, events.Must(checkoutID, events.InventoryRelease, events.Compensation{Reason: "payment declined"}))
}

func (h *harness) completed(t *testing.T, checkoutID string) {
	t.Helper()
	h.Env.Publish(t, events.Must(checkoutID, events.Completed, events.CheckoutCompleted{
		OrderID: "ord_" + checkoutID, OrderNumber: "1001", PaymentIntentID: "pi_1", Total: decimal.NewFromInt(10), Currency: "USD"}))
}

// barrier returns once every message published before it has been handled.
func (h *harness) barrier(t *testing.T) {
	t.Helper()
	id := fmt.Sprintf("barrier-%d", time.Now().UnixNano())
	h.releaseCmd(t, id)
	h.Wait(t, id, events.InventoryReleased)
	h.Idle(t)
}

// reservation expects the checkout's reserve_inventory to have reserved.
func (h *harness) reservation(t *testing.T, checkoutID string) (res events.Reservation) {
	t.Helper()
	h.Expect(t, checkoutID, events.InventoryReserved, &res, events.InventoryFailed)
	return res
}

// refusal expects the checkout's reserve_inventory to have failed.
func (h *harness) refusal(t *testing.T, checkoutID string) (f events.StepFailure) {
	t.Helper()
	h.Expect(t, checkoutID, events.InventoryFailed, &f, events.InventoryReserved)
	return f
}

// wantStock checks a product's available, reserved and sold units.
func (h *harness) wantStock(t *testing.T, productID string, available, reserved, sold int) {
	t.Helper()
	st, err := h.svc.Stock(productID)
	if err != nil {
		t.Fatal(err)
	}
	if st.Available != available || st.Reserved != reserved || st.Sold != sold {
		t.Errorf("%s: available %d, reserved %d, sold %d; want %d, %d, %d",
			productID, st.Available, st.Reserved, st.Sold, available, reserved, sold)
	}
}

func (h *harness) wantStatus(t *testing.T, checkoutID, status string) Reservation {
	t.Helper()
	res, err := h.svc.Reservation(checkoutID)
	if err != nil {
		t.Fatal(err)
	}
	if res.Status != status {
		t.Errorf("reservation of %s is %s, want %s", checkoutID, res.Status, status)
	}
	return res
}

func TestReserveThenSell(t *testing.T) {
	h := start(t, 1)
	h.validated(t, "co-1", quote(line("tee-jetstream", "T-Shirt", 2), line("mug-nats", "Mug", 1), line("tee-jetstream", "T-Shirt", 1)))
	res := h.reservation(t, "co-1")
	want := []events.ReservedItem{{ProductID: "mug-nats", Quantity: 1}, {ProductID: "tee-jetstream", Quantity: 3}}
	if res.ReservationID != "res_co-1" || len(res.Items) != 2 || res.Items[0] != want[0] || res.Items[1] != want[1] {
		t.Errorf("reservation = %+v, want res_co-1 with %v", res, want)
	}
	h.wantStock(t, "tee-jetstream", 47, 3, 0)
	h.wantStock(t, "mug-nats", 99, 1, 0)
	h.wantStatus(t, "co-1", Reserved)

	h.completed(t, "co-1")
	var sale events.Sale
	h.Expect(t, "co-1", events.InventoryCommitted, &sale)
	if sale.ReservationID != "res_co-1" {
		t.Errorf("sale = %+v", sale)
	}
	h.wantStock(t, "tee-jetstream", 47, 0, 3)
	h.wantStock(t, "mug-nats", 99, 0, 1)
	h.wantStatus(t, "co-1", Committed)
	h.wantStock(t, "stickers", 500, 0, 0) // untouched
}

func TestReleaseGivesStockBack(t *testing.T) {
	h := start(t, 1)
	h.validated(t, "co-1", quote(line("hoodie-saga", "Saga Hoodie", 2)))
	h.reservation(t, "co-1")
	h.wantStock(t, "hoodie-saga", 1, 2, 0)

	h.releaseCmd(t, "co-1")
	var rel events.Release
	h.Expect(t, "co-1", events.InventoryReleased, &rel)
	if rel.ReservationID != "res_co-1" || len(rel.Items) != 1 || rel.Items[0].Quantity != 2 {
		t.Errorf("release = %+v", rel)
	}
	h.wantStock(t, "hoodie-saga", 3, 0, 0)
	h.wantStatus(t, "co-1", Released)

	// A second release command (another event, say the coordinator's retry) confirms
	// again and gives nothing back twice.
	again := events.Must("co-1", events.InventoryRelease, events.Compensation{Reason: "retry"})
	again.ID += ":retry"
	h.Env.Publish(t, again)
	h.WaitCount(t, "co-1", events.InventoryReleased, 2) // a second confirmation
	h.wantStock(t, "hoodie-saga", 3, 0, 0)

	// The checkout did not complete, so a completion cannot sell the released units.
	h.completed(t, "co-1")
	h.barrier(t)
	h.wantStock(t, "hoodie-saga", 3, 0, 0)
	if n := h.Watch.Count("co-1", events.InventoryCommitted); n != 0 {
		t.Errorf("released reservation committed %d times", n)
	}
}

// Two checkouts want the last three hoodies at once, handled by two runners
// concurrently: exactly one gets them.
func TestLastUnitsGoToOneCheckout(t *testing.T) {
	h := start(t, 2)
	h.validated(t, "co-a", quote(line("hoodie-saga", "Saga Hoodie", 3)))
	h.validated(t, "co-b", quote(line("hoodie-saga", "Saga Hoodie", 3)))
	outcomes := map[events.Subject][]string{}
	for _, id := range []string{"co-a", "co-b"} {
		out := h.Wait(t, id, events.InventoryReserved, events.InventoryFailed)
		outcomes[out.Type] = append(outcomes[out.Type], id)
	}
	if len(outcomes[events.InventoryReserved]) != 1 || len(outcomes[events.InventoryFailed]) != 1 {
		t.Fatalf("outcomes = %v, want one reservation and one failure", outcomes)
	}
	loser := outcomes[events.InventoryFailed][0]
	f := h.refusal(t, loser)
	if f.Code != events.CodeInsufficientStock || f.Step != events.StepReserveInventory ||
		!strings.Contains(f.Message, "Saga Hoodie (hoodie-saga): 3 wanted, 0 available") {
		t.Errorf("failure = %+v", f)
	}
	h.wantStock(t, "hoodie-saga", 0, 3, 0)
	h.wantStatus(t, outcomes[events.InventoryReserved][0], Reserved)
	h.wantStatus(t, loser, Refused)

	// Many more buyers than units, all at once: never more reserved than there was.
	for i := range 10 {
		h.validated(t, fmt.Sprintf("co-rush-%d", i), quote(line("keyboard-bbolt", "Keyboard", 5)))
	}
	reserved := 0
	for i := range 10 {
		out := h.Wait(t, fmt.Sprintf("co-rush-%d", i), events.InventoryReserved, events.InventoryFailed)
		if out.Type == events.InventoryReserved {
			reserved++
		}
	}
	if reserved != 2 { // 12 keyboards: two checkouts of 5, 2 left over
		t.Errorf("%d checkouts of 5 keyboards reserved out of 12", reserved)
	}
	h.wantStock(t, "keyboard-bbolt", 2, 10, 0)
}

// A short product fails the whole reservation: nothing is held, not even what was there.
func TestShortStockHoldsNothing(t *testing.T) {
	h := start(t, 1)
	h.validated(t, "co-short", quote(line("mug-nats", "Mug", 2), line("hoodie-saga", "Saga Hoodie", 4), line("unobtainium", "Unobtainium", 1)))
	f := h.refusal(t, "co-short")
	if f.Code != events.CodeInsufficientStock ||
		!strings.Contains(f.Message, "Saga Hoodie (hoodie-saga): 4 wanted, 3 available") ||
		!strings.Contains(f.Message, "Unobtainium (unobtainium): 1 wanted, 0 available") || strings.Contains(f.Message, "Mug") ||
		!slices.Equal(f.Products, []string{"Saga Hoodie (hoodie-saga)", "Unobtainium (unobtainium)"}) {
		t.Errorf("failure = %+v", f)
	}
	h.wantStock(t, "mug-nats", 100, 0, 0)
	h.wantStock(t, "hoodie-saga", 3, 0, 0)
	h.wantStatus(t, "co-short", Refused)

	// The coordinator may still ask to release: nothing was held, and it says so.
	h.releaseCmd(t, "co-short")
	var rel events.Release
	h.Expect(t, "co-short", events.InventoryReleased, &rel)
	if rel.ReservationID != "" || len(rel.Items) != 0 {
		t.Errorf("release of a refused reservation = %+v", rel)
	}
	h.wantStock(t, "mug-nats", 100, 0, 0)
	h.wantStatus(t, "co-short", Refused)
}

// A release that overtakes its reservation (the reservation was being retried) is
// confirmed at once, and the late reservation then holds nothing.
func TestReleaseBeforeReservation(t *testing.T) {
	h := start(t, 1)
	h.releaseCmd(t, "co-late")
	var rel events.Release
	h.Expect(t, "co-late", events.InventoryReleased, &rel)
	if rel.ReservationID != "" {
		t.Errorf("release = %+v", rel)
	}
	h.validated(t, "co-late", quote(line("mug-nats", "Mug", 1)))
	if f := h.refusal(t, "co-late"); f.Code != events.CodeCheckoutCancelled {
		t.Errorf("late reservation: %+v", f)
	}
	h.wantStock(t, "mug-nats", 100, 0, 0)
	h.wantStatus(t, "co-late", Released)
}

// Releasing a sold reservation cannot be done; an undo is never given up, so it is
// announced as stuck (for an operator) and retried, and the sale is untouched.
func TestReleaseOfSoldReservationIsStuck(t *testing.T) {
	h := start(t, 1)
	h.validated(t, "co-sold", quote(line("stickers", "Stickers", 10)))
	h.reservation(t, "co-sold")
	h.completed(t, "co-sold")
	h.Wait(t, "co-sold", events.InventoryCommitted)

	h.releaseCmd(t, "co-sold")
	var why events.StuckWork
	h.Expect(t, "co-sold", events.Stuck, &why, events.InventoryReleased, events.Rejected)
	if why.Subject != string(events.InventoryRelease) || !strings.Contains(why.Error, "already sold") {
		t.Errorf("stuck = %+v", why)
	}
	if n := h.Watch.Count("co-sold", events.InventoryReleased); n != 0 {
		t.Errorf("a sold reservation was confirmed released")
	}
	h.wantStock(t, "stickers", 490, 0, 10)
	h.wantStatus(t, "co-sold", Committed)
}

func TestDuplicates(t *testing.T) {
	h := start(t, 1)
	reserve := events.Must("co-dup", events.CartValidated, quote(line("mug-nats", "Mug", 4)))
	h.PublishCopy(t, reserve, "delivery-1")
	h.PublishCopy(t, reserve, "delivery-2")
	h.barrier(t)
	if n := h.Watch.Count("co-dup", events.InventoryReserved); n != 1 {
		t.Errorf("%d reservations for one event", n)
	}
	h.wantStock(t, "mug-nats", 96, 4, 0)

	// Another event asking to reserve for the same checkout gets the same answer and
	// holds nothing more.
	other := events.Must("co-dup", events.CartValidated, quote(line("mug-nats", "Mug", 40)))
	other.ID += ":again"
	h.Env.Publish(t, other)
	h.barrier(t)
	outs := h.Watch.All("co-dup")
	last := outs[len(outs)-1]
	var res events.Reservation
	if last.Type != events.InventoryReserved || last.ID != events.ID("co-dup", events.InventoryReserved) {
		t.Errorf("answer to a second reservation: %s %s", last.Type, last.ID)
	} else if err := last.DecodePayload(&res); err != nil || res.Items[0].Quantity != 4 {
		t.Errorf("second answer = %+v (%v)", res, err)
	}
	h.wantStock(t, "mug-nats", 96, 4, 0)

	// A completion delivered twice sells once.
	h.completed(t, "co-dup")
	done := events.Must("co-dup", events.Completed, events.CheckoutCompleted{OrderID: "ord_1", Total: decimal.NewFromInt(10), Currency: "USD"})
	h.PublishCopy(t, done, "completed-again")
	h.barrier(t)
	h.wantStock(t, "mug-nats", 96, 0, 4)
}

func TestMalformedQuoteRejected(t *testing.T) {
	h := start(t, 1)
	tests := []struct {
		name    string
		payload any
	}{
		{"no lines", quote()},
		{"negative quantity", quote(line("mug-nats", "Mug", -5))},
		{"unknown field", map[string]any{"cart_id": "c", "lines": []any{}, "discount": "100%"}},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := fmt.Sprintf("co-bad-%d", i)
			h.Env.Publish(t, events.Must(id, events.CartValidated, tt.payload))
			// A malformed trigger fails the step (the checkout is compensated); the input is
			// kept in DEADLETTER.
			h.Refusal(t, id, events.InventoryFailed, events.InventoryReserved)
			if _, err := h.svc.Reservation(id); err == nil {
				t.Errorf("a rejected quote left a reservation")
			}
		})
	}
	h.wantStock(t, "mug-nats", 100, 0, 0)
}

func TestCompletionWithoutReservation(t *testing.T) {
	h := start(t, 1)
	h.completed(t, "co-elsewhere")
	h.barrier(t)
	if outs := h.Watch.All("co-elsewhere"); len(outs) != 1 {
		t.Errorf("events for a checkout that reserved nothing: %v", outs)
	}
	all, err := h.svc.AllStock()
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range all {
		if st.Reserved != 0 || st.Sold != 0 {
			t.Errorf("stock changed: %+v", st)
		}
	}
}
