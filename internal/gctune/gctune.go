// Package gctune gives the garbage collector a heap floor.
//
// Go collects when the heap has grown by GOGC percent (100) over what the
// last collection left live. A proxy's live heap is small (a few MiB of
// config, pools and connection state) while it allocates per request, so
// under load it collects tens of times a second, and every cycle has a
// fixed cost. With a floor, the heap may grow to at least that many bytes
// between collections: busy with a small live heap, Weft collects a few
// times a second; with a live heap above half the floor (many connections,
// large configs), GOGC=100 applies unchanged, so memory per connection is
// what it was. Measured on the gRPC unary benchmark at 50 streams, a 32 MiB
// floor took 13-15% off the CPU per request and added about 10%
// requests/s (docs/benchmarks.md). The price is memory: up to the floor of
// garbage may stand between collections, which is why it is opt-in.
//
// After every collection a finalizer reads the live heap from
// runtime/metrics and sets the GC percent for the next cycle. A GOGC or
// GOMEMLIMIT set in the environment is the operator's choice, and the
// tuner then does nothing.
package gctune

import (
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
)

// SuggestedFloor is the floor measured in docs/benchmarks.md. It is not
// the default: `weft start` keeps plain GOGC=100 unless
// --gc-heap-floor-mib asks for a floor, because a floor lets garbage stand
// in memory, and the bad-input tests bound RSS growth under floods and
// stalled clients tighter than that.
const SuggestedFloor = 32 << 20

// maxPercent bounds the percent for a nearly empty heap; the floor bounds
// the memory itself.
const maxPercent = 10000

// Percent returns the GC percent that lets a heap with live bytes grow to
// max(2*live, floor) before the next collection: 100 when twice the live
// heap already reaches the floor.
func Percent(live, floor uint64) int {
	if live == 0 || floor <= 2*live {
		return 100
	}
	p := floor*100/live - 100
	if p > maxPercent {
		return maxPercent
	}
	return int(p)
}

// Tuner keeps the heap floor while it runs.
type Tuner struct {
	floor   uint64
	stopped atomic.Bool
	mu      sync.Mutex
	percent int // last set
	sample  []metrics.Sample
}

// Start sets a heap floor of floor bytes and keeps it after every
// collection until Stop. It returns nil (and changes nothing) when floor
// is 0 or the environment sets GOGC or GOMEMLIMIT.
func Start(floor uint64) *Tuner {
	if floor == 0 || os.Getenv("GOGC") != "" || os.Getenv("GOMEMLIMIT") != "" {
		return nil
	}
	t := &Tuner{floor: floor, percent: 100, sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
	t.adjust()
	t.arm()
	return t
}

// sentinel is garbage on purpose: its finalizer runs once per collection.
type sentinel struct{ _ [16]byte }

func (t *Tuner) arm() {
	s := new(sentinel)
	runtime.SetFinalizer(s, func(*sentinel) {
		if t.stopped.Load() {
			return
		}
		t.adjust()
		t.arm()
	})
}

func (t *Tuner) adjust() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped.Load() {
		return
	}
	metrics.Read(t.sample)
	if t.sample[0].Value.Kind() != metrics.KindUint64 {
		return
	}
	if p := Percent(t.sample[0].Value.Uint64(), t.floor); p != t.percent {
		t.percent = p
		debug.SetGCPercent(p)
	}
}

// Stop restores GOGC=100 and ends the tuning; nil is a no-op.
func (t *Tuner) Stop() {
	if t == nil {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped.Swap(true) {
		return
	}
	debug.SetGCPercent(100)
}
