package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jetcheckout/jetcheckout/coordinator"
	"github.com/jetcheckout/jetcheckout/deploy"
	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/money"
	"github.com/jetcheckout/jetcheckout/internal/store"
	"github.com/jetcheckout/jetcheckout/services/catalog"
	"github.com/jetcheckout/jetcheckout/services/inventory"
	"github.com/jetcheckout/jetcheckout/services/notifications"
	"github.com/jetcheckout/jetcheckout/services/orders"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stripe/stripe-go/v76"
	bolt "go.etcd.io/bbolt"
)

// Result is what a run did and what reconciliation found.
type Result struct {
	Seed                 uint64
	Checkouts            int
	Completed, Failed    int
	FailedBy             map[string]int // failed checkouts by code and step, "deadline_exceeded@check_fraud"
	Faults, StripeFaults int            // faults of the target (kills, stops, pauses, cut-offs); Stripe faults
	Emails               int            // deliveries the mail server took (the SMTP sink, mailpit)
	DuplicateEmails      int            // deliveries of a message already delivered
	DuplicatePicks       int            // pick requests beyond the first of an order (the warehouse dedupes)
	Stuck, DeadLetters   int            // checkout.stuck announcements; messages a service gave up on
	Redriven             int            // checkouts the operator re-drove (their confirmation bounced)
	LettersRedriven      int            // dead letters the operator re-drove (a failure notice that bounced)
	// Periods paid and failed over the load's subscriptions, and their checkouts (each
	// attempt of a period is one).
	PeriodsPaid, PeriodsFailed, Renewals int
	Violations                           []string // each broken promise, one line each
	Elapsed                              time.Duration
}

// Summary is the run's one line.
func (r Result) Summary() string {
	terminal := 0.0
	if r.Checkouts > 0 {
		terminal = 100 * float64(r.Completed+r.Failed) / float64(r.Checkouts)
	}
	var by []string
	for _, k := range slices.Sorted(maps.Keys(r.FailedBy)) {
		by = append(by, fmt.Sprintf("%s:%d", k, r.FailedBy[k]))
	}
	return fmt.Sprintf("chaos: checkouts=%d completed=%d failed=%d failed_by=[%s] terminal=%.1f%% faults=%d stripe_faults=%d violations=%d emails=%d duplicate_emails=%d duplicate_picks=%d stuck=%d dead_letters=%d redriven=%d letters_redriven=%d periods_paid=%d periods_failed=%d renewals=%d seed=%d elapsed=%s",
		r.Checkouts, r.Completed, r.Failed, strings.Join(by, " "), terminal, r.Faults, r.StripeFaults, len(r.Violations), r.Emails, r.DuplicateEmails,
		r.DuplicatePicks, r.Stuck, r.DeadLetters, r.Redriven, r.LettersRedriven, r.PeriodsPaid, r.PeriodsFailed, r.Renewals, r.Seed, r.Elapsed.Round(time.Second))
}

// state is everything reconciliation reads, once the services have stopped.
type state struct {
	terminals    map[string][]events.Envelope       // the stream's terminal events, by checkout
	settled      map[string][]events.Envelope       // the stream's checkout.redrive.settled, by checkout
	picks        map[string][]events.Envelope       // the WAREHOUSE stream's pick requests, by checkout
	coordinator  map[string]coordinator.Status      // the coordinator's KV state, by checkout
	stuck        int                                // checkout.stuck announcements
	deadLetters  uint64                             // messages in DEADLETTER
	orders       map[string][]events.Order          // the orders store, by checkout
	stock        map[string]events.Stock            // the inventory store, by product
	reservations map[string]inventory.Reservation   // by checkout, where one exists
	intents      map[string][]*stripe.PaymentIntent // the emulator's, by metadata checkout_id
	refunded     map[string]int64                   // succeeded refunds, minor units, by PaymentIntent
	mails        []receivedMail
	// subscriptions are the subscriptions bucket's records, by ID.
	subscriptions map[string]events.Subscription
}

