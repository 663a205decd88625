package main

import (
	"bytes"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"

	"github.com/weftmesh/weft/internal/router"
	"github.com/weftmesh/weft/internal/stream"
	"github.com/weftmesh/weft/internal/upstream"
)

// The full sizes of SPEC C2/C3.
var (
	fullShape    = shape{vhosts: 10000, routes: 50000}
	fullEndpoint = 50000
)

// rdsFixture is built once per process: the wire bytes of two generations
// of the full table and a request mix.
var rdsFixture = sync.OnceValues(func() (*fixture, error) {
	f := &fixture{reqs: requests(fullShape, 200000, 1, uniform)}
	for g := range f.wire {
		b, err := encodeRDS(routeConfig(fullShape, g), "v")
		if err != nil {
			return nil, err
		}
		f.wire[g] = b
	}
	t, _, err := applyRDS(f.wire[0], nil)
	f.table = t
	return f, err
})

type fixture struct {
	wire  [2][]byte
	reqs  []request
	table *router.Table
}

func loadRDS(b *testing.B) *fixture {
	b.Helper()
	f, err := rdsFixture()
	if err != nil {
		b.Fatal(err)
	}
	return f
}

// BenchmarkRouteMatch is Table.Route over the random request mix of
// requests (hits on every virtual host, 1% last route of the last virtual
// host, 9% misses) on the 10,000 vhost / 50,000 route table.
func BenchmarkRouteMatch(b *testing.B) {
	f := loadRDS(b)
	for i := range f.reqs[:1000] {
		if err := f.reqs[i].check(f.table, f.table.Route(f.reqs[i].h)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		q := &f.reqs[i%len(f.reqs)]
		warm(q)
		_ = f.table.Route(q.h)
		i++
	}
}

// BenchmarkRouteMatchLast always asks for the last route of the last
// virtual host (warm caches: the best case for the worst position).
func BenchmarkRouteMatchLast(b *testing.B) {
	f := loadRDS(b)
	var q *request
	for i := range f.reqs {
		if f.reqs[i].class == last {
			q = &f.reqs[i]
			break
		}
	}
	if err := q.check(f.table, f.table.Route(q.h)); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = f.table.Route(q.h)
	}
}

