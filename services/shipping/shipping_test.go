package shipping

import (
	"log/slog"
	"reflect"
	"regexp"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/steptest"
	"github.com/jetcheckout/jetcheckout/runner"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/shopspring/decimal"
	bolt "go.etcd.io/bbolt"
)

type harness struct {
	*steptest.Harness
	svc *Service
}

// start runs the service behind the real runner on an embedded JetStream.
func start(t *testing.T, cfg Config) harness {
	t.Helper()
	h, svc := steptest.Start(t, runner.Config{Name: "shipping"}, func(db *bolt.DB, log *slog.Logger) (*Service, error) {
		return New(db, log, cfg)
	})
	return harness{h, svc}
}

// queuedPick is the last pick request on the WAREHOUSE stream, and how many it holds.
func (h harness) queuedPick(t *testing.T) (events.Envelope, string, uint64) {
	t.Helper()
	stream, err := h.Env.JS.Stream(t.Context(), events.StreamWarehouse)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := stream.GetLastMsgForSubject(t.Context(), string(events.WarehousePick))
	if err != nil {
		t.Fatalf("no pick request on %s: %v", events.StreamWarehouse, err)
	}
	env, err := events.Decode(msg.Subject, msg.Data)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	return env, msg.Header.Get(jetstream.MsgIDHeader), info.State.Msgs
}

func TestOrderIsLabeledAndQueuedForPicking(t *testing.T) {
	h := start(t, Config{})
	order := testOrder("co_ship")
	h.Env.Publish(t, events.Must("co_ship", events.LabelRequested, order))

	var queued events.PickQueued
	h.Expect(t, "co_ship", events.WarehouseNotified, &queued, events.Rejected)

	label, found, err := h.svc.Label(order.ID)
	if err != nil || !found {
		t.Fatalf("Label: found=%v err=%v", found, err)
	}
	if label.Carrier != "UPS" || label.TrackingNumber != TrackingNumber(order.ID) || label.Address != order.ShippingAddress ||
		label.OrderID != order.ID || label.CreatedAt.IsZero() {
		t.Errorf("label = %+v", label)
	}
	var shipment events.Shipment
	h.Expect(t, "co_ship", events.LabelCreated, &shipment)
	if shipment.Label != label || shipment.Order.Number != order.Number {
		t.Errorf("announced %+v, stored label %+v", shipment, label)
	}

	pick, found, err := h.svc.PickRequest(order.ID)
	if err != nil || !found {
		t.Fatalf("PickRequest: found=%v err=%v", found, err)
	}
	want := events.PickRequest{
		OrderID: order.ID, OrderNumber: "JC-000007", Carrier: "UPS", TrackingNumber: label.TrackingNumber,
		Items:  []events.ReservedItem{{ProductID: "tea", Quantity: 2}, {ProductID: "cup", Quantity: 1}},
		ShipTo: order.ShippingAddress,
	}
	if !reflect.DeepEqual(pick.PickRequest, want) || pick.QueuedAt.IsZero() {
		t.Errorf("stored pick = %+v, want %+v", pick, want)
	}
	if queued.OrderID != order.ID || queued.PickRequestID != pick.ID || pick.ID == "" {
		t.Errorf("notified %+v, stored pick ID %q", queued, pick.ID)
	}

	env, msgID, n := h.queuedPick(t)
	var onQueue events.PickRequest
	if err := env.DecodePayload(&onQueue); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(onQueue, want) || env.CheckoutID != "co_ship" || msgID != pick.ID || n != 1 {
		t.Errorf("WAREHOUSE holds %d messages, last %+v with Nats-Msg-Id %q; want %+v with %q", n, onQueue, msgID, want, pick.ID)
	}
}

func TestCarrierComesFromConfig(t *testing.T) {
	h := start(t, Config{Carrier: "DHL"})
	order := testOrder("co_dhl")
	h.Env.Publish(t, events.Must("co_dhl", events.LabelRequested, order))
	h.Wait(t, "co_dhl", events.WarehouseNotified)
	if label, _, err := h.svc.Label(order.ID); err != nil || label.Carrier != "DHL" {
		t.Errorf("carrier = %q (%v), want DHL", label.Carrier, err)
	}
	if env, _, _ := h.queuedPick(t); !regexp.MustCompile(`"carrier":"DHL"`).Match(env.Payload) {
		t.Errorf("queued pick %s does not name DHL", env.Payload)
	}
}

