package upstream

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/api"
)

const (
	healthy   = corev3.HealthStatus_HEALTHY
	unhealthy = corev3.HealthStatus_UNHEALTHY
	draining  = corev3.HealthStatus_DRAINING
)

func withPanicThreshold(v float64) func(*clusterv3.Cluster) {
	return func(c *clusterv3.Cluster) {
		c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{HealthyPanicThreshold: &typev3.Percent{Value: v}}
	}
}

func TestPickHealthAndPanic(t *testing.T) {
	tests := []struct {
		name      string
		eps       []ep
		threshold float64 // <0: default
		want      []string
		panic     bool
	}{
		{"all healthy", []ep{{addr: "10.0.0.1:1"}, {addr: "10.0.0.2:1"}}, -1, []string{"10.0.0.1:1", "10.0.0.2:1"}, false},
		{"draining excluded", []ep{{addr: "10.0.0.1:1"}, {addr: "10.0.0.2:1"}, {addr: "10.0.0.3:1", health: draining}}, -1,
			[]string{"10.0.0.1:1", "10.0.0.2:1"}, false},
		{"half healthy is not panic", []ep{{addr: "10.0.0.1:1"}, {addr: "10.0.0.2:1", health: unhealthy}}, -1,
			[]string{"10.0.0.1:1"}, false},
		{"panic below 50%", []ep{{addr: "10.0.0.1:1", health: healthy}, {addr: "10.0.0.2:1", health: unhealthy}, {addr: "10.0.0.3:1", health: draining}}, -1,
			[]string{"10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1"}, true},
		{"panic disabled", []ep{{addr: "10.0.0.1:1", health: healthy}, {addr: "10.0.0.2:1", health: unhealthy}, {addr: "10.0.0.3:1", health: unhealthy}}, 0,
			[]string{"10.0.0.1:1"}, false},
		{"none healthy, panic", []ep{{addr: "10.0.0.1:1", health: unhealthy}, {addr: "10.0.0.2:1", health: unhealthy}}, -1,
			[]string{"10.0.0.1:1", "10.0.0.2:1"}, true},
		{"none healthy, panic disabled", []ep{{addr: "10.0.0.1:1", health: unhealthy}}, 0, nil, false},
		{"threshold 100", []ep{{addr: "10.0.0.1:1"}, {addr: "10.0.0.2:1"}, {addr: "10.0.0.3:1", health: unhealthy}}, 100,
			[]string{"10.0.0.1:1", "10.0.0.2:1", "10.0.0.3:1"}, true},
		{"failover to priority 1", []ep{{addr: "10.0.0.1:1", health: unhealthy}, {addr: "10.0.0.2:1", priority: 1}}, -1,
			[]string{"10.0.0.2:1"}, false},
		{"priority 0 preferred", []ep{{addr: "10.0.0.1:1"}, {addr: "10.0.0.2:1", priority: 1}}, -1,
			[]string{"10.0.0.1:1"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newManager(t, Options{})
			var mods []func(*clusterv3.Cluster)
			if tt.threshold >= 0 {
				mods = append(mods, withPanicThreshold(tt.threshold))
			}
			mustUpdate(t, m, static(t, "c", tt.eps, mods...))
			c := cluster(t, m, "c")
			counts := pickCounts(c, 300)
			want := map[string]bool{}
			for _, a := range tt.want {
				want[a] = true
				if counts[a] == 0 {
					t.Errorf("%s never picked: %v", a, counts)
				}
			}
			for a := range counts {
				if a == "" && len(tt.want) == 0 {
					continue
				}
				if !want[a] {
					t.Errorf("picked %q: %v", a, counts)
				}
			}
			if got := c.status().Panic; got != tt.panic {
				t.Errorf("panic = %v, want %v", got, tt.panic)
			}
		})
	}
}

func TestClusterLBPolicies(t *testing.T) {
	eps := []ep{{addr: "10.0.0.1:1"}, {addr: "10.0.0.2:1"}, {addr: "10.0.0.3:1"}}
	for _, p := range []clusterv3.Cluster_LbPolicy{
		clusterv3.Cluster_ROUND_ROBIN, clusterv3.Cluster_RANDOM, clusterv3.Cluster_LEAST_REQUEST,
		clusterv3.Cluster_RING_HASH, clusterv3.Cluster_MAGLEV,
	} {
		t.Run(p.String(), func(t *testing.T) {
			m := newManager(t, Options{})
			mustUpdate(t, m, static(t, "c", eps, withLB(p)))
			c := cluster(t, m, "c")
			if c.status().LBPolicy != p.String() {
				t.Errorf("policy %s", c.status().LBPolicy)
			}
			counts := pickCounts(c, 3000)
			if len(counts) != 3 || counts[""] != 0 {
				t.Errorf("counts %v", counts)
			}
			if p == clusterv3.Cluster_RING_HASH || p == clusterv3.Cluster_MAGLEV {
				k := &keyCtx{key: 12345, ok: true}
				first := c.Pick(k)
				for range 100 {
					if c.Pick(k) != first {
						t.Fatal("same key, different host")
					}
				}
			}
		})
	}
}

