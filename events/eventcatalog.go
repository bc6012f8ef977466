package events

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// EventDoc documents one subject: who publishes it, what it carries, who consumes it.
type EventDoc struct {
	Subject   Subject
	Payload   string
	Producer  string
	Consumers []string
	Meaning   string
	signer    string // whose key signs it (SignerOf)
}

// payloads names the payload type of every subject. Requested carries a bare
// CheckoutRequest; every other event an Envelope around its payload.
var payloads = map[Subject]any{
	Requested:             CheckoutRequest{},
	CartValidated:         Quote{},
	InventoryReserved:     Reservation{},
	FraudCleared:          RiskAssessment{},
	PaymentRequested:      Quote{},
	PaymentCaptured:       Payment{},
	OrderCreated:          Order{},
	ConfirmationSent:      EmailSent{},
	LabelCreated:          Shipment{},
	WarehouseNotified:     PickQueued{},
	InventoryRelease:      Compensation{},
	InventoryReleased:     Release{},
	PaymentRefund:         Compensation{},
	PaymentRefunded:       Refund{},
	Completed:             CheckoutCompleted{},
	Failed:                CheckoutFailed{},
	InventoryCommitted:    Sale{},
	Rejected:              RejectedInput{},
	FraudReviewPending:    Waiting{},
	PaymentActionPending:  Waiting{},
	FraudReviewDecided:    ReviewDecision{},
	Deadline:              DeadlineReached{},
	InventoryExpired:      Release{},
	Stuck:                 StuckWork{},
	FailureNoticeSent:     EmailSent{},
	OrderRequested:        Payment{},
	FulfilmentRequested:   Order{},
	ConfirmationRequested: Order{},
	LabelRequested:        Order{},
	OrderCancel:           Compensation{},
	OrderCancelled:        Cancellation{},
	PaymentRecheck:        Recheck{},
	RedriveRequested:      Redrive{},
	RedriveSettled:        RedriveOutcome{},
	DeadLetterRedriven:    DeadLetterRedrive{},
	InventoryExpire:       Expiry{},
	WarehousePick:         PickRequest{},
}

// PayloadOf returns the payload type name of a subject ("StepFailure" for every .failed).
func PayloadOf(s Subject) string {
	if p, ok := payloads[s]; ok {
		return reflect.TypeOf(p).Name()
	}
	if strings.HasSuffix(string(s), ".failed") {
		return "StepFailure"
	}
	return ""
}

// Settlers are the services that act on the terminal events.
var Settlers = map[Subject][]string{
	Completed: {ServiceCatalog, ServiceInventory},                   // the cart is checked out; the reservation becomes a sale
	Failed:    {ServiceCatalog, ServiceNotifications, ServiceFraud}, // the cart can be checked out again; the customer is told; a pending review is closed
}

