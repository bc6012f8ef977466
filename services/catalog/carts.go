package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/store"
	"github.com/jetcheckout/jetcheckout/services/runner"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	bolt "go.etcd.io/bbolt"
)

// Carts is where a cart is durable: the KV bucket events.BucketCarts, one key per cart as
// carts.create made it (open, held by no checkout), written once. What checkouts did to a
// cart since (held, checked out, open again) is derived from the events, in the view.
type Carts struct {
	kv jetstream.KeyValue
	js jetstream.JetStream
}

// OpenCarts binds to the carts bucket, which the setup role makes (topology.Ensure).
func OpenCarts(ctx context.Context, js jetstream.JetStream) (*Carts, error) {
	kv, err := js.KeyValue(ctx, events.BucketCarts)
	if err != nil {
		return nil, fmt.Errorf("catalog: bucket %s: %w", events.BucketCarts, err)
	}
	return &Carts{kv: kv, js: js}, nil
}

// create stores a new cart; it returns once JetStream has stored it. A create-only put: a
// cart ID already taken is an error, never an overwrite.
func (c *Carts) create(ctx context.Context, cart events.Cart) error {
	data, err := json.Marshal(cart)
	if err != nil {
		return err
	}
	if _, err := c.kv.Create(ctx, cart.ID, data); err != nil {
		return fmt.Errorf("store cart %s: %w", cart.ID, err)
	}
	return nil
}

// get returns the cart as it was created; found is false for an ID no cart has.
func (c *Carts) get(ctx context.Context, id string) (cart events.Cart, found bool, err error) {
	entry, err := c.kv.Get(ctx, id)
	switch {
	case errors.Is(err, jetstream.ErrInvalidKey):
		return cart, false, nil // not an ID carts.create makes
	case errors.Is(err, jetstream.ErrKeyNotFound):
		// A direct get may be answered by a replica that has not got a cart just made yet.
		return c.getFromLeader(ctx, id)
	case err != nil:
		return cart, false, fmt.Errorf("read cart %s: %w", id, err)
	}
	return decodeCart(id, entry.Value())
}

// getFromLeader reads the cart from the bucket stream's leader, which has every cart that
// carts.create answered for.
func (c *Carts) getFromLeader(ctx context.Context, id string) (cart events.Cart, found bool, err error) {
	// The older JetStream client's message get asks the leader unless told to get directly.
	legacy, err := c.js.Conn().JetStream(sameAPI(c.js))
	if err != nil {
		return cart, false, err
	}
	msg, err := legacy.GetLastMsg("KV_"+events.BucketCarts, "$KV."+events.BucketCarts+"."+id, nats.Context(ctx))
	if errors.Is(err, nats.ErrMsgNotFound) {
		return cart, false, nil
	}
	if err != nil {
		return cart, false, fmt.Errorf("read cart %s from the leader: %w", id, err)
	}
	if op := msg.Header.Get("KV-Operation"); op != "" { // DEL or PURGE: carts.create makes neither
		return cart, false, nil
	}
	return decodeCart(id, msg.Data)
}

// sameAPI has the older client call the JetStream API js calls.
func sameAPI(js jetstream.JetStream) nats.JSOpt {
	if o := js.Options(); o.Domain != "" {
		return nats.Domain(o.Domain)
	} else if o.APIPrefix != "" {
		return nats.APIPrefix(o.APIPrefix)
	}
	return nats.APIPrefix(jetstream.DefaultAPIPrefix)
}

// decodeCart decodes a cart as carts.create stored it: one that does not decode never will.
func decodeCart(id string, data []byte) (events.Cart, bool, error) {
	var cart events.Cart
	if err := json.Unmarshal(data, &cart); err != nil {
		return cart, false, runner.Permanent(fmt.Errorf("cart %s in the bucket: %w", id, err))
	}
	return cart, true, nil
}

// MoveCartsToBucket copies the carts a file from before the bucket holds whole (created
// into the file by carts.create) into Carts, then keeps only their status in the file, and
// returns how many it moved. A cart the bucket has already is left there as it is, so a
// move interrupted is done again from the start.
func (s *Service) MoveCartsToBucket(ctx context.Context) (int, error) {
	var whole []events.Cart
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketCarts).ForEach(func(_, v []byte) error {
			var cart events.Cart
			if err := json.Unmarshal(v, &cart); err != nil {
				return err
			}
			if cart.ID != "" { // a cartState has no ID
				whole = append(whole, cart)
			}
			return nil
		})
	})
	if err != nil || len(whole) == 0 {
		return 0, err
	}
	for _, cart := range whole {
		created := cart
		created.Status, created.CheckoutID = events.CartOpen, ""
		if err := s.carts.create(ctx, created); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			return 0, err
		}
	}
	return len(whole), s.db.Update(func(tx *bolt.Tx) error {
		for _, cart := range whole {
			if err := store.Put(tx.Bucket(bucketCarts), cart.ID, cartState{Status: cart.Status, CheckoutID: cart.CheckoutID}); err != nil {
				return err
			}
		}
		return nil
	})
}
