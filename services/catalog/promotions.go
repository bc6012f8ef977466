package catalog

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/money"
	"github.com/shopspring/decimal"
)

// Promotion is a discount the shop applies by itself to every cart it fits
// (deploy/demo/promotions.json): a bundle (3 for 2) or volume prices (10% off 4 or more), on
// the products of its Scope, between its dates.
type Promotion struct {
	ID          string `json:"id"`
	Description string `json:"description"`
	Scope
	// Exactly one of Bundle and Tiers is set.
	Bundle     *Bundle   `json:"bundle,omitempty"`
	Tiers      []Tier    `json:"tiers,omitempty"`
	ValidFrom  time.Time `json:"valid_from,omitzero"`
	ValidUntil time.Time `json:"valid_until,omitzero"`
}

// Bundle: of every Buy units in the promotion's scope the customer pays for Pay. The units
// are taken from the dearest down, Buy at a time, and the cheapest Buy−Pay of each group are
// free: a bundle never gives away a dearer unit than one paid for in its group.
type Bundle struct {
	Buy int `json:"buy"`
	Pay int `json:"pay"`
}

// Tier is a volume price: PercentOff off every unit in scope once the cart holds at least
// MinQuantity of them. The highest tier reached applies.
type Tier struct {
	MinQuantity int             `json:"min_quantity"`
	PercentOff  decimal.Decimal `json:"percent_off"`
}

// Promotions are the shop's promotions, in the order they apply (the file's).
type Promotions []Promotion

// LoadPromotions reads a JSON array of promotions and checks each, naming the first that
// cannot work and why.
func LoadPromotions(r io.Reader) (Promotions, error) {
	var list Promotions
	if err := decodeFile(r, &list); err != nil {
		return nil, fmt.Errorf("promotions: %w", err)
	}
	seen := map[string]bool{}
	for i, p := range list {
		if err := p.validate(); err != nil {
			return nil, fmt.Errorf("promotions: promotion %d (%q): %w", i, p.ID, err)
		}
		key := strings.ToUpper(p.ID)
		if seen[key] {
			return nil, fmt.Errorf("promotions: promotion %q is listed twice (IDs are case-insensitive)", p.ID)
		}
		seen[key] = true
	}
	return list, nil
}

func (p Promotion) validate() error {
	switch {
	case !events.ValidCouponCode(p.ID):
		return fmt.Errorf("id must be 1 to 32 letters, digits, '-' or '_'")
	case (p.Bundle == nil) == (len(p.Tiers) == 0):
		return fmt.Errorf("set exactly one of bundle and tiers")
	case p.Bundle != nil && (p.Bundle.Buy < 2 || p.Bundle.Pay < 1 || p.Bundle.Pay >= p.Bundle.Buy):
		return fmt.Errorf("bundle buy %d pay %d: buy at least 2, pay at least 1 and fewer than buy", p.Bundle.Buy, p.Bundle.Pay)
	case !p.ValidFrom.IsZero() && !p.ValidUntil.IsZero() && !p.ValidUntil.After(p.ValidFrom):
		return fmt.Errorf("valid_until %s is not after valid_from %s", p.ValidUntil.Format(time.RFC3339), p.ValidFrom.Format(time.RFC3339))
	}
	for i, t := range p.Tiers {
		switch {
		case t.MinQuantity < 1:
			return fmt.Errorf("tier %d: min_quantity %d must be at least 1", i, t.MinQuantity)
		case i > 0 && t.MinQuantity <= p.Tiers[i-1].MinQuantity:
			return fmt.Errorf("tier %d: min_quantity %d must be above the previous tier's %d", i, t.MinQuantity, p.Tiers[i-1].MinQuantity)
		case !t.PercentOff.IsPositive() || t.PercentOff.GreaterThan(decimal.NewFromInt(100)):
			return fmt.Errorf("tier %d: percent_off %s must be above 0 and at most 100", i, t.PercentOff)
		}
	}
	return nil
}

// Resolve checks every promotion's scope against the catalog and turns its categories into
// the products they hold.
func (ps Promotions) Resolve(products []SeedProduct) error {
	for i := range ps {
		if err := ps[i].Scope.resolve(products); err != nil {
			return fmt.Errorf("promotions: promotion %q: %w", ps[i].ID, err)
		}
	}
	return nil
}

// apply takes the promotions in their order off lines (each with its Total) priced in
// currency, for a checkout requested at: the discounts, and what is left of each line after
// them. A line takes part in one promotion at most, the first that uses it (a bundle uses the
// lines of the units it groups, paid or free; a volume price every line it covers once a
// tier is reached): promotions never stack, and a coupon then applies to what is left.
func (ps Promotions) apply(lines []events.Line, currency string, at time.Time) ([]events.Discount, []decimal.Decimal, error) {
	left := make([]decimal.Decimal, len(lines))
	for i, l := range lines {
		left[i] = l.Total
	}
	taken := make([]bool, len(lines))
	var discounts []events.Discount
	for _, p := range ps {
		if !inWindow(p.ValidFrom, p.ValidUntil, at) {
			continue
		}
		var in []int // the lines it may apply to
		for i, l := range lines {
			if !taken[i] && p.covers(l.ProductID) {
				in = append(in, i)
			}
		}
		off, err := p.takeOff(lines, in, currency)
		if err != nil {
			return nil, nil, err
		}
		total := decimal.Zero
		for i, amount := range off {
			left[i], taken[i], total = left[i].Sub(amount), true, total.Add(amount)
		}
		if total.IsPositive() {
			discounts = append(discounts, events.Discount{Code: strings.ToUpper(p.ID), Description: p.describe(), Amount: total, Automatic: true})
		}
	}
	return discounts, left, nil
}

