package httpapi

import (
	"fmt"
	"math"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
)

// The DAG drawing: each step a box in the column of its depth (the longest chain of
// dependencies before it), edges from each dependency. Laid out from events.Checkout, so
// a step added to the flow appears without touching the UI.
const (
	minNodeW, nodeH = 168, 52
	colGap          = 44
	rowGap          = 18
	pad             = 8
	// A name is drawn in 12.5 px monospace (app.css), about 0.6 em a glyph, textInset from
	// the box's left edge; a box is as wide as the longest name needs, so none overflows.
	glyphW    = 7.6
	textInset = 10
)

// dagNode is a step's box.
type dagNode struct {
	StepView
	X, Y     int
	Duration string
}

// dagEdge is a dependency, drawn as a curve from its right side to the dependent's left.
type dagEdge struct {
	Path  string
	State string // the dependency's state: an edge lights up once it is done
}

type dag struct {
	Width, Height int
	NodeW, NodeH  int
	Nodes         []dagNode
	Edges         []dagEdge
}

func layoutDAG(steps []StepView) dag {
	depth := map[events.StepName]int{}
	rows := map[int]int{}
	pos := map[events.StepName]dagNode{}
	nodeW := minNodeW
	for _, s := range steps {
		nodeW = max(nodeW, int(math.Ceil(float64(len(s.Name))*glyphW))+2*textInset)
	}
	d := dag{NodeW: nodeW, NodeH: nodeH}
	for _, s := range steps {
		for _, a := range s.After {
			depth[s.Name] = max(depth[s.Name], depth[a]+1)
		}
		col, row := depth[s.Name], rows[depth[s.Name]]
		rows[col]++
		n := dagNode{StepView: s, X: pad + col*(nodeW+colGap), Y: pad + row*(nodeH+rowGap), Duration: stepDuration(s)}
		pos[s.Name] = n
		d.Nodes = append(d.Nodes, n)
		d.Width = max(d.Width, n.X+nodeW+pad)
		d.Height = max(d.Height, n.Y+nodeH+pad)
	}
	for _, s := range steps {
		to := pos[s.Name]
		for _, a := range s.After {
			from := pos[a]
			x1, y1, x2, y2 := from.X+nodeW, from.Y+nodeH/2, to.X, to.Y+nodeH/2
			mid := (x1 + x2) / 2
			d.Edges = append(d.Edges, dagEdge{State: from.State,
				Path: fmt.Sprintf("M%d %d C%d %d, %d %d, %d %d", x1, y1, mid, y1, mid, y2, x2, y2)})
		}
	}
	return d
}

// stepDuration is how long a step ran, or has been running, for people.
func stepDuration(s StepView) string {
	if s.StartedAt.IsZero() {
		return ""
	}
	if s.EndedAt.IsZero() {
		return "since " + s.StartedAt.Format("15:04:05")
	}
	return humanDuration(s.EndedAt.Sub(s.StartedAt))
}

func humanDuration(d time.Duration) string {
	switch {
	case d < time.Millisecond:
		return "<1 ms"
	case d < time.Second:
		return fmt.Sprintf("%d ms", d.Milliseconds())
	case d < time.Minute:
		return fmt.Sprintf("%.1f s", d.Seconds())
	default:
		return d.Round(time.Second).String()
	}
}

// bar is one row of the waterfall: offsets and widths in percent of the checkout's span.
type bar struct {
	Label       string
	State       string
	Left, Width float64
	Duration    string
	Undo        bool // a compensation, drawn as such
}

// waterfall lays the steps (and their compensations) on the checkout's timeline.
func waterfall(c Checkout) []bar {
	start, end := c.CreatedAt, c.UpdatedAt
	if !c.Terminal() {
		end = later(end, time.Now())
	}
	span := end.Sub(start)
	if span <= 0 {
		span = time.Millisecond
	}
	pct := func(t time.Time) float64 { return 100 * float64(t.Sub(start)) / float64(span) }
	place := func(b bar, from, to time.Time) bar {
		if to.IsZero() {
			to = end
		}
		b.Left = min(max(pct(from), 0), 100)
		b.Width = max(min(pct(to), 100)-b.Left, 0.4)
		b.Duration = humanDuration(to.Sub(from))
		return b
	}
	var bars []bar
	for _, s := range c.Steps {
		if s.StartedAt.IsZero() {
			continue
		}
		state := s.State
		if state == StepCompensating || state == StepCompensated {
			state = StepDone // the step itself ran to its end; its undo has a bar of its own
		}
		bars = append(bars, place(bar{Label: string(s.Name), State: state}, s.StartedAt, s.EndedAt))
		if !s.CompensationStartedAt.IsZero() {
			bars = append(bars, place(bar{Label: "undo " + string(s.Name), State: s.State, Undo: true}, s.CompensationStartedAt, s.CompensationEndedAt))
		}
	}
	return bars
}
