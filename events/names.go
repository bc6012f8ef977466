package events

import "time"

// Subject is a NATS subject. An event's Type is the subject it is published on.
type Subject string

// The public input. Users publish a CheckoutRequest here; it is not wrapped in an Envelope.
const Requested Subject = "checkout.requested"

// Step outcomes. Every step reports success on its own subject and failure on a ".failed"
// subject, so `nats sub 'checkout.*.failed'` shows every step failure.
const (
	CartValidated Subject = "checkout.cart.validated"
	CartFailed    Subject = "checkout.cart.failed"

	InventoryReserved Subject = "checkout.inventory.reserved"
	InventoryFailed   Subject = "checkout.inventory.failed"

	FraudCleared Subject = "checkout.fraud.cleared"
	FraudFailed  Subject = "checkout.fraud.failed"

	PaymentRequested Subject = "checkout.payment.requested" // published by the coordinator's join
	PaymentCaptured  Subject = "checkout.payment.captured"
	PaymentFailed    Subject = "checkout.payment.failed"

	OrderRequested Subject = "checkout.order.requested" // published by the coordinator: the pivot
	OrderCreated   Subject = "checkout.order.created"
	OrderFailed    Subject = "checkout.order.failed"

	// FulfilmentRequested is the coordinator's go-ahead for every step after the order: the
	// order stands. Schema version 1 wrote one go-ahead per step instead, with the same
	// payload: ConfirmationRequested and LabelRequested (Step.LegacyTrigger).
	FulfilmentRequested Subject = "checkout.fulfilment.requested"

	ConfirmationRequested Subject = "checkout.confirmation.requested" // version 1's go-ahead of the confirmation
	ConfirmationSent      Subject = "checkout.confirmation.sent"
	ConfirmationFailed    Subject = "checkout.confirmation.failed"

	LabelRequested Subject = "checkout.shipping.requested" // version 1's go-ahead of the label
	LabelCreated   Subject = "checkout.shipping.labeled"
	LabelFailed    Subject = "checkout.shipping.failed"

	WarehouseNotified Subject = "checkout.warehouse.notified"
	WarehouseFailed   Subject = "checkout.warehouse.failed"
)

// Compensations: commands from the coordinator and their confirmations from the service
// that owns the step being undone.
const (
	InventoryRelease  Subject = "checkout.inventory.release"
	InventoryReleased Subject = "checkout.inventory.released"
	PaymentRefund     Subject = "checkout.payment.refund"
	PaymentRefunded   Subject = "checkout.payment.refunded"
	OrderCancel       Subject = "checkout.order.cancel"
	OrderCancelled    Subject = "checkout.order.cancelled"
)

// Waiting: a step that waits for a person says so, and until when; the coordinator moves
// the step's deadline accordingly.
const (
	FraudReviewPending   Subject = "checkout.fraud.review_pending"    // an operator must approve or deny
	FraudReviewDecided   Subject = "checkout.fraud.review_decided"    // the operator's decision
	PaymentActionPending Subject = "checkout.payment.action_required" // the customer must authenticate (3-D Secure)
	PaymentRecheck       Subject = "checkout.payment.recheck"         // scheduled: look at the PaymentIntent again
)

// Deadline is published by the server at a time the coordinator scheduled: a step that has
// not answered by then has failed. Scheduled events wait in their producer's timer stream
// (timers.go).
const Deadline Subject = "checkout.deadline"

// LegacySchedules is where scheduled events waited inside CHECKOUT before they moved to timer
// streams: a CHECKOUT migrated from then keeps the ones pending at the migration as inert
// messages (their timers were made again in the timer streams), which readers skip.
const LegacySchedules Subject = "checkout.scheduled"

// Reservations that are neither committed nor released expire.
const (
	InventoryExpire  Subject = "checkout.inventory.expire"  // scheduled by inventory when it reserves
	InventoryExpired Subject = "checkout.inventory.expired" // the reservation was released by expiry
)

// Stuck announces a compensation or settlement that keeps failing: it is still retried,
// and an operator should look.
const Stuck Subject = "checkout.stuck"

