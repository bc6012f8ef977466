package inventory

import (
	"fmt"
	"time"
)

// DefaultReservationTTL is how long a reservation holds its stock when nothing settles it.
const DefaultReservationTTL = time.Hour

// DefaultMaxHoldPerCustomer is how many units of one product a customer may hold in
// unfinished checkouts by default.
const DefaultMaxHoldPerCustomer = 10

// Config of the inventory service.
type Config struct {
	// ReservationTTL is how long a reservation holds its units when its checkout neither
	// completes nor releases it (a crash, a lost compensation): then it expires and the
	// units are available again. It must outlast the longest a healthy checkout can take
	// between its reservation and its end, waits for people included: a fraud review may
	// wait 30 minutes for an operator and 3-D Secure 10 minutes for the customer, so keep
	// it well above 40 minutes (the app refuses to start otherwise). It is also the longest
	// any checkout can keep its units from other customers. Default DefaultReservationTTL
	// (1h).
	ReservationTTL time.Duration
	// MaxHoldPerCustomer is how many units of one product a customer may hold in its
	// unfinished checkouts together, counted by email, by customer ID and by payment method
	// each: a reservation that would take any of them over it is refused
	// (hold_limit_exceeded), so that nobody can keep the last units from everyone else
	// through a run of checkouts left waiting. Default DefaultMaxHoldPerCustomer; negative
	// means no limit.
	MaxHoldPerCustomer int
}

func (c *Config) setDefaults() {
	if c.ReservationTTL == 0 {
		c.ReservationTTL = DefaultReservationTTL
	}
	if c.MaxHoldPerCustomer == 0 {
		c.MaxHoldPerCustomer = DefaultMaxHoldPerCustomer
	}
}

// Validate reports a setting the service cannot work with.
func (c Config) Validate() error {
	if c.ReservationTTL < 0 {
		return fmt.Errorf("inventory: ReservationTTL must be positive, got %s", c.ReservationTTL)
	}
	return nil
}
