package loadgen

import (
	"fmt"
	"io"
	"slices"
	"text/tabwriter"

	"github.com/jetcheckout/jetcheckout/events"
)

// Report is one invocation's figures: the machine, the ceiling, and each measured run.
type Report struct {
	Machine Machine `json:"machine"`
	Target  string  `json:"target"` // "in-process" or the NATS URL
	// StripeLatencyMS is how late the in-process Stripe emulator answered every call (0:
	// at once, as loopback does; real Stripe takes hundreds of milliseconds).
	StripeLatencyMS float64     `json:"stripe_latency_ms,omitempty"`
	Ceiling         Ceiling     `json:"ceiling"`
	Runs            []RunResult `json:"runs"`
	// Sweep, when one ran, is the highest offered rate that held (see SweepResult).
	Sweep *SweepResult `json:"sweep,omitempty"`
}

// Machine names where the figures come from.
type Machine struct {
	CPUs       int    `json:"cpus"`
	GoVersion  string `json:"go"`
	NATSServer string `json:"nats_server"`
	OS         string `json:"os"`
}

// LoadDesc is the load a run offered.
type LoadDesc struct {
	Rate            float64           `json:"rate,omitempty"`
	InFlight        int               `json:"in_flight,omitempty"`
	DurationSeconds float64           `json:"duration_s"`
	Items           []events.CartItem `json:"items"`
}

// RunResult is one measured run.
type RunResult struct {
	Load           LoadDesc `json:"load"`
	CartsCreated   int      `json:"carts_created"`
	CartsPerSecond float64  `json:"carts_per_s"`
	Published      uint64   `json:"published"`
	PublishErrors  uint64   `json:"publish_errors"`
	Completed      uint64   `json:"completed"`
	Failed         uint64   `json:"failed"`
	Unfinished     int      `json:"unfinished"` // still open when the drain ended
	// Failures counts the failed checkouts by "step: code".
	Failures map[string]uint64 `json:"failures,omitempty"`
	Stray    uint64            `json:"stray_terminal_events"`
	// OfferedSeconds is how long requests went out; Seconds runs on to the last terminal
	// event, and the rates below divide by it.
	OfferedSeconds     float64                     `json:"offered_s"`
	Seconds            float64                     `json:"seconds"`
	CompletedPerSecond float64                     `json:"completed_per_s"`
	FailedPerSecond    float64                     `json:"failed_per_s"`
	EndToEnd           Summary                     `json:"end_to_end"`
	Steps              map[events.StepName]Summary `json:"steps"`
	Resources          Resources                   `json:"resources"`
	// Memory is sampled through the run (about 20 times): flat, or growing with checkouts.
	Memory    []MemorySample       `json:"memory"`
	JetStream map[string]StreamUse `json:"jetstream"`
	// Ratios put the run against the ceiling measured in the same invocation.
	Ratios Ratios `json:"ratios"`
}

// Ratios compare a run with the raw ceiling: checkouts/s per ceiling message/s, and the
// run's stream writes/s per ceiling message/s (how much of the disk's rate it used).
type Ratios struct {
	CheckoutsPerSync16 float64 `json:"checkouts_per_sync16"`
	CheckoutsPerAsync  float64 `json:"checkouts_per_async"`
	WritesPerAsync     float64 `json:"writes_per_async"`
}

func (r *RunResult) ratios(c Ceiling) {
	writes := r.JetStream["all"].PerCheckout * float64(r.Completed+r.Failed) / r.Seconds
	r.Ratios = Ratios{
		CheckoutsPerSync16: ratio(r.CompletedPerSecond, c.Sync16),
		CheckoutsPerAsync:  ratio(r.CompletedPerSecond, c.Async),
		WritesPerAsync:     ratio(writes, c.Async),
	}
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// Held reports whether a run sustained its offered rate within the latency bound: every
// request accepted, nothing failed or left open, at least 95% of the offered rate ended
// per second, and p99 under bound.
func (r RunResult) Held(p99BoundMS float64) bool {
	if r.PublishErrors > 0 || r.Failed > 0 || r.Unfinished > 0 || r.EndToEnd.P99 >= p99BoundMS {
		return false
	}
	return r.Load.Rate == 0 || r.CompletedPerSecond >= 0.95*r.Load.Rate
}

// WriteTable prints the report for people.
func (rep Report) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "machine: %d CPUs, %s, nats-server %s, %s; target %s\n", rep.Machine.CPUs, rep.Machine.GoVersion, rep.Machine.NATSServer, rep.Machine.OS, rep.Target)
	if rep.StripeLatencyMS > 0 {
		fmt.Fprintf(w, "stripe: every call answered %.0f ms late\n", rep.StripeLatencyMS)
	}
	if rep.Target != "in-process" {
		fmt.Fprintln(w, "cpu and memory below are the generator's own: the services and nats-server run elsewhere")
	}
	if c := rep.Ceiling; c.Seconds > 0 {
		c.writeTable(w)
	}
	for _, r := range rep.Runs {
		r.writeTable(w)
	}
	if s := rep.Sweep; s != nil {
		fmt.Fprintf(w, "sweep: highest rate held with p99 < %.0f ms: %.0f checkouts/s (tried %v)\n", s.P99BoundMS, s.BestRate, s.Tried)
	}
}

