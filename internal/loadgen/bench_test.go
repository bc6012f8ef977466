package loadgen

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/jetcheckout/jetcheckout/events"
	"github.com/jetcheckout/jetcheckout/internal/natstest"
)

// A short run against the whole system in-process: every request offered ends completed,
// each is timed end to end and at every step, and the streams' writes are counted. No
// timing is asserted: the figures depend on the machine.
func TestARunEndsEveryCheckoutItOffers(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the whole system")
	}
	rep, err := Run(context.Background(), Options{
		DataDir: t.TempDir(), Stock: 1000,
		Load: Load{Rate: 20, Duration: time.Second, Drain: 30 * time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Runs) != 1 || rep.Machine.NATSServer == "" {
		t.Fatalf("report %+v: want one run and the server's version", rep)
	}
	r := rep.Runs[0]
	if r.Published != 20 || r.Completed != r.Published || r.Failed != 0 || r.Unfinished != 0 || r.PublishErrors != 0 {
		t.Fatalf("published %d, completed %d, failed %d (%v), unfinished %d, publish errors %d: want all 20 completed",
			r.Published, r.Completed, r.Failed, r.Failures, r.Unfinished, r.PublishErrors)
	}
	if r.EndToEnd.Count != 20 || r.EndToEnd.P50 <= 0 || r.EndToEnd.Max < r.EndToEnd.P99 {
		t.Errorf("end to end %+v", r.EndToEnd)
	}
	for _, s := range events.Checkout.Steps {
		if r.Steps[s.Name].Count != 20 {
			t.Errorf("step %s timed %d times, want 20", s.Name, r.Steps[s.Name].Count)
		}
	}
	// Every checkout writes its request and its terminal event at least, and the
	// coordinator's state; nothing is left of the ceiling's scratch stream.
	if r.JetStream[events.StreamCheckout].PerCheckout < 2 || r.JetStream["KV_"+events.BucketCheckouts].PerCheckout < 1 {
		t.Errorf("jetstream use %+v", r.JetStream)
	}
	if _, ok := r.JetStream[ceilingStream]; ok {
		t.Error("the ceiling's stream was counted as the checkouts'")
	}
	if r.Resources.CPUSeconds <= 0 || r.Resources.PeakRSSMB <= 0 {
		t.Errorf("resources %+v", r.Resources)
	}
}

func TestHeldNeedsEveryCheckoutOnTimeAndTheRate(t *testing.T) {
	ok := RunResult{Load: LoadDesc{Rate: 100}, Completed: 1000, CompletedPerSecond: 98, EndToEnd: Summary{P99: 80}}
	if !ok.Held(100) {
		t.Error("a run at 98% of its rate with p99 80ms did not hold under 100ms")
	}
	for name, r := range map[string]RunResult{
		"slow p99":   {Load: LoadDesc{Rate: 100}, CompletedPerSecond: 100, EndToEnd: Summary{P99: 100}},
		"behind":     {Load: LoadDesc{Rate: 100}, CompletedPerSecond: 90, EndToEnd: Summary{P99: 10}},
		"a failure":  {Load: LoadDesc{Rate: 100}, CompletedPerSecond: 100, Failed: 1, EndToEnd: Summary{P99: 10}},
		"left open":  {Load: LoadDesc{Rate: 100}, CompletedPerSecond: 100, Unfinished: 1, EndToEnd: Summary{P99: 10}},
		"not stored": {Load: LoadDesc{Rate: 100}, CompletedPerSecond: 100, PublishErrors: 1, EndToEnd: Summary{P99: 10}},
	} {
		if r.Held(100) {
			t.Errorf("%s: held", name)
		}
	}
}

func TestCheckoutIDOf(t *testing.T) {
	for data, want := range map[string]string{
		`{"id":"co_1:checkout.completed","type":"checkout.completed","checkout_id":"co_1","payload":{}}`: "co_1",
		`{"checkout_id" : "co_2"}`: "co_2", // not as the runner writes it: decoded the slow way
		`not json`:                 "",
	} {
		if got := checkoutIDOf([]byte(data)); got != want {
			t.Errorf("checkoutIDOf(%s) = %q, want %q", data, got, want)
		}
	}
}

// The ceiling with its batch curve: a point for every size and publisher count, each from
// batches that were stored, and the scratch stream gone afterwards.
func TestCeilingMeasuresTheBatchCurve(t *testing.T) {
	env := natstest.Start(t)
	c, err := measureCeiling(context.Background(), env.JS, 100*time.Millisecond, true)
	if err != nil {
		t.Fatal(err)
	}
	if c.Sync1 <= 0 || c.Sync16 <= 0 || c.Async <= 0 || c.Batch100 <= 0 {
		t.Errorf("ceiling %+v", c)
	}
	if len(c.BatchCurve) != len(curveSizes)*len(curvePublishers) {
		t.Fatalf("%d points on the curve, want %d", len(c.BatchCurve), len(curveSizes)*len(curvePublishers))
	}
	for i, p := range c.BatchCurve {
		wantPubs, wantSize := curvePublishers[i/len(curveSizes)], curveSizes[i%len(curveSizes)]
		if p.Publishers != wantPubs || p.Size != wantSize || p.BatchesPerS <= 0 || p.MeanMS <= 0 ||
			math.Abs(p.MsgsPerS-p.BatchesPerS*float64(p.Size)) > 1e-6*p.MsgsPerS {
			t.Errorf("point %d: %+v, want %d publishers, batches of %d", i, p, wantPubs, wantSize)
		}
	}
	if _, err := env.JS.Stream(context.Background(), ceilingStream); err == nil {
		t.Error("the ceiling's scratch stream was left behind")
	}
}
