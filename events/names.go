package events

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

	OrderCreated Subject = "checkout.order.created"
	OrderFailed  Subject = "checkout.order.failed"

	ConfirmationSent   Subject = "checkout.confirmation.sent"
	ConfirmationFailed Subject = "checkout.confirmation.failed"

	LabelCreated Subject = "checkout.shipping.labeled"
	LabelFailed  Subject = "checkout.shipping.failed"

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
)

// Terminal events, published by the coordinator only, exactly one per checkout.
const (
	Completed Subject = "checkout.completed"
	Failed    Subject = "checkout.failed"
)

// After a terminal event, the services that hold state for the checkout settle it.
const (
	InventoryCommitted Subject = "checkout.inventory.committed" // reservation became a sale
)

// Rejected announces an input a service could not accept (malformed, forged, unroutable).
// The message is terminated, never redelivered.
const Rejected Subject = "checkout.rejected"

// WarehousePick carries pick requests on their own work-queue stream.
const WarehousePick Subject = "warehouse.pick"

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

// Services lists them all, the coordinator last.
var Services = []string{ServiceCatalog, ServiceInventory, ServiceFraud, ServicePayments, ServiceOrders,
	ServiceNotifications, ServiceShipping, ServiceCoordinator}

// Streams, buckets and the request-reply endpoints.
const (
	// StreamCheckout holds every checkout event (checkout.>).
	StreamCheckout = "CHECKOUT"
	// StreamWarehouse is the warehouse's work queue of pick requests (warehouse.>).
	StreamWarehouse = "WAREHOUSE"
	// BucketCheckouts is the coordinator's KV bucket: one key per checkout.
	BucketCheckouts = "checkouts"

	CheckoutSubjects  = "checkout.>"
	WarehouseSubjects = "warehouse.>"

	CartsCreate    Subject = "carts.create"
	CartsGet       Subject = "carts.get"
	CatalogList    Subject = "catalog.list"
	InventoryStock Subject = "inventory.stock"
)

// SchemaVersion is the envelope version this code writes and accepts.
const SchemaVersion = 1