// snapshot reads the stream (NATS still runs), the services' bbolt files (they have
// stopped), the emulator's PaymentIntents and refunds over its API, and the mail server.
func snapshot(ctx context.Context, t target, js jetstream.JetStream, plans []planned) (*state, error) {
	s := &state{orders: map[string][]events.Order{}, stock: map[string]events.Stock{},
		reservations: map[string]inventory.Reservation{}, intents: map[string][]*stripe.PaymentIntent{},
		refunded: map[string]int64{}}
	var err error
	if s.mails, err = t.mails(ctx); err != nil {
		return nil, fmt.Errorf("read emails: %w", err)
	}
	if s.terminals, err = readStream(ctx, js, events.StreamCheckout, terminalSubjects...); err != nil {
		return nil, fmt.Errorf("read terminal events: %w", err)
	}
	if s.settled, err = readStream(ctx, js, events.StreamCheckout, string(events.RedriveSettled)); err != nil {
		return nil, fmt.Errorf("read settled re-drives: %w", err)
	}
	if s.picks, err = readQueue(ctx, js, events.StreamWarehouse); err != nil {
		return nil, fmt.Errorf("read pick requests: %w", err)
	}
	stuck, err := readStream(ctx, js, events.StreamCheckout, string(events.Stuck))
	if err != nil {
		return nil, fmt.Errorf("read stuck announcements: %w", err)
	}
	for _, es := range stuck {
		s.stuck += len(es)
	}
	if s.deadLetters, err = streamSize(ctx, js, events.StreamDeadLetter); err != nil {
		return nil, err
	}
	if s.coordinator, err = coordinatorStates(ctx, js, plans); err != nil {
		return nil, err
	}
	if s.subscriptions, err = readSubscriptions(ctx, js); err != nil {
		return nil, fmt.Errorf("read subscriptions: %w", err)
	}
	quiet := slog.New(slog.DiscardHandler)
	if err := t.withStore(ctx, events.ServiceOrders, func(db *bolt.DB) error {
		svc, err := orders.New(db, quiet)
		if err != nil {
			return err
		}
		all, err := svc.Orders()
		for _, o := range all {
			s.orders[o.CheckoutID] = append(s.orders[o.CheckoutID], o)
		}
		return err
	}); err != nil {
		return nil, err
	}
	if err := t.withStore(ctx, events.ServiceInventory, func(db *bolt.DB) error {
		svc, err := inventory.New(db, quiet)
		if err != nil {
			return err
		}
		all, err := svc.AllStock()
		for _, x := range all {
			s.stock[x.ProductID] = x
		}
		ids := renewalCheckouts(s.subscriptions)
		for _, p := range plans {
			ids = append(ids, p.ID)
		}
		for _, id := range ids {
			res, err := svc.Reservation(id)
			switch {
			case err == nil:
				s.reservations[id] = res
			case !errors.Is(err, inventory.ErrNoReservation):
				return err
			}
		}
		return err
	}); err != nil {
		return nil, err
	}
	sc := stripeClient(t.stripeURL())
	pis := sc.PaymentIntents.List(&stripe.PaymentIntentListParams{ListParams: stripe.ListParams{Context: ctx, Limit: stripe.Int64(100)}})
	for pis.Next() {
		pi := pis.PaymentIntent()
		s.intents[pi.Metadata["checkout_id"]] = append(s.intents[pi.Metadata["checkout_id"]], pi)
	}
	if err := pis.Err(); err != nil {
		return nil, fmt.Errorf("list payment intents: %w", err)
	}
	refunds := sc.Refunds.List(&stripe.RefundListParams{ListParams: stripe.ListParams{Context: ctx, Limit: stripe.Int64(100)}})
	for refunds.Next() {
		r := refunds.Refund()
		if r.Status == stripe.RefundStatusSucceeded && r.PaymentIntent != nil {
			s.refunded[r.PaymentIntent.ID] += r.Amount
		}
	}
	if err := refunds.Err(); err != nil {
		return nil, fmt.Errorf("list refunds: %w", err)
	}
	return s, nil
}

