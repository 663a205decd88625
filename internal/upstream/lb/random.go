package lb

import (
	"math/rand/v2"

	"github.com/weftmesh/weft/api"
)

// random is weighted random selection. With equal weights it is one call to
// the runtime's per-thread generator; otherwise a binary search over
// cumulative weights. math/rand/v2's top-level functions are lock-free and
// allocation-free, which is what makes Pick cheap under contention.
type random struct {
	hosts []api.Host
	cum   []uint64 // cumulative weights; nil when uniform
	total uint64
}

func newRandom(eps []Endpoint) *random {
	r := &random{hosts: hostsOf(eps)}
	uniform := true
	cum := make([]uint64, len(eps))
	for i, e := range eps {
		r.total += weightOf(e)
		cum[i] = r.total
		if weightOf(e) != weightOf(eps[0]) {
			uniform = false
		}
	}
	if !uniform {
		r.cum = cum
	}
	return r
}

// index returns a weighted-random index into hosts.
func (r *random) index() int {
	if r.cum == nil {
		return rand.IntN(len(r.hosts))
	}
	x := rand.Uint64N(r.total)
	lo, hi := 0, len(r.cum)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if r.cum[m] <= x {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo
}

func (r *random) Pick(api.LBContext) api.Host { return r.hosts[r.index()] }

// leastRequest draws ChoiceCount weighted-random candidates and keeps the
// one with the fewest active requests (power of two choices by default).
// Weights bias the draw; with no load every candidate ties and the first
// wins, so idle traffic follows the weights exactly.
type leastRequest struct {
	random
	choices uint32
}

func newLeastRequest(eps []Endpoint, choices uint32) *leastRequest {
	return &leastRequest{random: *newRandom(eps), choices: choices}
}

func (l *leastRequest) Pick(api.LBContext) api.Host {
	if len(l.hosts) == 1 {
		return l.hosts[0]
	}
	best := l.index()
	load := l.hosts[best].ActiveRequests().Value()
	for i := uint32(1); i < l.choices; i++ {
		c := l.index()
		if c == best {
			continue
		}
		if v := l.hosts[c].ActiveRequests().Value(); v < load {
			best, load = c, v
		}
	}
	return l.hosts[best]
}
