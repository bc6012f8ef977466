package app

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/topology"
)

// NATSUser is one user of the NATS authorization that `jetcheckout nats-config` prints,
// derived from events/ so that it cannot drift from what the services publish.
type NATSUser struct {
	Name    string
	Comment string
	// Publish and Subscribe are the subjects the user may use; both nil means everything.
	Publish, Subscribe []string
	// Responses lets the user answer requests it received (micro endpoints), on whatever
	// reply subject they came with, and nothing else.
	Responses bool
}

// NATS user names besides one per service.
const (
	// NATSOperator may do everything: the nats CLI of whoever runs the shop.
	NATSOperator = "operator"
	// NATSCheckout may only publish checkout.requested: a storefront's back end.
	NATSCheckout = "checkout"
	// NATSSetup creates and updates the streams and the bucket (`jetcheckout setup`): the
	// only user besides the operator that may.
	NATSSetup = "setup"
)

// NATSAccount is the account the checkout's users share: its streams are visible to all of
// them, and permissions say who may do what with them.
const NATSAccount = "CHECKOUT"

// endpoints are the request-reply subjects each service answers (micro).
var endpoints = map[string][]events.Subject{
	events.ServiceCatalog:   {events.CartsCreate, events.CartsGet, events.CatalogList},
	events.ServiceInventory: {events.InventoryStock},
	events.ServiceFraud:     {events.FraudReviews, events.FraudReview},
	events.ServiceCoordinator: {events.CheckoutsRedrive, events.DeadLettersRedrive, events.CheckoutsStepActive,
		// The subscriptions run beside the coordinator (internal/app's build).
		events.SubscriptionsCreate, events.SubscriptionsGet, events.SubscriptionsList, events.SubscriptionsPause,
		events.SubscriptionsResume, events.SubscriptionsCancel, events.SubscriptionsChange},
}

// asks are the request-reply subjects each service asks another service: catalog.list
// reads the stock from the inventory at each request; payments asks the coordinator whether
// it asked for a payment before it charges.
var asks = map[string][]events.Subject{
	events.ServiceCatalog:  {events.InventoryStock},
	events.ServicePayments: {events.CheckoutsStepActive},
}

// NATSUsers lists every user: one per service, then the HTTP API, the checkout publisher and
// the operator.
func NATSUsers() []NATSUser {
	var users []NATSUser
	for _, name := range events.Services {
		users = append(users, serviceUser(name))
	}
	return append(users, apiUser(), setupUser(),
		NATSUser{Name: NATSCheckout, Comment: "a storefront: publishes checkout.requested and nothing else (an acknowledged publish takes its ack on " + InboxPrefix(NATSCheckout) + ")",
			Publish: []string{string(events.Requested)}, Subscribe: []string{InboxPrefix(NATSCheckout) + ".>"}},
		NATSUser{Name: NATSOperator, Comment: "the nats CLI of whoever runs the shop: everything"},
	)
}

