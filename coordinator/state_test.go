package coordinator

import (
	"slices"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/shopspring/decimal"
)

func quote() events.Quote {
	return events.Quote{
		CartID: "cart_1", CustomerID: "cus_1", CustomerEmail: "ada@example.com", PaymentMethodID: "pm_card_visa",
		Currency: "USD", Total: decimal.RequireFromString("10.00"), Subtotal: decimal.RequireFromString("10.00"),
		Lines: []events.Line{{ProductID: "p1", Name: "P1", Quantity: 1, UnitPrice: decimal.RequireFromString("10.00"), Total: decimal.RequireFromString("10.00")}},
	}
}

// outcome builds the event a step reports.
func outcome(t *testing.T, typ events.Subject) events.Envelope {
	t.Helper()
	var payload any = struct{}{}
	if _, ok, _ := events.Checkout.Outcome(typ); !ok {
		step, _, _ := events.Checkout.Outcome(typ)
		payload = events.StepFailure{Step: step.Name, Code: "x", Message: "it failed"}
	}
	switch typ {
	case events.CartValidated:
		payload = quote()
	case events.PaymentCaptured:
		payload = events.Payment{PaymentIntentID: "pi_1", Amount: quote().Total, Currency: "USD", Quote: quote()}
	case events.OrderCreated:
		payload = events.Order{ID: "ord_1", Number: "JC-000001", Quote: quote()}
	}
	e := events.Must("co_1", typ, payload)
	e.Time = time.Now()
	return e
}

// TestDecide walks event sequences through the state machine and checks every decision,
// in order, that each sequence leads to.
func TestDecide(t *testing.T) {
	happy := []events.Subject{events.CartValidated, events.InventoryReserved, events.FraudCleared, events.PaymentCaptured,
		events.OrderCreated, events.ConfirmationSent, events.LabelCreated, events.WarehouseNotified}
	tests := []struct {
		name   string
		events []events.Subject
		want   []events.Subject
		status Status
	}{
		{"happy path", happy, []events.Subject{events.PaymentRequested, events.Completed}, StatusCompleted},
		{"fraud before inventory", []events.Subject{events.CartValidated, events.FraudCleared, events.InventoryReserved},
			[]events.Subject{events.PaymentRequested}, StatusRunning},
		{"one branch is not enough", []events.Subject{events.CartValidated, events.InventoryReserved},
			nil, StatusRunning},
		{"confirmation alone does not complete", []events.Subject{events.CartValidated, events.InventoryReserved, events.FraudCleared,
			events.PaymentCaptured, events.OrderCreated, events.ConfirmationSent, events.LabelCreated},
			[]events.Subject{events.PaymentRequested}, StatusRunning},
		{"sinks overtake create_order: completion waits for the order",
			[]events.Subject{events.CartValidated, events.InventoryReserved, events.FraudCleared, events.PaymentCaptured,
				events.ConfirmationSent, events.LabelCreated, events.WarehouseNotified, events.OrderCreated},
			[]events.Subject{events.PaymentRequested, events.Completed}, StatusCompleted},
		{"invalid cart fails at once", []events.Subject{events.CartFailed}, []events.Subject{events.Failed}, StatusFailed},
		{"no stock, fraud still running: wait", []events.Subject{events.CartValidated, events.InventoryFailed}, nil, StatusFailing},
		{"no stock, then fraud: failed, nothing to undo", []events.Subject{events.CartValidated, events.InventoryFailed, events.FraudCleared},
			[]events.Subject{events.Failed}, StatusFailed},
		{"fraud rejects after reservation", []events.Subject{events.CartValidated, events.InventoryReserved, events.FraudFailed},
			[]events.Subject{events.InventoryRelease}, StatusFailing},
		{"fraud rejects before reservation: wait, then release", []events.Subject{events.CartValidated, events.FraudFailed, events.InventoryReserved},
			[]events.Subject{events.InventoryRelease}, StatusFailing},
		{"release confirmed: failed", []events.Subject{events.CartValidated, events.InventoryReserved, events.FraudFailed, events.InventoryReleased},
			[]events.Subject{events.InventoryRelease, events.Failed}, StatusFailed},
		{"declined card: release then fail", []events.Subject{events.CartValidated, events.InventoryReserved, events.FraudCleared,
			events.PaymentFailed, events.InventoryReleased},
			[]events.Subject{events.PaymentRequested, events.InventoryRelease, events.Failed}, StatusFailed},
		{"order fails: refund first, then release", []events.Subject{events.CartValidated, events.InventoryReserved, events.FraudCleared,
			events.PaymentCaptured, events.OrderFailed, events.PaymentRefunded, events.InventoryReleased},
			[]events.Subject{events.PaymentRequested, events.PaymentRefund, events.InventoryRelease, events.Failed}, StatusFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := newState("co_1")
			var got []events.Subject
			for _, typ := range tt.events {
				if err := st.apply(events.Checkout, outcome(t, typ)); err != nil {
					t.Fatalf("apply %s: %v", typ, err)
				}
				got = append(got, st.decide(events.Checkout)...)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("decisions = %v, want %v", got, tt.want)
			}
			if st.Status != tt.status {
				t.Errorf("status = %s, want %s", st.Status, tt.status)
			}
		})
	}
}

func TestApplyRejectsContradictions(t *testing.T) {
	st := newState("co_1")
	if err := st.apply(events.Checkout, outcome(t, events.CartValidated)); err != nil {
		t.Fatal(err)
	}
	if err := st.apply(events.Checkout, outcome(t, events.CartFailed)); err == nil {
		t.Error("a step reporting twice was accepted")
	}
	if err := st.apply(events.Checkout, outcome(t, events.InventoryReleased)); err == nil {
		t.Error("a release of a reservation that never succeeded was accepted")
	}
}
