package httpapi

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jetcheckout/jetcheckout/internal/store"
	bolt "go.etcd.io/bbolt"
)

// The read model's bbolt buckets.
var (
	// bucketEvents: checkout ID, 0, stream sequence (8 bytes) → Event.
	bucketEvents = []byte("events")
	// bucketCheckouts: checkout ID → Checkout, refolded from its events on every change.
	bucketCheckouts = []byte("checkouts")
	// bucketIndex: creation time (8 bytes, ns) and checkout ID → nothing: newest first by
	// iterating backwards.
	bucketIndex = []byte("index")
	// bucketAccepted: checkout ID → Accepted, what POST /checkout/process published.
	bucketAccepted = []byte("accepted")
	// bucketEventIDs: checkout ID, 0, event ID → nothing: a republished event is kept once.
	bucketEventIDs = []byte("event_ids")
)

// Accepted is what the API knew of a checkout when it accepted the request: enough to
// answer GET before the stream's copy is folded in, and to recognise a retried request.
type Accepted struct {
	At            time.Time `json:"at"`
	CartID        string    `json:"cart_id"`
	CustomerID    string    `json:"customer_id"`
	CustomerEmail string    `json:"customer_email"`
	// RequestHash is the SHA-256 of the request an Idempotency-Key first came with.
	RequestHash string `json:"request_hash,omitempty"`
}

// bucketRebuilding marks a read model made anew that has not been rebuilt from the stream
// yet (Projector.rebuild): made with the other buckets, removed when the rebuild is done.
var bucketRebuilding = []byte("rebuilding")

// Store is the API's read model: every checkout's events and its folded view, in a bbolt
// file of the API's own. It is a view of the CHECKOUT stream (store.OpenView): its commits
// are not synced, and a file lost or not closed cleanly is made anew and rebuilt from the
// stream. What it holds of its own (Accepted) only answers before the stream's copy is in.
type Store struct {
	db    *bolt.DB
	close func() error
	// fresh: the file is new, or its rebuild did not finish (Projector.recover decides).
	fresh bool
	// rebuilding: fresh, until the projector found nothing to rebuild or finished: a
	// checkout the read model does not have may be one it has not folded in yet
	// (errRebuilding, not ErrNotFound).
	rebuilding atomic.Bool
}

// OpenStore opens (creating) the read model at path.
func OpenStore(path string) (*Store, error) {
	v, err := store.OpenView(path)
	if err != nil {
		return nil, err
	}
	// The read model is the stream's to rebuild (no snapshot of it is taken): a file from
	// before views is a view at once.
	if err := store.EndSynced(v.DB); err != nil {
		v.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s := &Store{db: v.DB, close: v.Close}
	err = v.Update(func(tx *bolt.Tx) error {
		s.fresh = tx.Bucket(bucketEvents) == nil || tx.Bucket(bucketRebuilding) != nil
		if tx.Bucket(bucketEvents) == nil {
			if _, err := tx.CreateBucket(bucketRebuilding); err != nil {
				return err
			}
		}
		for _, b := range [][]byte{bucketEvents, bucketCheckouts, bucketIndex, bucketAccepted, bucketEventIDs} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		v.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	s.rebuilding.Store(s.fresh)
	return s, nil
}

// rebuilt marks the read model as complete: a later start trusts it.
func (s *Store) rebuilt() error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketRebuilding) == nil {
			return nil
		}
		return tx.DeleteBucket(bucketRebuilding)
	})
	if err == nil {
		s.fresh = false
		s.rebuilding.Store(false)
	}
	return err
}

// Close syncs and closes the file; the next start trusts it.
func (s *Store) Close() error { return s.close() }

// ErrNotFound: no such checkout.
var ErrNotFound = errors.New("checkout not found")

// errRebuilding answers for a checkout the read model does not have while it is rebuilt
// from the stream: it may be there in a moment.
var errRebuilding = problem(http.StatusServiceUnavailable, "the read model is being rebuilt from the stream; retry in a moment")

// notFound is ErrNotFound, or errRebuilding while the read model is rebuilt.
func (s *Store) notFound() error {
	if s.rebuilding.Load() {
		return errRebuilding
	}
	return ErrNotFound
}

// Accept records an accepted request, unless one is recorded for the checkout already; it
// returns the one that stands.
func (s *Store) Accept(id string, a Accepted) (Accepted, error) {
	err := s.db.Update(func(tx *bolt.Tx) error {
		found, err := store.Get(tx.Bucket(bucketAccepted), id, &a)
		if err != nil || found {
			return err
		}
		if err := store.Put(tx.Bucket(bucketAccepted), id, a); err != nil {
			return err
		}
		return s.refold(tx, id)
	})
	return a, err
}

// Append adds events (in stream order) and refolds the checkouts they belong to, in one
// transaction. Events already stored (by stream sequence, or by event ID) are skipped. It
// returns the IDs of the checkouts that changed.
func (s *Store) Append(evs []StreamEvent) ([]string, error) {
	var changed []string
	err := s.db.Update(func(tx *bolt.Tx) error {
		seen := map[string]bool{}
		for _, e := range evs {
			key := eventKey(e.CheckoutID, e.Seq)
			idKey := append(checkoutPrefix(e.CheckoutID), e.ID...)
			if tx.Bucket(bucketEvents).Get(key) != nil || tx.Bucket(bucketEventIDs).Get(idKey) != nil {
				continue
			}
			raw, err := json.Marshal(e.Event)
			if err != nil {
				return err
			}
			if err := tx.Bucket(bucketEvents).Put(key, raw); err != nil {
				return err
			}
			if err := tx.Bucket(bucketEventIDs).Put(idKey, nil); err != nil {
				return err
			}
			if !seen[e.CheckoutID] {
				seen[e.CheckoutID] = true
				changed = append(changed, e.CheckoutID)
			}
		}
		for _, id := range changed {
			if err := s.refold(tx, id); err != nil {
				return err
			}
		}
		return nil
	})
	return changed, err
}

