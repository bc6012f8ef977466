package app

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/coordinator"
	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
	"github.com/jetcheckout/jetcheckout/internal/topology"
	"github.com/jetcheckout/jetcheckout/services/catalog"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

const natsConfDir = "../../deploy/nats"

// The committed auth.conf is what `jetcheckout nats-config` prints from events/ today.
func TestNATSAuthFileIsGenerated(t *testing.T) {
	committed, err := os.ReadFile(filepath.Join(natsConfDir, "auth.conf"))
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	if err := WriteNATSAuth(&want); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(committed, want.Bytes()) {
		t.Errorf("deploy/nats/auth.conf differs from what events/ says: run `make nats-config` and commit it")
	}
}

// Every event of the catalog has a user allowed to publish it (or, for a scheduled
// event, to schedule it): a producer the generator does not understand would otherwise
// leave an event nobody may publish.
func TestEveryEventHasAPublisher(t *testing.T) {
	for _, d := range events.Checkout.Catalog() {
		var grants []string
		for _, u := range NATSUsers() {
			if u.Name == NATSCheckout && d.Subject == events.Requested {
				grants = append(grants, u.Name)
			}
			for _, name := range events.Services {
				if u.Name == name && len(publishGrants(d, name)) > 0 {
					grants = append(grants, u.Name)
				}
			}
		}
		if len(grants) == 0 {
			t.Errorf("%s (producer %q): no NATS user may publish it", d.Subject, d.Producer)
		}
	}
}

// natsPassword is the test password of a user, in the server's environment and the client's.
func natsPassword(user string) string { return "test-password-" + user }

// startSecuredServer runs nats-server with deploy/nats/nats.conf as compose runs it (its
// JetStream settings and the generated users) on a free loopback port.
func startSecuredServer(t *testing.T) *server.Server {
	t.Helper()
	for _, u := range NATSUsers() {
		t.Setenv(NATSPasswordVar(u.Name), natsPassword(u.Name))
	}
	opts, err := server.ProcessConfigFile(filepath.Join(natsConfDir, "nats.conf"))
	if err != nil {
		t.Fatal(err)
	}
	if !opts.SyncAlways {
		t.Error("nats.conf: JetStream must fsync every write (sync_interval: always)")
	}
	opts.Host, opts.Port, opts.HTTPPort, opts.StoreDir = "127.0.0.1", -1, 0, t.TempDir()
	return runServer(t, opts)
}

// runServer runs a nats-server with opts until the test ends.
func runServer(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	opts.NoSigs = true
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server not ready")
	}
	t.Cleanup(s.Shutdown)
	return s
}

// probe is a connection as one user that collects the server's refusals.
type probe struct {
	*nats.Conn
	user    string
	refusal chan error
}

func connectAs(t *testing.T, url, user string, opts ...nats.Option) *probe {
	t.Helper()
	p := &probe{user: user, refusal: make(chan error, 256)}
	opts = append(opts, nats.UserInfo(user, natsPassword(user)),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) { p.refusal <- err }))
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	p.Conn = nc
	return p
}

// refused does something and waits for the server to refuse it for subject.
func (p *probe) refused(t *testing.T, what, subject string, do func() error) {
	t.Helper()
	if err := do(); err != nil {
		t.Fatalf("%s %s %s: %v", p.user, what, subject, err)
	}
	_ = p.Flush()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case err := <-p.refusal:
			if errors.Is(err, nats.ErrPermissionViolation) && strings.Contains(err.Error(), `"`+subject+`"`) {
				return
			}
		case <-timeout:
			t.Errorf("%s could %s %s", p.user, what, subject)
			return
		}
	}
}

func (p *probe) cannotPublish(t *testing.T, subject string) {
	t.Helper()
	p.refused(t, "publish", subject, func() error { return p.Publish(subject, []byte(`{}`)) })
}

func (p *probe) cannotSubscribe(t *testing.T, subject string) {
	t.Helper()
	p.refused(t, "subscribe to", subject, func() error { _, err := p.SubscribeSync(subject); return err })
}

