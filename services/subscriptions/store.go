package subscriptions

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/nats-io/nats.go/jetstream"
)

// errNotFound: no subscription has the ID.
var errNotFound = errors.New("no such subscription")

// get reads subscription id and the revision it was read at.
func (s *Service) get(ctx context.Context, id string) (events.Subscription, uint64, error) {
	var sub events.Subscription
	if !events.ValidSubscriptionID(id) {
		return sub, 0, fmt.Errorf("%w: %q", errNotFound, id)
	}
	entry, err := s.kv.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return sub, 0, fmt.Errorf("%w: %q", errNotFound, id)
	}
	if err != nil {
		return sub, 0, fmt.Errorf("read subscription %s: %w", id, err)
	}
	if err := json.Unmarshal(entry.Value(), &sub); err != nil {
		return sub, 0, fmt.Errorf("subscription %s in the bucket does not decode: %w", id, err)
	}
	return sub, entry.Revision(), nil
}

// create stores a new subscription; an ID taken already is jetstream.ErrKeyExists.
func (s *Service) create(ctx context.Context, sub events.Subscription) error {
	data, err := json.Marshal(sub)
	if err != nil {
		return err
	}
	_, err = s.kv.Create(ctx, sub.ID, data)
	return err
}

// update applies change to subscription id by compare-and-swap, reading again when another
// writer got there first. change reports whether it changed anything; nothing is written
// otherwise. It returns the record as stored.
func (s *Service) update(ctx context.Context, id string, change func(*events.Subscription) (bool, error)) (events.Subscription, error) {
	for {
		sub, rev, err := s.get(ctx, id)
		if err != nil {
			return sub, err
		}
		changed, err := change(&sub)
		if err != nil || !changed {
			return sub, err
		}
		data, err := json.Marshal(sub)
		if err != nil {
			return sub, err
		}
		_, err = s.kv.Update(ctx, id, data, rev)
		if wrongRevision(err) {
			continue
		}
		if err != nil {
			return sub, fmt.Errorf("store subscription %s: %w", id, err)
		}
		return sub, nil
	}
}

// wrongRevision reports a compare-and-swap that lost to another writer (the server's code
// differs between a single server and a replicated bucket).
func wrongRevision(err error) bool {
	var apiErr *jetstream.APIError
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) ||
		errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}