// serviceUser is what one service may do: publish the events the catalog says it
// produces, and the JetStream calls its runner makes on its own consumer.
func serviceUser(name string) NATSUser {
	u := NATSUser{Name: name, Comment: "service " + name + ": its own events, its consumer, its replies"}
	for _, d := range events.Checkout.Catalog() {
		u.Publish = append(u.Publish, publishGrants(d, name)...)
	}
	u.Publish = append(u.Publish, events.DeadLetterSubject(name))
	u.Publish = append(u.Publish, consumerGrants(name)...)
	kv := "KV_" + events.BucketCheckouts
	switch name {
	case events.ServiceCoordinator:
		// Its state: puts by compare-and-swap, gets by direct get (the bucket allows them) and
		// from the stream's leader (after a conflict, and before an outcome without a write);
		// and the next request after its ack floor, for an event that came before its request.
		u.Publish = append(u.Publish, "$KV."+events.BucketCheckouts+".>", "$JS.API.DIRECT.GET."+kv+".>",
			"$JS.API.STREAM.MSG.GET."+kv,
			"$JS.API.DIRECT.GET."+events.StreamCheckout, "$JS.API.STREAM.MSG.GET."+events.StreamCheckout)
		u.Publish = append(u.Publish, redriveGrants()...)
		u.Publish = append(u.Publish, subscriptionGrants()...)
	case events.ServiceCatalog:
		// Its carts: created (a publish that expects no earlier message on the cart's subject;
		// the stream takes one per subject ever, and no roll-up) and read, directly or, for one
		// a replica has not got yet, from the stream's leader.
		u.Publish = append(u.Publish, events.CartsSubjects, "$JS.API.DIRECT.GET."+events.StreamCarts+"."+events.CartsSubjects,
			"$JS.API.STREAM.MSG.GET."+events.StreamCarts)
	case events.ServicePayments:
		// The previous release's payments reads the coordinator's state from the bucket's
		// leader itself, before it charges: kept while a rolling upgrade runs it beside this
		// one (the permissions go first and must be a superset). Drop it in the next release.
		u.Publish = append(u.Publish, "$JS.API.STREAM.MSG.GET."+kv)
	case events.ServiceInventory:
		// The initial stock: recorded once (the stream refuses a second), read from the leader.
		u.Publish = append(u.Publish, events.StockSeed, "$JS.API.STREAM.MSG.GET."+events.StreamStock)
	}
	if events.Rebuildable[name] {
		// Reads of the stream's messages, to rebuild a lost view (runner.Config.Rebuild), and
		// giving its consumer's pin up when it stops, so another instance takes over at once.
		u.Publish = append(u.Publish, "$JS.API.DIRECT.GET."+events.StreamCheckout, "$JS.API.STREAM.MSG.GET."+events.StreamCheckout,
			"$JS.API.CONSUMER.UNPIN."+events.StreamCheckout+"."+name)
		u.Publish = append(u.Publish, snapshotGrants(name)...)
	}
	for _, a := range asks[name] {
		u.Publish = append(u.Publish, string(a)) // its reply comes to the user's inbox
	}
	u.Subscribe = []string{InboxPrefix(name) + ".>"}
	if eps := endpoints[name]; len(eps) > 0 {
		for _, e := range eps {
			u.Subscribe = append(u.Subscribe, string(e))
		}
		// micro's discovery: $SRV.PING|INFO|STATS, for all, by name, by instance.
		u.Subscribe = append(u.Subscribe, "$SRV.*", "$SRV.*."+name, "$SRV.*."+name+".*")
		if name == events.ServiceCoordinator {
			u.Subscribe = append(u.Subscribe, "$SRV.*."+events.ServiceSubscriptions, "$SRV.*."+events.ServiceSubscriptions+".*")
		}
		u.Responses = true
	}
	u.Publish = uniq(u.Publish)
	return u
}

// redriveGrants let the coordinator re-drive a dead letter (deadletters.redrive): read it
// from DEADLETTER's leader, publish it again on any subject of the flow a service consumes,
// as it came (with signing on, its consumers believe the copy only as they believed the
// original), and delete it; and publish a failed checkout's new attempt (checkout.requested,
// which it never re-drives as a letter: the public request is not signed).
func redriveGrants() []string {
	grants := []string{"$JS.API.STREAM.MSG.GET." + events.StreamDeadLetter, "$JS.API.STREAM.MSG.DELETE." + events.StreamDeadLetter}
	for _, d := range events.Checkout.Catalog() {
		if slices.ContainsFunc(d.Consumers, func(c string) bool { return slices.Contains(events.Services, c) }) {
			grants = append(grants, string(d.Subject)) // not warehouse.pick: the warehouse is no service
		}
	}
	return grants
}

// subscriptionGrants are what the subscriptions, beside the coordinator, do: their bucket
// (puts by compare-and-swap, gets, the listing of its keys through an ordered consumer),
// their schedules (put with a roll-up of their own subject, purged, looked up), their two
// consumers, each period's cart (carts.create, answered on its inbox) and its
// checkout.requested, and the catalog (catalog.list) that a changed plan is checked against.
func subscriptionGrants() []string {
	kv := "KV_" + events.BucketSubscriptions
	grants := []string{"$KV." + events.BucketSubscriptions + ".>", "$JS.API.DIRECT.GET." + kv + ".>", "$JS.API.STREAM.MSG.GET." + kv,
		"$JS.API.CONSUMER.CREATE." + kv + ".>", "$JS.API.CONSUMER.DELETE." + kv + ".*", "$JS.FC." + kv + ".>",
		"subscriptions.schedule.*", "subscriptions.retry.*", "$JS.API.STREAM.PURGE." + events.StreamSubscriptions,
		"$JS.API.DIRECT.GET." + events.StreamSubscriptions + ".>", "$JS.API.STREAM.MSG.GET." + events.StreamSubscriptions,
		string(events.Requested), string(events.CartsCreate), string(events.CatalogList)}
	for _, stream := range slices.Sorted(maps.Keys(topology.SubscriptionConsumers())) {
		consumer := stream + "." + events.ServiceSubscriptions
		grants = append(grants, "$JS.API.CONSUMER.INFO."+consumer, "$JS.API.CONSUMER.MSG.NEXT."+consumer, "$JS.ACK."+consumer+".>")
	}
	return grants
}

