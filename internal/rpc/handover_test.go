package rpc

import (
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/internal/codec/bolt"
)

// TestProxyKeepsUpstreamConnsAcrossClusterUpdate: a CDS change that only
// touches connection-neutral settings (here the circuit breakers) rebuilds
// the cluster, and its multiplexed upstream connection moves to the new
// cluster: idle at once, or once the request in flight on it is answered.
// A change that does shape connections (TCP keepalive) makes a new one.
func TestProxyKeepsUpstreamConnsAcrossClusterUpdate(t *testing.T) {
	up := startEcho(t, 300*time.Millisecond)
	c0 := staticCluster("up", up.ln.Addr().String())
	tp := startProxy(t, routeAll("up", 5*time.Second), PoolConfig{}, c0)
	cl := dialClient(t, tp.addr)
	call := func(what string) {
		t.Helper()
		r, err := cl.call(request("com.example.Echo", "echo", []byte(what)), 5*time.Second)
		if err != nil || r.RespStatus != bolt.StatusSuccess || string(r.Content) != what {
			t.Fatalf("%s: %v %+v", what, err, r)
		}
	}
	accepted := func() int {
		up.mu.Lock()
		defer up.mu.Unlock()
		return len(up.conns)
	}
	update := func(c *clusterv3.Cluster) {
		t.Helper()
		if err := tp.cm.Update([]*clusterv3.Cluster{c}); err != nil {
			t.Fatal(err)
		}
	}
	breakers := func(c *clusterv3.Cluster, n uint32) *clusterv3.Cluster {
		c = proto.Clone(c).(*clusterv3.Cluster)
		c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{MaxConnections: wrapperspb.UInt32(n)}}}
		return c
	}
	call("first")
	if accepted() != 1 {
		t.Fatalf("upstream connections: %d", accepted())
	}
	// Idle connection: moves at once.
	update(breakers(c0, 100))
	call("after an idle handover")
	// Busy connection: a request in flight during the update.
	done := make(chan struct{})
	go func() { defer close(done); call("in flight during the update") }()
	time.Sleep(100 * time.Millisecond)
	update(breakers(c0, 200))
	<-done
	call("after a busy handover")
	if n := accepted(); n != 1 {
		t.Fatalf("the upstream accepted %d connections across two breaker changes, want 1 (kept)", n)
	}
	if v := tp.stats.UpstreamCxActive.Value(); v != 1 {
		t.Errorf("upstream_cx_active = %d, want 1", v)
	}
	if h := tp.cm.Get("up").Hosts()[0]; h.Stats().ConnActive.Value() != 1 {
		t.Errorf("the new host's cx_active = %d, want 1", h.Stats().ConnActive.Value())
	}
	// A change that shapes connections: a new connection.
	ka := breakers(c0, 200)
	ka.UpstreamConnectionOptions = &clusterv3.UpstreamConnectionOptions{}
	update(ka)
	call("after an incompatible change")
	if n := accepted(); n != 2 {
		t.Fatalf("after a connection-shaping change the upstream accepted %d connections, want 2", n)
	}
}