// Catalog lists every event with its producer and consumers, derived from Flow.
func (f Flow) Catalog() []EventDoc {
	first := f.Steps[0]
	docs := []EventDoc{{Subject: Requested, Producer: "you (the client)", Consumers: []string{first.Service, ServiceCoordinator},
		Meaning: "start a checkout (a bare JSON object, no envelope)"}}
	coordinated := f.Coordinated()
	for _, s := range f.Steps {
		if slices.ContainsFunc(coordinated, func(c Step) bool { return c.Name == s.Name }) {
			docs = goAhead(docs, s)
		}
		var next []string
		for _, d := range f.Dependents(s.Name) {
			if d.Trigger == s.Done && !slices.Contains(next, d.Service) {
				next = append(next, d.Service)
			}
		}
		docs = append(docs,
			EventDoc{Subject: s.Done, Producer: s.Service, Consumers: append(next, ServiceCoordinator), Meaning: string(s.Name) + " succeeded"},
			EventDoc{Subject: s.Failed, Producer: s.Service, Consumers: []string{ServiceCoordinator}, Meaning: string(s.Name) + " failed, with a reason code"})
		if s.Compensate != "" {
			docs = append(docs,
				EventDoc{Subject: s.Compensate, Producer: ServiceCoordinator, Consumers: []string{s.Service}, Meaning: "undo " + string(s.Name)},
				EventDoc{Subject: s.Compensated, Producer: s.Service, Consumers: []string{ServiceCoordinator}, Meaning: string(s.Name) + " undone"})
		}
	}
	docs = append(docs,
		EventDoc{Subject: FraudReviewPending, Producer: ServiceFraud, Consumers: []string{ServiceCoordinator}, Meaning: "check_fraud waits for an operator's decision until `until`"},
		EventDoc{Subject: FraudReviewDecided, Producer: "an operator (`fraud.review` request)", Consumers: []string{ServiceFraud}, Meaning: "approve or deny a checkout held for review",
			signer: ServiceFraud}, // the service answering the request publishes it
		EventDoc{Subject: PaymentActionPending, Producer: ServicePayments, Consumers: []string{ServiceCoordinator}, Meaning: "process_payment waits for the customer to authenticate (3-D Secure) until `until`"},
		EventDoc{Subject: PaymentRecheck, Producer: ServicePayments + " (scheduled)", Consumers: []string{ServicePayments}, Meaning: "look at a PaymentIntent awaiting authentication again"},
		EventDoc{Subject: Deadline, Producer: ServiceCoordinator + " (scheduled)", Consumers: []string{ServiceCoordinator}, Meaning: "the checkout's timer: every step that has not answered by its deadline failed"},
		EventDoc{Subject: InventoryExpire, Producer: ServiceInventory + " (scheduled)", Consumers: []string{ServiceInventory}, Meaning: "release a reservation left neither committed nor released"},
		EventDoc{Subject: InventoryExpired, Producer: ServiceInventory, Consumers: []string{ServiceCoordinator}, Meaning: "a reservation expired and its stock is available again"},
		EventDoc{Subject: RedriveRequested, Producer: ServiceCoordinator, Consumers: []string{ServiceCoordinator},
			Meaning: "an operator re-drives a completed checkout's failed steps after its order, or tries a failed one again as a new checkout (`checkouts.redrive`): who, why, which steps or which new checkout"},
		EventDoc{Subject: RedriveSettled, Producer: ServiceCoordinator, Meaning: "the re-driven steps answered: the checkout's warnings and flag now"},
		EventDoc{Subject: DeadLetterRedriven, Producer: ServiceCoordinator,
			Meaning: "an operator published a dead letter again as it came (`deadletters.redrive`): who, why, which"},
		EventDoc{Subject: Completed, Producer: ServiceCoordinator, Consumers: Settlers[Completed], Meaning: "terminal: the order is placed and paid (with warnings, or flagged for attention)"},
		EventDoc{Subject: Failed, Producer: ServiceCoordinator, Consumers: Settlers[Failed], Meaning: "terminal: why, at which step, what was undone"},
		EventDoc{Subject: InventoryCommitted, Producer: ServiceInventory, Meaning: "the reservation of a completed checkout became a sale"},
		EventDoc{Subject: FailureNoticeSent, Producer: ServiceNotifications, Meaning: "the customer was told in plain words why the checkout failed"},
		EventDoc{Subject: Stuck, Producer: "any service", Meaning: "a compensation or settlement keeps failing; still retried; look at it"},
		EventDoc{Subject: Rejected, Producer: "any service", Meaning: "an input that can never be processed, and why (terminated; a copy is in DEADLETTER)"},
		EventDoc{Subject: WarehousePick, Producer: ServiceShipping, Consumers: []string{"the warehouse (work queue " + StreamWarehouse + ")"}, Meaning: "pick and pack an order"},
	)
	for i := range docs {
		docs[i].Payload = PayloadOf(docs[i].Subject)
		docs[i].signer = signerOf(docs[i])
	}
	return docs
}

// goAhead adds the coordinator's trigger of step s to docs, or s to the doc of a trigger it
// shares with an earlier step; and the step's legacy trigger.
func goAhead(docs []EventDoc, s Step) []EventDoc {
	if i := slices.IndexFunc(docs, func(d EventDoc) bool { return d.Subject == s.Trigger }); i >= 0 {
		docs[i].Consumers = append(docs[i].Consumers, s.Service)
		docs[i].Meaning += fmt.Sprintf("; %s may run", s.Name)
	} else {
		docs = append(docs, EventDoc{Subject: s.Trigger, Producer: ServiceCoordinator, Consumers: []string{s.Service},
			Meaning: fmt.Sprintf("%s succeeded and the checkout is not failing: %s may run", joinNames(s.After), s.Name)})
	}
	if s.LegacyTrigger != "" {
		docs = append(docs, EventDoc{Subject: s.LegacyTrigger, Producer: ServiceCoordinator, Consumers: []string{s.Service},
			Meaning: fmt.Sprintf("version 1's go-ahead of %s alone, in place of `%s`: still read; written by a coordinator held at version 1 (and again as recorded, for a checkout decided so)", s.Name, s.Trigger),
			signer:  ServiceCoordinator})
	}
	return docs
}

// ConsumedBy lists the subjects the catalog says service consumes, sorted: the filter of its
// durable consumer.
func (f Flow) ConsumedBy(service string) []string {
	var subjects []string
	for _, d := range f.Catalog() {
		if slices.Contains(d.Consumers, service) {
			subjects = append(subjects, string(d.Subject))
		}
	}
	slices.Sort(subjects)
	return subjects
}

func joinNames(names []StepName) string {
	s := make([]string, len(names))
	for i, n := range names {
		s[i] = string(n)
	}
	return strings.Join(s, " and ")
}

// Markdown renders the catalog as the README's event table.
func (f Flow) Markdown() string {
	var b strings.Builder
	b.WriteString("| subject | payload | producer | consumers | meaning |\n|---|---|---|---|---|\n")
	for _, d := range f.Catalog() {
		consumers := strings.Join(d.Consumers, ", ")
		if consumers == "" {
			consumers = "—"
		}
		fmt.Fprintf(&b, "| `%s` | %s | %s | %s | %s |\n", d.Subject, d.Payload, d.Producer, consumers, d.Meaning)
	}
	return b.String()
}
