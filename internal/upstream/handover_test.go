package upstream

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/tlsctx"
	"github.com/weftmesh/weft/internal/upstream/pool"
)

// countServer is a loopback echo server that counts the connections it
// accepted and those still open on its side.
type countServer struct {
	addr     string
	accepted atomic.Int64
	open     atomic.Int64
}

func newCountServer(t *testing.T) *countServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &countServer{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepted.Add(1)
			s.open.Add(1)
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				_, _ = io.Copy(c, c)
				c.Close()
				s.open.Add(-1)
			})
		}
	})
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return s
}

// poolOf returns h's pool as internal/stream makes it: with the config of
// the cluster the manager has under h's cluster name at that moment.
func poolOf(m *Manager, h api.Host) *pool.Pool {
	return h.Pool("http1", func(h api.Host) api.ConnPool {
		return pool.New(h, m.Get(h.Cluster()).PoolConfig())
	}).(*pool.Pool)
}

// echo does one round trip on c.
func echo(t *testing.T, c net.Conn) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "ping\n"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
}

func withMaxConns(n uint32) func(*clusterv3.Cluster) {
	return func(c *clusterv3.Cluster) {
		c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{
			{MaxConnections: wrapperspb.UInt32(n)},
		}}
	}
}

func withProtocolOptions(idle time.Duration, maxRequests uint32) func(*clusterv3.Cluster) {
	return func(c *clusterv3.Cluster) {
		c.CommonHttpProtocolOptions = &corev3.HttpProtocolOptions{
			IdleTimeout:              durationpb.New(idle),
			MaxRequestsPerConnection: wrapperspb.UInt32(maxRequests),
		}
	}
}

func breakerOpen(c *Cluster) int64 { return c.status().Breakers[api.ResConnections].Open }