// consumerGrants are the JetStream API calls of a process that waits for the topology
// (topology.Await: stream infos only; it may not create, change, purge or delete a stream)
// and consumes its own durable consumer, name, on the CHECKOUT stream, which the setup role
// made: it may read that consumer's info, fetch and ack, but not create or change it (a wider
// filter would show it every event).
func consumerGrants(name string) []string {
	var grants []string
	for _, s := range append(slices.Clone(topology.Names), topology.MigrationStream) {
		grants = append(grants, "$JS.API.STREAM.INFO."+s)
	}
	consumer := events.StreamCheckout + "." + name
	return append(grants,
		"$JS.API.CONSUMER.INFO."+consumer, "$JS.API.CONSUMER.MSG.NEXT."+consumer,
		"$JS.ACK."+consumer+".>")
}

// snapshotGrants are what the Object Store client needs to put and get name's snapshot in
// its own bucket (runner.Config.Snapshots): its subjects (a put writes the chunks under a new
// random one), the purge of the old chunks after a put, the direct get of the object's meta,
// and the ordered consumer a get reads the chunks with (its flow control answers, for a large
// file, and its removal). These calls act on a whole stream, so only a bucket of its own keeps
// each service from reading or purging another's view.
// Integrity does not rest on them: a snapshot is believed only signed by its service.
func snapshotGrants(name string) []string {
	stream := "OBJ_" + events.ViewsBucket(name)
	return []string{
		"$O." + events.ViewsBucket(name) + ".>",
		"$JS.API.STREAM.PURGE." + stream, "$JS.API.DIRECT.GET." + stream + ".>",
		"$JS.API.CONSUMER.CREATE." + stream + ".>",
		"$JS.API.CONSUMER.DELETE." + stream + ".*", "$JS.FC." + stream + ".>",
	}
}

// apiUser is the HTTP API: it publishes checkout.requested, asks the catalog's, fraud's and
// the coordinator's endpoints (not those only services ask), and reads every checkout event
// through its own consumer.
func apiUser() NATSUser {
	u := NATSUser{Name: APIName, Comment: "the HTTP API: checkout.requested, the catalog's, fraud's and the coordinator's endpoints, its read model's consumer",
		Publish: []string{string(events.Requested)}, Subscribe: []string{InboxPrefix(APIName) + ".>"}}
	for _, service := range []string{events.ServiceCatalog, events.ServiceFraud, events.ServiceCoordinator} { // the coordinator's include the subscriptions'

		for _, e := range endpoints[service] {
			if !askedByServices(e) {
				u.Publish = append(u.Publish, string(e))
			}
		}
	}
	u.Publish = append(u.Publish, consumerGrants(APIName)...)
	// Its health check asks JetStream for the account's info (a read); a lost read model is
	// rebuilt with direct gets of the stream's events (httpapi.Projector), which it may read
	// through its consumer anyway.
	u.Publish = append(u.Publish, "$JS.API.INFO", "$JS.API.DIRECT.GET."+events.StreamCheckout)
	return u
}

// askedByServices reports an endpoint that one service asks another (asks).
func askedByServices(e events.Subject) bool {
	for _, subjects := range asks {
		if slices.Contains(subjects, e) {
			return true
		}
	}
	return false
}