// StreamEvent is an event with the checkout it belongs to.
type StreamEvent struct {
	CheckoutID string
	Event
}

// refold recomputes a checkout's view from its events and keeps the index in step.
func (s *Store) refold(tx *bolt.Tx, id string) error {
	var acc Accepted
	if _, err := store.Get(tx.Bucket(bucketAccepted), id, &acc); err != nil {
		return err
	}
	evs, err := eventsOf(tx, id)
	if err != nil {
		return err
	}
	c := Fold(id, acc, evs)
	var old Checkout
	found, err := store.Get(tx.Bucket(bucketCheckouts), id, &old)
	if err != nil {
		return err
	}
	if found && !old.CreatedAt.Equal(c.CreatedAt) {
		if err := tx.Bucket(bucketIndex).Delete(indexKey(old.CreatedAt, id)); err != nil {
			return err
		}
	}
	if err := tx.Bucket(bucketIndex).Put(indexKey(c.CreatedAt, id), nil); err != nil {
		return err
	}
	return store.Put(tx.Bucket(bucketCheckouts), id, c)
}

func eventsOf(tx *bolt.Tx, id string) ([]Event, error) {
	var evs []Event
	prefix := checkoutPrefix(id)
	cur := tx.Bucket(bucketEvents).Cursor()
	for k, v := cur.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = cur.Next() {
		var e Event
		if err := json.Unmarshal(v, &e); err != nil {
			return nil, fmt.Errorf("event %x: %w", k, err)
		}
		evs = append(evs, e)
	}
	return evs, nil
}

// Checkout returns the view of one checkout.
func (s *Store) Checkout(id string) (Checkout, error) {
	var c Checkout
	found, err := store.View(s.db, bucketCheckouts, id, &c)
	if err == nil && !found {
		err = s.notFound()
	}
	return c, err
}

// Events returns a checkout's events in stream order.
func (s *Store) Events(id string) ([]Event, error) {
	var evs []Event
	err := s.db.View(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketCheckouts).Get([]byte(id)) == nil {
			return s.notFound()
		}
		var err error
		evs, err = eventsOf(tx, id)
		return err
	})
	return evs, err
}

// Accepted returns what was accepted for a checkout, if the API accepted it.
func (s *Store) Accepted(id string) (Accepted, bool, error) {
	var a Accepted
	found, err := store.View(s.db, bucketAccepted, id, &a)
	return a, found, err
}

// Query selects checkouts for a listing.
type Query struct {
	Status string // one of Statuses, or "" for all
	// Search matches a checkout, cart or customer ID exactly, or a prefix of one, or the
	// customer's email.
	Search string
	Limit  int
	Cursor string // from the previous page's Next
}

// Page is one page of a listing, newest first.
type Page struct {
	Checkouts []Checkout `json:"checkouts"`
	// Next is the cursor of the following page; empty on the last one.
	Next string `json:"next_cursor,omitempty"`
}

// ErrBadCursor: the cursor was not one this API handed out.
var ErrBadCursor = errors.New("cursor is not one returned by this listing")

// List returns a page of checkouts, newest first.
func (s *Store) List(q Query) (Page, error) {
	var after []byte
	if q.Cursor != "" {
		raw, err := base64.RawURLEncoding.DecodeString(q.Cursor)
		if err != nil || len(raw) < 9 {
			return Page{}, ErrBadCursor
		}
		after = raw
	}
	page := Page{Checkouts: []Checkout{}}
	err := s.db.View(func(tx *bolt.Tx) error {
		cur := tx.Bucket(bucketIndex).Cursor()
		k, _ := cur.Last()
		if after != nil {
			k, _ = cur.Seek(after)
			if k != nil {
				k, _ = cur.Prev() // Seek lands on the cursor itself (or past it): step back over it
			} else {
				k, _ = cur.Last()
			}
		}
		for ; k != nil; k, _ = cur.Prev() {
			var c Checkout
			if _, err := store.Get(tx.Bucket(bucketCheckouts), string(k[8:]), &c); err != nil {
				return err
			}
			if !q.matches(c) {
				continue
			}
			if len(page.Checkouts) == q.Limit {
				page.Next = base64.RawURLEncoding.EncodeToString(indexKey(page.Checkouts[len(page.Checkouts)-1].CreatedAt, page.Checkouts[len(page.Checkouts)-1].ID))
				return nil
			}
			page.Checkouts = append(page.Checkouts, c)
		}
		return nil
	})
	return page, err
}

func (q Query) matches(c Checkout) bool {
	if q.Status != "" && c.Status != q.Status {
		return false
	}
	if q.Search == "" {
		return true
	}
	for _, v := range []string{c.ID, c.CartID, c.CustomerID} {
		if v != "" && strings.HasPrefix(v, q.Search) {
			return true
		}
	}
	return strings.EqualFold(c.CustomerEmail, q.Search)
}

func checkoutPrefix(id string) []byte { return append([]byte(id), 0) }

func eventKey(id string, seq uint64) []byte {
	return binary.BigEndian.AppendUint64(checkoutPrefix(id), seq)
}

func indexKey(t time.Time, id string) []byte {
	return append(binary.BigEndian.AppendUint64(nil, uint64(t.UnixNano())), id...)
}
