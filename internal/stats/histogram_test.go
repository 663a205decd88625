package stats

import (
	"sync"
	"testing"
	"time"
)

func TestHistogramBuckets(t *testing.T) {
	tests := []struct {
		d      time.Duration
		bucket int
	}{
		{-time.Second, 0},
		{0, 0},
		{50 * time.Microsecond, 0},
		{50*time.Microsecond + 1, 1},
		{100 * time.Microsecond, 1},
		{time.Millisecond, 4},
		{3 * time.Millisecond, 5},
		{time.Second, 12},
		{3600 * time.Second, numBuckets - 1},
		{3600*time.Second + 1, numBuckets},
		{1000 * time.Hour, numBuckets},
	}
	for _, tt := range tests {
		var h Histogram
		h.Observe(tt.d)
		counts, total := h.snapshot()
		if total != 1 || counts[tt.bucket] != 1 {
			t.Errorf("Observe(%v): counts %v, want bucket %d", tt.d, counts, tt.bucket)
		}
	}
}

func TestHistogramSumCount(t *testing.T) {
	h := NewHistogram()
	h.Observe(time.Millisecond)
	h.Observe(2 * time.Millisecond)
	h.Observe(-5 * time.Millisecond)
	if got := h.Count(); got != 3 {
		t.Errorf("Count = %d, want 3", got)
	}
	if got := h.Sum(); got != 3*time.Millisecond {
		t.Errorf("Sum = %v, want 3ms", got)
	}
}

func TestHistogramQuantile(t *testing.T) {
	var h Histogram
	if got := h.Quantile(0.5); got != 0 {
		t.Errorf("empty Quantile = %v, want 0", got)
	}
	// 100 observations in (5ms, 10ms]: quantiles interpolate inside it.
	for range 100 {
		h.Observe(7 * time.Millisecond)
	}
	tests := []struct {
		q    float64
		want time.Duration
	}{
		{0, 5 * time.Millisecond},
		{0.5, 7500 * time.Microsecond},
		{1, 10 * time.Millisecond},
		{2, 10 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := h.Quantile(tt.q); got != tt.want {
			t.Errorf("Quantile(%v) = %v, want %v", tt.q, got, tt.want)
		}
	}
	var inf Histogram
	inf.Observe(2 * time.Hour)
	if got := inf.Quantile(0.99); got != time.Hour {
		t.Errorf("+Inf Quantile = %v, want 1h", got)
	}
}

func TestHistogramConcurrent(t *testing.T) {
	var h Histogram
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 1000 {
				h.Observe(time.Duration(g*i) * time.Microsecond)
			}
		})
	}
	wg.Wait()
	if got := h.Count(); got != 8000 {
		t.Errorf("Count = %d, want 8000", got)
	}
}

func TestHistogramObserveAllocs(t *testing.T) {
	h := NewHistogram()
	if n := testing.AllocsPerRun(1000, func() { h.Observe(3 * time.Millisecond) }); n != 0 {
		t.Errorf("Observe allocates %v times, want 0", n)
	}
}

func TestBucketBounds(t *testing.T) {
	b := BucketBounds()
	if len(b) != 22 || b[0] != 50*time.Microsecond || b[len(b)-1] != time.Hour {
		t.Fatalf("BucketBounds = %v", b)
	}
	for i := 1; i < len(b); i++ {
		if b[i] <= b[i-1] {
			t.Fatalf("bounds not increasing at %d: %v", i, b)
		}
	}
}

func BenchmarkHistogramObserve(b *testing.B) {
	h := NewHistogram()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		d := 150 * time.Microsecond
		for pb.Next() {
			h.Observe(d)
		}
	})
}

func BenchmarkHistogramObserveSerial(b *testing.B) {
	h := NewHistogram()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		h.Observe(time.Duration(i&1023) * 37 * time.Microsecond)
	}
}