// setupUser creates and updates the streams, the buckets and each process's durable consumer
// on CHECKOUT (topology.Ensure), deletes the views bucket the rebuildable services once
// shared, and nothing else: it neither publishes events nor reads them, purges nor deletes
// another stream. Migrating a CHECKOUT from before the timer streams needs more (deleting
// CHECKOUT, moving every consumer and schedule): the operator does that once (`jetcheckout
// setup -migrate`), so this user, which runs all the time, never may.
func setupUser() NATSUser {
	u := NATSUser{Name: NATSSetup, Comment: "jetcheckout setup: creates and updates the streams, the buckets and the processes' consumers, nothing else",
		Publish: []string{"$JS.API.INFO"}, Subscribe: []string{InboxPrefix(NATSSetup) + ".>"}}
	for _, s := range topology.Names {
		u.Publish = append(u.Publish, "$JS.API.STREAM.INFO."+s, "$JS.API.STREAM.CREATE."+s, "$JS.API.STREAM.UPDATE."+s)
	}
	u.Publish = append(u.Publish, "$JS.API.STREAM.INFO."+topology.MigrationStream,
		// The views bucket the rebuildable services once shared: it deletes it.
		"$JS.API.STREAM.DELETE.OBJ_"+events.LegacyBucketViews)
	for _, name := range append(slices.Clone(events.Services), APIName) {
		consumer := events.StreamCheckout + "." + name
		u.Publish = append(u.Publish, "$JS.API.CONSUMER.INFO."+consumer, "$JS.API.CONSUMER.CREATE."+consumer, "$JS.API.CONSUMER.CREATE."+consumer+".>")
	}
	for _, stream := range slices.Sorted(maps.Keys(topology.SubscriptionConsumers())) {
		consumer := stream + "." + events.ServiceSubscriptions
		u.Publish = append(u.Publish, "$JS.API.CONSUMER.INFO."+consumer, "$JS.API.CONSUMER.CREATE."+consumer, "$JS.API.CONSUMER.CREATE."+consumer+".>")
	}
	return u
}

// requestProducer finds the endpoint named in a producer like "an operator (`fraud.review`
// request)": the service answering it publishes the event on the operator's behalf.
var requestProducer = regexp.MustCompile("`([^`]+)` request")

// publishGrants are the subjects name may publish for one catalog entry. A scheduled event
// is fired by the server at its time: its producer publishes only to its slots in its own
// timer stream (events.TimerSlots), which no other user may write; CHECKOUT sources from that
// stream only the fire subjects of the events the producer schedules.
func publishGrants(d events.EventDoc, name string) []string {
	subject := string(d.Subject)
	switch producer := d.Producer; {
	case producer == name:
		return []string{subject}
	case producer == name+" (scheduled)":
		// Its slots, and the purge of its own timer stream: a timer no longer needed is
		// removed (events.CancelSchedule); nobody else's timers are in that stream.
		slot := events.TimerSlots(name, d.Subject)
		return []string{slot, slot + ".>", "$JS.API.STREAM.PURGE." + events.TimerStream(name)}
	case producer == "any service":
		return []string{subject}
	}
	if m := requestProducer.FindStringSubmatch(d.Producer); m != nil && slices.Contains(endpoints[name], events.Subject(m[1])) {
		return []string{subject}
	}
	return nil
}

func uniq(s []string) []string {
	var out []string
	for _, v := range s {
		if !slices.Contains(out, v) {
			out = append(out, v)
		}
	}
	return out
}

// NATSPasswordVar is the environment variable nats-server reads a user's password from.
func NATSPasswordVar(user string) string { return "NATS_PASSWORD_" + strings.ToUpper(user) }