// TestUpdateKeepsConnections opens three pooled connections (two idle, one
// busy) and changes the cluster: a change that does not shape connections
// hands them to the rebuilt cluster's host; any other drains them.
func TestUpdateKeepsConnections(t *testing.T) {
	const n = 3
	tests := []struct {
		name   string
		eds    bool
		change []func(*clusterv3.Cluster)
		// moved: the host is rebuilt at another address (another server).
		moved bool
		kept  bool
	}{
		{name: "circuit breaker", change: []func(*clusterv3.Cluster){withMaxConns(50)}, kept: true},
		{name: "lb policy (EDS)", eds: true, change: []func(*clusterv3.Cluster){withLB(clusterv3.Cluster_RANDOM)}, kept: true},
		{name: "connect timeout", change: []func(*clusterv3.Cluster){func(c *clusterv3.Cluster) { c.ConnectTimeout = durationpb.New(3 * time.Second) }}, kept: true},
		{name: "idle timeout", change: []func(*clusterv3.Cluster){withProtocolOptions(30*time.Minute, 100)}},
		{name: "max requests per connection", change: []func(*clusterv3.Cluster){withProtocolOptions(time.Hour, 99)}},
		{name: "tcp keepalive", change: []func(*clusterv3.Cluster){func(c *clusterv3.Cluster) {
			c.UpstreamConnectionOptions = &clusterv3.UpstreamConnectionOptions{TcpKeepalive: &corev3.TcpKeepalive{KeepaliveTime: wrapperspb.UInt32(30)}}
		}}},
		{name: "host removed", change: []func(*clusterv3.Cluster){withMaxConns(50)}, moved: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkGoroutines(t)
			srv, other := newCountServer(t), newCountServer(t)
			m := newManager(t, Options{})
			build := func(addr string, mods ...func(*clusterv3.Cluster)) *clusterv3.Cluster {
				mods = append([]func(*clusterv3.Cluster){withMaxConns(100), withProtocolOptions(time.Hour, 100)}, mods...)
				if tt.eds {
					return eds("c", mods...)
				}
				return static(t, "c", addrs(addr), mods...)
			}
			mustUpdate(t, m, build(srv.addr))
			if tt.eds {
				if err := m.UpdateEndpoints("c", cla(t, "c", ep{addr: srv.addr})); err != nil {
					t.Fatal(err)
				}
			}
			oc := cluster(t, m, "c")
			oh := oc.Hosts()[0]
			op := poolOf(m, oh)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			var conns []*pool.Conn
			for range n {
				c, _, err := op.Get(ctx)
				if err != nil {
					t.Fatal(err)
				}
				echo(t, c)
				conns = append(conns, c)
			}
			busy := conns[0]
			for _, c := range conns[1:] {
				c.Release(true)
			}
			eventually(t, "accepts", func() bool { return srv.accepted.Load() == n })

			addr := srv.addr
			if tt.moved {
				addr = other.addr
			}
			mustUpdate(t, m, build(addr, tt.change...))
			nc := cluster(t, m, "c")
			if nc == oc {
				t.Fatal("cluster not rebuilt")
			}
			nh := nc.Hosts()[0]
			np := poolOf(m, nh)
			moved := 0
			if tt.kept {
				moved = n - 1 // the idle ones, at once
			}
			if np.Open() != moved || breakerOpen(nc) != int64(moved) || breakerOpen(oc) != 1 {
				t.Errorf("after update: new pool %d conns, breakers new %d old %d; want %d, %d, 1",
					np.Open(), breakerOpen(nc), breakerOpen(oc), moved, moved)
			}
			busy.Release(true)
			if tt.kept {
				moved = n
			}
			if np.Open() != moved || np.Idle() != moved || breakerOpen(nc) != int64(moved) || breakerOpen(oc) != 0 {
				t.Errorf("after release: new pool %d conns (%d idle), breakers new %d old %d; want %d, %d, 0",
					np.Open(), np.Idle(), breakerOpen(nc), breakerOpen(oc), moved, moved)
			}
			if op.Open() != 0 {
				t.Errorf("old pool still has %d conns", op.Open())
			}
			// cx_active follows the connections; cx_total counts dials.
			if got := oc.Stats().UpstreamConnActive.Value(); got != 0 {
				t.Errorf("old cluster cx_active = %d", got)
			}
			if got := oh.Stats().ConnActive.Value(); got != 0 {
				t.Errorf("old host cx_active = %d", got)
			}
			if got := nc.Stats().UpstreamConnActive.Value(); got != int64(moved) {
				t.Errorf("new cluster cx_active = %d, want %d", got, moved)
			}
			if got := nh.Stats().ConnActive.Value(); got != int64(moved) {
				t.Errorf("new host cx_active = %d, want %d", got, moved)
			}
			if !tt.kept {
				eventually(t, "old conns closed", func() bool { return srv.open.Load() == 0 })
			}

			// The new host serves n requests at once; kept connections
			// need no new dial.
			conns = conns[:0]
			for range n {
				c, _, err := np.Get(ctx)
				if err != nil {
					t.Fatal(err)
				}
				echo(t, c)
				conns = append(conns, c)
			}
			for _, c := range conns {
				c.Release(true)
			}
			wantDials := uint64(n - moved)
			if got := nc.Stats().UpstreamConnTotal.Value(); got != wantDials {
				t.Errorf("new cluster dialled %d, want %d", got, wantDials)
			}
			if tt.kept && srv.accepted.Load() != n {
				t.Errorf("server accepted %d connections, want %d", srv.accepted.Load(), n)
			}
			if breakerOpen(nc) != n || nc.Stats().UpstreamConnActive.Value() != n {
				t.Errorf("new cluster: breaker %d, cx_active %d, want %d", breakerOpen(nc), nc.Stats().UpstreamConnActive.Value(), n)
			}
		})
	}
}

