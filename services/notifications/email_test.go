package notifications

import (
	"bytes"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"strings"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/shopspring/decimal"
)

// parsed is an email as a mail client sees it.
type parsed struct {
	header     mail.Header
	subject    string
	text, html string
}

func parseEmail(t *testing.T, data []byte) parsed {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("not an email: %v\n%s", err, data)
	}
	p := parsed{header: msg.Header}
	if p.subject, err = new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject")); err != nil {
		t.Fatal(err)
	}
	mediaType, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mediaType != "multipart/alternative" {
		t.Fatalf("Content-Type %q: %v", msg.Header.Get("Content-Type"), err)
	}
	parts := multipart.NewReader(msg.Body, params["boundary"])
	for {
		part, err := parts.NextPart() // decodes quoted-printable
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		raw, err := io.ReadAll(part)
		if err != nil {
			t.Fatal(err)
		}
		body := strings.ReplaceAll(string(raw), "\r\n", "\n")
		switch part.Header.Get("Content-Type") {
		case "text/plain; charset=UTF-8":
			p.text = body
		case "text/html; charset=UTF-8":
			p.html = body
		default:
			t.Errorf("unexpected part %q", part.Header.Get("Content-Type"))
		}
	}
	if p.text == "" || p.html == "" {
		t.Fatalf("want a text and an html part, got text %q html %q", p.text, p.html)
	}
	return p
}

// line returns the text body's line that starts with prefix, split into fields.
func (p parsed) line(t *testing.T, prefix string) []string {
	t.Helper()
	for l := range strings.Lines(p.text) {
		if strings.HasPrefix(l, prefix) {
			return strings.Fields(strings.TrimPrefix(l, prefix))
		}
	}
	t.Fatalf("no line starting with %q in:\n%s", prefix, p.text)
	return nil
}

func TestRenderJPY(t *testing.T) {
	order := jpyOrder("co_jpy")
	m, err := render("co_jpy", order, defaultFrom(t), order.CreatedAt)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Count(m.Data, []byte("\n")) != bytes.Count(m.Data, []byte("\r\n")) {
		t.Error("the message has bare LF line endings")
	}
	p := parseEmail(t, m.Data)

	if p.subject != "Your order JC-000001 is confirmed" {
		t.Errorf("Subject = %q", p.subject)
	}
	if from, err := p.header.AddressList("From"); err != nil || from[0].Name != "JetCheckout" || from[0].Address != "orders@jetcheckout.local" {
		t.Errorf("From = %v (%v)", from, err)
	}
	if to, err := p.header.AddressList("To"); err != nil || len(to) != 1 || to[0].Address != "hanako@example.jp" {
		t.Errorf("To = %v (%v)", to, err)
	}
	if id := p.header.Get("Message-ID"); id != "<co_jpy.confirmation@jetcheckout.local>" || id != m.ID {
		t.Errorf("Message-ID = %q, message says %q", id, m.ID)
	}
	if date, err := p.header.Date(); err != nil || !date.Equal(order.CreatedAt) {
		t.Errorf("Date = %v (%v), want %v", date, err, order.CreatedAt)
	}
	if m.From != "orders@jetcheckout.local" || m.To != "hanako@example.jp" || m.Name != "co_jpy" {
		t.Errorf("envelope %q → %q, name %q", m.From, m.To, m.Name)
	}

	for prefix, want := range map[string][]string{
		"Green tea": {"2", "¥1,400", "¥2,800"},
		"Cup":       {"1", "¥800", "¥800"},
		"Subtotal:": {"¥3,600"},
		"Tax:":      {"¥288"},
		"Shipping:": {"¥500"},
		"Total:":    {"¥4,388"},
	} {
		if got := p.line(t, prefix); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("line %q: %q, want %q", prefix, got, want)
		}
	}
	for _, want := range []string{"Order JC-000001 is confirmed", "Shipping to:\nHanako Yamada\n1-1 Chiyoda\nChiyoda-ku, Tokyo 100-0001\nJP\n"} {
		if !strings.Contains(p.text, want) {
			t.Errorf("text body lacks %q:\n%s", want, p.text)
		}
	}
	if !strings.Contains(p.html, "¥4,388") || !strings.Contains(p.html, "JC-000001") {
		t.Errorf("html body lacks the total or number:\n%s", p.html)
	}

	again, err := render("co_jpy", order, defaultFrom(t), order.CreatedAt)
	if err != nil || !bytes.Equal(again.Data, m.Data) {
		t.Errorf("rendering twice gave different messages (%v)", err)
	}
}

