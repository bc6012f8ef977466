package inventory

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/steptest"
	"github.com/nats-io/nats.go/micro"
)

func (h *harness) query(t *testing.T, body string) (code, desc string, stock []events.Stock) {
	t.Helper()
	msg, err := h.Env.NC.Request(string(events.InventoryStock), []byte(body), steptest.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	if code = msg.Header.Get(micro.ErrorCodeHeader); code != "" {
		return code, msg.Header.Get(micro.ErrorHeader), nil
	}
	if err := json.Unmarshal(msg.Data, &stock); err != nil {
		t.Fatal(err)
	}
	return "", "", stock
}

func TestStockEndpoint(t *testing.T) {
	h := start(t, 1)
	h.validated(t, "co-1", quote(line("hoodie-saga", "Saga Hoodie", 1)))
	h.reservation(t, "co-1")

	for _, body := range []string{"", "{}", `{"product_id":""}`} {
		_, desc, all := h.query(t, body)
		if len(all) != len(demoStock(t)) {
			t.Fatalf("query %q: %d products (%s), want %d", body, len(all), desc, len(demoStock(t)))
		}
		for i := 1; i < len(all); i++ {
			if all[i-1].ProductID >= all[i].ProductID {
				t.Errorf("not ordered by product: %s before %s", all[i-1].ProductID, all[i].ProductID)
			}
		}
	}

	_, _, one := h.query(t, `{"product_id":"hoodie-saga"}`)
	if len(one) != 1 || one[0] != (events.Stock{ProductID: "hoodie-saga", Available: 2, Reserved: 1}) {
		t.Errorf("hoodie stock = %+v", one)
	}

	tests := []struct{ name, body, code, mention string }{
		{"unknown product", `{"product_id":"flux-capacitor"}`, "404", "flux-capacitor"},
		{"unknown field", `{"product":"hoodie-saga"}`, "400", "unknown field"},
		{"not JSON", `hoodies?`, "400", "invalid character"},
		{"wrong type", `{"product_id":7}`, "400", "product_id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, desc, _ := h.query(t, tt.body)
			if code != tt.code || !strings.Contains(desc, tt.mention) {
				t.Errorf("reply %s %q, want %s mentioning %q", code, desc, tt.code, tt.mention)
			}
		})
	}

	msg, err := h.Env.NC.Request("$SRV.INFO.inventory", nil, steptest.Timeout)
	if err != nil {
		t.Fatal(err)
	}
	var info micro.Info
	if err := json.Unmarshal(msg.Data, &info); err != nil {
		t.Fatal(err)
	}
	if info.Name != "inventory" || info.Version != Version || len(info.Endpoints) != 1 ||
		info.Endpoints[0].Subject != string(events.InventoryStock) {
		t.Errorf("service info = %+v", info)
	}
}

func TestLoadStock(t *testing.T) {
	stock := demoStock(t)
	if stock["hoodie-saga"] != 3 || stock["tee-jetstream"] != 50 || len(stock) != 6 {
		t.Errorf("demo stock = %v", stock)
	}
	for _, tt := range []struct{ name, json, want string }{
		{"no id", `[{"name":"A","stock":1}]`, "no id"},
		{"twice", `[{"id":"a","stock":1},{"id":"a","stock":2}]`, "twice"},
		{"not a list", `{"id":"a"}`, "cannot unmarshal"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := LoadStock(strings.NewReader(tt.json)); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestSeedOnlyWhenEmpty(t *testing.T) {
	svc := newService(t)
	if _, err := svc.Seed(map[string]int{"a": -1}); err == nil {
		t.Error("negative stock seeded")
	}
	if seeded, err := svc.Seed(map[string]int{"a": 5}); err != nil || !seeded {
		t.Fatalf("first seed: %v, %v", seeded, err)
	}
	if seeded, err := svc.Seed(map[string]int{"a": 99, "b": 1}); err != nil || seeded {
		t.Fatalf("second seed: %v, %v", seeded, err)
	}
	all, err := svc.AllStock()
	if err != nil || len(all) != 1 || all[0] != (events.Stock{ProductID: "a", Available: 5}) {
		t.Errorf("stock after a second seed: %+v, %v", all, err)
	}
}
