package loadgen

import (
	"math/bits"
	"slices"
	"time"
)

// subBuckets per power of two: a recorded value is off by at most 1/64 (about 1.6%).
const subBucketBits = 6

// Histogram records durations in log-linear buckets of microseconds: fixed memory however
// long the run, so the generator itself does not grow with the number of checkouts.
// It is not safe for concurrent use.
type Histogram struct {
	counts map[int]uint64
	n      uint64
	max    time.Duration
	sum    time.Duration
}

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram { return &Histogram{counts: map[int]uint64{}} }

// Record adds one duration; negative ones count as zero.
func (h *Histogram) Record(d time.Duration) {
	d = max(d, 0)
	h.counts[bucketOf(uint64(d/time.Microsecond))]++
	h.n++
	h.sum += d
	h.max = max(h.max, d)
}

// Count is how many durations were recorded.
func (h *Histogram) Count() uint64 { return h.n }

// Quantile returns the smallest bucket bound at or above which a fraction q of the
// recorded durations lie (nearest rank: q=0.99 of 100 values is the 99th smallest),
// capped at the exact maximum. Zero when empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n) + 0.999999999) // ceil without floating surprises at integers
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for _, b := range h.sortedBuckets() {
		seen += h.counts[b]
		if seen >= rank {
			return min(time.Duration(upperBound(b))*time.Microsecond, h.max)
		}
	}
	return h.max
}

// Merge adds every value of o.
func (h *Histogram) Merge(o *Histogram) {
	for b, c := range o.counts {
		h.counts[b] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// Summary is the histogram's percentiles, in milliseconds for people and JSON alike.
type Summary struct {
	Count uint64  `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

// Summary reads the percentiles.
func (h *Histogram) Summary() Summary {
	s := Summary{Count: h.n, P50: ms(h.Quantile(0.50)), P90: ms(h.Quantile(0.90)), P99: ms(h.Quantile(0.99)), Max: ms(h.max)}
	if h.n > 0 {
		s.Mean = ms(h.sum / time.Duration(h.n))
	}
	return s
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// bucketOf maps v (µs) to its bucket: values below 2^subBucketBits exactly, above that the
// top subBucketBits bits after the leading one.
func bucketOf(v uint64) int {
	if v < 1<<subBucketBits {
		return int(v)
	}
	shift := bits.Len64(v) - 1 - subBucketBits
	return (shift+1)<<subBucketBits + int(v>>shift) - 1<<subBucketBits
}

// upperBound is the largest value (µs) that falls in bucket b.
func upperBound(b int) uint64 {
	if b < 1<<subBucketBits {
		return uint64(b)
	}
	shift := b>>subBucketBits - 1
	mantissa := uint64(b&(1<<subBucketBits-1)) + 1<<subBucketBits
	return (mantissa+1)<<shift - 1
}

func (h *Histogram) sortedBuckets() []int {
	out := make([]int, 0, len(h.counts))
	for b := range h.counts {
		out = append(out, b)
	}
	slices.Sort(out)
	return out
}
