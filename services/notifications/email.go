package notifications

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"html/template"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"net/textproto"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/money"
	"github.com/shopspring/decimal"
)

// confirmation is what both bodies of the email show, formatted for people.
type confirmation struct {
	Greeting string
	Number   string
	Lines    []lineView
	Totals   []amountView
	ShipTo   []string
}

type lineView struct {
	Name, Quantity, UnitPrice, Total string
}

type amountView struct {
	Label, Amount string
}

func viewOf(o events.Order) confirmation {
	v := confirmation{Greeting: "Hello,", Number: clean(o.Number)}
	if name := clean(o.ShippingAddress.Name); name != "" {
		v.Greeting = "Hello " + name + ","
	}
	for _, l := range o.Lines {
		v.Lines = append(v.Lines, lineView{
			Name:      clean(l.Name),
			Quantity:  strconv.Itoa(l.Quantity),
			UnitPrice: money.Format(l.UnitPrice, o.Currency),
			Total:     money.Format(l.Total, o.Currency),
		})
	}
	v.Totals = []amountView{{"Subtotal", money.Format(o.Subtotal, o.Currency)}}
	for _, d := range o.Discounts {
		label := "Discount " + d.Code + " (" + d.Description + ")"
		if d.Automatic {
			label = "Promotion: " + d.Description
		}
		v.Totals = append(v.Totals, amountView{clean(label), "-" + money.Format(d.Amount, o.Currency)})
	}
	tax := amountView{taxLabel(o.TaxRate), money.Format(o.Tax, o.Currency)}
	if o.TaxIncluded { // part of the prices: said after the total, not added before it
		tax.Label = "Included in the total: " + tax.Label
		v.Totals = append(v.Totals, amountView{"Shipping", money.Format(o.Shipping, o.Currency)}, amountView{"Total", money.Format(o.Total, o.Currency)}, tax)
	} else {
		v.Totals = append(v.Totals, tax, amountView{"Shipping", money.Format(o.Shipping, o.Currency)}, amountView{"Total", money.Format(o.Total, o.Currency)})
	}
	a := o.ShippingAddress
	place := clean(a.City)
	if state := clean(a.State); state != "" {
		place += ", " + state
	}
	place = strings.TrimSpace(place + " " + clean(a.PostalCode))
	v.ShipTo = nonEmpty(clean(a.Name), clean(a.Line1), clean(a.Line2), place, clean(a.Country))
	return v
}

// taxLabel names the rate applied, as an invoice must, when the quote recorded it (quotes
// written before schema version 2 did not).
func taxLabel(rate *decimal.Decimal) string {
	if rate == nil {
		return "Tax"
	}
	return "Tax (" + rate.Shift(2).String() + "%)"
}

func (v confirmation) text() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\n\nThank you for your order. Order %s is confirmed.\n\n", v.Greeting, v.Number)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "Item\tQty\tUnit price\tLine total")
	for _, l := range v.Lines {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", l.Name, l.Quantity, l.UnitPrice, l.Total)
	}
	tw.Flush()
	b.WriteString("\n")
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	for _, t := range v.Totals {
		fmt.Fprintf(tw, "%s:\t%s\n", t.Label, t.Amount)
	}
	tw.Flush()
	b.WriteString("\nShipping to:\n")
	for _, l := range v.ShipTo {
		b.WriteString(l + "\n")
	}
	return b.Bytes()
}

var htmlBody = template.Must(template.New("confirmation").Parse(`<!DOCTYPE html>
<html><body>
<p>{{.Greeting}}</p>
<p>Thank you for your order. Order <strong>{{.Number}}</strong> is confirmed.</p>
<table>
<tr><th align="left">Item</th><th>Qty</th><th align="right">Unit price</th><th align="right">Line total</th></tr>
{{range .Lines}}<tr><td>{{.Name}}</td><td align="center">{{.Quantity}}</td><td align="right">{{.UnitPrice}}</td><td align="right">{{.Total}}</td></tr>
{{end}}{{range .Totals}}<tr><td colspan="3" align="right">{{.Label}}</td><td align="right">{{.Amount}}</td></tr>
{{end}}</table>
<p>Shipping to:<br>
{{range .ShipTo}}{{.}}<br>
{{end}}</p>
</body></html>
`))