// TestUpdateHandoverFullBreaker: the rebuilt cluster's max_connections
// caps what it takes over; the rest close.
func TestUpdateHandoverFullBreaker(t *testing.T) {
	srv := newCountServer(t)
	m := newManager(t, Options{})
	mustUpdate(t, m, static(t, "c", addrs(srv.addr), withMaxConns(10)))
	oc := cluster(t, m, "c")
	op := poolOf(m, oc.Hosts()[0])
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var conns []*pool.Conn
	for range 4 {
		c, _, err := op.Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	for _, c := range conns {
		c.Release(true)
	}
	mustUpdate(t, m, static(t, "c", addrs(srv.addr), withMaxConns(3)))
	nc := cluster(t, m, "c")
	np := poolOf(m, nc.Hosts()[0])
	if np.Idle() != 3 || breakerOpen(nc) != 3 || breakerOpen(oc) != 0 || oc.Stats().UpstreamConnActive.Value() != 0 {
		t.Errorf("new pool idle %d, breakers new %d old %d, old cx_active %d",
			np.Idle(), breakerOpen(nc), breakerOpen(oc), oc.Stats().UpstreamConnActive.Value())
	}
	eventually(t, "one conn closed", func() bool { return srv.open.Load() == 3 })
}

// TestUpdateHandoverChain: a connection busy across two config changes
// ends in the newest cluster.
func TestUpdateHandoverChain(t *testing.T) {
	srv := newCountServer(t)
	m := newManager(t, Options{})
	mustUpdate(t, m, static(t, "c", addrs(srv.addr), withMaxConns(10)))
	c1 := cluster(t, m, "c")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	busy, _, err := poolOf(m, c1.Hosts()[0]).Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mustUpdate(t, m, static(t, "c", addrs(srv.addr), withMaxConns(11)))
	c2 := cluster(t, m, "c")
	_ = poolOf(m, c2.Hosts()[0]) // the pool exists: the second change drains it onward
	mustUpdate(t, m, static(t, "c", addrs(srv.addr), withMaxConns(12)))
	c3 := cluster(t, m, "c")
	busy.Release(true)
	p3 := poolOf(m, c3.Hosts()[0])
	if p3.Idle() != 1 || breakerOpen(c3) != 1 || breakerOpen(c2)+breakerOpen(c1) != 0 {
		t.Errorf("newest pool idle %d, breakers %d/%d/%d", p3.Idle(), breakerOpen(c1), breakerOpen(c2), breakerOpen(c3))
	}
	if c3.Stats().UpstreamConnActive.Value() != 1 || c1.Stats().UpstreamConnActive.Value() != 0 {
		t.Errorf("cx_active %d/%d", c1.Stats().UpstreamConnActive.Value(), c3.Stats().UpstreamConnActive.Value())
	}
}

// TestUpdateHandoverUnderLoad races requests against config pushes: no
// connection or breaker unit is lost or counted twice.
func TestUpdateHandoverUnderLoad(t *testing.T) {
	checkGoroutines(t)
	srv := newCountServer(t)
	m := newManager(t, Options{})
	mustUpdate(t, m, static(t, "c", addrs(srv.addr), withMaxConns(64)))
	var (
		mu  sync.Mutex
		all []*Cluster
	)
	all = append(all, cluster(t, m, "c"))
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				cl := m.Get("c")
				h := cl.Pick(nil)
				if h == nil {
					continue
				}
				p := poolOf(m, h)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				c, _, err := p.Get(ctx)
				cancel()
				if errors.Is(err, pool.ErrClosed) {
					continue // the host left: pick again, as the proxy does
				}
				if err != nil {
					t.Error(err)
					return
				}
				echo(t, c)
				c.Release(true)
			}
		})
	}
	for i := range 20 {
		time.Sleep(2 * time.Millisecond)
		mustUpdate(t, m, static(t, "c", addrs(srv.addr), withMaxConns(uint32(64+i%2))))
		mu.Lock()
		all = append(all, cluster(t, m, "c"))
		mu.Unlock()
	}
	close(done)
	wg.Wait()
	last := all[len(all)-1]
	for i, c := range all[:len(all)-1] {
		if breakerOpen(c) != 0 || c.Stats().UpstreamConnActive.Value() != 0 {
			t.Errorf("old cluster %d: breaker %d, cx_active %d", i, breakerOpen(c), c.Stats().UpstreamConnActive.Value())
		}
	}
	p := poolOf(m, last.Hosts()[0])
	open := int64(p.Open())
	if breakerOpen(last) != open || last.Stats().UpstreamConnActive.Value() != open || last.Hosts()[0].Stats().ConnActive.Value() != open {
		t.Errorf("live cluster: breaker %d, cx_active %d, host cx_active %d, pool open %d",
			breakerOpen(last), last.Stats().UpstreamConnActive.Value(), last.Hosts()[0].Stats().ConnActive.Value(), open)
	}
	eventually(t, "server conns = pool conns", func() bool { return srv.open.Load() == open })
	// Requests that reach the rebuilt cluster before the old one hands
	// its idle conns over dial; the breaker still bounds the total.
	if open == 0 || open > 64 {
		t.Errorf("pool open %d", open)
	}
	t.Logf("%d connections accepted over 20 updates, %d open", srv.accepted.Load(), open)
}