func (c Ceiling) writeTable(w io.Writer) {
	fmt.Fprintf(w, "raw JetStream ceiling (%d-byte msgs, file, R1, %gs each): sync 1 pub %.0f/s, sync 16 pubs %.0f/s, async %.0f/s, atomic batches of 100 %.0f/s\n\n",
		c.MsgBytes, c.Seconds, c.Sync1, c.Sync16, c.Async, c.Batch100)
	if len(c.BatchCurve) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(w, "atomic batches, each publisher sending its next batch after the last one's ack:")
		fmt.Fprintln(tw, "  publishers\tsize\tmsgs/s\tbatches/s\tmean ms per batch\t")
		for _, p := range c.BatchCurve {
			fmt.Fprintf(tw, "  %d\t%d\t%.0f\t%.0f\t%.2f\t\n", p.Publishers, p.Size, p.MsgsPerS, p.BatchesPerS, p.MeanMS)
		}
		tw.Flush()
		fmt.Fprintln(w)
	}
}

func (r RunResult) writeTable(w io.Writer) {
	load := fmt.Sprintf("%.0f/s offered", r.Load.Rate)
	if r.Load.InFlight > 0 {
		load = fmt.Sprintf("%d in flight", r.Load.InFlight)
	}
	fmt.Fprintf(w, "run: %s for %.0fs (%d carts made first at %.0f/s)\n", load, r.Load.DurationSeconds, r.CartsCreated, r.CartsPerSecond)
	fmt.Fprintf(w, "  published %d (errors %d), completed %d, failed %d, unfinished %d over %.1fs\n",
		r.Published, r.PublishErrors, r.Completed, r.Failed, r.Unfinished, r.Seconds)
	for why, n := range r.Failures {
		fmt.Fprintf(w, "  failed at %s: %d\n", why, n)
	}
	fmt.Fprintf(w, "  completed %.1f/s, failed %.1f/s", r.CompletedPerSecond, r.FailedPerSecond)
	if r.Ratios.CheckoutsPerAsync > 0 { // the ceiling was measured
		fmt.Fprintf(w, "; %.3f of sync-16 ceiling, %.3f of async; stream writes %.2f of async ceiling",
			r.Ratios.CheckoutsPerSync16, r.Ratios.CheckoutsPerAsync, r.Ratios.WritesPerAsync)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  cpu %.1fs (%.2f cores), peak RSS %.0f MB, heap %.0f MB\n",
		r.Resources.CPUSeconds, r.Resources.CPUCores, r.Resources.PeakRSSMB, r.Resources.HeapMB)
	if len(r.Memory) > 1 {
		fmt.Fprintln(w, "  memory (MB): t_s  RSS = anon + file  heap_in_use")
		for _, m := range r.Memory {
			fmt.Fprintf(w, "    %5.0f  %5.0f = %5.0f + %4.0f  %5.0f\n", m.Seconds, m.RSSMB, m.AnonMB, m.FileMB, m.HeapMB)
		}
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "  latency (ms)\tn\tp50\tp90\tp99\tmax\t")
	row := func(name string, s Summary) {
		fmt.Fprintf(tw, "  %s\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t\n", name, s.Count, s.P50, s.P90, s.P99, s.Max)
	}
	row("end to end", r.EndToEnd)
	for _, s := range events.Checkout.Steps {
		row(string(s.Name), r.Steps[s.Name])
	}
	tw.Flush()
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "  jetstream\tmessages\tper checkout\tbytes held per checkout\t")
	names := make([]string, 0, len(r.JetStream))
	for name := range r.JetStream {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		u := r.JetStream[name]
		fmt.Fprintf(tw, "  %s\t%d\t%.1f\t%.0f\t\n", name, u.Messages, u.PerCheckout, u.BytesPerCheckout)
	}
	tw.Flush()
	fmt.Fprintln(w)
}