// Re-drive: an operator runs again the steps that failed after a checkout's order stood (a
// confirmation email, a label, a warehouse notice: the order is paid, so the checkout
// completed with a warning or flagged), once their cause is fixed. The coordinator publishes
// the request (who, why, which steps, the attempt) when asked on CheckoutsRedrive, runs the
// steps again, and says how it ended. The re-run's events carry the attempt in their IDs
// (RedriveSuffix).
const (
	RedriveRequested Subject = "checkout.redrive.requested"
	RedriveSettled   Subject = "checkout.redrive.settled"
)

// DeadLetterRedriven records, in the checkout's history, that an operator published a dead
// letter again as it came (who, why, which), once its cause was fixed (DeadLettersRedrive).
const DeadLetterRedriven Subject = "checkout.deadletter.redriven"

// Terminal events, published by the coordinator only, exactly one per checkout.
const (
	Completed Subject = "checkout.completed"
	Failed    Subject = "checkout.failed"
)

// After a terminal event, the services that hold state for the checkout settle it.
const (
	InventoryCommitted Subject = "checkout.inventory.committed" // reservation became a sale
	FailureNoticeSent  Subject = "checkout.notice.sent"         // the customer was told why it failed
)

// Rejected announces an input a service could not accept (malformed, forged, unroutable).
// The message is terminated, never redelivered.
const Rejected Subject = "checkout.rejected"

// WarehousePick carries pick requests on their own work-queue stream.
const WarehousePick Subject = "warehouse.pick"

// DeadLetterSubject is where a service's given-up messages go.
func DeadLetterSubject(service string) string { return "deadletter." + service }

// Headers of a dead letter: where it came from and why it was given up.
const (
	HeaderDeadSubject  = "Jetcheckout-Subject"
	HeaderDeadSequence = "Jetcheckout-Stream-Sequence"
	HeaderDeadReason   = "Jetcheckout-Reason"
	HeaderDeadAttempts = "Jetcheckout-Attempts"
	// HeaderDeadGivenUp names the step whose trigger this was: its failure was recorded as
	// the step's outcome, so the letter itself is not re-driven (its checkout is).
	HeaderDeadGivenUp = "Jetcheckout-Given-Up"
	// HeaderRedriveOf marks a re-driven dead letter's copy: "<service>:<stream sequence>" of
	// the letter. The copy is the same event (the same ID): a reader that counts messages
	// rather than event IDs tells it apart by this header.
	HeaderRedriveOf = "Jetcheckout-Redrive-Of"
)

// Services: each runs one durable consumer of that name on the CHECKOUT stream, and keeps
// its state in a bbolt file of that name.
const (
	ServiceCatalog       = "catalog"
	ServiceInventory     = "inventory"
	ServiceFraud         = "fraud"
	ServicePayments      = "payments"
	ServiceOrders        = "orders"
	ServiceNotifications = "notifications"
	ServiceShipping      = "shipping"
	ServiceCoordinator   = "coordinator"
)

// ServiceSubscriptions starts the periods of subscriptions as checkouts: no step of the
// flow, it keeps its state in BucketSubscriptions (services/subscriptions).
const ServiceSubscriptions = "subscriptions"

// Services lists them all, the coordinator last.
var Services = []string{ServiceCatalog, ServiceInventory, ServiceFraud, ServicePayments, ServiceOrders,
	ServiceNotifications, ServiceShipping, ServiceCoordinator}

// Rebuildable are the services whose bbolt file is a view of the events they consume
// alone: one lost (a deleted data directory, a new machine) is rebuilt from the CHECKOUT
// stream when the service starts, shortened by a snapshot in its ViewsBucket. The catalog's
// too: its carts are in BucketCarts, its products seeded from a file, and what it made of a
// cart follows from the events (validation's outcome taken from the stream). And the
// inventory's: a rebuild seeds the stock from the STOCK stream (StockSeed) and takes each
// reservation and sale as the stream recorded it, since whether one got the last unit
// depended on which concurrent checkout committed first (runner.Route.Replay). Payments and
// notifications record what Stripe and SMTP answered in the events that announce it, and a
// rebuild takes their records from there instead of calling again.
//
// A service not in it starts on a lost file as before, with an error in the log (the
// runner's "VIEW LOST").
var Rebuildable = map[string]bool{ServiceCatalog: true, ServiceInventory: true, ServiceOrders: true, ServiceShipping: true, ServiceFraud: true,
	ServiceNotifications: true, ServicePayments: true}

