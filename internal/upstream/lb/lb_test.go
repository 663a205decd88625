package lb

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/api"
)

type fakeHost struct {
	addr   string
	active api.Gauge
	stats  api.HostStats
}

func (h *fakeHost) Address() string                                       { return h.addr }
func (h *fakeHost) Cluster() string                                       { return "test" }
func (h *fakeHost) Healthy() bool                                         { return true }
func (h *fakeHost) Metadata(string) string                                { return "" }
func (h *fakeHost) Dial(context.Context) (net.Conn, error)                { return nil, fmt.Errorf("no dial") }
func (h *fakeHost) Pool(string, func(api.Host) api.ConnPool) api.ConnPool { return nil }
func (h *fakeHost) Stats() *api.HostStats                                 { return &h.stats }
func (h *fakeHost) ActiveRequests() *api.Gauge                            { return &h.active }

type keyCtx struct {
	key uint64
	ok  bool
}

func (k *keyCtx) HashKey() (uint64, bool) { return k.key, k.ok }
func (k *keyCtx) Headers() api.HeaderMap  { return nil }

func endpoints(weights ...uint32) []Endpoint {
	eps := make([]Endpoint, len(weights))
	for i, w := range weights {
		eps[i] = Endpoint{Host: &fakeHost{addr: fmt.Sprintf("10.0.0.%d:80", i+1)}, Weight: w}
	}
	return eps
}

func uniformEndpoints(n int) []Endpoint {
	ws := make([]uint32, n)
	for i := range ws {
		ws[i] = 1
	}
	return endpoints(ws...)
}

func indexOf(eps []Endpoint, h api.Host) int {
	for i, e := range eps {
		if e.Host == h {
			return i
		}
	}
	return -1
}

// share picks n times and returns each endpoint's share of the picks.
func share(t *testing.T, b Balancer, eps []Endpoint, n int, ctx func(i int) api.LBContext) []float64 {
	t.Helper()
	counts := make([]float64, len(eps))
	for i := range n {
		var c api.LBContext
		if ctx != nil {
			c = ctx(i)
		}
		h := b.Pick(c)
		j := indexOf(eps, h)
		if j < 0 {
			t.Fatalf("pick %d returned unknown host %v", i, h)
		}
		counts[j]++
	}
	for i := range counts {
		counts[i] /= float64(n)
	}
	return counts
}

func expected(weights []uint32) []float64 {
	var sum float64
	for _, w := range weights {
		sum += float64(w)
	}
	out := make([]float64, len(weights))
	for i, w := range weights {
		out[i] = float64(w) / sum
	}
	return out
}

func randomKeys(seed uint64) func(int) api.LBContext {
	r := rand.New(rand.NewPCG(seed, seed))
	return func(int) api.LBContext { return &keyCtx{key: r.Uint64(), ok: true} }
}

func TestWeightedDistribution(t *testing.T) {
	weightSets := [][]uint32{{1, 1, 1, 1}, {1, 2, 3, 4}, {10, 1}, {5, 5, 90}}
	tests := []struct {
		policy Policy
		tol    float64
		keyed  bool
	}{
		{RoundRobin, 0.001, false},
		{Random, 0.01, false},
		{LeastRequest, 0.01, false},
		{RingHash, 0.05, true},
		{Maglev, 0.01, true},
		{RingHash, 0.01, false}, // falls back to weighted random
		{Maglev, 0.01, false},
	}
	for _, tt := range tests {
		for _, ws := range weightSets {
			t.Run(fmt.Sprintf("%s/keyed=%v/%v", tt.policy, tt.keyed, ws), func(t *testing.T) {
				eps := endpoints(ws...)
				b := New(Config{Policy: tt.policy}, eps)
				var ctx func(int) api.LBContext
				if tt.keyed {
					ctx = randomKeys(7)
				}
				n := 200000
				if tt.policy == RoundRobin {
					n = 100 * 1000 // a multiple of every period above
				}
				got := share(t, b, eps, n, ctx)
				want := expected(ws)
				for i := range got {
					if math.Abs(got[i]-want[i]) > tt.tol {
						t.Errorf("host %d share %.4f, want %.4f±%.3f", i, got[i], want[i], tt.tol)
					}
				}
			})
		}
	}
}

