package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/store"
	"github.com/jetcheckout/jetcheckout/runner"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	bolt "go.etcd.io/bbolt"
)

// Carts is where a cart is durable: the stream of the KV bucket events.BucketCarts, one
// message per cart as carts.create made it, signed by the catalog. The server keeps it as
// written: one message per subject ever, and nothing removes one (topology's cartsStream). What
// checkouts did to a cart since (held, checked out, open again) is derived from the events,
// in the view.
type Carts struct {
	stream jetstream.Stream
	js     jetstream.JetStream
	keys   *events.Keys
}

// OpenCarts binds to the carts bucket's stream, which the setup role makes (topology.Ensure).
// keys signs each cart created and checks each cart read: a cart the catalog did not sign
// (written with a leaked credential) is refused. With keys nil (a test of the catalog alone)
// carts are neither signed nor checked.
func OpenCarts(ctx context.Context, js jetstream.JetStream, keys *events.Keys) (*Carts, error) {
	stream, err := js.Stream(ctx, events.StreamCarts)
	if err != nil {
		return nil, fmt.Errorf("catalog: bucket %s: %w", events.BucketCarts, err)
	}
	if keys != nil && !keys.Signs(events.ServiceCatalog) {
		return nil, errors.New("catalog: no signing key for the catalog's carts")
	}
	return &Carts{stream: stream, js: js, keys: keys}, nil
}

// create stores a new cart, signed; it returns once JetStream has stored it. A create-only
// put: a cart ID already taken is refused (an error wrapping jetstream.ErrKeyExists), never
// overwritten.
func (c *Carts) create(ctx context.Context, cart events.Cart) error {
	data, err := json.Marshal(cart)
	if err != nil {
		return err
	}
	subject := events.CartSubject(cart.ID)
	msg := nats.NewMsg(subject)
	msg.Data = data
	if c.keys != nil {
		sig, err := c.keys.SignFor(events.ServiceCatalog, subject, data)
		if err != nil {
			return err
		}
		msg.Header.Set(events.SignatureHeader, sig)
	}
	_, err = c.js.PublishMsg(ctx, msg, jetstream.WithExpectStream(events.StreamCarts), jetstream.WithExpectLastSequencePerSubject(0))
	if wrongLastSequence(err) {
		err = fmt.Errorf("%w: %w", jetstream.ErrKeyExists, err)
	}
	if err != nil {
		return fmt.Errorf("store cart %s: %w", cart.ID, err)
	}
	return nil
}

// wrongLastSequence reports the server's refusal of a publish that expected a subject empty:
// 10071, or 10164 from a replicated stream.
func wrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// get returns the cart as it was created; found is false for an ID no cart has. A cart the
// catalog did not sign, or that does not decode, is a permanent error.
func (c *Carts) get(ctx context.Context, id string) (cart events.Cart, found bool, err error) {
	if !cartID.MatchString(id) {
		return cart, false, nil // not an ID carts.create makes; in a subject, a wildcard
	}
	msg, err := c.stream.GetLastMsgForSubject(ctx, events.CartSubject(id))
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		// A direct get may be answered by a replica that has not got a cart just made yet.
		return c.getFromLeader(ctx, id)
	case err != nil:
		return cart, false, fmt.Errorf("read cart %s: %w", id, err)
	}
	return c.decode(id, msg.Header, msg.Data)
}

// cartID is what a cart ID may be: a key of the bucket, whose dots separate tokens of its
// subject (nats.go's rule for a key, with no empty token).
var cartID = regexp.MustCompile(`^[-/_=a-zA-Z0-9]+(\.[-/_=a-zA-Z0-9]+)*$`)

// getFromLeader reads the cart from the bucket stream's leader, which has every cart that
// carts.create answered for.
func (c *Carts) getFromLeader(ctx context.Context, id string) (cart events.Cart, found bool, err error) {
	// The older JetStream client's message get asks the leader unless told to get directly.
	legacy, err := c.js.Conn().JetStream(sameAPI(c.js))
	if err != nil {
		return cart, false, err
	}
	msg, err := legacy.GetLastMsg(events.StreamCarts, events.CartSubject(id), nats.Context(ctx))
	if errors.Is(err, nats.ErrMsgNotFound) {
		return cart, false, nil
	}
	if err != nil {
		return cart, false, fmt.Errorf("read cart %s from the leader: %w", id, err)
	}
	return c.decode(id, msg.Header, msg.Data)
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

// decode decodes the cart message of id as carts.create stored it, once its signature shows
// that the catalog stored it. A cart refused once is refused for ever: the stream keeps it as
// it is.
func (c *Carts) decode(id string, header nats.Header, data []byte) (events.Cart, bool, error) {
	var cart events.Cart
	if header.Get("KV-Operation") != "" {
		return cart, false, nil // a KV delete or purge marker: no cart, and carts.create makes neither
	}
	if c.keys != nil {
		err := c.keys.VerifyFrom(events.ServiceCatalog, events.CartSubject(id), header.Get(events.SignatureHeader), data)
		if err != nil {
			return cart, false, runner.Permanent(fmt.Errorf("cart %s in the bucket is refused, not signed by the catalog: %w", id, err))
		}
	}
	if err := json.Unmarshal(data, &cart); err != nil {
		return cart, false, runner.Permanent(fmt.Errorf("cart %s in the bucket: %w", id, err))
	}
	if cart.ID != id {
		return cart, false, runner.Permanent(fmt.Errorf("cart %s in the bucket is cart %q", id, cart.ID))
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