// takeOff is what the promotion takes off each of the lines in (by index) that it uses,
// zero for a line used but not discounted; nil when it uses none.
func (p Promotion) takeOff(lines []events.Line, in []int, currency string) (map[int]decimal.Decimal, error) {
	if p.Bundle != nil {
		return p.Bundle.takeOff(lines, in), nil
	}
	units := 0
	for _, i := range in {
		units += lines[i].Quantity
	}
	var tier *Tier
	for j := range p.Tiers {
		if units >= p.Tiers[j].MinQuantity {
			tier = &p.Tiers[j]
		}
	}
	if tier == nil {
		return nil, nil
	}
	// Each line's share rounded on its own, so that a coupon after it sees exact amounts.
	off := map[int]decimal.Decimal{}
	for _, i := range in {
		amount, err := money.Round(lines[i].Total.Mul(tier.PercentOff).Div(decimal.NewFromInt(100)), currency)
		if err != nil {
			return nil, fmt.Errorf("promotion %s: %w", p.ID, err)
		}
		off[i] = amount
	}
	return off, nil
}

// takeOff gives the cheapest units of each group of Buy free, the units taken from the
// dearest down (a tie in the lines' order); the lines of the paid units in a group are used
// too, with nothing off.
func (b Bundle) takeOff(lines []events.Line, in []int) map[int]decimal.Decimal {
	type unit struct {
		line  int
		price decimal.Decimal
	}
	var units []unit
	for _, i := range in {
		for range lines[i].Quantity {
			units = append(units, unit{i, lines[i].UnitPrice})
		}
	}
	slices.SortStableFunc(units, func(a, b unit) int { return b.price.Cmp(a.price) })
	off := map[int]decimal.Decimal{}
	for g := 0; g+b.Buy <= len(units); g += b.Buy {
		for i, u := range units[g : g+b.Buy] {
			amount := off[u.line] // a paid unit's line is used, with nothing off
			if i >= b.Pay {
				amount = amount.Add(u.price)
			}
			off[u.line] = amount
		}
	}
	return off
}

// describe says what the promotion is, for the quote, the run page and the email.
func (p Promotion) describe() string {
	if p.Description != "" {
		return p.Description
	}
	var what string
	if p.Bundle != nil {
		what = fmt.Sprintf("%d for %d", p.Bundle.Buy, p.Bundle.Pay)
	} else {
		var tiers []string
		for _, t := range p.Tiers {
			tiers = append(tiers, fmt.Sprintf("%s%% off %d or more", t.PercentOff, t.MinQuantity))
		}
		what = strings.Join(tiers, ", ")
	}
	if scope := p.Scope.describe(); scope != "" {
		what += " on " + scope
	}
	return what
}

// inWindow reports whether at is within [from, until); a zero bound is no bound.
func inWindow(from, until, at time.Time) bool {
	return (from.IsZero() || !at.Before(from)) && (until.IsZero() || at.Before(until))
}

// Scope is what a pricing rule applies to: the products it lists and every product of the
// categories it lists, or every product when it lists neither. Resolve turns its categories
// into products once, at start, against the catalog, and refuses a name the catalog does not
// have: a typo would make the rule apply to nothing.
type Scope struct {
	Products   []string `json:"products,omitempty"`
	Categories []string `json:"categories,omitempty"`
	covered    map[string]bool
}

func (s *Scope) resolve(products []SeedProduct) error {
	if s.everything() {
		return nil
	}
	s.covered = map[string]bool{}
	for _, id := range s.Products {
		if !slices.ContainsFunc(products, func(p SeedProduct) bool { return p.ID == id }) {
			return fmt.Errorf("product %q is not in the catalog", id)
		}
		s.covered[id] = true
	}
	for _, c := range s.Categories {
		n := 0
		for _, p := range products {
			if p.Category == c {
				s.covered[p.ID] = true
				n++
			}
		}
		if n == 0 {
			return fmt.Errorf("category %q has no product in the catalog", c)
		}
	}
	return nil
}

// everything reports whether the scope lists nothing, and so covers every product.
func (s Scope) everything() bool { return len(s.Products) == 0 && len(s.Categories) == 0 }

// resolved reports whether the scope can say what it covers: it lists no category, or
// Resolve ran.
func (s Scope) resolved() bool { return len(s.Categories) == 0 || s.covered != nil }

// covers reports whether the rule applies to product id. Before Resolve, only its listed
// products are known.
func (s Scope) covers(id string) bool {
	if s.covered != nil {
		return s.covered[id]
	}
	return s.everything() || slices.Contains(s.Products, id)
}

// describe names what the scope lists ("" for every product).
func (s Scope) describe() string {
	return strings.Join(append(slices.Clone(s.Products), s.Categories...), ", ")
}
