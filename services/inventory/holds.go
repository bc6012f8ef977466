package inventory

import (
	"fmt"
	"strings"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/store"
	"github.com/jetcheckout/jetcheckout/runner"
	bolt "go.etcd.io/bbolt"
)

// bucketHolds counts what each customer holds: holder key + "\x00" + product ID → the
// units of the product in that holder's reservations still Reserved. A key is deleted when
// it reaches zero, so the bucket stays as small as the checkouts in flight.
var bucketHolds = []byte("holds")

// holder is one identity a customer is counted under.
type holder struct {
	key  string // stored: "email:ada@example.com"
	what string // for people: "customer email"
}

// holdersOf names the identities a quote's customer holds stock under: the email
// (lower-cased, without a +tag), the customer ID and the payment method. Stripe's shared
// test payment methods (pm_card_visa, …) name a test card that every test checkout uses,
// not a customer's card, so they are not counted.
func holdersOf(q events.Quote) []holder {
	var hs []holder
	if email := events.Mailbox(q.CustomerEmail); email != "" {
		hs = append(hs, holder{"email:" + email, "customer email"})
	}
	if id := strings.TrimSpace(q.CustomerID); id != "" {
		hs = append(hs, holder{"customer:" + id, "customer ID"})
	}
	if pm := q.PaymentMethodID; pm != "" && !strings.HasPrefix(pm, "pm_card_") {
		hs = append(hs, holder{"payment_method:" + pm, "payment method"})
	}
	return hs
}

func holdKey(holderKey, productID string) []byte { return []byte(holderKey + "\x00" + productID) }

// held is how many units of productID the holder holds now.
func held(b *bolt.Bucket, holderKey, productID string) (int, error) {
	var n int
	if _, err := store.Get(b, string(holdKey(holderKey, productID)), &n); err != nil {
		return 0, runner.Permanent(err)
	}
	return n, nil
}

// overLimit explains each item that would take one of the holders over max units of its
// product, and names those products; it returns "" when none would. max < 0 means no
// limit.
func overLimit(tx *bolt.Tx, hs []holder, items []events.ReservedItem, names map[string]string, max int) (reason string, products []string, err error) {
	if max < 0 {
		return "", nil, nil
	}
	b := tx.Bucket(bucketHolds)
	var over []string
	for _, it := range items {
		for _, h := range hs {
			n, err := held(b, h.key, it.ProductID)
			if err != nil {
				return "", nil, err
			}
			if n+it.Quantity > max {
				over = append(over, fmt.Sprintf("%s: %d wanted, %d already held by this %s", names[it.ProductID], it.Quantity, n, h.what))
				products = append(products, names[it.ProductID])
				break // one reason per product is enough
			}
		}
	}
	if len(over) == 0 {
		return "", nil, nil
	}
	return fmt.Sprintf("a customer may hold at most %d of a product in unfinished checkouts: %s", max, strings.Join(over, "; ")), products, nil
}

// countHolds adds sign × each item's quantity to what each of the reservation's holders
// holds.
func countHolds(tx *bolt.Tx, res Reservation, sign int) error {
	b := tx.Bucket(bucketHolds)
	for _, key := range res.Holders {
		for _, it := range res.Items {
			n, err := held(b, key, it.ProductID)
			if err != nil {
				return err
			}
			n += sign * it.Quantity
			k := holdKey(key, it.ProductID)
			if n <= 0 {
				if err := b.Delete(k); err != nil {
					return err
				}
				continue
			}
			if err := store.Put(b, string(k), n); err != nil {
				return err
			}
		}
	}
	return nil
}
