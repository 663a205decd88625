package upstream

import (
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"google.golang.org/protobuf/types/known/durationpb"
)

type healthEvent struct {
	cluster, addr string
	healthy       bool
}

func healthEvents(t *testing.T) (chan healthEvent, func(string, string, bool)) {
	ch := make(chan healthEvent, 100)
	return ch, func(c, a string, h bool) { ch <- healthEvent{c, a, h} }
}

func nextEvent(t *testing.T, ch chan healthEvent, addr string, healthy bool) {
	t.Helper()
	select {
	case e := <-ch:
		if e.addr != addr || e.healthy != healthy {
			t.Fatalf("event %+v, want %s healthy=%v", e, addr, healthy)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no health event for %s healthy=%v", addr, healthy)
	}
}

// flipServer is an HTTP server whose status can be switched; gate, when
// non-nil, holds the first request until closed.
func flipServer(t *testing.T, gate chan struct{}) (*atomic.Int32, string) {
	t.Helper()
	var status atomic.Int32
	status.Store(200)
	var first atomic.Bool
	first.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if gate != nil && first.CompareAndSwap(true, false) {
			<-gate
		}
		w.WriteHeader(int(status.Load()))
	}))
	t.Cleanup(srv.Close)
	return &status, srv.Listener.Addr().String()
}

func TestActiveHTTPHealthChecks(t *testing.T) {
	checkGoroutines(t)
	gate := make(chan struct{})
	_, addrA := flipServer(t, nil)
	statusB, addrB := flipServer(t, gate)
	events, hook := healthEvents(t)
	m := newManager(t, Options{OnHealthChange: hook})
	mustUpdate(t, m, static(t, "c", addrs(addrA, addrB), withHTTPCheck("/healthz", 20*time.Millisecond)))
	c := cluster(t, m, "c")

	nextEvent(t, events, addrA, true)
	b := hostByAddr(c, addrB)
	if b.Healthy() {
		t.Fatal("host healthy before its first check")
	}
	st := c.status()
	if flags := st.Hosts[1].HealthFlags; flags != "/failed_active_hc/pending_active_hc" {
		t.Errorf("pending host flags %v", flags)
	}
	if counts := pickCounts(c, 100); counts[addrA] != 100 {
		t.Errorf("picks with B pending: %v", counts)
	}

	close(gate)
	nextEvent(t, events, addrB, true)
	if counts := pickCounts(c, 100); counts[addrA] != 50 || counts[addrB] != 50 {
		t.Errorf("picks with both healthy: %v", counts)
	}
	if c.Stats().MembershipHealthy.Value() != 2 || c.Stats().MembershipTotal.Value() != 2 {
		t.Error("membership gauges")
	}

	statusB.Store(503)
	nextEvent(t, events, addrB, false)
	st = c.status()
	if hs := st.Hosts[1]; hs.Healthy || hs.HealthCheckFailure != "http status 503" || hs.Stats["health_check_fail"] == 0 || hs.HealthFlags != "/failed_active_hc" {
		t.Errorf("unhealthy host status %+v", hs)
	}
	if c.Stats().MembershipHealthy.Value() != 1 {
		t.Error("membership healthy gauge not updated")
	}
	if counts := pickCounts(c, 100); counts[addrA] != 100 {
		t.Errorf("picks with B failing: %v", counts)
	}

	statusB.Store(200)
	nextEvent(t, events, addrB, true)
	eventually(t, "failure reason cleared", func() bool { return c.status().Hosts[1].HealthCheckFailure == "" })
}

