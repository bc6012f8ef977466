package events

import (
	"fmt"
	"slices"
	"strings"
)

// From version 3 an event of a checkout is published on a subject that names the checkout:
// checkout.<checkout_id>.<name>, where the name is its type without "checkout."
// (checkout.co_1.cart.validated for checkout.cart.validated), so that
// `nats sub 'checkout.co_1.>'` shows that checkout alone, and a stream's subject mapping can
// spread checkouts by their ID. The envelope's Type stays the event's name. A writer held at
// an older version publishes on the name itself, as those versions did, and so do these:
//
//   - checkout.requested, the public input, which need not name its checkout;
//   - the events a producer schedules (a deadline, an expiry, a recheck), which the server
//     fires from the producer's timer stream back onto the event's name;
//   - an event of a checkout whose ID is lower-case letters alone, which the old form of
//     another event could not be told from (checkout.cart.failed is cart's failure, not the
//     end of checkout "cart").
//
// Readers take both forms (ParseSubject); a consumer filters on both (Filters).

// SubjectIDSince is the version whose events are published on their checkout's subject.
const SubjectIDSince = 3

// OnCheckoutSubject is the subject of an event of type typ of checkoutID written at version
// v.
func OnCheckoutSubject(typ Subject, checkoutID string, v int) string {
	if v < SubjectIDSince || !onCheckoutSubjects(typ) || !namesCheckout(checkoutID) {
		return string(typ)
	}
	return "checkout." + checkoutID + "." + strings.TrimPrefix(string(typ), "checkout.")
}

// onCheckoutSubjects reports whether events of typ go on their checkout's subject from
// version 3: every event of a checkout but the public request and the scheduled ones.
func onCheckoutSubjects(typ Subject) bool {
	return typ != Requested && strings.HasPrefix(string(typ), "checkout.") && !origins()[typ].scheduled
}

// Subject is the subject e is published on (a scheduled event waits on ScheduleSubject and
// is fired onto FireSubject instead).
func (e Envelope) Subject() string { return OnCheckoutSubject(e.Type, e.CheckoutID, e.SchemaVersion) }

// namesCheckout reports whether id can be a subject's checkout token: a valid checkout ID
// that is not lower-case letters alone, as the words of event names are.
func namesCheckout(id string) bool {
	if len(id) == 0 || len(id) > 64 {
		return false
	}
	lower := true
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case 'a' <= c && c <= 'z':
		case 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-':
			lower = false
		default:
			return false
		}
	}
	return !lower
}

// ParseSubject reads a subject of either form: the event's type, and the checkout it names
// ("" for the event's own name).
func ParseSubject(subject string) (typ Subject, checkoutID string) {
	name, checkoutID, ok := SplitSubject(subject)
	if !ok || checkoutID == "" {
		return Subject(subject), ""
	}
	return Subject("checkout." + name), checkoutID
}

// SplitSubject is ParseSubject in parts of subject itself, allocating nothing: the event's
// name (its type without "checkout.") and the checkout the subject names; ok is false for a
// subject outside checkout.>.
func SplitSubject(subject string) (name, checkoutID string, ok bool) {
	rest, ok := strings.CutPrefix(subject, "checkout.")
	if !ok {
		return "", "", false
	}
	if id, name, found := strings.Cut(rest, "."); found && namesCheckout(id) {
		return name, id, true
	}
	return rest, "", true
}

// TypeOf is the type of the events on subject, in either form.
func TypeOf(subject string) Subject {
	typ, _ := ParseSubject(subject)
	return typ
}

// Filters are the subjects a consumer of typ filters on: the event's name, and from version
// 3 the same on every checkout's subject (FilterExistsAt). The second matches the old form of
// no event but one kind: checkout.*.failed matches every step's old checkout.<step>.failed,
// which its consumer, finding no route for the step's failure on its own name, passes over.
func Filters(typ Subject) []string {
	if !onCheckoutSubjects(typ) {
		return []string{string(typ)}
	}
	return []string{string(typ), checkoutFilter(typ)}
}

func checkoutFilter(typ Subject) string {
	return "checkout.*." + strings.TrimPrefix(string(typ), "checkout.")
}

// FilterExistsAt reports whether version v of the contract has what filter (one of Filters)
// matches: a writer at v may publish there.
func FilterExistsAt(filter string, v int) bool {
	if rest, ok := strings.CutPrefix(filter, "checkout.*."); ok {
		return v >= SubjectIDSince && ExistsAt(Subject("checkout."+rest), v)
	}
	return ExistsAt(Subject(filter), v)
}

// onSubject reports whether e may come on subject: its name, or its checkout's subject.
func (e Envelope) onSubject(subject string) bool {
	return subject == string(e.Type) || subject == OnCheckoutSubject(e.Type, e.CheckoutID, SubjectIDSince)
}

// subjectMismatch explains an event that came on another subject than its own.
func (e Envelope) subjectMismatch(subject string) error {
	return fmt.Errorf("%w: type %q of checkout %q published on subject %q", ErrMalformed, e.Type, e.CheckoutID, subject)
}

// FiltersOf are the filters of a consumer of the events of types (Filters of each), sorted.
func FiltersOf(types []string) []string {
	var out []string
	for _, t := range types {
		for _, f := range Filters(Subject(t)) {
			if !slices.Contains(out, f) {
				out = append(out, f)
			}
		}
	}
	slices.Sort(out)
	return out
}
