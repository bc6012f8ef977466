package loadgen

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestQuantilesOfKnownValues(t *testing.T) {
	h := NewHistogram()
	for i := 1; i <= 100; i++ {
		h.Record(time.Duration(i) * time.Microsecond) // exact below 64µs, 1/64 above
	}
	cases := []struct {
		q    float64
		want time.Duration
	}{
		{0.01, 1 * time.Microsecond}, {0.50, 50 * time.Microsecond}, {0.99, 99 * time.Microsecond}, {1, 100 * time.Microsecond},
	}
	for _, c := range cases {
		if got := h.Quantile(c.q); got != c.want {
			t.Errorf("q%.2f = %v, want %v", c.q, got, c.want)
		}
	}
	if s := h.Summary(); s.Count != 100 || s.Max != 0.1 || s.Mean != 0.05 {
		t.Errorf("summary %+v", s)
	}
}

func TestQuantilesWithinBucketError(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	h := NewHistogram()
	var all []time.Duration
	for range 50_000 {
		d := time.Duration(rng.ExpFloat64() * float64(20*time.Millisecond))
		h.Record(d)
		all = append(all, d.Truncate(time.Microsecond))
	}
	slices.Sort(all)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		exact := all[int(q*float64(len(all)))-1]
		got := h.Quantile(q)
		if got < exact || float64(got-exact) > float64(exact)/64+float64(time.Microsecond) {
			t.Errorf("q%v = %v, exact %v: beyond one bucket", q, got, exact)
		}
	}
	if h.Quantile(1).Truncate(time.Microsecond) != all[len(all)-1] {
		t.Errorf("max %v, want %v", h.Quantile(1), all[len(all)-1])
	}
}

func TestEmptyAndMerged(t *testing.T) {
	a, b := NewHistogram(), NewHistogram()
	if a.Quantile(0.99) != 0 || a.Summary().Mean != 0 {
		t.Fatal("empty histogram should read zero")
	}
	a.Record(time.Millisecond)
	b.Record(3 * time.Second)
	b.Record(-time.Second) // a clock step backwards counts as zero, not as a huge value
	a.Merge(b)
	if a.Count() != 3 || a.Quantile(1) != 3*time.Second || a.Quantile(0.01) != 0 {
		t.Fatalf("merged: n=%d max=%v min=%v", a.Count(), a.Quantile(1), a.Quantile(0.01))
	}
}

func TestBucketsCoverEveryValueOnce(t *testing.T) {
	for v := uint64(0); v < 1<<16; v++ {
		b := bucketOf(v)
		if v > upperBound(b) || (b > 0 && v <= upperBound(b-1)) {
			t.Fatalf("value %d in bucket %d [%d, %d]", v, b, upperBound(b-1)+1, upperBound(b))
		}
	}
}