// BenchmarkRDSApply is one full RDS update: decode the DiscoveryResponse,
// ValidateAll, router.Compile and the atomic swap, with a reader matching
// on another goroutine throughout; the sub-benchmarks time the steps alone.
func BenchmarkRDSApply(b *testing.B) {
	f := loadRDS(b)
	b.Run("full", func(b *testing.B) {
		src := stream.NewStaticRoutes(f.table)
		rd := startReader(src, f.reqs, fullShape.vhosts)
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			if _, _, err := applyRDS(f.wire[i%2], src); err != nil {
				b.Fatal(err)
			}
			i++
		}
		b.StopTimer()
		if err := rd.halt(); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(rd.tables), "tables-seen")
	})
	b.Run("decode", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := decodeRDS(f.wire[0]); err != nil {
				b.Fatal(err)
			}
		}
	})
	rc, err := decodeRDS(f.wire[0])
	if err != nil {
		b.Fatal(err)
	}
	b.Run("validate-all", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if err := rc.ValidateAll(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("compile", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := router.Compile(rc); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRouteTableMemory reports the heap the compiled table holds
// after GC: heap in use (spans) per route and in total, and live bytes per
// route.
func BenchmarkRouteTableMemory(b *testing.B) {
	f := loadRDS(b)
	for b.Loop() {
		before := settle()
		t, _, err := applyRDS(f.wire[0], nil)
		if err != nil {
			b.Fatal(err)
		}
		after := settle()
		runtime.KeepAlive(t)
		d := delta(after.heapInuse, before.heapInuse)
		b.ReportMetric(float64(d)/float64(fullShape.routes), "heap-B/route")
		b.ReportMetric(float64(d)/(1<<20), "heap-MiB")
		b.ReportMetric(float64(delta(after.heapAlloc, before.heapAlloc))/float64(fullShape.routes), "live-B/route")
	}
}

var edsFixture = sync.OnceValues(func() (*edsVariants, error) { return newEDSVariants(fullEndpoint, true) })

func loadEDS(b *testing.B) *edsVariants {
	b.Helper()
	v, err := edsFixture()
	if err != nil {
		b.Fatal(err)
	}
	return v
}

// BenchmarkEDSUpdate is Manager.UpdateEndpoints on an EDS cluster with a
// 50,000-endpoint assignment: the first push into an empty cluster, then
// pushes replacing 1 endpoint, 10% of them, or none. Each sub-benchmark
// runs for both ROUND_ROBIN and LEAST_REQUEST.
func BenchmarkEDSUpdate(b *testing.B) {
	v := loadEDS(b)
	for _, pol := range []clusterv3.Cluster_LbPolicy{clusterv3.Cluster_ROUND_ROBIN, clusterv3.Cluster_LEAST_REQUEST} {
		b.Run(pol.String()+"/first", func(b *testing.B) {
			b.ReportAllocs()
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				m, err := newEDSManager(pol)
				if err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if err := m.UpdateEndpoints(edsName, v.base); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				m.Close()
				b.StartTimer()
			}
		})
		for _, k := range []struct {
			name string
			seq  []*endpointv3.ClusterLoadAssignment
		}{
			{"one-changed", []*endpointv3.ClusterLoadAssignment{v.one, v.base}},
			{"tenth-changed", []*endpointv3.ClusterLoadAssignment{v.tenth, v.base}},
			{"unchanged", []*endpointv3.ClusterLoadAssignment{v.base}},
		} {
			b.Run(pol.String()+"/"+k.name, func(b *testing.B) {
				m := pushed(b, pol, v.base)
				defer m.Close()
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					if err := m.UpdateEndpoints(edsName, k.seq[i%len(k.seq)]); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
		}
	}
}

// BenchmarkEDSDecode decodes the 50,000-endpoint assignment (not part of
// UpdateEndpoints; the xDS client does it).
func BenchmarkEDSDecode(b *testing.B) {
	v := loadEDS(b)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := decodeCLA(v.wire); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEDSMemory reports the heap in use per endpoint after the first
// push (weft's hosts, balancer and stats, plus the decoded assignment while
// the manager keeps it), and that of the decoded assignment alone.
func BenchmarkEDSMemory(b *testing.B) {
	v := loadEDS(b)
	for b.Loop() {
		m, err := newEDSManager(clusterv3.Cluster_ROUND_ROBIN)
		if err != nil {
			b.Fatal(err)
		}
		s0 := settle()
		cla, err := decodeCLA(v.wire)
		if err != nil {
			b.Fatal(err)
		}
		s1 := settle()
		if err := m.UpdateEndpoints(edsName, cla); err != nil {
			b.Fatal(err)
		}
		cla = nil
		s2 := settle()
		n := float64(fullEndpoint)
		b.ReportMetric(float64(delta(s2.heapInuse, s0.heapInuse))/n, "heap-B/endpoint")
		b.ReportMetric(float64(delta(s1.heapInuse, s0.heapInuse))/n, "cla-B/endpoint")
		m.Close()
	}
}

// BenchmarkEDSPick is Cluster.Pick on the 50,000-endpoint cluster after
// the pushes above.
func BenchmarkEDSPick(b *testing.B) {
	v := loadEDS(b)
	for _, pol := range []clusterv3.Cluster_LbPolicy{clusterv3.Cluster_ROUND_ROBIN, clusterv3.Cluster_LEAST_REQUEST} {
		b.Run(pol.String(), func(b *testing.B) {
			m := pushed(b, pol, v.base, v.tenth, v.one)
			defer m.Close()
			c, _ := m.Cluster(edsName)
			b.ReportAllocs()
			for b.Loop() {
				if c.Pick(nil) == nil {
					b.Fatal("no host")
				}
			}
		})
	}
}

// pushed returns a manager whose EDS cluster has taken the given pushes.
func pushed(b *testing.B, pol clusterv3.Cluster_LbPolicy, seq ...*endpointv3.ClusterLoadAssignment) *upstream.Manager {
	b.Helper()
	m, err := newEDSManager(pol)
	if err != nil {
		b.Fatal(err)
	}
	for _, cla := range seq {
		if err := m.UpdateEndpoints(edsName, cla); err != nil {
			b.Fatal(err)
		}
	}
	return m
}

// TestSmall runs the whole program at a small scale (as CI runs tests):
// the generators produce what they promise, every request gets its
// expected route, RDS updates swap under a reader that never sees a
// partial table, and EDS pushes keep the host count.
func TestSmall(t *testing.T) {
	s := shape{vhosts: 120, routes: 600}
	total := 0
	for _, n := range s.counts() {
		total += n
	}
	if total != s.routes {
		t.Fatalf("counts sum to %d, want %d", total, s.routes)
	}
	rc := routeConfig(s, 0)
	if err := rc.ValidateAll(); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	err := mainErr(&out, options{
		runs: 1, vhosts: s.vhosts, routes: s.routes, requests: 3000, passes: 1, updates: 4,
		endpoints: 500, pushes: 2, picks: 1000, lbs: "ROUND_ROBIN,LEAST_REQUEST", meta: true,
	})
	if err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{"## RDS", "Reader goroutine: ", "## EDS", "### LEAST_REQUEST"} {
		if !bytes.Contains(out.Bytes(), []byte(want)) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}

// TestRequestsMatch checks every class of generated request against a
// table compiled from the same shape, at the full route mix per vhost.
func TestRequestsMatch(t *testing.T) {
	s := shape{vhosts: 400, routes: 2010} // the last vhost gets 15 routes, /ext/ ones too
	b, err := encodeRDS(routeConfig(s, 0), "0")
	if err != nil {
		t.Fatal(err)
	}
	tbl, _, err := applyRDS(b, nil)
	if err != nil {
		t.Fatal(err)
	}
	var seen [numClasses]int
	for _, q := range requests(s, 20000, 7, zipf) {
		if err := q.check(tbl, tbl.Route(q.h)); err != nil {
			t.Fatal(err)
		}
		seen[q.class]++
	}
	for c, n := range seen {
		if n == 0 {
			t.Errorf("no request of class %s", class(c))
		}
	}
	// Every route of the last vhost (the longest) is reachable.
	counts := s.counts()
	i := s.vhosts - 1
	if counts[i] <= numSpecific+1 {
		t.Fatalf("last vhost has %d routes; want more than %d to cover /ext/", counts[i], numSpecific+1)
	}
	rng := rand.New(rand.NewPCG(3, 3))
	for k := range counts[i] {
		q := request{h: routeRequest(rng, i, k, counts[i]), vhost: i, route: k}
		if err := q.check(tbl, tbl.Route(q.h)); err != nil {
			t.Error(err)
		}
	}
	// The full shape has exactly 50,000 routes.
	sum := 0
	for _, n := range fullShape.counts() {
		sum += n
	}
	if sum != fullShape.routes {
		t.Errorf("full shape: %d routes, want %d", sum, fullShape.routes)
	}
}