func TestRenderUSDAndHostileNames(t *testing.T) {
	order := jpyOrder("co_usd")
	order.Currency = "USD"
	order.CustomerEmail = "ada@example.com"
	order.Lines = []events.Line{{ProductID: "kit", Name: "Tea & <Biscuits>\r\nBcc: eve@example.com", Quantity: 1, UnitPrice: dec("19.99"), Total: dec("19.99")}}
	order.Subtotal, order.Tax, order.Shipping, order.Total = dec("19.99"), dec("1.65"), dec("0"), dec("21.64")
	m, err := render("co_usd", order, defaultFrom(t), order.CreatedAt)
	if err != nil {
		t.Fatal(err)
	}
	p := parseEmail(t, m.Data)

	if got := p.line(t, "Tea & <Biscuits>  Bcc: eve@example.com"); strings.Join(got, " ") != "1 $19.99 $19.99" {
		t.Errorf("item line = %q", got)
	}
	if got := p.line(t, "Total:"); got[0] != "$21.64" {
		t.Errorf("total = %q", got)
	}
	if p.header.Get("Bcc") != "" {
		t.Error("a product name added a header")
	}
	if !strings.Contains(p.html, "Tea &amp; &lt;Biscuits&gt;") || strings.Contains(p.html, "<Biscuits>") {
		t.Errorf("html body does not escape the product name:\n%s", p.html)
	}
}

func TestRenderRejectsABadRecipient(t *testing.T) {
	order := jpyOrder("co_bad")
	for _, email := range []string{"", "not an email", "Eve <eve@example.com>", "a@b.test\r\nBcc: eve@example.com"} {
		order.CustomerEmail = email
		if _, err := render("co_bad", order, defaultFrom(t), order.CreatedAt); err == nil {
			t.Errorf("rendered a message to %q", email)
		}
	}
}

func TestFileName(t *testing.T) {
	for id, want := range map[string]string{
		"co_123":        "co_123",
		"Ab-9_x":        "Ab-9_x",
		"../etc/passwd": "sha256.",
		"a.b":           "sha256.",
		"":              "sha256.",
	} {
		got := fileName(id)
		if got != want && !(want == "sha256." && strings.HasPrefix(got, want) && !strings.ContainsAny(got, "/\\")) {
			t.Errorf("fileName(%q) = %q, want %q", id, got, want)
		}
	}
	if fileName("a.b") == fileName("a/b") {
		t.Error("two unsafe IDs share a name")
	}
}

func defaultFrom(t *testing.T) *mail.Address {
	t.Helper()
	cfg := Config{OutboxDir: t.TempDir()}
	cfg.setDefaults()
	from, err := mail.ParseAddress(cfg.From)
	if err != nil {
		t.Fatal(err)
	}
	return from
}

func dec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

func jpyOrder(checkoutID string) events.Order {
	home := events.Address{Name: "Hanako Yamada", Line1: "1-1 Chiyoda", City: "Chiyoda-ku", State: "Tokyo", PostalCode: "100-0001", Country: "JP"}
	return events.Order{
		ID: "ord_" + checkoutID, Number: "JC-000001", CheckoutID: checkoutID, PaymentIntentID: "pi_1",
		Status: "confirmed", CreatedAt: time.Date(2025, 4, 1, 9, 30, 0, 0, time.UTC),
		Quote: events.Quote{
			CartID: "cart_1", CustomerID: "cus_1", CustomerEmail: "hanako@example.jp", PaymentMethodID: "pm_card_visa",
			ShippingAddress: home, BillingAddress: home, Currency: "JPY",
			Lines: []events.Line{
				{ProductID: "tea", Name: "Green tea", Quantity: 2, UnitPrice: dec("1400"), Total: dec("2800")},
				{ProductID: "cup", Name: "Cup", Quantity: 1, UnitPrice: dec("800"), Total: dec("800")},
			},
			Subtotal: dec("3600"), Tax: dec("288"), Shipping: dec("500"), Total: dec("4388"),
		},
	}
}

