package microx

import (
	"errors"
	"testing"

	"github.com/jetcheckout/jetcheckout/events"
)

// FuzzDecode: whatever a caller sends to an endpoint, the reply is the decoded request or a
// "400" that says what is wrong, never a panic or a 500.
func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"customer_id":"cus_1","currency":"USD","items":[{"product_id":"tee","quantity":2}]}`))
	f.Add([]byte(`{"customer_id":"cus_1","currency":"USD","items":[{"product_id":"tee","quantity":"2"}]}`))
	f.Add([]byte(`{"cart_id":"cart_1","extra":true}`))
	f.Add([]byte(``))
	f.Add([]byte("\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		var cart events.CreateCart
		err := Decode(events.CartsCreate, data, &cart)
		if err == nil {
			return
		}
		var rerr *Error
		if !errors.As(err, &rerr) || rerr.Code != "400" || rerr.Description == "" {
			t.Fatalf("refusal %#v is not a 400 with a reason", err)
		}
		if len(data) > 0 && events.DecodeStrict(data, &events.CreateCart{}) == nil {
			t.Fatalf("refused a body DecodeStrict accepts: %v", err)
		}
	})
}
