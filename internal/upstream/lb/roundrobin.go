package lb

import (
	"container/heap"
	"math/rand/v2"
	"sync/atomic"

	"github.com/weftmesh/weft/api"
)

// roundRobin is weighted round robin over a precomputed smooth schedule.
// The schedule is built once with an earliest-deadline-first pass (host i of
// n gets its k-th slot at deadline (k + (i+1)/(n+1)) / w_i: the per-host
// phase keeps equal-weight hosts from sharing deadlines), so heavy hosts are
// spread out instead of bunched; Pick is then one atomic add and an index, which
// buys lock-free, allocation-free picks at any concurrency.
type roundRobin struct {
	hosts []api.Host
	// seq is the schedule as indexes into hosts; nil when all weights are
	// equal and plain rotation is already the smooth schedule.
	seq  []uint32
	next atomic.Uint64
}

func newRoundRobin(eps []Endpoint) *roundRobin {
	r := &roundRobin{hosts: hostsOf(eps)}
	// Start at a random offset so a fleet of proxies does not hit the same
	// host first after a config push.
	r.next.Store(rand.Uint64())
	uniform := true
	for _, e := range eps[1:] {
		if weightOf(e) != weightOf(eps[0]) {
			uniform = false
			break
		}
	}
	if uniform {
		return r
	}
	r.seq = schedule(weightsOf(eps))
	return r
}

// weightsOf returns the endpoints' weights reduced by their GCD and, when
// their sum exceeds the schedule bound, scaled down proportionally (every
// host keeps at least one slot).
func weightsOf(eps []Endpoint) []uint64 {
	ws := make([]uint64, len(eps))
	var g, sum uint64
	for i, e := range eps {
		ws[i] = weightOf(e)
		g = gcd(g, ws[i])
	}
	for i := range ws {
		ws[i] /= g
		sum += ws[i]
	}
	limit := uint64(max(maxRoundRobinPeriod, len(eps)))
	if sum > limit {
		for i := range ws {
			ws[i] = max(1, ws[i]*limit/sum)
		}
	}
	return ws
}

func gcd(a, b uint64) uint64 {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

type edfEntry struct {
	num uint64 // k(n+1) + i + 1 for host i's k-th slot
	w   uint64
	idx uint32
}

type edfHeap []edfEntry

func (h edfHeap) Len() int { return len(h) }
func (h edfHeap) Less(i, j int) bool {
	a, b := h[i].num*h[j].w, h[j].num*h[i].w
	if a != b {
		return a < b
	}
	return h[i].idx < h[j].idx
}
func (h edfHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *edfHeap) Push(x any)   { *h = append(*h, x.(edfEntry)) }
func (h *edfHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func schedule(ws []uint64) []uint32 {
	var total uint64
	n1 := uint64(len(ws) + 1)
	h := make(edfHeap, len(ws))
	for i, w := range ws {
		total += w
		h[i] = edfEntry{num: uint64(i) + 1, w: w, idx: uint32(i)}
	}
	heap.Init(&h)
	seq := make([]uint32, 0, total)
	for uint64(len(seq)) < total {
		e := &h[0]
		seq = append(seq, e.idx)
		e.num += n1
		heap.Fix(&h, 0)
	}
	return seq
}

func (r *roundRobin) Pick(api.LBContext) api.Host {
	i := r.next.Add(1)
	if r.seq == nil {
		return r.hosts[i%uint64(len(r.hosts))]
	}
	return r.hosts[r.seq[i%uint64(len(r.seq))]]
}