func TestRoundRobinSmooth(t *testing.T) {
	tests := []struct {
		weights []uint32
		maxRun  int // longest run of one host, cyclically
	}{
		{[]uint32{1, 1, 1}, 1},
		{[]uint32{2, 1, 1}, 2},
		{[]uint32{3, 1}, 3},
		{[]uint32{2, 3, 5}, 2},
		{[]uint32{100, 100, 200}, 2},
		{[]uint32{1, 1, 1, 1, 4}, 2},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.weights), func(t *testing.T) {
			eps := endpoints(tt.weights...)
			b := New(Config{Policy: RoundRobin}, eps)
			var seq []int
			for range 400 {
				seq = append(seq, indexOf(eps, b.Pick(nil)))
			}
			run, longest := 1, 1
			for i := 1; i < len(seq); i++ {
				if seq[i] == seq[i-1] {
					run++
				} else {
					run = 1
				}
				longest = max(longest, run)
			}
			if longest > tt.maxRun {
				t.Errorf("longest run %d > %d in %v", longest, tt.maxRun, seq[:20])
			}
		})
	}
}

func TestRoundRobinHugeWeights(t *testing.T) {
	eps := endpoints(math.MaxUint32, 1, math.MaxUint32/2)
	r := newRoundRobin(eps)
	if len(r.seq) > maxRoundRobinPeriod+len(eps) {
		t.Fatalf("schedule has %d slots", len(r.seq))
	}
	got := share(t, r, eps, len(r.seq)*10, nil)
	want := expected([]uint32{math.MaxUint32, 1, math.MaxUint32 / 2})
	for i := range got {
		if math.Abs(got[i]-want[i]) > 0.001 {
			t.Errorf("host %d share %.5f, want %.5f", i, got[i], want[i])
		}
	}
	if got[1] == 0 {
		t.Error("tiny-weight host never picked")
	}
}

func TestLeastRequestPrefersIdle(t *testing.T) {
	tests := []struct {
		name    string
		choices uint32
		min     float64
	}{
		{"p2c", 2, 0.70},
		{"choice5", 5, 0.95},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			eps := endpoints(1, 1)
			eps[0].Host.ActiveRequests().Set(100)
			b := New(Config{Policy: LeastRequest, ChoiceCount: tt.choices}, eps)
			got := share(t, b, eps, 20000, nil)
			if got[1] < tt.min {
				t.Errorf("idle host share %.3f, want >= %.2f", got[1], tt.min)
			}
		})
	}
}

// moved reports the fraction of keys whose host changed between before and
// after, and whether any key that did not live on removed moved.
func moved(before, after Balancer, removed api.Host, keys []uint64) (frac float64, stray int) {
	n := 0
	for _, k := range keys {
		c := &keyCtx{key: k, ok: true}
		a, b := before.Pick(c), after.Pick(c)
		if a != b {
			n++
			if a != removed {
				stray++
			}
		}
	}
	return float64(n) / float64(len(keys)), stray
}

func TestConsistentHashMinimalDisruption(t *testing.T) {
	keys := make([]uint64, 50000)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range keys {
		keys[i] = r.Uint64()
	}
	tests := []struct {
		policy   Policy
		hosts    int
		maxStray float64 // keys that move although their host stayed
	}{
		{RingHash, 5, 0},
		{RingHash, 20, 0},
		{Maglev, 5, 0.02},
		{Maglev, 20, 0.02},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d", tt.policy, tt.hosts), func(t *testing.T) {
			eps := uniformEndpoints(tt.hosts)
			before := New(Config{Policy: tt.policy}, eps)
			removed := eps[2].Host
			rest := append(append([]Endpoint{}, eps[:2]...), eps[3:]...)
			after := New(Config{Policy: tt.policy}, rest)
			frac, stray := moved(before, after, removed, keys)
			ideal := 1 / float64(tt.hosts)
			if frac > ideal*1.5+tt.maxStray {
				t.Errorf("%.3f of keys moved, ideal %.3f", frac, ideal)
			}
			if float64(stray)/float64(len(keys)) > tt.maxStray {
				t.Errorf("%d keys moved off surviving hosts", stray)
			}
			// The same inputs in another order build the same mapping.
			shuffled := append([]Endpoint{}, eps...)
			rand.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			again := New(Config{Policy: tt.policy}, shuffled)
			if tt.policy == RingHash {
				if f, _ := moved(before, again, nil, keys); f != 0 {
					t.Errorf("endpoint order changed %.4f of the mapping", f)
				}
			}
		})
	}
}