// WriteNATSAuth prints the accounts block of nats-server's configuration (deploy/nats/auth.conf).
func WriteNATSAuth(w io.Writer) error {
	b := &strings.Builder{}
	b.WriteString(`# Generated by ` + "`jetcheckout nats-config`" + ` from events/ (the flow and its event catalog):
# do not edit; internal/app's tests fail when this file and the code differ.
#
# One user per service, allowed to publish only the events that service produces, its own
# dead letters, and the JetStream API calls its runner makes on its own consumer; it
# subscribes only to its own inbox (services take replies on _INBOX_<service>) and its
# request-reply endpoints. Passwords are never in this file: nats-server reads each from
# its environment (NATS_PASSWORD_<USER>, generated by ` + "`make secrets`" + `).
accounts {
  ` + NATSAccount + ` {
    jetstream: enabled
    users: [
`)
	for _, u := range NATSUsers() {
		fmt.Fprintf(b, "      # %s\n      {\n        user: %s\n        password: $%s\n", u.Comment, u.Name, NATSPasswordVar(u.Name))
		if u.Publish != nil || u.Subscribe != nil {
			b.WriteString("        permissions: {\n")
			writeSubjects(b, "publish", u.Publish)
			writeSubjects(b, "subscribe", u.Subscribe)
			if u.Responses {
				b.WriteString("          allow_responses: true\n")
			}
			b.WriteString("        }\n")
		}
		b.WriteString("      }\n")
	}
	b.WriteString("    ]\n  }\n}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

func writeSubjects(b *strings.Builder, kind string, subjects []string) {
	fmt.Fprintf(b, "          %s: { allow: [\n", kind)
	for _, s := range subjects {
		fmt.Fprintf(b, "            %q\n", s)
	}
	b.WriteString("          ] }\n")
}

// WriteNATSSecrets makes sure dir holds a password for every NATS user: <user>.env with
// NATS_USER and NATS_PASSWORD (what the user's process, or the nats CLI, reads), and
// nats.env with every NATS_PASSWORD_<USER> (what nats-server reads); and admin.env with
// the HTTP API's ADMIN_TOKEN. Existing passwords
// are kept, so a running server and its clients keep agreeing.
func WriteNATSSecrets(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	var server strings.Builder
	server.WriteString("# nats-server's view of every NATS user's password: as secret as all of them.\n")
	for _, u := range NATSUsers() {
		password, err := keptPassword(dir, u.Name)
		if err != nil {
			return err
		}
		fmt.Fprintf(&server, "%s=%s\n", NATSPasswordVar(u.Name), password)
	}
	// The cluster's nodes connect to each other as the route user (deploy/nats/cluster.conf).
	route, err := keptPassword(dir, RouteUser)
	if err != nil {
		return err
	}
	fmt.Fprintf(&server, "NATS_ROUTE_PASSWORD=%s\nNATS_CLUSTER_ROUTES=%s\n", route, clusterRoutes(route))
	if err := os.WriteFile(filepath.Join(dir, "nats.env"), []byte(server.String()), 0o600); err != nil {
		return err
	}
	// The HTTP API's admin token (the review queue), kept once made like the passwords.
	if _, err := keptEnv(filepath.Join(dir, "admin.env"), "ADMIN_TOKEN", func() (string, error) { return randomPassword(), nil }); err != nil {
		return err
	}
	return writeSigningSecrets(dir)
}

// writeSigningSecrets gives each service's env file its signing seed, kept once made, and
// writes signing.env with every service's public key (what every process reads).
func writeSigningSecrets(dir string) error {
	seeds := map[string]string{}
	for _, s := range events.Services {
		kept, err := keptSeeds(filepath.Join(dir, s+".env"), []string{s})
		if err != nil {
			return err
		}
		seeds[s] = kept[s]
	}
	public, err := publicKeys(seeds)
	if err != nil {
		return err
	}
	body := "# Every service's public signing key: not secret, but made with the seeds beside it.\n" +
		SigningPublicVar + "=" + strings.Join(public, ",") + "\n"
	return os.WriteFile(filepath.Join(dir, "signing.env"), []byte(body), 0o600)
}

// RouteUser is the user the nodes of a NATS cluster authenticate each other as.
const RouteUser = "route"

// ClusterNodes are the compose cluster's nats-server hosts (deploy/compose.cluster.yml).
var ClusterNodes = []string{"nats", "nats-2", "nats-3"}

// clusterRoutes is the routes array of cluster.conf, with the route credentials in each URL
// (a NATS config cannot build a string from variables).
func clusterRoutes(password string) string {
	routes := make([]string, len(ClusterNodes))
	for i, host := range ClusterNodes {
		routes[i] = "nats-route://" + RouteUser + ":" + password + "@" + host + ":6222"
	}
	return "[" + strings.Join(routes, ", ") + "]"
}

// keptPassword returns user's password from dir/<user>.env, writing a new one first if
// there is none.
func keptPassword(dir, user string) (string, error) {
	path := filepath.Join(dir, user+".env")
	if _, err := keptEnv(path, "NATS_USER", func() (string, error) { return user, nil }); err != nil {
		return "", err
	}
	return keptEnv(path, "NATS_PASSWORD", func() (string, error) { return randomPassword(), nil })
}

// readEnvFile returns the value of key in a KEY=VALUE file.
func readEnvFile(path, key string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key+"="); ok && v != "" {
			return v, nil
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	return "", &missingKeyError{path: path, key: key}
}

// missingKeyError: the env file exists but does not set the key.
type missingKeyError struct{ path, key string }

func (e *missingKeyError) Error() string { return e.path + ": no " + e.key }

// randomPassword is 192 random bits in hex: nothing a config file or shell would quote.
func randomPassword() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return hex.EncodeToString(b)
}
