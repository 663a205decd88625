package main

import (
	"bufio"
	"bytes"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"time"
)

// dist summarises a set of durations in nanoseconds.
type dist struct {
	N                              int
	P50, P90, P99, P999, Max, Mean float64
}

func summarize(ns []int64) dist {
	if len(ns) == 0 {
		return dist{}
	}
	s := slices.Clone(ns)
	slices.Sort(s)
	q := func(p float64) float64 { return float64(s[min(len(s)-1, int(p*float64(len(s))))]) }
	var sum float64
	for _, v := range s {
		sum += float64(v)
	}
	return dist{
		N: len(s), P50: q(0.50), P90: q(0.90), P99: q(0.99), P999: q(0.999),
		Max: float64(s[len(s)-1]), Mean: sum / float64(len(s)),
	}
}

// clockOverhead returns the distribution of an empty timed region
// (time.Now + time.Since): what every per-call sample includes on top of
// the call itself.
func clockOverhead(n int) dist {
	ns := make([]int64, n)
	for i := range ns {
		t0 := time.Now()
		ns[i] = int64(time.Since(t0))
	}
	return summarize(ns)
}

// memSnap is the heap after a full collection and the process's RSS.
type memSnap struct {
	heapAlloc, heapInuse uint64 // bytes
	rss, hwm             uint64 // bytes, from /proc/self/status; 0 elsewhere
}

// settle collects garbage twice (finalizers, then what they freed), returns
// freed pages to the OS and reads the heap and RSS.
func settle() memSnap {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s := memSnap{heapAlloc: ms.HeapAlloc, heapInuse: ms.HeapInuse}
	s.rss, s.hwm = procStatus()
	return s
}

// procStatus reads VmRSS and VmHWM (peak RSS) of this process.
func procStatus() (rss, hwm uint64) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseUint(string(f[1]), 10, 64)
		switch string(f[0]) {
		case "VmRSS:":
			rss = v << 10
		case "VmHWM:":
			hwm = v << 10
		}
	}
	return rss, hwm
}

// resetPeakRSS makes VmHWM start again from the current RSS (Linux 4.0+);
// it reports whether that worked.
func resetPeakRSS() bool {
	return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) == nil
}

func delta(after, before uint64) int64 { return int64(after) - int64(before) }

// median of durations (the lower middle for an even count).
func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

// stat is the median and maximum of a set of timings.
type stat struct {
	Runs        int
	Median, Max time.Duration
}

func statOf(ds []time.Duration) stat {
	return stat{Runs: len(ds), Median: median(ds), Max: slices.Max(ds)}
}