func TestRingSize(t *testing.T) {
	tests := []struct {
		weights  []uint32
		min, max uint64
		lo, hi   int
	}{
		{[]uint32{1, 1, 1}, 1024, 8 << 20, 1536, 1536},
		{[]uint32{1, 1, 1, 1}, 1024, 8 << 20, 1024, 1024},
		{[]uint32{1, 3}, 1024, 8 << 20, 1024, 1024},
		{[]uint32{2, 3}, 1024, 8 << 20, 1280, 1280},
		{[]uint32{1, 1000}, 1024, 8 << 20, 2002, 2002},
		{[]uint32{1, 1000}, 1024, 1001, 1000, 1001},
		{[]uint32{1}, 16, 16, 16, 16},
		{[]uint32{1, 1, 1}, 10, 10, 9, 9},
	}
	for _, tt := range tests {
		r := newRingHash(endpoints(tt.weights...), tt.min, tt.max)
		if len(r.ring) < tt.lo || len(r.ring) > tt.hi {
			t.Errorf("%v min=%d max=%d: ring size %d, want [%d,%d]", tt.weights, tt.min, tt.max, len(r.ring), tt.lo, tt.hi)
		}
	}
}

func TestMaglevTableFull(t *testing.T) {
	for _, n := range []int{1, 3, 100} {
		g := newMaglev(uniformEndpoints(n), 65537)
		counts := make([]int, n)
		for _, v := range g.table {
			if int(v) >= n {
				t.Fatalf("%d hosts: unset slot", n)
			}
			counts[v]++
		}
		for i, c := range counts {
			want := 65537 / n
			if c < want-1 || c > want+1 {
				t.Errorf("%d hosts: host %d owns %d slots, want ~%d", n, i, c, want)
			}
		}
	}
}

func TestEmpty(t *testing.T) {
	for _, p := range []Policy{RoundRobin, Random, LeastRequest, RingHash, Maglev} {
		if h := New(Config{Policy: p}, nil).Pick(&keyCtx{1, true}); h != nil {
			t.Errorf("%s: Pick on empty = %v", p, h)
		}
	}
}