func TestBreakers(t *testing.T) {
	m := newManager(t, Options{})
	mustUpdate(t, m,
		static(t, "default", nil),
		static(t, "custom", nil, func(c *clusterv3.Cluster) {
			c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{
				{Priority: corev3.RoutingPriority_HIGH, MaxRetries: wrapperspb.UInt32(100)},
				{MaxConnections: wrapperspb.UInt32(2), MaxRetries: wrapperspb.UInt32(1), MaxRequests: wrapperspb.UInt32(0)},
			}}
		}))
	d := cluster(t, m, "default").status().Breakers
	if d[api.ResConnections].Max != 1024 || d[api.ResPendingRequests].Max != 1024 || d[api.ResRequests].Max != 1024 || d[api.ResRetries].Max != 3 {
		t.Errorf("defaults %+v", d)
	}
	c := cluster(t, m, "custom")
	tests := []struct {
		r    api.Resource
		max  int
		name string
	}{
		{api.ResConnections, 2, "connections"},
		{api.ResPendingRequests, 1024, "pending (default kept)"},
		{api.ResRequests, 0, "requests"},
		{api.ResRetries, 1, "retries (DEFAULT, not HIGH)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := c.Stats().Overflow.Value()
			for i := range tt.max {
				if !c.TryAcquire(tt.r) {
					t.Fatalf("acquire %d refused", i)
				}
			}
			if c.TryAcquire(tt.r) {
				t.Fatal("acquired past the limit")
			}
			// A full connection budget makes a request wait, it sheds
			// nothing, so only the other budgets count an overflow.
			want := before + 1
			if tt.r == api.ResConnections {
				want = before
			}
			if got := c.Stats().Overflow.Value(); got != want {
				t.Errorf("overflow = %d, want %d", got, want)
			}
			if tt.max > 0 {
				c.Release(tt.r)
				if !c.TryAcquire(tt.r) {
					t.Fatal("release did not free a unit")
				}
			}
			for range tt.max {
				c.Release(tt.r)
			}
		})
	}
	if c.TryAcquire(api.Resource(9)) {
		t.Error("unknown resource acquired")
	}
}

func TestBreakerConcurrent(t *testing.T) {
	m := newManager(t, Options{})
	mustUpdate(t, m, static(t, "c", nil, func(c *clusterv3.Cluster) {
		c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{
			{MaxRequests: wrapperspb.UInt32(10)},
		}}
	}))
	c := cluster(t, m, "c")
	var got atomic.Int64
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 100 {
		wg.Go(func() {
			<-start
			if c.TryAcquire(api.ResRequests) {
				got.Add(1)
			}
		})
	}
	close(start)
	wg.Wait()
	if got.Load() != 10 || c.Stats().Overflow.Value() != 90 {
		t.Errorf("acquired %d, overflow %d", got.Load(), c.Stats().Overflow.Value())
	}
}

func TestPickConcurrentWithUpdates(t *testing.T) {
	m := newManager(t, Options{})
	mustUpdate(t, m, eds("svc"))
	c := cluster(t, m, "svc")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				if h := c.Pick(nil); h != nil {
					h.ActiveRequests().Inc()
					h.ActiveRequests().Dec()
				}
				if _, ok := m.Cluster("svc"); !ok {
					t.Error("lookup failed")
					return
				}
			}
		})
	}
	for i := range 200 {
		var eps []ep
		for j := range 1 + i%5 {
			eps = append(eps, ep{addr: fmt.Sprintf("10.0.0.%d:80", j+1), weight: uint32(1 + i%3)})
		}
		if err := m.UpdateEndpoints("svc", cla(t, "svc", eps...)); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
}

func TestClusterPickDoesNotAllocate(t *testing.T) {
	m := newManager(t, Options{})
	eps := []ep{{addr: "10.0.0.1:1", weight: 1}, {addr: "10.0.0.2:1", weight: 2}, {addr: "10.0.0.3:1", weight: 3, health: unhealthy}}
	for _, p := range []clusterv3.Cluster_LbPolicy{
		clusterv3.Cluster_ROUND_ROBIN, clusterv3.Cluster_RANDOM, clusterv3.Cluster_LEAST_REQUEST,
		clusterv3.Cluster_RING_HASH, clusterv3.Cluster_MAGLEV,
	} {
		mustUpdate(t, m, static(t, "c", eps, withLB(p)))
		var cm api.ClusterManager = m
		k := &keyCtx{ok: true}
		var ctx api.LBContext = k
		n := testing.AllocsPerRun(1000, func() {
			c, _ := cm.Cluster("c")
			k.key++
			if c.Pick(ctx) == nil {
				t.Fatal("nil pick")
			}
		})
		if n != 0 {
			t.Errorf("%s: %v allocs per lookup+Pick", p, n)
		}
	}
}

func BenchmarkClusterPick(b *testing.B) {
	for _, p := range []clusterv3.Cluster_LbPolicy{
		clusterv3.Cluster_ROUND_ROBIN, clusterv3.Cluster_RANDOM, clusterv3.Cluster_LEAST_REQUEST,
		clusterv3.Cluster_RING_HASH, clusterv3.Cluster_MAGLEV,
	} {
		b.Run(p.String(), func(b *testing.B) {
			m := NewManager(Options{})
			defer m.Close()
			var eps []ep
			for i := range 50 {
				eps = append(eps, ep{addr: fmt.Sprintf("10.0.%d.%d:80", i/200, i%200+1), weight: uint32(1 + i%4)})
			}
			if err := m.Update([]*clusterv3.Cluster{static(b, "c", eps, withLB(p))}); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				k := &keyCtx{ok: true}
				var ctx api.LBContext = k
				for pb.Next() {
					c, _ := m.Cluster("c")
					k.key = k.key*6364136223846793005 + 1442695040888963407
					c.Pick(ctx)
				}
			})
		})
	}
}
