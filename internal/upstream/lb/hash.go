package lb

import (
	"github.com/weftmesh/weft/internal/xxhash"
	"math"
	"slices"
	"strconv"

	"github.com/weftmesh/weft/api"
)

// ringHash is a ketama-style consistent hash as in Envoy: each host owns a
// number of points on a 64-bit ring proportional to its weight, placed at
// XXH64("address_i"). A request goes to the first point at or after its
// hash key. Removing a host only moves the keys that host owned. Without a
// hash key it falls back to weighted random.
type ringHash struct {
	ring     []ringEntry
	hosts    []api.Host
	fallback random
}

type ringEntry struct {
	hash uint64
	host uint32
}

func newRingHash(eps []Endpoint, minSize, maxSize uint64) *ringHash {
	r := &ringHash{hosts: hostsOf(eps), fallback: *newRandom(eps)}
	// Points per host are proportional to weight relative to the lightest
	// host. The lightest host's count (base) is the smallest power of two
	// that makes the ring at least minSize, so removing or adding a host
	// usually leaves every other host's points unchanged and only ~1/N of
	// the keys move. (Envoy scales the ring exactly to minSize, which also
	// re-points surviving hosts; the ring bounds are honoured either way.)
	minW := uint64(math.MaxUint64)
	for _, e := range eps {
		minW = min(minW, weightOf(e))
	}
	var rel float64
	for _, e := range eps {
		rel += float64(weightOf(e)) / float64(minW)
	}
	base := 1.0
	for base*rel < float64(minSize) {
		base *= 2
	}
	if base*rel > float64(maxSize) {
		base = float64(maxSize) / rel
	}
	r.ring = make([]ringEntry, 0, int(base*rel)+len(eps))
	buf := make([]byte, 0, 64)
	for i, e := range eps {
		points := uint64(max(1, math.Floor(base*float64(weightOf(e))/float64(minW))))
		for n := range points {
			buf = append(buf[:0], e.Host.Address()...)
			buf = append(buf, '_')
			buf = strconv.AppendUint(buf, n, 10)
			r.ring = append(r.ring, ringEntry{hash: xxhash.Sum64(buf, 0), host: uint32(i)})
		}
	}
	slices.SortFunc(r.ring, func(a, b ringEntry) int {
		switch {
		case a.hash < b.hash:
			return -1
		case a.hash > b.hash:
			return 1
		}
		// Break rare collisions by address so every proxy builds the
		// same ring whatever the endpoint order.
		return compareStrings(r.hosts[a.host].Address(), r.hosts[b.host].Address())
	})
	return r
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (r *ringHash) Pick(ctx api.LBContext) api.Host {
	key, ok := hashKey(ctx)
	if !ok || len(r.ring) == 0 {
		return r.fallback.Pick(ctx)
	}
	lo, hi := 0, len(r.ring)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if r.ring[m].hash < key {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == len(r.ring) {
		lo = 0
	}
	return r.hosts[r.ring[lo].host]
}

// maglev is Google's Maglev consistent hash with Envoy's weighting: a
// lookup table of prime size M is filled by letting each host claim slots
// along its own permutation (offset XXH64(addr, 0) mod M, skip
// XXH64(addr, 1) mod (M-1) + 1), heavier hosts claiming more often. A pick
// is one modulo and two loads. Without a hash key it falls back to weighted
// random.
type maglev struct {
	table    []uint32
	hosts    []api.Host
	fallback random
}

func newMaglev(eps []Endpoint, m uint64) *maglev {
	g := &maglev{hosts: hostsOf(eps), fallback: *newRandom(eps), table: make([]uint32, m)}
	type entry struct {
		pos, skip uint64
		w, target uint64
	}
	ws := weightsOf(eps)
	var maxW uint64
	entries := make([]entry, len(eps))
	for i, e := range eps {
		addr := []byte(e.Host.Address())
		entries[i] = entry{
			pos:  xxhash.Sum64(addr, 0) % m,
			skip: xxhash.Sum64(addr, 1)%(m-1) + 1,
			w:    ws[i],
		}
		maxW = max(maxW, ws[i])
	}
	const unset = math.MaxUint32
	for i := range g.table {
		g.table[i] = unset
	}
	filled := uint64(0)
	for iter := uint64(1); filled < m; iter++ {
		for i := range entries {
			if filled == m {
				break
			}
			e := &entries[i]
			// A host of weight maxW claims a slot every iteration; one of
			// weight maxW/3 every third.
			if iter*e.w < e.target {
				continue
			}
			e.target += maxW
			for g.table[e.pos] != unset {
				e.pos = (e.pos + e.skip) % m
			}
			g.table[e.pos] = uint32(i)
			e.pos = (e.pos + e.skip) % m
			filled++
		}
	}
	return g
}

func (g *maglev) Pick(ctx api.LBContext) api.Host {
	key, ok := hashKey(ctx)
	if !ok {
		return g.fallback.Pick(ctx)
	}
	return g.hosts[g.table[key%uint64(len(g.table))]]
}
