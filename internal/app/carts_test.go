package app

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The catalog's NATS user may publish on every cart's subject (a create is a publish), but
// the carts stream keeps what it holds: a "Nats-Rollup: all" publish (which would empty the
// bucket), a KV purge (a roll-up of one key), a KV delete (a marker after the cart), and a
// put over a cart are each refused by the server, and every cart reads as it was created.
func TestCatalogUserCannotRemoveOrRewriteCarts(t *testing.T) {
	srv := startSecuredServer(t)
	url := srv.ClientURL()
	var logs natstest.LogBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	setup := testConfig(t.TempDir())
	setup.NATSURL, setup.NATSUser, setup.NATSPassword = url, NATSSetup, natsPassword(NATSSetup)
	if err := runSetup(context.Background(), setup, log, &health{}, true, false); err != nil {
		t.Fatalf("setup: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	nc := connectAs(t, url, events.ServiceCatalog, nats.CustomInboxPrefix(InboxPrefix(events.ServiceCatalog))).Conn
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	carts, err := js.KeyValue(ctx, events.BucketCarts)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"cart_a", "cart_b"} {
		if _, err := carts.Create(ctx, id, []byte(`{"id":"`+id+`"}`)); err != nil {
			t.Fatal(err)
		}
	}
	wipe := nats.NewMsg("$KV." + events.BucketCarts + ".cart_x")
	wipe.Header.Set("Nats-Rollup", "all")
	wipe.Data = []byte("{}")
	_, err = js.PublishMsg(ctx, wipe)
	if _, gerr := carts.Get(ctx, "cart_a"); err == nil && errors.Is(gerr, jetstream.ErrKeyNotFound) {
		t.Errorf("the catalog's user purged every cart with one roll-up publish")
	}
	if err == nil {
		t.Errorf("a roll-up publish on the carts stream was taken")
	}
	if err := carts.Purge(ctx, "cart_a"); err == nil {
		t.Errorf("the catalog's user purged cart_a")
	}
	if err := carts.Delete(ctx, "cart_b"); err == nil {
		t.Errorf("the catalog's user deleted cart_b")
	}
	if _, err := carts.Put(ctx, "cart_b", []byte(`{"id":"cart_b","customer_id":"mallory"}`)); err == nil {
		t.Errorf("the catalog's user overwrote cart_b")
	}
	for _, id := range []string{"cart_a", "cart_b"} {
		if e, err := carts.Get(ctx, id); err != nil || string(e.Value()) != `{"id":"`+id+`"}` || e.Revision() > 2 {
			t.Errorf("%s after the attempts: %v, %v; want it as created", id, e, err)
		}
	}
}