// With the generated authorization, every service runs as its own NATS user in its own
// System, as in the compose stack: checkouts that touch every step, compensation,
// schedule and endpoint complete, and no service is refused anything. Then each user tries
// what it must not do, and the server refuses.
func TestNATSPermissions(t *testing.T) {
	srv := startSecuredServer(t)
	url := srv.ClientURL()
	emu := startEmulator(t)
	var logs natstest.LogBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	t.Cleanup(func() {
		if strings.Contains(logs.String(), "Permissions Violation") {
			t.Errorf("a service was refused something it needs:\n%s", logs.String())
		}
	})

	// A deployment from before each rebuildable service had its own views bucket.
	operatorJS, err := jetstream.New(connectAs(t, url, NATSOperator).Conn)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := operatorJS.CreateObjectStore(context.Background(), jetstream.ObjectStoreConfig{Bucket: events.LegacyBucketViews}); err != nil {
		t.Fatal(err)
	}
	// The setup role makes the streams, which no service's user may, and deletes the old bucket.
	setup := testConfig(t.TempDir())
	setup.NATSURL, setup.NATSUser, setup.NATSPassword = url, NATSSetup, natsPassword(NATSSetup)
	if err := runSetup(context.Background(), setup, log, &health{}, true, false); err != nil {
		t.Fatalf("setup as the setup user: %v", err)
	}
	if _, err := operatorJS.ObjectStore(context.Background(), events.LegacyBucketViews); !errors.Is(err, jetstream.ErrBucketNotFound) {
		t.Errorf("the views bucket the rebuildable services shared, after setup: %v; want it deleted", err)
	}
	systems, dirs := map[string]*System{}, map[string]string{}
	startAs := func(name string) *System {
		t.Helper()
		cfg := testConfig(dirs[name])
		cfg.NATSURL, cfg.StripeBase, cfg.StripeKey = url, emu.URL, "sk_test_permissions"
		cfg.NATSUser, cfg.NATSPassword = name, natsPassword(name)
		cfg.AuthWindow, cfg.Grace = 2*time.Second, time.Second
		cfg.SnapshotEvery = 100 * time.Millisecond
		sys := startProcess(t, cfg, log, name)
		return sys
	}
	for _, name := range Services {
		dirs[name] = t.TempDir()
		systems[name] = startAs(name)
	}
	for name, sys := range systems {
		natstest.Eventually(t, wait, func() bool { return sys.Ready(context.Background()) == nil }, "%s never ready: %v", name, sys.Ready(context.Background()))
	}

	operator := connectAs(t, url, NATSOperator)
	watch := (&natstest.Env{NC: operator.Conn}).Watch(t, "checkout.>")
	shop := &System{NC: operator.Conn}
	checkout := connectAs(t, url, NATSCheckout, nats.CustomInboxPrefix(InboxPrefix(NATSCheckout)))
	checkoutJS, err := jetstream.New(checkout.Conn)
	if err != nil {
		t.Fatal(err)
	}
	start := func(id, pm, email string) {
		cart := createCart(t, shop, "USD", events.CartItem{ProductID: "stickers", Quantity: 1})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if _, err := checkoutJS.Publish(ctx, string(events.Requested), checkoutRequestFor(id, cart.ID, pm, email)); err != nil {
			t.Fatalf("the checkout user publishes checkout.requested: %v", err)
		}
	}
	start("co-auth-ok", "pm_card_visa", "ada@example.com")
	start("co-auth-declined", "pm_card_chargeDeclined", "ada@example.com")
	start("co-auth-3ds", "pm_card_authenticationRequired", "ada@example.com")
	start("co-auth-review", "pm_card_visa", "eve@review.test")
	watch.Wait(t, "co-auth-review", wait, events.FraudReviewPending)
	request[map[string]any](t, operator.Conn, events.FraudReview, map[string]string{"checkout_id": "co-auth-review", "decision": events.ReviewApprove, "reviewer": "ada"})
	request[[]events.Stock](t, operator.Conn, events.InventoryStock, map[string]string{"product_id": "stickers"})
	// The catalog, as its own user, asks the inventory for the stock it lists.
	for _, p := range request[[]events.ListedProduct](t, operator.Conn, events.CatalogList, nil) {
		if p.Available == nil {
			t.Errorf("catalog.list: %s's stock unknown; may the catalog ask inventory.stock?", p.ID)
		}
	}

	for _, id := range []string{"co-auth-ok", "co-auth-review"} {
		if end := watch.Wait(t, id, wait, events.Completed, events.Failed); end.Type != events.Completed {
			t.Errorf("%s ended in %s: %s", id, end.Type, end.Payload)
		}
	}
	failedWith(t, watch, "co-auth-declined", events.CodeCardDeclined, events.StepProcessPayment)
	failedWith(t, watch, "co-auth-3ds", events.CodeAuthenticationAbandoned, events.StepProcessPayment)

	t.Run("the coordinator looks up the next request in the stream", func(t *testing.T) {
		// What it does for an event that came before its request (requestPending).
		coord := connectAs(t, url, events.ServiceCoordinator, nats.CustomInboxPrefix(InboxPrefix(events.ServiceCoordinator)))
		js, err := jetstream.New(coord.Conn)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		stream, err := js.Stream(ctx, events.StreamCheckout)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := stream.GetMsg(ctx, 1, jetstream.WithGetMsgSubject(string(events.Requested))); err != nil {
			t.Errorf("the coordinator's lookup of the next request: %v", err)
		}
		// It re-drives dead letters of the flow's events, never a pick for the warehouse.
		coord.cannotPublish(t, string(events.WarehousePick))
	})

	t.Run("the coordinator reads the bucket's leader, and payments asks it", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if st, found, err := systems[events.ServiceCoordinator].Coordinator.State(ctx, "co-auth-ok"); err != nil || !found || st.Status != coordinator.StatusCompleted {
			t.Errorf("the coordinator reads co-auth-ok from the leader: %v (found %v, state %+v); want it completed", err, found, st)
		}
		pay := connectAs(t, url, events.ServicePayments, nats.CustomInboxPrefix(InboxPrefix(events.ServicePayments)))
		// co-auth-ok was charged after a yes; its payment has ended since.
		if reply := request[events.StepActiveReply](t, pay.Conn, events.CheckoutsStepActive,
			events.StepActiveRequest{CheckoutID: "co-auth-ok", Step: events.StepProcessPayment}); reply.Active {
			t.Error("payments asks whether co-auth-ok's payment runs: yes; want no")
		}
		// Only services ask it.
		api := connectAs(t, url, APIName, nats.CustomInboxPrefix(InboxPrefix(APIName)))
		api.cannotPublish(t, string(events.CheckoutsStepActive))
	})
	t.Run("a rebuildable service snapshots its view and restores it", func(t *testing.T) {
		// Orders handled co-auth-ok; its snapshot covers it once the floor passed it.
		obs, err := jetstream.New(operator.Conn)
		if err != nil {
			t.Fatal(err)
		}
		views, err := obs.ObjectStore(context.Background(), events.ViewsBucket(events.ServiceOrders))
		if err != nil {
			t.Fatal(err)
		}
		natstest.Eventually(t, wait, func() bool {
			info, err := views.GetInfo(context.Background(), events.ServiceOrders)
			return err == nil && info.Headers.Get("Jetcheckout-Snapshot-Seq") != "" && info.Headers.Get("Jetcheckout-Snapshot-Seq") != "0"
		}, "orders put no snapshot of its view:\n%s", logs.String())
		systems[events.ServiceOrders].Stop()
		if err := os.Remove(filepath.Join(dirs[events.ServiceOrders], events.ServiceOrders+".db")); err != nil {
			t.Fatal(err)
		}
		mark := len(logs.String())
		systems[events.ServiceOrders] = startAs(events.ServiceOrders)
		natstest.Eventually(t, wait, func() bool {
			return strings.Contains(logs.String()[mark:], "view rebuilt from the stream")
		}, "orders did not rebuild its lost view")
		if since := logs.String()[mark:]; strings.Contains(since, "no usable snapshot") {
			t.Errorf("orders could not restore its snapshot as its own user:\n%s", since)
		}
		if o, found, err := systems[events.ServiceOrders].Orders.OrderByCheckout("co-auth-ok"); err != nil || !found {
			t.Errorf("co-auth-ok's order after the restore: %+v found=%v err=%v", o, found, err)
		}
		// Its own bucket only: another service's view (fraud's holds customers' emails,
		// shipping's their addresses) is not its to read, replace or purge.
		fraud := connectAs(t, url, events.ServiceFraud, nats.CustomInboxPrefix(InboxPrefix(events.ServiceFraud)))
		fraudJS, err := jetstream.New(fraud.Conn)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if ordersViews, err := fraudJS.ObjectStore(ctx, events.ViewsBucket(events.ServiceOrders)); err == nil {
			if _, err := ordersViews.GetBytes(ctx, events.ServiceOrders); err == nil {
				t.Error("fraud's user read orders' snapshot")
			}
		}
		for _, u := range []string{events.ServiceFraud, events.ServiceShipping, events.ServicePayments} {
			p := connectAs(t, url, u, nats.CustomInboxPrefix(InboxPrefix(u)))
			bucket, stream := events.ViewsBucket(events.ServiceOrders), "OBJ_"+events.ViewsBucket(events.ServiceOrders)
			p.cannotPublish(t, "$O."+bucket+".M."+base64.URLEncoding.EncodeToString([]byte(events.ServiceOrders)))
			p.cannotPublish(t, "$O."+bucket+".C.x")
			p.cannotPublish(t, "$JS.API.STREAM.PURGE."+stream)
			p.cannotPublish(t, "$JS.API.CONSUMER.CREATE."+stream+".x.$O."+bucket+".C.x")
			p.cannotPublish(t, "$JS.API.DIRECT.GET."+stream+".$O."+bucket+".M.x")
		}
		if n, err := views.GetInfo(context.Background(), events.ServiceOrders); err != nil || n.Headers.Get("Jetcheckout-Snapshot-Seq") == "" {
			t.Errorf("orders' snapshot after the others' attempts: %+v, %v", n, err)
		}
	})
	t.Run("only the catalog creates and reads carts", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		catalogJS, err := jetstream.New(connectAs(t, url, events.ServiceCatalog, nats.CustomInboxPrefix(InboxPrefix(events.ServiceCatalog))).Conn)
		if err != nil {
			t.Fatal(err)
		}
		carts, err := catalogJS.KeyValue(ctx, events.BucketCarts)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := carts.Create(ctx, "cart_probe", []byte(`{"id":"cart_probe"}`)); err != nil {
			t.Errorf("the catalog creates a cart: %v", err)
		}
		if _, err := carts.Get(ctx, "cart_probe"); err != nil {
			t.Errorf("the catalog reads a cart: %v", err)
		}
		// A cart no replica has is read again from the stream's leader.
		if _, err := systems[events.ServiceCatalog].Catalog.Cart(ctx, "cart_none"); !errors.Is(err, catalog.ErrCartNotFound) {
			t.Errorf("the catalog reads a missing cart: %v, want %v", err, catalog.ErrCartNotFound)
		}
		// The catalog's credential alone makes no cart the catalog believes: it is not signed.
		if _, err := systems[events.ServiceCatalog].Catalog.Cart(ctx, "cart_probe"); !errors.Is(err, events.ErrForged) {
			t.Errorf("the catalog reads an unsigned cart: %v, want %v", err, events.ErrForged)
		}
		cat := connectAs(t, url, events.ServiceCatalog, nats.CustomInboxPrefix(InboxPrefix(events.ServiceCatalog)))
		cat.cannotPublish(t, "$JS.API.CONSUMER.CREATE."+events.StreamCarts+".watch") // no watching, no listing
		cat.cannotPublish(t, "$KV."+events.BucketCheckouts+".co-auth-ok")
		cat.cannotPublish(t, "$JS.API.DIRECT.GET.KV_"+events.BucketCheckouts+".$KV."+events.BucketCheckouts+".co-auth-ok")
		for _, u := range []string{events.ServiceInventory, events.ServiceCoordinator, events.ServicePayments, APIName, NATSSetup} {
			p := connectAs(t, url, u, nats.CustomInboxPrefix(InboxPrefix(u)))
			p.cannotPublish(t, events.CartSubject("cart_probe"))
			p.cannotPublish(t, "$JS.API.DIRECT.GET."+events.StreamCarts+"."+events.CartSubject("cart_probe"))
			p.cannotPublish(t, "$JS.API.STREAM.MSG.GET."+events.StreamCarts)
		}
	})
	t.Run("a service publishes only its own events", func(t *testing.T) {
		payments := connectAs(t, url, events.ServicePayments, nats.CustomInboxPrefix(InboxPrefix(events.ServicePayments)))
		payments.cannotPublish(t, string(events.OrderCreated))
		payments.cannotPublish(t, string(events.Completed))
		payments.cannotPublish(t, string(events.InventoryReleased))
		payments.cannotPublish(t, events.DeadLetterSubject(events.ServiceOrders))
		payments.cannotPublish(t, "$JS.API.STREAM.DELETE."+events.StreamCheckout)
		payments.cannotPublish(t, "$JS.API.CONSUMER.CREATE."+events.StreamCheckout+"."+events.ServiceOrders)
		// Not even its own: re-made with a wider filter it would read every event.
		payments.cannotPublish(t, "$JS.API.CONSUMER.CREATE."+events.StreamCheckout+"."+events.ServicePayments)
		payments.cannotPublish(t, "$JS.API.CONSUMER.CREATE."+events.StreamCheckout+"."+events.ServicePayments+".checkout.>")
		payments.cannotPublish(t, "$JS.ACK."+events.StreamCheckout+"."+events.ServiceOrders+".1.1.1.1.1")
		payments.cannotPublish(t, "$KV."+events.BucketCheckouts+".co-auth-ok")
		payments.cannotSubscribe(t, "checkout.>")
		payments.cannotSubscribe(t, "_INBOX.>")
		payments.cannotSubscribe(t, InboxPrefix(events.ServiceCoordinator)+".>")
		inventory := connectAs(t, url, events.ServiceInventory)
		// Another service's timers.
		inventory.cannotPublish(t, "timer.coordinator.wait.co-auth-ok.deadline."+string(events.StepProcessPayment))
		inventory.cannotPublish(t, "timer.payments.wait.co-auth-ok.payment.recheck")
		inventory.cannotPublish(t, events.FireSubject(events.ServiceInventory, events.InventoryExpire))
		notice := connectAs(t, url, events.ServiceNotifications)
		notice.cannotPublish(t, string(events.Requested))
		notice.cannotSubscribe(t, string(events.CartsCreate))
	})
	t.Run("the api user runs the HTTP API", func(t *testing.T) {
		cfg := testConfig(t.TempDir())
		cfg.NATSURL, cfg.NATSUser, cfg.NATSPassword = url, APIName, natsPassword(APIName)
		cfg.HTTPAddr, cfg.AdminToken = "127.0.0.1:0", "permissions"
		a, nc, err := startAPIProcess(context.Background(), cfg, log)
		if err != nil {
			t.Fatal(err)
		}
		defer drain(nc)
		defer a.Stop()
		// Its health check (what compose's healthcheck asks) may ask what it asks; it is
		// healthy once its read model is known to need no rebuild.
		natstest.Eventually(t, 10*time.Second, func() bool {
			resp, err := http.Get(a.URL + "/healthz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		}, "the API never became healthy")
		cart := httpJSON[events.Cart](t, "POST", a.URL+"/carts", `{"customer_id":"cus_ada","currency":"USD","items":[{"product_id":"stickers","quantity":1}]}`, "")
		body := checkoutRequestFor("", cart.ID, "pm_card_visa", "ada@example.com")
		accepted := httpJSON[struct {
			StatusURL string `json:"status_url"`
		}](t, "POST", a.URL+"/checkout/process", string(body), "")
		httpJSON[map[string]any](t, "GET", a.URL+"/reviews", "", cfg.AdminToken)
		// A subscription over HTTP: the coordinator's process keeps it, schedules its renewals,
		// makes its period's cart and starts its checkout, all as the coordinator's user.
		customer, pm := savedCard(t, emu.URL, "sub@example.com", "pm_card_visa")
		raw, _ := json.Marshal(subscriptionRequest("sub_auth", "cus_sub", customer, pm, 30))
		httpJSON[events.Subscription](t, "POST", a.URL+"/subscriptions", string(raw), cfg.AdminToken)
		natstest.Eventually(t, wait, func() bool {
			sub := httpJSON[events.Subscription](t, "GET", a.URL+"/subscriptions/sub_auth", "", cfg.AdminToken)
			return paidPeriods(sub) == 1
		}, "the subscription's first period was never paid")
		natstest.Eventually(t, wait, func() bool {
			return httpJSON[struct{ Status string }](t, "GET", a.URL+accepted.StatusURL, "", "").Status == "completed"
		}, "the checkout started over HTTP never completed")
		api := connectAs(t, url, APIName, nats.CustomInboxPrefix(InboxPrefix(APIName)))
		api.cannotPublish(t, string(events.Completed))
		api.cannotPublish(t, string(events.FraudReviewDecided))
		api.cannotPublish(t, "$JS.API.CONSUMER.CREATE."+events.StreamCheckout+"."+events.ServicePayments)
		api.cannotSubscribe(t, "checkout.>")
	})
	t.Run("only the setup role changes a stream, a bucket or another's consumer", func(t *testing.T) {
		for _, u := range NATSUsers() {
			if u.Name == NATSOperator || u.Name == NATSCheckout { // the checkout user: below
				continue
			}
			p := connectAs(t, url, u.Name, nats.CustomInboxPrefix(InboxPrefix(u.Name)))
			for _, stream := range topology.Names {
				for _, call := range []string{"DELETE", "PURGE", "MSG.DELETE"} {
					if call == "PURGE" && stream == "OBJ_"+events.ViewsBucket(u.Name) && events.Rebuildable[u.Name] {
						continue // a put of its snapshot purges the chunks of the one it replaces
					}
					if call == "PURGE" && stream == events.TimerStream(u.Name) {
						continue // it cancels its own timers no longer needed (events.CancelSchedule)
					}
					if call == "PURGE" && stream == events.StreamSubscriptions && u.Name == events.ServiceCoordinator {
						continue // the subscriptions beside it remove a schedule (a pause, a cancel)
					}
					if call == "MSG.DELETE" && stream == events.StreamDeadLetter && u.Name == events.ServiceCoordinator {
						continue // a dead letter it re-drove (deadletters.redrive)
					}
					p.cannotPublish(t, "$JS.API.STREAM."+call+"."+stream)
				}
				if u.Name != NATSSetup {
					p.cannotPublish(t, "$JS.API.STREAM.UPDATE."+stream)
					p.cannotPublish(t, "$JS.API.STREAM.CREATE."+stream)
				}
				if bucket, ok := strings.CutPrefix(stream, "OBJ_"); ok && (bucket != events.ViewsBucket(u.Name) || !events.Rebuildable[u.Name]) {
					// Another's views bucket: not read (a get's ordered consumer, its meta), not written.
					p.cannotPublish(t, "$JS.API.CONSUMER.CREATE."+stream+".x")
					p.cannotPublish(t, "$JS.API.DIRECT.GET."+stream+".$O."+bucket+".M.x")
					p.cannotPublish(t, "$O."+bucket+".C.x")
				}
			}
			if u.Name != NATSSetup { // it deletes the views bucket the rebuildable services once shared
				p.cannotPublish(t, "$JS.API.STREAM.DELETE.OBJ_"+events.LegacyBucketViews)
			}
			p.cannotPublish(t, "$JS.API.STREAM.CREATE.EVIL")
			p.cannotPublish(t, "$JS.API.CONSUMER.DELETE."+events.StreamCheckout+"."+events.ServiceCoordinator)
			p.cannotPublish(t, "$JS.API.CONSUMER.CREATE."+events.StreamCheckout+".evil")
			p.cannotPublish(t, "$JS.API.CONSUMER.CREATE.KV_"+events.BucketCheckouts+".evil")
			if u.Name == NATSSetup {
				p.cannotPublish(t, string(events.PaymentCaptured))
				p.cannotSubscribe(t, "checkout.>")
			}
		}
	})
	t.Run("a schedule cannot fire another service's event", func(t *testing.T) {
		// A checkout waits for 3-D Secure; inventory's user, holding inventory's signing key,
		// schedules a checkout.payment.captured: in CHECKOUT (which allows no schedules), and
		// from its own timer slot onto a fire subject of its own stream that is not its
		// expiry's (the server fires any target inside the stream). The coordinator must
		// never see it: no order, no shipment.
		start("co-forged-schedule", "pm_card_authenticationRequired", "ada@example.com")
		watch.Wait(t, "co-forged-schedule", wait, events.PaymentActionPending)
		quote := watch.Wait(t, "co-forged-schedule", time.Second, events.CartValidated)
		var q events.Quote
		if err := quote.DecodePayload(&q); err != nil {
			t.Fatal(err)
		}
		public, seeds := testSigningKeys()
		inventoryKeys, err := events.NewKeys(public, map[string]string{events.ServiceInventory: seeds[events.ServiceInventory]})
		if err != nil {
			t.Fatal(err)
		}
		inventory := connectAs(t, url, events.ServiceInventory, nats.CustomInboxPrefix(InboxPrefix(events.ServiceInventory)))
		js, err := jetstream.New(inventory.Conn)
		if err != nil {
			t.Fatal(err)
		}
		captured := events.Must("co-forged-schedule", events.PaymentCaptured, events.Payment{PaymentIntentID: "pi_forged", Amount: q.Total, Currency: q.Currency, Quote: q})
		captured.Time = time.Now().UTC()
		data, _ := captured.Encode()
		h, err := inventoryKeys.Header(events.ServiceInventory, events.PaymentCaptured, data)
		if err != nil {
			t.Fatal(err)
		}
		h[events.SignerHeader] = []string{events.ServicePayments}
		schedule := func(subject, target string) error {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			_, err := js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: data, Header: h},
				jetstream.WithScheduleAt(time.Now().Add(time.Second)), jetstream.WithScheduleTarget(target))
			return err
		}
		if err := schedule(string(events.InventoryReserved), string(events.PaymentCaptured)); err == nil {
			t.Error("CHECKOUT took a message schedule")
		}
		slot := events.Envelope{Type: events.InventoryExpire, CheckoutID: "co-forged-schedule", Schedule: &events.Schedule{Key: "inventory.expire.x"}}.ScheduleSubject()
		forged := events.FireSubject(events.ServiceInventory, events.PaymentCaptured)
		if err := schedule(slot, forged); err != nil {
			t.Fatalf("inventory schedules a captured payment in its slot (the server allows it): %v", err)
		}
		ops, err := jetstream.New(operator.Conn)
		if err != nil {
			t.Fatal(err)
		}
		timers, err := ops.Stream(context.Background(), events.TimerStream(events.ServiceInventory))
		if err != nil {
			t.Fatal(err)
		}
		natstest.Eventually(t, wait, func() bool {
			_, err := timers.GetLastMsgForSubject(context.Background(), forged)
			return err == nil
		}, "the server never fired the forged schedule onto %s", forged)
		failedWith(t, watch, "co-forged-schedule", events.CodeAuthenticationAbandoned, events.StepProcessPayment)
		for _, typ := range []events.Subject{events.OrderRequested, events.OrderCreated, events.FulfilmentRequested, events.Completed} {
			if n := watch.Count("co-forged-schedule", typ); n != 0 {
				t.Errorf("%d %s after a forged capture", n, typ)
			}
		}
		if n := countInStream(t, ops, events.StreamCheckout, string(events.PaymentCaptured), "co-forged-schedule"); n != 0 {
			t.Errorf("CHECKOUT took %d fired captures from inventory's timers", n)
		}
	})
	t.Run("no publish removes history", func(t *testing.T) {
		// A roll-up header on any publish would purge the stream (or the subject) it lands in,
		// and a Nats-Scheduler purge would cancel a schedule: CHECKOUT refuses both, whoever
		// sends them, and a timer stream takes publishes from its owner only.
		ops, err := jetstream.New(operator.Conn)
		if err != nil {
			t.Fatal(err)
		}
		stream, err := ops.Stream(context.Background(), events.StreamCheckout)
		if err != nil {
			t.Fatal(err)
		}
		before := stream.CachedInfo().State.Msgs
		for _, u := range NATSUsers() {
			subject := checkoutSubjectOf(u)
			if subject == "" {
				continue
			}
			js, err := jetstream.New(connectAs(t, url, u.Name, nats.CustomInboxPrefix(InboxPrefix(u.Name))).Conn)
			if err != nil {
				t.Fatal(err)
			}
			for _, hdr := range []nats.Header{
				{"Nats-Rollup": {"all"}},
				{"Nats-Rollup": {"sub"}},
				{"Nats-Scheduler": {"timer.coordinator.wait.co-auth-3ds.deadline.x"}, "Nats-Schedule-Next": {"purge"}},
			} {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := js.PublishMsg(ctx, &nats.Msg{Subject: subject, Data: []byte(`{}`), Header: hdr})
				cancel()
				if err == nil {
					t.Errorf("%s published %v on %s", u.Name, hdr, subject)
				}
			}
		}
		info, err := stream.Info(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if info.State.Msgs < before || !info.Config.DenyPurge || !info.Config.DenyDelete || info.Config.AllowRollup || info.Config.AllowMsgSchedules {
			t.Errorf("CHECKOUT after the attempts: %d messages (%d before), config %+v", info.State.Msgs, before, info.Config)
		}
	})
	t.Run("the checkout user publishes checkout.requested and nothing else", func(t *testing.T) {
		for _, d := range events.Checkout.Catalog() {
			if d.Subject != events.Requested {
				checkout.cannotPublish(t, strings.ReplaceAll(string(d.Subject), ">", "x"))
			}
		}
		for _, s := range []events.Subject{events.CartsCreate, events.CatalogList, events.FraudReview} {
			checkout.cannotPublish(t, string(s))
		}
		checkout.cannotPublish(t, "$JS.API.INFO")
		checkout.cannotPublish(t, "$JS.API.STREAM.PURGE."+events.StreamCheckout)
		checkout.cannotSubscribe(t, "checkout.>")
		checkout.cannotSubscribe(t, "_INBOX.>")
	})
}

// checkoutSubjectOf is a CHECKOUT subject u may publish, "" if none.
func checkoutSubjectOf(u NATSUser) string {
	for _, s := range u.Publish {
		if strings.HasPrefix(s, "checkout.") && !strings.ContainsAny(s, "*>") {
			return s
		}
	}
	return ""
}

// countInStream counts the messages on subject of checkoutID in stream.
func countInStream(t *testing.T, js jetstream.JetStream, stream, subject, checkoutID string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, stream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subject}})
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for pending := info.NumPending; pending > 0; pending-- {
		m, err := cons.Next(jetstream.FetchMaxWait(5 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		var e events.Envelope
		if json.Unmarshal(m.Data(), &e) == nil && e.CheckoutID == checkoutID {
			n++
		}
	}
	return n
}

// make secrets writes a password per user and the cluster's route credentials, and keeps
// them: a second run changes nothing.
func TestNATSSecretsAreKept(t *testing.T) {
	dir := t.TempDir()
	if err := WriteNATSSecrets(dir); err != nil {
		t.Fatal(err)
	}
	first, err := os.ReadFile(filepath.Join(dir, "nats.env"))
	if err != nil {
		t.Fatal(err)
	}
	route, err := readEnvFile(filepath.Join(dir, RouteUser+".env"), "NATS_PASSWORD")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"NATS_ROUTE_PASSWORD=" + route + "\n",
		"NATS_CLUSTER_ROUTES=[nats-route://route:" + route + "@nats:6222, ",
		NATSPasswordVar(events.ServicePayments) + "=",
	} {
		if !strings.Contains(string(first), want) {
			t.Errorf("nats.env lacks %q", want)
		}
	}
	if err := WriteNATSSecrets(dir); err != nil {
		t.Fatal(err)
	}
	if again, _ := os.ReadFile(filepath.Join(dir, "nats.env")); !bytes.Equal(first, again) {
		t.Error("a second make secrets changed the passwords")
	}
}

