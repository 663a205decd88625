package stats

import (
	"sync/atomic"
	"time"
)

// bucketBounds are the histogram upper bounds (inclusive), the Envoy
// defaults plus 0.05, 0.1 and 0.25 ms at the low end, where a sidecar's own
// added latency lives.
var bucketBounds = [...]time.Duration{
	50 * time.Microsecond,
	100 * time.Microsecond,
	250 * time.Microsecond,
	500 * time.Microsecond,
	1 * time.Millisecond,
	5 * time.Millisecond,
	10 * time.Millisecond,
	25 * time.Millisecond,
	50 * time.Millisecond,
	100 * time.Millisecond,
	250 * time.Millisecond,
	500 * time.Millisecond,
	1 * time.Second,
	2500 * time.Millisecond,
	5 * time.Second,
	10 * time.Second,
	30 * time.Second,
	60 * time.Second,
	300 * time.Second,
	600 * time.Second,
	1800 * time.Second,
	3600 * time.Second,
}

// numBuckets counts the finite buckets; one more slot holds +Inf.
const numBuckets = len(bucketBounds)

// BucketBounds returns the upper bounds of the finite histogram buckets,
// shared by every Histogram. The caller may modify the returned slice.
func BucketBounds() []time.Duration {
	out := make([]time.Duration, numBuckets)
	copy(out, bucketBounds[:])
	return out
}

// Histogram is a fixed-bucket latency histogram. Observe costs a short
// search over constant bounds plus two atomic adds and never allocates;
// Prometheus reads the buckets only at scrape time. The zero value is ready
// to use. The count is the sum of the buckets, so a concurrent read never
// sees a count that disagrees with the buckets.
type Histogram struct {
	buckets [numBuckets + 1]atomic.Uint64 // last slot is +Inf
	sumNs   atomic.Int64
}

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram { return &Histogram{} }

// Observe records one duration; negative durations count as zero.
func (h *Histogram) Observe(d time.Duration) {
	if d < 0 {
		d = 0
	}
	// Binary search for the first bound >= d (bounds are inclusive, "le").
	lo, hi := 0, numBuckets
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if bucketBounds[m] < d {
			lo = m + 1
		} else {
			hi = m
		}
	}
	h.buckets[lo].Add(1)
	h.sumNs.Add(int64(d))
}

// Count returns the number of observations.
func (h *Histogram) Count() uint64 {
	var n uint64
	for i := range h.buckets {
		n += h.buckets[i].Load()
	}
	return n
}

// Sum returns the total of the observed durations.
func (h *Histogram) Sum() time.Duration { return time.Duration(h.sumNs.Load()) }

// snapshot reads the per-bucket (not cumulative) counts; the last element
// is the +Inf bucket.
func (h *Histogram) snapshot() (counts [numBuckets + 1]uint64, total uint64) {
	for i := range h.buckets {
		counts[i] = h.buckets[i].Load()
		total += counts[i]
	}
	return counts, total
}

// Quantile estimates the q-quantile (0 <= q <= 1) by linear interpolation
// inside the bucket that holds it, as Prometheus' histogram_quantile does.
// It returns 0 for an empty histogram and the largest finite bound when the
// quantile falls in the +Inf bucket.
func (h *Histogram) Quantile(q float64) time.Duration {
	counts, total := h.snapshot()
	if total == 0 {
		return 0
	}
	if q < 0 {
		q = 0
	}
	if q > 1 {
		q = 1
	}
	rank := q * float64(total)
	var cum uint64
	for i, c := range counts {
		if c == 0 || float64(cum+c) < rank {
			cum += c
			continue
		}
		if i == numBuckets {
			return bucketBounds[numBuckets-1]
		}
		var lower time.Duration
		if i > 0 {
			lower = bucketBounds[i-1]
		}
		upper := bucketBounds[i]
		frac := (rank - float64(cum)) / float64(c)
		return lower + time.Duration(frac*float64(upper-lower))
	}
	return bucketBounds[numBuckets-1]
}
