package inventory

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	bolt "go.etcd.io/bbolt"
)

// The initial stock is a fact of JetStream, not of a file: the first start records it in the
// STOCK stream (events.StockSeed), signed by the inventory, and every start seeds a new view
// from that record. The catalog file may be edited since; a view rebuilt from the seed and the
// checkouts' recorded decisions must start from the stock those decisions were made against.
// The stream takes one message on the subject, ever, and keeps it with no max age. There is
// no restock: a change of stock would be a new fact of its own there.

// seedRecord is the initial stock as the STOCK stream holds it.
type seedRecord struct {
	Stock map[string]int `json:"stock"`
	// From is where it was taken: "file" (the catalog file, at the first start) or "view"
	// (the totals of a view made before the seed was recorded).
	From string `json:"from"`
}

// RecordedSeed returns the initial stock recorded in JetStream, recording it first when none
// is: the totals (available, reserved and sold) of the view when it has stock, which is what
// was seeded there being no restock, else file. keys signs the record and checks it (nil: a
// test of the inventory alone).
func (s *Service) RecordedSeed(ctx context.Context, js jetstream.JetStream, keys *events.Keys, file map[string]int) (map[string]int, error) {
	rec, found, err := readSeed(ctx, js, keys)
	if err != nil {
		return nil, err
	}
	if found {
		if !maps.Equal(rec.Stock, file) {
			s.log.Warn("the catalog file's stock differs from the initial stock recorded in JetStream: the recorded one stands (there is no restock)")
		}
		return rec.Stock, nil
	}
	if rec, err = s.firstSeed(file); err != nil {
		return nil, err
	}
	if err := publishSeed(ctx, js, keys, rec); err != nil {
		// Refused when another instance recorded its seed a moment ago: that one stands.
		stored, found, rerr := readSeed(ctx, js, keys)
		if rerr != nil || !found {
			return nil, fmt.Errorf("inventory: record the initial stock: %w", errors.Join(err, rerr))
		}
		return stored.Stock, nil
	}
	s.log.Info("recorded the initial stock in JetStream", "stream", events.StreamStock, "from", rec.From, "products", len(rec.Stock))
	return rec.Stock, nil
}

// firstSeed is the seed to record: the view's totals when it has stock, else file.
func (s *Service) firstSeed(file map[string]int) (seedRecord, error) {
	totals := map[string]int{}
	err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketStock).ForEach(func(k, v []byte) error {
			var st events.Stock
			if err := json.Unmarshal(v, &st); err != nil {
				return fmt.Errorf("stock of %s: %w", k, err)
			}
			totals[st.ProductID] = st.Available + st.Reserved + st.Sold
			return nil
		})
	})
	if err != nil || len(totals) > 0 {
		return seedRecord{Stock: totals, From: "view"}, err
	}
	return seedRecord{Stock: file, From: "file"}, checkSeed(file)
}

// readSeed reads the recorded seed from the stream's leader, and believes it only signed by
// the inventory.
func readSeed(ctx context.Context, js jetstream.JetStream, keys *events.Keys) (rec seedRecord, found bool, err error) {
	stream, err := js.Stream(ctx, events.StreamStock)
	if err != nil {
		return rec, false, fmt.Errorf("inventory: stream %s: %w", events.StreamStock, err)
	}
	m, err := stream.GetLastMsgForSubject(ctx, events.StockSeed)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return rec, false, nil
	}
	if err != nil {
		return rec, false, fmt.Errorf("inventory: read the initial stock: %w", err)
	}
	if keys != nil {
		if err := keys.VerifyFrom(events.ServiceInventory, events.StockSeed, m.Header.Get(events.SignatureHeader), m.Data); err != nil {
			return rec, false, fmt.Errorf("inventory: the initial stock recorded in %s is refused (it is kept for ever, signed by the key the inventory had "+
				"when it was recorded: keep that public key in SIGNING_PUBLIC_KEYS after a rotation): %w", events.StreamStock, err)
		}
	}
	if err := json.Unmarshal(m.Data, &rec); err != nil {
		return rec, false, fmt.Errorf("inventory: the initial stock recorded in %s: %w", events.StreamStock, err)
	}
	return rec, true, checkSeed(rec.Stock)
}

// publishSeed records rec, signed, only if the subject holds nothing yet.
func publishSeed(ctx context.Context, js jetstream.JetStream, keys *events.Keys, rec seedRecord) error {
	data, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	msg := nats.NewMsg(events.StockSeed)
	msg.Data = data
	if keys != nil {
		sig, err := keys.SignFor(events.ServiceInventory, events.StockSeed, data)
		if err != nil {
			return err
		}
		msg.Header.Set(events.SignatureHeader, sig)
	}
	_, err = js.PublishMsg(ctx, msg, jetstream.WithExpectStream(events.StreamStock), jetstream.WithExpectLastSequencePerSubject(0))
	return err
}

// checkSeed refuses a negative stock.
func checkSeed(stock map[string]int) error {
	for id, n := range stock {
		if n < 0 {
			return fmt.Errorf("inventory seed: product %q has negative stock %d", id, n)
		}
	}
	return nil
}