// render builds the confirmation email of a checkout's order. It is a pure function of its
// arguments, so a resend is the same message.
func render(checkoutID string, o events.Order, from *mail.Address, date time.Time) (Message, error) {
	v := viewOf(o)
	var html bytes.Buffer
	if err := htmlBody.Execute(&html, v); err != nil {
		return Message{}, fmt.Errorf("render html: %w", err)
	}
	name := fileName(checkoutID)
	return compose(email{
		name: name, idLocal: name + ".confirmation", boundarySeed: checkoutID,
		from: from, to: o.CustomerEmail, subject: "Your order " + o.Number + " is confirmed", date: date,
		text: v.text(), html: html.Bytes(),
	})
}

// email is what compose needs to build a message.
type email struct {
	name         string // the message's Name
	idLocal      string // its Message-ID is <idLocal@the sender's domain>
	boundarySeed string // the multipart boundary derives from it, so a resend is the same
	from         *mail.Address
	to           string // a plain address, checked here
	subject      string
	date         time.Time
	text, html   []byte
}

// compose builds a multipart/alternative message with a text and an html body, each
// quoted-printable, with CRLF line endings.
func compose(e email) (Message, error) {
	to, err := mail.ParseAddress(e.to)
	if err != nil || to.Address != e.to {
		return Message{}, fmt.Errorf("%w: customer_email %q is not a plain email address", events.ErrMalformed, e.to)
	}
	_, domain, _ := strings.Cut(e.from.Address, "@")
	m := Message{Name: e.name, ID: "<" + e.idLocal + "@" + domain + ">", From: e.from.Address, To: to.Address}

	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	// "=_" never occurs in quoted-printable text, so the boundary cannot clash with a body.
	sum := sha256.Sum256([]byte(e.boundarySeed))
	if err := mw.SetBoundary("=_jc_" + hex.EncodeToString(sum[:16])); err != nil {
		return Message{}, err
	}
	for _, part := range []struct {
		contentType string
		content     []byte
	}{{"text/plain; charset=UTF-8", e.text}, {"text/html; charset=UTF-8", e.html}} {
		w, err := mw.CreatePart(textproto.MIMEHeader{
			"Content-Type":              {part.contentType},
			"Content-Transfer-Encoding": {"quoted-printable"},
		})
		if err != nil {
			return Message{}, err
		}
		qw := quotedprintable.NewWriter(w)
		if _, err := qw.Write(part.content); err != nil {
			return Message{}, err
		}
		if err := qw.Close(); err != nil {
			return Message{}, err
		}
	}
	if err := mw.Close(); err != nil {
		return Message{}, err
	}

	var b bytes.Buffer
	header := func(k, v string) { b.WriteString(k + ": " + v + "\r\n") }
	header("From", e.from.String())
	header("To", to.String())
	header("Subject", mime.QEncoding.Encode("UTF-8", e.subject))
	header("Date", e.date.Format(time.RFC1123Z))
	header("Message-ID", m.ID)
	header("MIME-Version", "1.0")
	header("Content-Type", mime.FormatMediaType("multipart/alternative", map[string]string{"boundary": mw.Boundary()}))
	b.WriteString("\r\n")
	b.Write(body.Bytes())
	m.Data = b.Bytes()
	return m, nil
}

// fileName is a name for the checkout's message that is safe in a path and a Message-ID.
// Checkout IDs are already safe; anything else is hashed ("." never occurs in a checkout ID,
// so a hashed name cannot collide with one).
func fileName(checkoutID string) string {
	if events.ValidCheckoutID(checkoutID) {
		return checkoutID
	}
	sum := sha256.Sum256([]byte(checkoutID))
	return "sha256." + hex.EncodeToString(sum[:16])
}

// clean turns control characters (line breaks, tabs) into spaces, so a product name
// cannot break the layout of the text body.
func clean(s string) string {
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s))
}

func nonEmpty(ss ...string) []string {
	out := ss[:0]
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}