// The email shows the address's line2 and state, from an order written with state and from
// one written before it was named so (region).
func TestRenderAddressInEitherSpelling(t *testing.T) {
	order := jpyOrder("co_addr")
	order.ShippingAddress.Line2 = "Room 301"
	raw, err := json.Marshal(order)
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string]string{
		"state":  string(raw),
		"region": strings.Replace(string(raw), `"state":"Tokyo"`, `"region":"Tokyo"`, 1),
	} {
		var o events.Order
		if err := events.Must("co_addr", events.OrderCreated, json.RawMessage(body)).DecodePayload(&o); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		m, err := render("co_addr", o, defaultFrom(t), o.CreatedAt)
		if err != nil {
			t.Fatal(err)
		}
		if want := "1-1 Chiyoda\nRoom 301\nChiyoda-ku, Tokyo 100-0001\n"; !strings.Contains(parseEmail(t, m.Data).text, want) {
			t.Errorf("%s: the email lacks %q", name, want)
		}
	}
}

// A quote that recorded its tax rate (schema version 2) has the email state it, as an invoice
// must; one written before it was recorded says "Tax" alone (TestRenderJPY).
func TestRenderStatesTheTaxRate(t *testing.T) {
	order := jpyOrder("co_rate")
	rate := dec("0.08")
	order.TaxRate = &rate
	m, err := render("co_rate", order, defaultFrom(t), order.CreatedAt)
	if err != nil {
		t.Fatal(err)
	}
	p := parseEmail(t, m.Data)
	if got := p.line(t, "Tax (8%):"); strings.Join(got, " ") != "¥288" {
		t.Errorf("tax line: %q, want ¥288 after \"Tax (8%%):\"\n%s", got, p.text)
	}
	if !strings.Contains(p.html, "Tax (8%)") {
		t.Errorf("html body lacks the rate:\n%s", p.html)
	}
}

// A discounted order's email lists each discount, what it is and what it took off, between
// the subtotal and the tax.
func TestRenderListsTheDiscounts(t *testing.T) {
	order := jpyOrder("co_coupon")
	order.Discounts = []events.Discount{{Code: "LAUNCH15", Description: "15% off for the first 10 checkouts", Amount: dec("540")}}
	order.Tax, order.Total = dec("244"), dec("3804") // 3600 − 540 = 3060; 8% tax 244.8 → 244 (as priced); + 500
	m, err := render("co_coupon", order, defaultFrom(t), order.CreatedAt)
	if err != nil {
		t.Fatal(err)
	}
	p := parseEmail(t, m.Data)
	if got := p.line(t, "Discount LAUNCH15 (15% off for the first 10 checkouts):"); strings.Join(got, " ") != "-¥540" {
		t.Errorf("discount line: %q\n%s", got, p.text)
	}
	if sub, disc, tax := strings.Index(p.text, "Subtotal"), strings.Index(p.text, "Discount LAUNCH15"), strings.Index(p.text, "Tax"); !(sub < disc && disc < tax) {
		t.Errorf("the discount is not between the subtotal and the tax:\n%s", p.text)
	}
	if !strings.Contains(p.html, "Discount LAUNCH15 (15% off for the first 10 checkouts)") || !strings.Contains(p.html, "-¥540") {
		t.Errorf("html body lacks the discount:\n%s", p.html)
	}
}

// Where prices include the tax, the email says so after the total instead of adding it.
func TestRenderTaxIncluded(t *testing.T) {
	order := jpyOrder("co_incl")
	rate := dec("0.10")
	order.TaxRate, order.TaxIncluded = &rate, true
	order.Tax, order.Total = dec("373"), dec("4100") // 3600 + 500 shipping, 10/110 of it tax
	m, err := render("co_incl", order, defaultFrom(t), order.CreatedAt)
	if err != nil {
		t.Fatal(err)
	}
	p := parseEmail(t, m.Data)
	if got := p.line(t, "Included in the total: Tax (10%):"); strings.Join(got, " ") != "¥373" {
		t.Errorf("tax line: %q\n%s", got, p.text)
	}
	if total, tax := strings.Index(p.text, "Total"), strings.Index(p.text, "Included in the total"); total < 0 || tax < total {
		t.Errorf("the included tax is not after the total:\n%s", p.text)
	}
}
