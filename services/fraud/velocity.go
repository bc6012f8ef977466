package fraud

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/shopspring/decimal"
	bolt "go.etcd.io/bbolt"
)

// Velocity rules judge a checkout by the others: how many checkouts, or declined payments,
// the same customer, email, card or shipping address had in a window before it. The counts
// are the fraud service's view of the CHECKOUT stream (every validated cart it scored, every
// checkout.failed it reads), so they cost no write of their own and every instance that
// holds the view sees the same figures. What a count was when a checkout was judged depends
// on which checkouts the service handled first, which the stream does not keep: the outcome
// carries the whole assessment, and a rebuild takes it from there (replayCheck).

// What a velocity rule counts by (VelocityRule.By).
const (
	ByCustomer        = "customer"         // the customer's ID
	ByEmail           = "email"            // the customer's email, in lower case
	ByCard            = "card"             // the payment method
	ByShippingAddress = "shipping_address" // country, postal code and first line, in lower case
)

// What a velocity rule counts (VelocityRule.Count).
const (
	// CountAttempts: checkouts whose cart was validated, this one included.
	CountAttempts = "attempts"
	// CountDeclines: payments declined (card_declined, insufficient_funds) before this
	// checkout: a burst of them from one customer is how card testing looks.
	CountDeclines = "declines"
)

// VelocityRule adds Weight to the risk of a checkout when more than Limit of Count were seen
// By the same value within Window before it (its own attempt included).
type VelocityRule struct {
	Name   string          `json:"name"`
	By     string          `json:"by"`
	Count  string          `json:"count"`
	Window Duration        `json:"window"`
	Limit  int             `json:"limit"`
	Weight decimal.Decimal `json:"weight"`
}

// Duration is a window written as in Go ("10m", "1h30m").
type Duration = events.Duration

func validateVelocity(rules []VelocityRule) error {
	one := decimal.NewFromInt(1)
	names := map[string]bool{}
	for i, r := range rules {
		switch {
		case r.Name == "" || strings.ContainsAny(r.Name, " \t"):
			return fmt.Errorf("fraud: velocity rule %d: a name without spaces is required, got %q", i+1, r.Name)
		case names[r.Name] || slices.Contains(staticRules, r.Name):
			return fmt.Errorf("fraud: velocity rule %s: the name is taken", r.Name)
		case !slices.Contains([]string{ByCustomer, ByEmail, ByCard, ByShippingAddress}, r.By):
			return fmt.Errorf("fraud: velocity rule %s: by must be customer, email, card or shipping_address, got %q", r.Name, r.By)
		case r.Count != CountAttempts && r.Count != CountDeclines:
			return fmt.Errorf("fraud: velocity rule %s: count must be attempts or declines, got %q", r.Name, r.Count)
		case r.Window.Duration <= 0:
			return fmt.Errorf("fraud: velocity rule %s: the window must be positive, got %s", r.Name, r.Window)
		case r.Limit < 0 || (r.Count == CountAttempts && r.Limit < 1):
			return fmt.Errorf("fraud: velocity rule %s: the limit must be at least 1 for attempts (the checkout itself is one) and 0 for declines, got %d", r.Name, r.Limit)
		case !r.Weight.IsPositive() || r.Weight.GreaterThan(one):
			return fmt.Errorf("fraud: velocity rule %s: the weight must be above 0 and at most 1, got %s", r.Name, r.Weight)
		}
		names[r.Name] = true
	}
	return nil
}

// describe says what the rule saw, for people.
func (r VelocityRule) describe(seen int) string {
	what := "checkouts"
	if r.Count == CountDeclines {
		what = "declined payments"
	}
	by := map[string]string{ByCustomer: "customer", ByEmail: "email address", ByCard: "card", ByShippingAddress: "shipping address"}[r.By]
	return fmt.Sprintf("%d %s for this %s in the last %s (limit %d)", seen, what, by, r.Window, r.Limit)
}

// velocityBucket holds one empty-valued key per counted thing: track, value, time and
// checkout (velocityKey), so a window is a range of keys.
var velocityBucket = []byte("velocity")

// declinedCodes are the payment failures that count as declines.
var declinedCodes = []string{events.CodeCardDeclined, events.CodeInsufficientFunds}

// identities are what a quote is counted by: each kind's value, absent when empty.
func identities(q events.Quote) map[string]string {
	a := q.ShippingAddress
	ids := map[string]string{
		ByCustomer: q.CustomerID,
		ByEmail:    strings.ToLower(strings.TrimSpace(q.CustomerEmail)),
		ByCard:     q.PaymentMethodID,
	}
	if a.Country != "" && a.Line1 != "" {
		ids[ByShippingAddress] = strings.ToLower(strings.Join(strings.Fields(strings.Join([]string{a.Country, a.PostalCode, a.Line1}, " ")), " "))
	}
	for k, v := range ids {
		if v == "" {
			delete(ids, k)
		}
	}
	return ids
}

// track is what a velocity rule counts by what: one range of keys in velocityBucket.
func track(count, by, value string) []byte { return []byte(count + "/" + by + ":" + value + "\x00") }

func velocityKey(prefix []byte, at time.Time, checkoutID string) []byte {
	k := binary.BigEndian.AppendUint64(slices.Clone(prefix), uint64(at.UnixNano()))
	return append(k, checkoutID...)
}

// keep is how long what count counts by must be kept: the longest window of the rules
// that use it, 0 when none does.
func (c Config) keep(count, by string) time.Duration {
	var keep time.Duration
	for _, r := range c.Velocity {
		if r.Count == count && r.By == by {
			keep = max(keep, r.Window.Duration)
		}
	}
	return keep
}

// record counts one of count for checkoutID at at, by each of its identities that a rule
// counts, and forgets what every rule's window has left behind. It reports whether it
// counted anything: no rule may count it.
func (c Config) record(tx *bolt.Tx, count string, ids map[string]string, checkoutID string, at time.Time) (bool, error) {
	b := tx.Bucket(velocityBucket)
	counted := false
	for by, value := range ids {
		keep := c.keep(count, by)
		if keep == 0 {
			continue
		}
		prefix := track(count, by, value)
		if err := b.Put(velocityKey(prefix, at, checkoutID), nil); err != nil {
			return counted, err
		}
		if err := forgetBefore(b, prefix, at.Add(-keep)); err != nil {
			return counted, err
		}
		counted = true
	}
	return counted, nil
}

// forgetBefore deletes prefix's keys at or before t.
func forgetBefore(b *bolt.Bucket, prefix []byte, t time.Time) error {
	end := velocityKey(prefix, t, "\xff")
	var old [][]byte
	c := b.Cursor()
	for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix) && bytes.Compare(k, end) <= 0; k, _ = c.Next() {
		old = append(old, slices.Clone(k))
	}
	for _, k := range old {
		if err := b.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// seen counts what rule counts for ids within its window before at (at included).
func seen(tx *bolt.Tx, rule VelocityRule, ids map[string]string, at time.Time) int {
	value, ok := ids[rule.By]
	if !ok {
		return 0
	}
	prefix := track(rule.Count, rule.By, value)
	from, to := velocityKey(prefix, at.Add(-rule.Window.Duration+1), ""), velocityKey(prefix, at, "\xff")
	n := 0
	c := tx.Bucket(velocityBucket).Cursor()
	for k, _ := c.Seek(from); k != nil && bytes.Compare(k, to) <= 0; k, _ = c.Next() {
		n++
	}
	return n
}