// coordinatorStates reads the status the coordinator keeps for each planned checkout.
func coordinatorStates(ctx context.Context, js jetstream.JetStream, plans []planned) (map[string]coordinator.Status, error) {
	kv, err := js.KeyValue(ctx, events.BucketCheckouts)
	if err != nil {
		return nil, err
	}
	out := map[string]coordinator.Status{}
	for _, p := range plans {
		entry, err := kv.Get(ctx, p.ID)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("checkouts %s: %w", p.ID, err)
		}
		var st coordinator.State
		if err := json.Unmarshal(entry.Value(), &st); err != nil {
			return nil, fmt.Errorf("checkouts %s: %w", p.ID, err)
		}
		out[p.ID] = st.Status
	}
	return out, nil
}

func streamSize(ctx context.Context, js jetstream.JetStream, name string) (uint64, error) {
	stream, err := js.Stream(ctx, name)
	if err != nil {
		return 0, err
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

// openStore opens a stopped service's bbolt file for f.
func openStore(path string, f func(*bolt.DB) error) error {
	db, err := store.Open(path)
	if err != nil {
		return err
	}
	defer db.Close()
	return f(db)
}

// reconcile checks every promise against the state and fills in res.
func reconcile(res *Result, plans []planned, subs []plannedSub, initial map[string]int, s *state) {
	violate := func(format string, args ...any) {
		res.Violations = append(res.Violations, fmt.Sprintf(format, args...))
	}
	mails := mailsByCheckout(s.mails, res)
	planned := map[string]bool{}
	sold := map[string]int{}
	for _, p := range plans {
		planned[p.ID] = true
		checkMoney(p, s, violate)
		ends := s.terminals[p.ID]
		if len(ends) == 0 {
			violate("%s (%s): no terminal event", p.ID, p.Kind)
			continue
		}
		if len(ends) > 1 {
			violate("%s (%s): %d terminal events %v", p.ID, p.Kind, len(ends), types(ends))
		}
		if st := s.coordinator[p.ID]; string(st) != strings.TrimPrefix(string(ends[0].Type), "checkout.") {
			violate("%s: ended with %s, the coordinator's state says %q", p.ID, ends[0].Type, st)
		}
		picks := len(s.picks[p.ID])
		res.DuplicatePicks += max(picks-1, 0)
		confirmed := confirmedOrders(s.orders[p.ID])
		m := mails[p.ID]
		if m == nil {
			m = &customerMail{}
		}
		switch end := ends[0]; end.Type {
		case events.Completed:
			res.Completed++
			var c events.CheckoutCompleted
			_ = end.DecodePayload(&c)
			checkCompleted(p, c, confirmed, s, violate)
			for _, o := range confirmed {
				for _, l := range o.Lines {
					sold[l.ProductID] += l.Quantity
				}
			}
			if picks == 0 && !c.NeedsAttention {
				violate("%s: completed, nothing for the warehouse to pick", p.ID)
			}
			if len(m.notices) > 0 {
				violate("%s: completed, but the customer was told it failed", p.ID)
			}
			if len(m.confirmations) == 0 && !warned(c, events.StepSendConfirmation) {
				violate("%s: completed, no confirmation email", p.ID)
			}
		case events.Failed:
			res.Failed++
			var f events.CheckoutFailed
			_ = end.DecodePayload(&f)
			if res.FailedBy == nil {
				res.FailedBy = map[string]int{}
			}
			res.FailedBy[f.Code+"@"+string(f.Step)]++
			if len(confirmed) > 0 {
				violate("%s: failed (%s at %s) but has order %s", p.ID, f.Code, f.Step, confirmed[0].ID)
			}
			if picks > 0 {
				violate("%s: failed, but the warehouse was asked to pick it", p.ID)
			}
			if len(m.confirmations) > 0 {
				violate("%s: failed, but the customer got a confirmation", p.ID)
			}
			if notifications.Notifies(f) && len(m.notices) == 0 {
				violate("%s: failed (%s), no failure notice", p.ID, f.Code)
			}
		}
		for _, to := range append(m.confirmations, m.notices...) {
			if to != p.Email {
				violate("%s: email to %s, the customer is %s", p.ID, to, p.Email)
			}
		}
		if r, ok := s.reservations[p.ID]; ok && r.Status == inventory.Reserved {
			violate("%s: ended, but its reservation %v still holds stock", p.ID, r.Items)
		}
	}
	renewals := reconcileSubscriptions(res, subs, s, mails, sold, violate)
	for id, ends := range s.terminals {
		if !planned[id] && !renewals[id] {
			violate("%s: terminal events %v for a checkout nobody started", id, types(ends))
		}
	}
	checkStock(initial, sold, s, violate)
	checkCoupons(plans, s, violate)
	res.Stuck, res.DeadLetters = s.stuck, int(s.deadLetters)
	slices.Sort(res.Violations)
}

// checkMoney: at most one PaymentIntent, never more refunded than captured.
func checkMoney(p planned, s *state, violate func(string, ...any)) {
	pis := s.intents[p.ID]
	if len(pis) > 1 {
		violate("%s (%s): %d PaymentIntents", p.ID, p.Kind, len(pis))
	}
	captured, refunded := kept(pis, s.refunded)
	if refunded > captured {
		violate("%s: refunded %d, more than the %d captured", p.ID, refunded, captured)
	}
	ends := s.terminals[p.ID]
	if len(ends) > 0 && ends[0].Type == events.Failed && captured != refunded {
		violate("%s (%s): failed, but %d minor units captured and %d refunded", p.ID, p.Kind, captured, refunded)
	}
}

// kept sums what the intents captured and what was refunded of them, in minor units.
func kept(pis []*stripe.PaymentIntent, refunded map[string]int64) (captured, back int64) {
	for _, pi := range pis {
		if pi.Status == stripe.PaymentIntentStatusSucceeded {
			captured += pi.AmountReceived
		}
		back += refunded[pi.ID]
	}
	return captured, back
}

// checkCompleted: the right outcome, one order, and the customer paid exactly its total.
func checkCompleted(p planned, c events.CheckoutCompleted, confirmed []events.Order, s *state, violate func(string, ...any)) {
	if p.Kind.mustFail() {
		violate("%s: a %s checkout completed", p.ID, p.Kind)
	}
	if len(confirmed) != 1 {
		violate("%s: completed with %d orders", p.ID, len(confirmed))
		return
	}
	o := confirmed[0]
	if !o.Total.Equal(c.Total) || o.Currency != c.Currency || o.ID != c.OrderID {
		violate("%s: completed as order %s %s %s, the store has %s %s %s", p.ID, c.OrderID, c.Total, c.Currency, o.ID, o.Total, o.Currency)
	}
	want, err := money.ToMinor(o.Total, o.Currency)
	if err != nil {
		violate("%s: order total %s %s: %v", p.ID, o.Total, o.Currency, err)
		return
	}
	if captured, refunded := kept(s.intents[p.ID], s.refunded); captured-refunded != want {
		violate("%s: completed for %d minor units, but %d captured and %d refunded", p.ID, want, captured, refunded)
	}
}

// checkCoupons: a completed checkout's order carries the discount of the coupon it asked for
// and no other coupon (the shop's own promotions come as they fit), and no coupon completed
// more checkouts than it allows.
func checkCoupons(plans []planned, s *state, violate func(string, ...any)) {
	coupons, err := demoCoupons()
	if err != nil {
		violate("coupons: %v", err)
		return
	}
	used := map[string]int{}
	for _, p := range plans {
		ends := s.terminals[p.ID]
		confirmed := confirmedOrders(s.orders[p.ID])
		if len(ends) == 0 || ends[0].Type != events.Completed || len(confirmed) != 1 {
			continue
		}
		var codes []string
		for _, d := range confirmed[0].Discounts {
			if d.Automatic {
				continue // the shop's promotions: not asked for, not counted
			}
			codes = append(codes, d.Code)
			used[d.Code]++
		}
		if want := []string{p.Coupon}; p.Coupon == "" && len(codes) > 0 || p.Coupon != "" && !slices.Equal(codes, want) {
			violate("%s: completed with discounts %v, asked for coupon %q", p.ID, codes, p.Coupon)
		}
	}
	for code, n := range used {
		if limit := coupons[code].MaxRedemptions; limit > 0 && n > limit {
			violate("coupon %s: %d checkouts completed with it, its limit is %d", code, n, limit)
		}
	}
}

// checkStock: per product, the initial stock is all accounted for, nothing is negative,
// and exactly what completed orders bought was sold.
func checkStock(initial, sold map[string]int, s *state, violate func(string, ...any)) {
	held := map[string]int{}
	for _, r := range s.reservations {
		if r.Status == inventory.Reserved {
			for _, it := range r.Items {
				held[it.ProductID] += it.Quantity
			}
		}
	}
	for product, n := range initial {
		st := s.stock[product]
		if st.Available < 0 || st.Reserved < 0 || st.Sold < 0 {
			violate("stock %s: negative: %+v", product, st)
		}
		if st.Available+st.Reserved+st.Sold != n {
			violate("stock %s: %d available + %d reserved + %d sold != %d initial", product, st.Available, st.Reserved, st.Sold, n)
		}
		if st.Reserved != held[product] {
			violate("stock %s: %d reserved, live reservations hold %d", product, st.Reserved, held[product])
		}
		if st.Sold != sold[product] {
			violate("stock %s: %d sold, completed orders bought %d", product, st.Sold, sold[product])
		}
	}
}

func confirmedOrders(all []events.Order) []events.Order {
	var out []events.Order
	for _, o := range all {
		if o.Status != orders.StatusCancelled {
			out = append(out, o)
		}
	}
	return out
}

func warned(c events.CheckoutCompleted, step events.StepName) bool {
	for _, w := range c.Warnings {
		if w.Step == step {
			return true
		}
	}
	return false
}

func types(es []events.Envelope) []events.Subject {
	out := make([]events.Subject, len(es))
	for i, e := range es {
		out[i] = e.Type
	}
	return out
}

// customerMail is whom a checkout's emails went to (one entry per distinct message).
type customerMail struct{ confirmations, notices []string }

// mailsByCheckout sorts the deliveries by checkout and kind from their Message-IDs
// (<checkout.confirmation@...>, <checkout.failure@...>), counting repeated deliveries.
func mailsByCheckout(all []receivedMail, res *Result) map[string]*customerMail {
	out := map[string]*customerMail{}
	seen := map[string]bool{}
	for _, m := range all {
		res.Emails++
		if seen[m.MessageID] {
			res.DuplicateEmails++
			continue
		}
		seen[m.MessageID] = true
		local, _, _ := strings.Cut(strings.Trim(m.MessageID, "<>"), "@")
		id, what, _ := strings.Cut(local, ".")
		if out[id] == nil {
			out[id] = &customerMail{}
		}
		switch what {
		case "confirmation":
			out[id].confirmations = append(out[id].confirmations, m.To)
		case "failure":
			out[id].notices = append(out[id].notices, m.To)
		}
	}
	return out
}

// outcomes tells, per kind of checkout, how many completed and how many failed, and why.
func outcomes(plans []planned, terminals map[string][]events.Envelope) string {
	type tally struct {
		completed int
		failed    map[string]int
	}
	by := map[kind]*tally{}
	for _, p := range plans {
		t := by[p.Kind]
		if t == nil {
			t = &tally{failed: map[string]int{}}
			by[p.Kind] = t
		}
		ends := terminals[p.ID]
		switch {
		case len(ends) == 0:
			t.failed["(not ended)"]++
		case ends[0].Type == events.Completed:
			t.completed++
		default:
			var f events.CheckoutFailed
			_ = ends[0].DecodePayload(&f)
			t.failed[f.Code]++
		}
	}
	var b strings.Builder
	for _, m := range mix {
		if t := by[m.kind]; t != nil {
			fmt.Fprintf(&b, "\n  %-16s completed %4d  failed %v", m.kind, t.completed, t.failed)
		}
	}
	return "outcomes by kind:" + b.String()
}

// demoCoupons are the coupons the services load (the same embedded file).
func demoCoupons() (catalog.Coupons, error) {
	f, err := deploy.Demo.Open(deploy.CouponsFile)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return catalog.LoadCoupons(f)
}
