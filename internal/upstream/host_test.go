package upstream

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/upstream/pool"
)

// echoServer is a loopback server that echoes until the client closes.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() { io.Copy(c, c); c.Close() })
		}
	})
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return ln.Addr().String()
}

func TestHostDialTimeout(t *testing.T) {
	tests := []struct {
		name    string
		timeout time.Duration
		ctx     func() (context.Context, context.CancelFunc)
	}{
		{"connect_timeout", 30 * time.Millisecond, func() (context.Context, context.CancelFunc) {
			return context.WithCancel(context.Background())
		}},
		{"caller deadline", time.Minute, func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 30*time.Millisecond)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The hook blocks like an unanswered SYN until the context ends.
			blackhole := func(ctx context.Context, _, _ string) (net.Conn, error) {
				<-ctx.Done()
				return nil, ctx.Err()
			}
			m := newManager(t, Options{Dial: blackhole})
			mustUpdate(t, m, static(t, "c", addrs("127.0.0.1:9"), func(c *clusterv3.Cluster) {
				c.ConnectTimeout = durationpb.New(tt.timeout)
			}))
			c := cluster(t, m, "c")
			ctx, cancel := tt.ctx()
			defer cancel()
			done := make(chan error, 1)
			go func() {
				_, err := c.Pick(nil).Dial(ctx)
				done <- err
			}()
			select {
			case err := <-done:
				if !errors.Is(err, context.DeadlineExceeded) {
					t.Fatalf("err = %v", err)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("Dial ignored its deadline")
			}
			if c.Stats().UpstreamConnFailure.Value() != 1 || c.Pick(nil).Stats().ConnFailure.Value() != 1 {
				t.Error("failure not counted")
			}
		})
	}
}

func TestHostPoolLazyPerProtocol(t *testing.T) {
	m := newManager(t, Options{})
	mustUpdate(t, m, static(t, "c", addrs("10.0.0.1:80")))
	h := cluster(t, m, "c").Hosts()[0]
	var made sync.Map
	mk := func(proto string) func(api.Host) api.ConnPool {
		return func(api.Host) api.ConnPool {
			if _, dup := made.LoadOrStore(proto, true); dup {
				t.Errorf("%s pool made twice", proto)
			}
			return &fakePool{}
		}
	}
	var wg sync.WaitGroup
	got := make([]api.ConnPool, 16)
	for i := range got {
		wg.Go(func() { got[i] = h.Pool("http1", mk("http1")) })
	}
	wg.Wait()
	for _, p := range got {
		if p != got[0] {
			t.Fatal("different pools for one protocol")
		}
	}
	if h.Pool("http2", mk("http2")) == got[0] {
		t.Error("protocols share a pool")
	}
}

func TestPoolThroughCluster(t *testing.T) {
	addr := echoServer(t)
	m := newManager(t, Options{})
	mustUpdate(t, m, static(t, "c", addrs(addr), func(c *clusterv3.Cluster) {
		c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{
			{MaxConnections: wrapperspb.UInt32(1)},
		}}
		c.CommonHttpProtocolOptions = &corev3.HttpProtocolOptions{MaxRequestsPerConnection: wrapperspb.UInt32(10)}
	}))
	c := cluster(t, m, "c")
	if cfg := c.PoolConfig(); cfg.MaxRequestsPerConn != 10 || cfg.IdleTimeout != pool.DefaultIdleTimeout || cfg.Limits != c {
		t.Errorf("pool config %+v", cfg)
	}
	h := c.Pick(nil)
	p := h.Pool("http1", func(h api.Host) api.ConnPool { return pool.New(h, c.PoolConfig()) }).(*pool.Pool)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	conn, _, err := p.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	short, cancelShort := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancelShort()
	if _, _, err := p.Get(short); !errors.Is(err, pool.ErrOverflow) {
		t.Fatalf("second Get with max_connections=1: %v", err)
	}
	// The request waited as pending (the pending budget had room) and
	// timed out: that is not a breaker overflow, as in Envoy.
	if n := c.Stats().Overflow.Value(); n != 0 {
		t.Errorf("overflow = %d for a pending request that timed out, want 0", n)
	}
	p.Put(conn, true)
	conn2, reused, err := p.Get(ctx)
	if err != nil || !reused || conn2 != conn {
		t.Fatalf("reuse: %v %v", reused, err)
	}
	p.Put(conn2, true)
	if c.Stats().UpstreamConnTotal.Value() != 1 || c.status().Breakers[api.ResConnections].Open != 1 {
		t.Errorf("conn total %d, breaker open %d", c.Stats().UpstreamConnTotal.Value(), c.status().Breakers[api.ResConnections].Open)
	}
	// Removing the cluster drains the pool: the idle conn closes and the
	// breaker unit comes back.
	mustUpdate(t, m)
	if p.Open() != 0 || c.status().Breakers[api.ResConnections].Open != 0 || c.Stats().UpstreamConnActive.Value() != 0 {
		t.Errorf("after removal: open %d, breaker %d, active %d", p.Open(), c.status().Breakers[api.ResConnections].Open, c.Stats().UpstreamConnActive.Value())
	}
}
