package stripeemu_test

import (
	"encoding/json"
	"net/url"
	"slices"
	"testing"

	"github.com/stripe/stripe-go/v76"
)

// search runs a query through stripe-go's iterator, which follows next_page.
func (h *harness) search(t *testing.T, query string, limit int64) []string {
	t.Helper()
	p := &stripe.PaymentIntentSearchParams{}
	p.Query = query
	if limit > 0 {
		p.Limit = stripe.Int64(limit)
	}
	var ids []string
	it := h.stripe.PaymentIntents.Search(p)
	for it.Next() {
		ids = append(ids, it.PaymentIntent().ID)
	}
	if err := it.Err(); err != nil {
		t.Fatalf("search %s: %v", query, err)
	}
	return ids
}

func TestSearchByMetadata(t *testing.T) {
	h := start(t)
	newIntent := func(pm, checkout string) string {
		p := card(pm, 1000)
		p.Metadata = map[string]string{"checkout_id": checkout}
		pi, err := h.stripe.PaymentIntents.New(p)
		if err != nil {
			pi = stripeError(t, err).PaymentIntent // a decline carries the intent
		}
		return pi.ID
	}
	paid := newIntent("pm_card_visa", "co_a")
	declined := newIntent("pm_card_chargeDeclined", "co_a")
	other := newIntent("pm_card_visa", "co_b")
	many := make([]string, 0, 12)
	for range 12 {
		many = append(many, newIntent("pm_card_visa", "co_many"))
	}
	slices.Reverse(many)

	cases := []struct {
		query string
		limit int64
		want  []string // newest first
	}{
		{`metadata['checkout_id']:'co_a'`, 0, []string{declined, paid}},
		{`metadata["checkout_id"]:"co_a"`, 0, []string{declined, paid}},
		{`metadata['checkout_id']:'co_b'`, 0, []string{other}},
		{`metadata['checkout_id']:'co_none'`, 0, nil},
		{`metadata['cart_id']:'co_a'`, 0, nil},
		{`metadata['checkout_id']:'co_a' AND status:'succeeded'`, 0, []string{paid}},
		{`metadata['checkout_id']:'co_a' OR metadata['checkout_id']:'co_b'`, 0, []string{other, declined, paid}},
		{`status:"requires_payment_method"`, 0, []string{declined}},
		// More than a page: the iterator follows next_page, and nothing repeats.
		{`metadata['checkout_id']:'co_many'`, 5, many},
		{`metadata['checkout_id']:'co_many'`, 0, many},
	}
	for _, c := range cases {
		if got := h.search(t, c.query, c.limit); !slices.Equal(got, c.want) {
			t.Errorf("%s (limit %d): got %v, want %v", c.query, c.limit, got, c.want)
		}
	}

	// The wire shape: a search_result list.
	status, body := raw(t, "GET", h.url+"/v1/payment_intents/search?limit=2&expand[]=total_count&query="+
		url.QueryEscape(`metadata['checkout_id']:'co_many'`), testKey, "")
	var page struct {
		Object     string            `json:"object"`
		URL        string            `json:"url"`
		HasMore    bool              `json:"has_more"`
		NextPage   *string           `json:"next_page"`
		TotalCount int               `json:"total_count"`
		Data       []json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal([]byte(body), &page); err != nil || status != 200 {
		t.Fatalf("%d %s (%v)", status, body, err)
	}
	if page.Object != "search_result" || page.URL != "/v1/payment_intents/search" || !page.HasMore ||
		page.NextPage == nil || page.TotalCount != 12 || len(page.Data) != 2 {
		t.Fatalf("search result: %s", body)
	}
}

func TestSearchRefusesWhatItCannotAnswer(t *testing.T) {
	h := start(t)
	for _, q := range []string{
		``,
		`checkout_id:'co_a'`,
		`metadata:'co_a'`,
		`metadata['checkout_id']:co_a`,
		`metadata['checkout_id']:'co_a`,
		`metadata['checkout_id']~'co'`,
		`amount>100`,
		`status:'succeeded' AND currency:'usd' OR status:'canceled'`,
		`status:'succeeded' currency:'usd'`,
	} {
		p := &stripe.PaymentIntentSearchParams{}
		p.Query = q
		it := h.stripe.PaymentIntents.Search(p)
		if it.Next() {
			t.Errorf("%q: found something", q)
		}
		if se := stripeError(t, it.Err()); se.HTTPStatusCode != 400 || se.Type != stripe.ErrorTypeInvalidRequest || se.Param != "query" || se.Msg == "" {
			t.Errorf("%q: %d %s param %q: %s", q, se.HTTPStatusCode, se.Type, se.Param, se.Msg)
		}
	}
	if status, body := raw(t, "GET", h.url+"/v1/payment_intents/search?query=status:'x'&page=bogus", testKey, ""); status != 400 {
		t.Errorf("a bad page cursor: %d %s", status, body)
	}
}
