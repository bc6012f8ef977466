package stripeemu

import (
	"net/http"
	"slices"
)

// newestFirst is the order of Stripe's lists.
func newestFirst[T any](oldestFirst []T) []T {
	out := slices.Clone(oldestFirst)
	slices.Reverse(out)
	return out
}

// page cuts one page out of items (newest first) by limit and the starting_after or
// ending_before cursor, as Stripe's list endpoints do.
func page[T any](p params, items []T, id func(T) string, object string) ([]T, bool, error) {
	limit, given, err := p.integer("limit")
	if err != nil {
		return nil, false, err
	}
	switch {
	case !given:
		limit = 10
	case limit < 1:
		return nil, false, invalid("parameter_invalid_integer", "limit", "This value must be greater than or equal to 1.")
	case limit > 100:
		return nil, false, invalid("parameter_invalid_integer", "limit", "This value must be less than or equal to 100.")
	}
	after, before := p.str("starting_after"), p.str("ending_before")
	if after != "" && before != "" {
		return nil, false, invalid("", "", "You may only specify one of these parameters: ending_before, starting_after.")
	}
	cursor := func(param, cid string) (int, error) {
		i := slices.IndexFunc(items, func(x T) bool { return id(x) == cid })
		if i < 0 {
			return 0, noSuch(http.StatusBadRequest, object, param, cid)
		}
		return i, nil
	}
	switch {
	case after != "":
		i, err := cursor("starting_after", after)
		if err != nil {
			return nil, false, err
		}
		items = items[i+1:]
	case before != "":
		i, err := cursor("ending_before", before)
		if err != nil {
			return nil, false, err
		}
		// The page just before the cursor: the items closest to it.
		items = items[:i]
		if int64(len(items)) > limit {
			return items[int64(len(items))-limit:], true, nil
		}
		return items, false, nil
	}
	if int64(len(items)) > limit {
		return items[:limit], true, nil
	}
	return items, false, nil
}
