package stripeemu

import (
	"encoding/base64"
	"fmt"
	"slices"
	"strings"
)

// searchJSON is Stripe's search_result list object.
type searchJSON struct {
	Object     string  `json:"object"`
	Data       []any   `json:"data"`
	HasMore    bool    `json:"has_more"`
	NextPage   *string `json:"next_page"`
	URL        string  `json:"url"`
	TotalCount *int    `json:"total_count,omitempty"` // only with expand[]=total_count
}

// GET /v1/payment_intents/search
func (e *Emulator) searchIntents(c apiCall) response {
	p := c.params
	if err := p.checkKnown("query", "limit", "page", "expand[]"); err != nil {
		return refuse(err)
	}
	if p.str("query") == "" {
		return refuse(missingParam("query"))
	}
	match, err := parseQuery(p.str("query"))
	if err != nil {
		return refuse(err)
	}
	expand, err := p.expand("total_count", "data."+expandCharge, "data."+expandMethod)
	if err != nil {
		return refuse(err)
	}
	var found []*intent
	for _, pi := range newestFirst(e.intentOrder) {
		if match(pi) {
			found = append(found, pi)
		}
	}
	items, hasMore, err := searchPage(p, found)
	if err != nil {
		return refuse(err)
	}
	out := searchJSON{Object: "search_result", Data: []any{}, HasMore: hasMore, URL: "/v1/payment_intents/search"}
	if expand["total_count"] {
		n := len(found)
		out.TotalCount = &n
	}
	itemExpand := map[string]bool{expandCharge: expand["data."+expandCharge], expandMethod: expand["data."+expandMethod]}
	for _, pi := range items {
		out.Data = append(out.Data, pi.render(itemExpand))
	}
	if hasMore {
		next := base64.RawURLEncoding.EncodeToString([]byte(items[len(items)-1].id))
		out.NextPage = &next
	}
	return ok(out)
}

// searchPage cuts one page of results by limit and the opaque page cursor of the
// previous page (the last ID it held).
func searchPage(p params, found []*intent) ([]*intent, bool, error) {
	limit, given, err := p.integer("limit")
	switch {
	case err != nil:
		return nil, false, err
	case !given:
		limit = 10
	case limit < 1 || limit > 100:
		return nil, false, invalid("parameter_invalid_integer", "limit", "This value must be between 1 and 100.")
	}
	if cursor := p.str("page"); cursor != "" {
		last, err := base64.RawURLEncoding.DecodeString(cursor)
		i := slices.IndexFunc(found, func(pi *intent) bool { return pi.id == string(last) })
		if err != nil || i < 0 {
			return nil, false, invalid("", "page", "Invalid page: %s", cursor)
		}
		found = found[i+1:]
	}
	if int64(len(found)) > limit {
		return found[:limit], true, nil
	}
	return found, false, nil
}

// A query of Stripe's search language, reduced to what a PaymentIntent search by its
// fields needs: clauses field:"value" on metadata["key"], status, currency and customer,
// all joined by AND or all by OR. Values are quoted with ' or ", \ escapes.
// See https://stripe.com/docs/search#search-query-language.

type intentFilter func(*intent) bool

// searchFields are the string fields a PaymentIntent search can match exactly.
var searchFields = map[string]func(*intent) string{
	"status":   func(pi *intent) string { return pi.status },
	"currency": func(pi *intent) string { return pi.currency },
	"customer": func(*intent) string { return "" }, // intents of the emulator have no customer
}

func parseQuery(q string) (intentFilter, error) {
	s := &scanner{src: q}
	var clauses []intentFilter
	joiner := ""
	for {
		clause, err := s.clause()
		if err != nil {
			return nil, err
		}
		clauses = append(clauses, clause)
		s.skipSpace()
		if s.done() {
			break
		}
		word := s.word()
		if word != "AND" && word != "OR" {
			return nil, badQuery(q, "expected AND or OR at position %d", s.pos)
		}
		if joiner != "" && word != joiner {
			return nil, badQuery(q, "AND and OR cannot be combined in one query")
		}
		joiner = word
	}
	return func(pi *intent) bool {
		if joiner == "OR" {
			return slices.ContainsFunc(clauses, func(c intentFilter) bool { return c(pi) })
		}
		return !slices.ContainsFunc(clauses, func(c intentFilter) bool { return !c(pi) })
	}, nil
}

type scanner struct {
	src string
	pos int
}

func (s *scanner) done() bool { return s.pos >= len(s.src) }

func (s *scanner) skipSpace() {
	for !s.done() && s.src[s.pos] == ' ' {
		s.pos++
	}
}

// word reads letters, digits and underscores.
func (s *scanner) word() string {
	start := s.pos
	for !s.done() {
		c := s.src[s.pos]
		if c != '_' && (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			break
		}
		s.pos++
	}
	return s.src[start:s.pos]
}

// quoted reads a string in ' or " quotes.
func (s *scanner) quoted() (string, bool) {
	if s.done() || (s.src[s.pos] != '\'' && s.src[s.pos] != '"') {
		return "", false
	}
	quote := s.src[s.pos]
	var b strings.Builder
	for s.pos++; !s.done(); s.pos++ {
		c := s.src[s.pos]
		switch {
		case c == '\\' && s.pos+1 < len(s.src):
			s.pos++
			b.WriteByte(s.src[s.pos])
		case c == quote:
			s.pos++
			return b.String(), true
		default:
			b.WriteByte(c)
		}
	}
	return "", false
}

func (s *scanner) expect(c byte) bool {
	if s.done() || s.src[s.pos] != c {
		return false
	}
	s.pos++
	return true
}

// clause reads field:"value" or metadata["key"]:"value".
func (s *scanner) clause() (intentFilter, error) {
	s.skipSpace()
	field := s.word()
	var get func(*intent) string
	switch {
	case field == "metadata":
		key, ok := "", s.expect('[')
		if ok {
			key, ok = s.quoted()
		}
		if !ok || !s.expect(']') {
			return nil, badQuery(s.src, "metadata must name its key: metadata[\"key\"]")
		}
		get = func(pi *intent) string { return pi.metadata[key] }
	case searchFields[field] != nil:
		get = searchFields[field]
	case field == "":
		return nil, badQuery(s.src, "expected a field at position %d", s.pos)
	default:
		return nil, badQuery(s.src, "the field %s is not supported by this emulator's search", field)
	}
	if !s.expect(':') {
		return nil, badQuery(s.src, "expected ':' after %s (only exact matches are supported)", field)
	}
	value, ok := s.quoted()
	if !ok {
		return nil, badQuery(s.src, "the value of %s must be a quoted string", field)
	}
	return func(pi *intent) bool { return get(pi) == value }, nil
}

func badQuery(q, format string, args ...any) *failure {
	return invalid("", "query", "Invalid search query `%s`: %s.", q, fmt.Sprintf(format, args...))
}