func TestDuplicatesLabelAndQueueOnce(t *testing.T) {
	h := start(t, Config{})
	order := testOrder("co_dup")
	in := events.Must("co_dup", events.LabelRequested, order)
	h.Env.Publish(t, in)
	h.Wait(t, "co_dup", events.WarehouseNotified)
	label, _, _ := h.svc.Label(order.ID)
	pick, _, _ := h.svc.PickRequest(order.ID)

	// The same order event under another Nats-Msg-Id; then events with new IDs that reach
	// both handlers again, one with an order that changed its address.
	h.PublishCopy(t, in, "another-msg-id")
	moved := order
	moved.ShippingAddress.City = "Shelbyville"
	replayOrder := events.Must("co_dup", events.LabelRequested, moved)
	replayOrder.ID += ":replayed"
	h.Env.Publish(t, replayOrder)
	replayLabel := events.Must("co_dup", events.LabelCreated, events.Shipment{Label: label, Order: moved})
	replayLabel.ID += ":replayed"
	h.Env.Publish(t, replayLabel)
	h.Idle(t)

	if again, _, _ := h.svc.Label(order.ID); again != label {
		t.Errorf("label changed to %+v, was %+v", again, label)
	}
	if again, _, _ := h.svc.PickRequest(order.ID); !reflect.DeepEqual(again, pick) {
		t.Errorf("pick changed to %+v, was %+v", again, pick)
	}
	env, _, n := h.queuedPick(t)
	var onQueue events.PickRequest
	if err := env.DecodePayload(&onQueue); err != nil || n != 1 || onQueue.ShipTo.City != "Springfield" {
		t.Errorf("WAREHOUSE holds %d pick requests, last to %q (%v); want one to Springfield", n, onQueue.ShipTo.City, err)
	}
}

func TestMalformedInputIsRejected(t *testing.T) {
	h := start(t, Config{})
	noID := testOrder("co_noid")
	noID.ID = ""
	h.Env.Publish(t, events.Must("co_noid", events.LabelRequested, noID))
	order := testOrder("co_mismatch")
	wrongLabel := events.ShippingLabel{OrderID: "ord_other", Carrier: "UPS", TrackingNumber: "1Z0", Address: order.ShippingAddress}
	h.Env.Publish(t, events.Must("co_mismatch", events.LabelCreated, events.Shipment{Label: wrongLabel, Order: order}))

	h.Refusal(t, "co_noid", events.LabelFailed, events.LabelCreated)
	h.Refusal(t, "co_mismatch", events.WarehouseFailed, events.WarehouseNotified)
	h.Idle(t)
	if n := h.Watch.Count("co_noid", events.LabelCreated) + h.Watch.Count("co_mismatch", events.WarehouseNotified); n != 0 {
		t.Errorf("%d step outcomes for malformed input", n)
	}
	if _, found, _ := h.svc.PickRequest(order.ID); found {
		t.Error("a pick was stored for a mismatched shipment")
	}
	if _, found, _ := h.svc.Label(""); found {
		t.Error("a label was stored for an order without an ID")
	}
	stream, err := h.Env.JS.Stream(t.Context(), events.StreamWarehouse)
	if err != nil {
		t.Fatal(err)
	}
	if info, err := stream.Info(t.Context()); err != nil || info.State.Msgs != 0 {
		t.Errorf("WAREHOUSE holds %d messages after malformed input (%v)", info.State.Msgs, err)
	}
}

func TestTrackingNumber(t *testing.T) {
	shape := regexp.MustCompile(`^1Z[0-9A-F]{16}$`)
	seen := map[string]string{}
	for _, id := range []string{"ord_a", "ord_b", "ord_co_1", "ord_co_2"} {
		n := TrackingNumber(id)
		if !shape.MatchString(n) {
			t.Errorf("TrackingNumber(%s) = %q, want 1Z and 16 upper-case hex digits", id, n)
		}
		if n != TrackingNumber(id) {
			t.Errorf("TrackingNumber(%s) is not deterministic", id)
		}
		if other, dup := seen[n]; dup {
			t.Errorf("%s and %s share tracking number %s", id, other, n)
		}
		seen[n] = id
	}
}

func testOrder(checkoutID string) events.Order {
	dec := decimal.RequireFromString
	home := events.Address{Name: "Ada Lovelace", Line1: "1 Main St", City: "Springfield", State: "IL", PostalCode: "62701", Country: "US"}
	return events.Order{
		ID: "ord_" + checkoutID, Number: "JC-000007", CheckoutID: checkoutID, PaymentIntentID: "pi_1",
		Status: "confirmed", CreatedAt: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC),
		Quote: events.Quote{
			CartID: "cart_1", CustomerID: "cus_1", CustomerEmail: "ada@example.com", PaymentMethodID: "pm_card_visa",
			ShippingAddress: home, BillingAddress: home, Currency: "USD",
			Lines: []events.Line{
				{ProductID: "tea", Name: "Green tea", Quantity: 2, UnitPrice: dec("9.99"), Total: dec("19.98")},
				{ProductID: "cup", Name: "Cup", Quantity: 1, UnitPrice: dec("5.00"), Total: dec("5.00")},
			},
			Subtotal: dec("24.98"), Tax: dec("0"), Shipping: dec("0"), Total: dec("24.98"),
		},
	}
}