// httpJSON calls the HTTP API, fails unless it answers 2xx, and decodes the answer.
func httpJSON[T any](t *testing.T, method, url, body, token string) T {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var out T
	if resp.StatusCode/100 != 2 || json.Unmarshal(raw, &out) != nil {
		t.Fatalf("%s %s: %d %s", method, url, resp.StatusCode, raw)
	}
	return out
}

// A CHECKOUT made before the timer streams is migrated once by the operator (`setup
// -migrate`); the setup user, which runs all the time, may not, and says so. Then the setup
// user keeps what the migration made.
func TestMigrationNeedsTheOperator(t *testing.T) {
	srv := startSecuredServer(t)
	url := srv.ClientURL()
	ops, err := jetstream.New(connectAs(t, url, NATSOperator).Conn)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := ops.CreateStream(ctx, jetstream.StreamConfig{Name: events.StreamCheckout, Subjects: []string{events.CheckoutSubjects},
		Storage: jetstream.FileStorage, AllowDirect: true, AllowMsgSchedules: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := ops.Publish(ctx, string(events.Requested), []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	expire := events.Must("co_old", events.InventoryExpire, events.Expiry{})
	expire.Schedule = &events.Schedule{At: time.Now().Add(time.Hour), Key: "inventory.expire"}
	data, _ := expire.Encode()
	if _, err := ops.PublishMsg(ctx, &nats.Msg{Subject: string(events.LegacySchedules) + ".co_old.inventory.expire", Data: data},
		jetstream.WithScheduleAt(expire.Schedule.At), jetstream.WithScheduleTarget(string(events.InventoryExpire))); err != nil {
		t.Fatal(err)
	}
	if _, err := ops.CreateConsumer(ctx, events.StreamCheckout, jetstream.ConsumerConfig{Durable: events.ServiceCatalog, AckPolicy: jetstream.AckExplicitPolicy}); err != nil {
		t.Fatal(err)
	}

	var logs natstest.LogBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	setup := testConfig(t.TempDir())
	setup.NATSURL, setup.NATSUser, setup.NATSPassword = url, NATSSetup, natsPassword(NATSSetup)
	if err := runSetup(ctx, setup, log, &health{}, true, false); !errors.Is(err, topology.ErrNeedsMigration) {
		t.Errorf("setup on a CHECKOUT to be migrated: %v, want ErrNeedsMigration", err)
	}
	if cfg, err := ops.Stream(ctx, events.StreamCheckout); err != nil || !cfg.CachedInfo().Config.AllowMsgSchedules || cfg.CachedInfo().State.Msgs != 2 {
		t.Fatalf("the setup user changed the CHECKOUT it may not migrate: %v", err)
	}
	operator := testConfig(t.TempDir())
	operator.NATSURL, operator.NATSUser, operator.NATSPassword = url, NATSOperator, natsPassword(NATSOperator)
	if err := runSetup(ctx, operator, log, &health{}, true, true); err != nil {
		t.Fatalf("setup -migrate as the operator: %v\n%s", err, logs.String())
	}
	if err := runSetup(ctx, setup, log, &health{}, true, false); err != nil {
		t.Fatalf("setup after the migration: %v", err)
	}
	if strings.Contains(logs.String(), "Permissions Violation") || !strings.Contains(logs.String(), "CHECKOUT migrated") {
		t.Errorf("setup's log:\n%s", logs.String())
	}
	if missing, err := topology.Missing(ctx, ops); err != nil || len(missing) != 0 {
		t.Errorf("after the migration, missing %v (%v)", missing, err)
	}
	if _, err := ops.Consumer(ctx, events.StreamCheckout, events.ServiceCatalog); err != nil {
		t.Errorf("catalog's consumer: %v", err)
	}
	timers, err := ops.Stream(ctx, events.TimerStream(events.ServiceInventory))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := timers.GetLastMsgForSubject(ctx, expire.ScheduleSubject()); err != nil {
		t.Errorf("the pending expiry was not moved: %v", err)
	}
}

// Each service's durable consumer, as the setup role makes it from the event catalog, is the
// one its runner binds to: the subjects it routes, no more (a wider filter would show it
// events it has no business reading) and no fewer (it would never see them).
func TestConsumersAreWhatTheRunnersRoute(t *testing.T) {
	sys := startSystem(t, t.TempDir())
	want := map[string][]string{}
	for _, cfg := range consumers(Config{}, Services...) {
		want[cfg.Durable] = cfg.FilterSubjects
	}
	for _, u := range sys.units {
		if got := u.runner.Subjects(); !slices.Equal(got, want[u.name]) {
			t.Errorf("%s routes %v; the catalog gives its consumer %v", u.name, got, want[u.name])
		}
	}
}