// ViewsBucket is the Object Store bucket of a rebuildable service's view snapshots: one
// object, named after the service, replaced at each snapshot. One bucket per service, not
// one shared: a put purges the bucket's stream and a get reads it through a consumer, which
// NATS grants per stream, so in a shared bucket each service could read and purge the others'.
func ViewsBucket(service string) string { return "views_" + service }

// CartSubject is the subject of cart id in StreamCarts (its key in BucketCarts).
func CartSubject(id string) string { return "$KV." + BucketCarts + "." + id }

// CheckoutRetention is how long the CHECKOUT stream keeps an event, and so how long
// everything that recognises a copy of one keeps its memory of it (the services' handled
// records, the coordinator's key of an ended checkout, the API's idempotency keys): a copy
// can only come from the stream, or be published again while the original is in it, so it
// always finds the memory that drops it, even if a consumer reads the stream from its start.
const CheckoutRetention = 30 * 24 * time.Hour

// Streams, buckets and the request-reply endpoints.
const (
	// StreamCheckout holds every checkout event (checkout.>).
	StreamCheckout = "CHECKOUT"
	// StreamWarehouse is the warehouse's work queue of pick requests (warehouse.>).
	StreamWarehouse = "WAREHOUSE"
	// StreamDeadLetter keeps every message a service gave up on, with the reason.
	StreamDeadLetter = "DEADLETTER"
	// BucketCheckouts is the coordinator's KV bucket: one key per checkout.
	BucketCheckouts = "checkouts"
	// BucketCarts is the catalog's KV bucket: one key per cart, as carts.create made it and
	// signed by the catalog, written once. Its stream, StreamCarts, is configured as STOCK is
	// (one message per subject ever, no roll-up, delete or purge), so the server, not the
	// catalog's code, keeps a cart as written.
	BucketCarts = "carts"
	// StreamCarts is BucketCarts' stream; CartsSubjects its subjects, CartSubject(id) each.
	StreamCarts   = "KV_" + BucketCarts
	CartsSubjects = "$KV." + BucketCarts + ".>"
	// StreamStock keeps the inventory's facts that are not checkout events, for as long as
	// the shop runs (no max age, unlike CHECKOUT): the initial stock, on StockSeed, which the
	// stream takes once ever (one message per subject, a second one refused).
	StreamStock = "STOCK"
	// LegacyBucketViews is the Object Store bucket the rebuildable services shared for their
	// snapshots before each had its own (ViewsBucket): the setup role deletes it.
	LegacyBucketViews = "views"

	CheckoutSubjects   = "checkout.>"
	WarehouseSubjects  = "warehouse.>"
	DeadLetterSubjects = "deadletter.>"
	StockSubjects      = "stock.>"
	// StockSeed is the subject of the initial stock the inventory recorded at its first start.
	StockSeed = "stock.seed"

	CartsCreate    Subject = "carts.create"
	CartsGet       Subject = "carts.get"
	CatalogList    Subject = "catalog.list"
	InventoryStock Subject = "inventory.stock"
	// FraudReviews lists the checkouts held for a fraud review; FraudReview takes an
	// operator's decision on one.
	FraudReviews Subject = "fraud.reviews"
	FraudReview  Subject = "fraud.review"
	// CheckoutsRedrive asks the coordinator to re-drive a checkout (RedriveRequest).
	CheckoutsRedrive Subject = "checkouts.redrive"
	// DeadLettersRedrive asks the coordinator to publish a dead letter again
	// (DeadLetterRedriveRequest).
	DeadLettersRedrive Subject = "deadletters.redrive"
	// CheckoutsStepActive asks the coordinator whether a checkout's step is running or
	// waiting (StepActiveRequest → StepActiveReply): what a step's service asks before work
	// it must do only when the coordinator asked for it (payments, before it charges).
	CheckoutsStepActive Subject = "checkouts.step.active"
)