func TestParseConfig(t *testing.T) {
	u32 := wrapperspb.UInt32
	u64 := wrapperspb.UInt64
	tests := []struct {
		name    string
		c       *clusterv3.Cluster
		want    Config
		wantErr string
	}{
		{name: "default", c: &clusterv3.Cluster{}, want: DefaultConfig()},
		{name: "ring", c: &clusterv3.Cluster{
			LbPolicy: clusterv3.Cluster_RING_HASH,
			LbConfig: &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{
				MinimumRingSize: u64(64), MaximumRingSize: u64(128)}},
		}, want: Config{Policy: RingHash, MinRingSize: 64, MaxRingSize: 128, TableSize: DefaultTableSize, ChoiceCount: 2}},
		{name: "ring min>max", c: &clusterv3.Cluster{
			LbPolicy: clusterv3.Cluster_RING_HASH,
			LbConfig: &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{
				MinimumRingSize: u64(4096), MaximumRingSize: u64(128)}},
		}, wantErr: "ring_hash_lb_config.minimum_ring_size: 4096 exceeds maximum_ring_size 128"},
		{name: "ring murmur", c: &clusterv3.Cluster{
			LbPolicy: clusterv3.Cluster_RING_HASH,
			LbConfig: &clusterv3.Cluster_RingHashLbConfig_{RingHashLbConfig: &clusterv3.Cluster_RingHashLbConfig{
				HashFunction: clusterv3.Cluster_RingHashLbConfig_MURMUR_HASH_2}},
		}, wantErr: "ring_hash_lb_config.hash_function"},
		{name: "maglev", c: &clusterv3.Cluster{
			LbPolicy: clusterv3.Cluster_MAGLEV,
			LbConfig: &clusterv3.Cluster_MaglevLbConfig_{MaglevLbConfig: &clusterv3.Cluster_MaglevLbConfig{TableSize: u64(251)}},
		}, want: Config{Policy: Maglev, MinRingSize: DefaultMinRingSize, MaxRingSize: DefaultMaxRingSize, TableSize: 251, ChoiceCount: 2}},
		{name: "maglev not prime", c: &clusterv3.Cluster{
			LbPolicy: clusterv3.Cluster_MAGLEV,
			LbConfig: &clusterv3.Cluster_MaglevLbConfig_{MaglevLbConfig: &clusterv3.Cluster_MaglevLbConfig{TableSize: u64(65536)}},
		}, wantErr: "maglev_lb_config.table_size: 65536 is not prime"},
		{name: "least request", c: &clusterv3.Cluster{
			LbPolicy: clusterv3.Cluster_LEAST_REQUEST,
			LbConfig: &clusterv3.Cluster_LeastRequestLbConfig_{LeastRequestLbConfig: &clusterv3.Cluster_LeastRequestLbConfig{ChoiceCount: u32(1)}},
		}, wantErr: "least_request_lb_config.choice_count: 1 is below 2"},
		{name: "cluster provided", c: &clusterv3.Cluster{LbPolicy: clusterv3.Cluster_CLUSTER_PROVIDED},
			wantErr: "lb_policy: CLUSTER_PROVIDED is not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseConfig(tt.c)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestConcurrentPicks(t *testing.T) {
	eps := endpoints(1, 2, 3)
	for _, p := range []Policy{RoundRobin, Random, LeastRequest, RingHash, Maglev} {
		b := New(Config{Policy: p}, eps)
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Go(func() {
				c := &keyCtx{ok: true}
				for i := range 2000 {
					c.key = uint64(g*10000 + i)
					h := b.Pick(c)
					if h == nil {
						t.Errorf("%s: nil pick", p)
						return
					}
					h.ActiveRequests().Inc()
					h.ActiveRequests().Dec()
				}
			})
		}
		wg.Wait()
	}
}

func TestPickDoesNotAllocate(t *testing.T) {
	for _, ws := range [][]uint32{{1, 1, 1}, {1, 2, 3}} {
		eps := endpoints(ws...)
		for _, p := range []Policy{RoundRobin, Random, LeastRequest, RingHash, Maglev} {
			b := New(Config{Policy: p}, eps)
			c := &keyCtx{key: 42, ok: true}
			var ctx api.LBContext = c
			if n := testing.AllocsPerRun(1000, func() { c.key++; b.Pick(ctx) }); n != 0 {
				t.Errorf("%s %v: %v allocs per Pick", p, ws, n)
			}
		}
	}
}

func BenchmarkPick(b *testing.B) {
	for _, p := range []Policy{RoundRobin, Random, LeastRequest, RingHash, Maglev} {
		for _, n := range []int{10, 100} {
			for _, weighted := range []bool{false, true} {
				ws := make([]uint32, n)
				for i := range ws {
					ws[i] = 1
					if weighted {
						ws[i] = uint32(1 + i%7)
					}
				}
				eps := endpoints(ws...)
				bal := New(Config{Policy: p}, eps)
				name := fmt.Sprintf("%s/hosts=%d/weighted=%v", p, n, weighted)
				b.Run(name, func(b *testing.B) {
					b.ReportAllocs()
					b.RunParallel(func(pb *testing.PB) {
						c := &keyCtx{key: rand.Uint64(), ok: true}
						var ctx api.LBContext = c
						for pb.Next() {
							c.key = c.key*6364136223846793005 + 1442695040888963407
							if bal.Pick(ctx) == nil {
								b.Fatal("nil")
							}
						}
					})
				})
			}
		}
	}
}