func TestConnIgnoredNamesClusterFields(t *testing.T) {
	fields := (&clusterv3.Cluster{}).ProtoReflect().Descriptor().Fields()
	for name := range connIgnored {
		if fields.ByName(name) == nil {
			t.Errorf("connIgnored: %q is not a Cluster field", name)
		}
	}
}

func TestConnCompatible(t *testing.T) {
	base := func(mods ...func(*clusterv3.Cluster)) *spec {
		s, err := parseCluster(static(t, "c", addrs("10.0.0.1:80"), mods...), tlsctx.Options{})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	// typed_extension_protocol_options is a map: connFields must copy it.
	withTyped := func(idle time.Duration) func(*clusterv3.Cluster) {
		return func(c *clusterv3.Cluster) {
			a, err := anypb.New(&httpv3.HttpProtocolOptions{
				CommonHttpProtocolOptions: &corev3.HttpProtocolOptions{IdleTimeout: durationpb.New(idle)},
			})
			if err != nil {
				t.Fatal(err)
			}
			c.TypedExtensionProtocolOptions = map[string]*anypb.Any{httpProtocolOptionsName: a}
		}
	}
	tests := []struct {
		name string
		base func(*clusterv3.Cluster)
		mod  func(*clusterv3.Cluster)
		want bool
	}{
		{"same", nil, func(*clusterv3.Cluster) {}, true},
		{"same typed options", withTyped(time.Minute), withTyped(time.Minute), true},
		{"typed options idle timeout", withTyped(time.Minute), withTyped(time.Second), false},
		{"typed options and breakers", withTyped(time.Minute), func(c *clusterv3.Cluster) { withTyped(time.Minute)(c); withMaxConns(3)(c) }, true},
		{"breakers", nil, withMaxConns(1), true},
		{"lb", nil, withLB(clusterv3.Cluster_LEAST_REQUEST), true},
		{"endpoints", nil, func(c *clusterv3.Cluster) { c.LoadAssignment = cla(t, "c", ep{addr: "10.0.0.2:80"}) }, true},
		{"health checks", nil, withTCPCheck(time.Second), true},
		{"idle timeout", nil, withProtocolOptions(time.Minute, 0), false},
		{"per connection buffer", nil, func(c *clusterv3.Cluster) { c.PerConnectionBufferLimitBytes = wrapperspb.UInt32(1) }, false},
		{"keepalive", nil, func(c *clusterv3.Cluster) {
			c.UpstreamConnectionOptions = &clusterv3.UpstreamConnectionOptions{TcpKeepalive: &corev3.TcpKeepalive{}}
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b []func(*clusterv3.Cluster)
			if tt.base != nil {
				b = append(b, tt.base)
			}
			if got := base(b...).connCompatible(base(tt.mod)); got != tt.want {
				t.Errorf("connCompatible = %v, want %v", got, tt.want)
			}
		})
	}
}