func TestActiveTCPHealthCheck(t *testing.T) {
	checkGoroutines(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	addr := ln.Addr().String()
	events, hook := healthEvents(t)
	m := newManager(t, Options{OnHealthChange: hook})
	mustUpdate(t, m, static(t, "c", addrs(addr), withTCPCheck(10*time.Millisecond)))
	nextEvent(t, events, addr, true)
	ln.Close()
	<-accepted
	nextEvent(t, events, addr, false)
	c := cluster(t, m, "c")
	if got := c.status().Hosts[0].HealthCheckFailure; got != "connect: connection refused" {
		t.Errorf("reason %q", got)
	}
	// Panic mode: the only host is unhealthy, so it is still picked.
	if c.Pick(nil) == nil || !c.status().Panic {
		t.Error("panic mode did not pick the unhealthy host")
	}
}

func TestHealthChecksStopWithCluster(t *testing.T) {
	checkGoroutines(t)
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(srv.Close)
	events, hook := healthEvents(t)
	m := newManager(t, Options{OnHealthChange: hook})
	addr := srv.Listener.Addr().String()
	baseline := runtime.NumGoroutine()
	settled := func(what string) {
		t.Helper()
		eventually(t, what, func() bool { return runtime.NumGoroutine() <= baseline })
	}

	mustUpdate(t, m, static(t, "c", addrs(addr), withHTTPCheck("/", 5*time.Millisecond)))
	nextEvent(t, events, addr, true)
	mustUpdate(t, m) // remove the cluster
	settled("checkers of a removed cluster to stop")

	// A host removed by an endpoint update stops being checked too.
	mustUpdate(t, m, eds("e", withHTTPCheck("/", 5*time.Millisecond)))
	if err := m.UpdateEndpoints("e", cla(t, "e", ep{addr: addr})); err != nil {
		t.Fatal(err)
	}
	nextEvent(t, events, addr, true)
	if err := m.UpdateEndpoints("e", cla(t, "e")); err != nil {
		t.Fatal(err)
	}
	settled("checker of a removed host to stop")
}

func TestDNSCluster(t *testing.T) {
	s := newDNSServer(t, true)
	// Checked while the DNS server still answers: a lookup cancelled by
	// Close lingers in the Go resolver until its query is answered.
	checkGoroutines(t)
	s.set("backend.weft.test.", "127.0.0.1", "127.0.0.2")
	m := newManager(t, Options{Resolver: s.resolver()})
	dnsCluster := func(name string, typ clusterv3.Cluster_DiscoveryType) *clusterv3.Cluster {
		return static(t, name, addrs("backend.weft.test.:8080"), func(c *clusterv3.Cluster) {
			c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: typ}
			c.DnsRefreshRate = durationpb.New(10 * time.Millisecond)
			c.DnsLookupFamily = clusterv3.Cluster_V4_ONLY
		})
	}
	mustUpdate(t, m, dnsCluster("strict", clusterv3.Cluster_STRICT_DNS))
	c := cluster(t, m, "strict")
	// The first lookup is held by the server: nothing to pick yet.
	if h := c.Pick(nil); h != nil || len(c.Hosts()) != 0 {
		t.Fatalf("picked %v before DNS answered", h)
	}
	close(s.gate)
	hostsAre := func(c *Cluster, want string) {
		t.Helper()
		eventually(t, "hosts "+want, func() bool { return strings.Join(hostAddrs(c), ",") == want })
	}
	hostsAre(c, "127.0.0.1:8080,127.0.0.2:8080")
	h2 := hostByAddr(c, "127.0.0.2:8080")
	if got := c.status().Hosts[1].Hostname; got != "backend.weft.test." {
		t.Errorf("hostname %q", got)
	}

	s.set("backend.weft.test.", "127.0.0.2", "127.0.0.3")
	hostsAre(c, "127.0.0.2:8080,127.0.0.3:8080")
	if hostByAddr(c, "127.0.0.2:8080") != h2 {
		t.Error("address that stayed got a new Host")
	}

	s.setFail(true)
	eventually(t, "DNS failure recorded", func() bool { return strings.Contains(c.status().LastError, "dns backend.weft.test.") })
	s.waitQueries(t, 3)
	hostsAre(c, "127.0.0.2:8080,127.0.0.3:8080") // last good kept
	s.setFail(false)
	eventually(t, "DNS failure cleared", func() bool { return c.status().LastError == "" })

	// LOGICAL_DNS uses the first address only; a config change keeps the
	// resolved addresses while the new cluster re-resolves.
	mustUpdate(t, m, dnsCluster("strict", clusterv3.Cluster_LOGICAL_DNS))
	c2 := cluster(t, m, "strict")
	if c2 == c || len(c2.Hosts()) == 0 {
		t.Errorf("rebuilt DNS cluster has hosts %v", hostAddrs(c2))
	}
	hostsAre(c2, "127.0.0.2:8080")
}
