package upstream

import (
	"encoding/json"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/admin"
	"github.com/weftmesh/weft/internal/tlsctx"
)

// fakePool records Drain and Close.
type fakePool struct{ drained, closed atomic.Int32 }

func (p *fakePool) Drain() { p.drained.Add(1) }
func (p *fakePool) Close() { p.closed.Add(1) }

func TestUpdateRejectsInvalidWithFieldPath(t *testing.T) {
	good := func(name string) *clusterv3.Cluster { return static(t, name, addrs("10.0.0.1:80")) }
	tests := []struct {
		name    string
		bad     *clusterv3.Cluster
		wantErr string
	}{
		{"not an ip", static(t, "b", addrs("10.0.0.1:80", "db.internal:80")),
			`cluster "b": load_assignment.endpoints[0].lb_endpoints[1].endpoint.address.socket_address.address: "db.internal" is not an IP address`},
		{"missing address", func() *clusterv3.Cluster {
			c := static(t, "b", addrs("10.0.0.1:80", "10.0.0.2:80"))
			c.LoadAssignment.Endpoints[0].LbEndpoints[1].GetEndpoint().Address = nil
			return c
		}(), `cluster "b": load_assignment.endpoints[0].lb_endpoints[1].endpoint.address: required`},
		{"port zero", static(t, "b", addrs("10.0.0.1:0")),
			`cluster "b": load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.port_value: 0 is not a valid port`},
		{"duplicate address", static(t, "b", addrs("10.0.0.1:80", "10.0.0.1:80")),
			`cluster "b": load_assignment.endpoints[0].lb_endpoints[1].endpoint.address: 10.0.0.1:80 duplicates endpoints[0].lb_endpoints[0]`},
		{"zero weight", func() *clusterv3.Cluster {
			c := static(t, "b", addrs("10.0.0.1:80"))
			c.LoadAssignment.Endpoints[0].LbEndpoints[0].LoadBalancingWeight = wrapperspb.UInt32(0)
			return c
		}(), `cluster "b": load_assignment.endpoints[0].lb_endpoints[0].load_balancing_weight: must be at least 1`},
		{"bad hostname", func() *clusterv3.Cluster {
			c := static(t, "b", addrs("bad_host-.x:80"))
			c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS}
			c.LoadAssignment.Endpoints[0].LbEndpoints[0].GetEndpoint().GetAddress().GetSocketAddress().Address = "a..b"
			return c
		}(), `cluster "b": load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address: "a..b" is not a valid hostname`},
		{"health check path", static(t, "b", addrs("10.0.0.1:80"), withHTTPCheck("", time.Second)),
			`cluster "b": health_checks[0].http_health_check.path: required`},
		{"panic threshold", static(t, "b", addrs("10.0.0.1:80"), func(c *clusterv3.Cluster) {
			c.CommonLbConfig = &clusterv3.Cluster_CommonLbConfig{HealthyPanicThreshold: &typev3.Percent{Value: 150}}
		}), `cluster "b": common_lb_config.healthy_panic_threshold.value: 150 is outside [0, 100]`},
		{"tls without a context", static(t, "b", addrs("10.0.0.1:80"), func(c *clusterv3.Cluster) {
			c.TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.tls"}
		}), `cluster "b": transport_socket.typed_config: a TLS context is required`},
		{"alts", static(t, "b", addrs("10.0.0.1:80"), func(c *clusterv3.Cluster) {
			c.TransportSocket = &corev3.TransportSocket{Name: "envoy.transport_sockets.alts"}
		}), `cluster "b": transport_socket.name: transport socket "envoy.transport_sockets.alts" is not supported`},
		{"original dst", static(t, "b", nil, func(c *clusterv3.Cluster) {
			c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_ORIGINAL_DST}
		}), `cluster "b": type: ORIGINAL_DST is not supported`},
		{"connect timeout", static(t, "b", nil, func(c *clusterv3.Cluster) { c.ConnectTimeout = durationpb.New(0) }),
			`cluster "b": connect_timeout: must be a positive duration`},
		{"lb", static(t, "b", nil, withLB(clusterv3.Cluster_CLUSTER_PROVIDED)),
			`cluster "b": lb_policy: CLUSTER_PROVIDED is not supported`},
		{"duplicate name", good("a"), `cluster "a": name: duplicate of clusters[0]`},
		{"no name", good(""), `clusters[1]: name: required`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newManager(t, Options{})
			mustUpdate(t, m, good("a"), good("keep"))
			before := cluster(t, m, "a")
			err := m.Update([]*clusterv3.Cluster{good("a"), tt.bad, good("c")})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v\nwant %s", err, tt.wantErr)
			}
			if m.LastError() == nil {
				t.Error("LastError not recorded")
			}
			// Nothing changed: "c" was not added, "keep" not removed.
			if _, ok := m.Cluster("c"); ok {
				t.Error("cluster c added by a rejected update")
			}
			if _, ok := m.Cluster("keep"); !ok {
				t.Error("cluster keep removed by a rejected update")
			}
			if cluster(t, m, "a") != before {
				t.Error("cluster a replaced by a rejected update")
			}
		})
	}
}

func TestUpdateReportsEveryInvalidCluster(t *testing.T) {
	m := newManager(t, Options{})
	err := m.Update([]*clusterv3.Cluster{
		static(t, "x", addrs("nope:1")),
		static(t, "y", addrs("10.0.0.1:99999")),
	})
	if err == nil || !strings.Contains(err.Error(), `cluster "x"`) || !strings.Contains(err.Error(), `cluster "y"`) {
		t.Fatalf("err = %v", err)
	}
}

func TestUpdateKeepsUnchangedClusters(t *testing.T) {
	m := newManager(t, Options{})
	mk := func(policy clusterv3.Cluster_LbPolicy) []*clusterv3.Cluster {
		return []*clusterv3.Cluster{
			static(t, "same", addrs("10.0.0.1:80", "10.0.0.2:80")),
			static(t, "changed", addrs("10.0.0.3:80"), withLB(policy)),
			static(t, "removed", addrs("10.0.0.4:80")),
		}
	}
	mustUpdate(t, m, mk(clusterv3.Cluster_ROUND_ROBIN)...)
	same, changed, removed := cluster(t, m, "same"), cluster(t, m, "changed"), cluster(t, m, "removed")
	sameHost := hostByAddr(same, "10.0.0.1:80")
	removedHost := removed.Hosts()[0]
	pools := map[string]*fakePool{}
	for name, c := range map[string]*Cluster{"same": same, "changed": changed, "removed": removed} {
		p := &fakePool{}
		pools[name] = p
		got := c.Hosts()[0].Pool("http1", func(api.Host) api.ConnPool { return p })
		if got != p {
			t.Fatal("Pool did not return the new pool")
		}
	}
	same.TryAcquire(api.ResRequests) // in-flight state survives

	// Fresh protos, equal to the old ones except "changed"; "removed" goes.
	next := mk(clusterv3.Cluster_RANDOM)[:2]
	mustUpdate(t, m, next...)

	if cluster(t, m, "same") != same {
		t.Error("unchanged cluster was rebuilt")
	}
	if hostByAddr(same, "10.0.0.1:80") != sameHost {
		t.Error("unchanged cluster lost its Host")
	}
	if p := sameHost.Pool("http1", func(api.Host) api.ConnPool { t.Fatal("pool recreated"); return nil }); p != pools["same"] {
		t.Error("unchanged cluster lost its pool")
	}
	if same.status().Breakers[api.ResRequests].Open != 1 {
		t.Error("breaker state lost")
	}
	if cluster(t, m, "changed") == changed {
		t.Error("changed cluster was not rebuilt")
	}
	if _, ok := m.Cluster("removed"); ok {
		t.Error("removed cluster still present")
	}
	if pools["same"].drained.Load() != 0 {
		t.Error("kept pool drained")
	}
	if pools["changed"].drained.Load() != 1 || pools["removed"].drained.Load() != 1 {
		t.Errorf("replaced/removed pools drained %d/%d times, want 1/1",
			pools["changed"].drained.Load(), pools["removed"].drained.Load())
	}
	if h := hostByAddr(changed, "10.0.0.3:80"); h != nil {
		t.Error("stopped cluster still lists hosts")
	}
	// A pool asked of a removed host comes back draining.
	late := &fakePool{}
	removedHost.Pool("http2", func(api.Host) api.ConnPool { return late })
	if late.drained.Load() != 1 {
		t.Error("pool of removed host not drained")
	}
}

func TestUpdateEndpoints(t *testing.T) {
	m := newManager(t, Options{})
	mustUpdate(t, m, eds("svc"), static(t, "st", addrs("10.0.0.1:80")))
	c := cluster(t, m, "svc")
	if h := c.Pick(nil); h != nil {
		t.Fatalf("empty EDS cluster picked %v", h)
	}
	err := m.UpdateEndpoints("svc", cla(t, "svc",
		ep{addr: "10.0.1.1:80", weight: 1, meta: map[string]map[string]any{"envoy.lb": {"version": "v1", "canary": true, "n": 3}}},
		ep{addr: "10.0.1.2:80", weight: 3},
	))
	if err != nil {
		t.Fatal(err)
	}
	counts := pickCounts(c, 4000)
	if counts["10.0.1.1:80"] != 1000 || counts["10.0.1.2:80"] != 3000 {
		t.Errorf("weighted round robin counts %v", counts)
	}
	h1 := hostByAddr(c, "10.0.1.1:80")
	if h1.Metadata("envoy.lb.version") != "v1" || h1.Metadata("envoy.lb.canary") != "true" || h1.Metadata("envoy.lb.n") != "3" || h1.Metadata("envoy.lb.x") != "" {
		t.Errorf("metadata version=%q canary=%q n=%q", h1.Metadata("envoy.lb.version"), h1.Metadata("envoy.lb.canary"), h1.Metadata("envoy.lb.n"))
	}
	if h1.Locality().GetZone() != "z1" {
		t.Errorf("locality %v", h1.Locality())
	}
	p2 := &fakePool{}
	hostByAddr(c, "10.0.1.2:80").Pool("http1", func(api.Host) api.ConnPool { return p2 })

	// 10.0.1.1 stays (new weight and metadata), 10.0.1.2 goes, 10.0.1.3 comes.
	err = m.UpdateEndpoints("svc", cla(t, "svc",
		ep{addr: "10.0.1.1:80", weight: 5, meta: map[string]map[string]any{"envoy.lb": {"version": "v2"}}},
		ep{addr: "10.0.1.3:80"},
	))
	if err != nil {
		t.Fatal(err)
	}
	if hostByAddr(c, "10.0.1.1:80") != h1 {
		t.Error("staying address got a new Host")
	}
	if h1.Weight() != 5 || h1.Metadata("envoy.lb.version") != "v2" {
		t.Errorf("attributes not updated: weight %d version %q", h1.Weight(), h1.Metadata("envoy.lb.version"))
	}
	if p2.drained.Load() != 1 {
		t.Error("removed host's pool not drained")
	}
	if got := strings.Join(hostAddrs(c), ","); got != "10.0.1.1:80,10.0.1.3:80" {
		t.Errorf("hosts %s", got)
	}

	tests := []struct {
		cluster string
		cla     *endpointv3.ClusterLoadAssignment
		wantErr string
	}{
		{"nope", cla(t, "nope"), `cluster "nope": not found`},
		{"st", cla(t, "st"), `cluster "st": type STATIC does not take endpoint updates`},
		{"svc", cla(t, "svc", ep{addr: "10.0.1.1:80"}, ep{addr: "db:80"}),
			`cluster "svc": endpoints[0].lb_endpoints[1].endpoint.address.socket_address.address: "db" is not an IP address`},
	}
	for _, tt := range tests {
		if err := m.UpdateEndpoints(tt.cluster, tt.cla); err == nil || err.Error() != tt.wantErr {
			t.Errorf("err = %v, want %s", err, tt.wantErr)
		}
	}
	if got := strings.Join(hostAddrs(c), ","); got != "10.0.1.1:80,10.0.1.3:80" {
		t.Errorf("rejected update changed hosts: %s", got)
	}
	st := m.Snapshot()
	if len(st) != 2 || st[1].Name != "svc" || !strings.Contains(st[1].LastError, "not an IP address") {
		t.Errorf("snapshot %+v", st)
	}

	// A config change to the EDS cluster keeps its endpoints.
	mustUpdate(t, m, eds("svc", withLB(clusterv3.Cluster_RANDOM)), static(t, "st", addrs("10.0.0.1:80")))
	if c2 := cluster(t, m, "svc"); c2 == c || len(c2.Hosts()) != 2 {
		t.Errorf("rebuilt EDS cluster has hosts %v", hostAddrs(c2))
	}
}

func TestSnapshot(t *testing.T) {
	m := newManager(t, Options{})
	mustUpdate(t, m, static(t, "b", []ep{
		{addr: "10.0.0.1:80", weight: 2, meta: map[string]map[string]any{"envoy.lb": {"v": "1"}}},
		{addr: "10.0.0.2:80", health: corev3.HealthStatus_DRAINING},
	}, withLB(clusterv3.Cluster_MAGLEV)), static(t, "a", nil))
	st := m.Snapshot()
	if len(st) != 2 || st[0].Name != "a" || st[1].Name != "b" {
		t.Fatalf("snapshot order %+v", st)
	}
	b := st[1]
	if b.Type != "STATIC" || b.LBPolicy != "MAGLEV" || b.Panic || b.Breakers[api.ResRetries].Max != 3 || b.CircuitBreakers["max_connections"] != 1024 {
		t.Errorf("cluster status %+v", b)
	}
	if len(b.Hosts) != 2 {
		t.Fatalf("hosts %+v", b.Hosts)
	}
	h0, h1 := b.Hosts[0], b.Hosts[1]
	if h0.Address != "10.0.0.1:80" || !h0.Healthy || h0.Weight != 2 || h0.Metadata["envoy.lb.v"] != "1" || h0.Region != "r1" {
		t.Errorf("host 0 %+v", h0)
	}
	if h1.Healthy || h1.HealthFlags != "/failed_eds_health" {
		t.Errorf("host 1 %+v", h1)
	}
	if b.Stats.MembershipTotal.Value() != 2 || b.Stats.MembershipHealthy.Value() != 1 {
		t.Errorf("membership %d/%d", b.Stats.MembershipHealthy.Value(), b.Stats.MembershipTotal.Value())
	}
}

func TestClosedManager(t *testing.T) {
	m := NewManager(Options{})
	mustUpdate(t, m, static(t, "a", addrs("10.0.0.1:80")))
	m.Close()
	m.Close()
	if _, ok := m.Cluster("a"); ok {
		t.Error("lookup after Close")
	}
	if err := m.Update(nil); err == nil {
		t.Error("Update after Close succeeded")
	}
}

// sink records what is exported.
type sink struct {
	mu       sync.Mutex
	clusters map[string]*api.ClusterStats
	hosts    map[string]*api.HostStats // "cluster/addr"
}

func newSink() *sink {
	return &sink{clusters: map[string]*api.ClusterStats{}, hosts: map[string]*api.HostStats{}}
}

func (s *sink) RegisterCluster(name string, cs *api.ClusterStats) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clusters[name] = cs
}

func (s *sink) UnregisterCluster(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.clusters, name)
	for k := range s.hosts {
		if strings.HasPrefix(k, name+"/") {
			delete(s.hosts, k)
		}
	}
}

func (s *sink) RegisterHost(cluster, addr string, hs *api.HostStats, _ *api.Gauge) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hosts[cluster+"/"+addr] = hs
}

func (s *sink) UnregisterHost(cluster, addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.hosts, cluster+"/"+addr)
}

func (s *sink) hostKeys() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ks []string
	for k := range s.hosts {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return strings.Join(ks, ",")
}

func TestStatsExport(t *testing.T) {
	s := newSink()
	m := newManager(t, Options{Stats: s})
	mustUpdate(t, m, static(t, "a", addrs("10.0.0.1:80", "10.0.0.2:80")), eds("e"))
	a := cluster(t, m, "a")
	if s.clusters["a"] != a.Stats() || s.clusters["e"] == nil {
		t.Fatal("clusters not registered")
	}
	if got := s.hostKeys(); got != "a/10.0.0.1:80,a/10.0.0.2:80" {
		t.Errorf("hosts %s", got)
	}
	if err := m.UpdateEndpoints("e", cla(t, "e", ep{addr: "10.0.1.1:80"})); err != nil {
		t.Fatal(err)
	}
	if err := m.UpdateEndpoints("e", cla(t, "e", ep{addr: "10.0.1.2:80"})); err != nil {
		t.Fatal(err)
	}
	if got := s.hostKeys(); got != "a/10.0.0.1:80,a/10.0.0.2:80,e/10.0.1.2:80" {
		t.Errorf("after EDS change: %s", got)
	}
	// "a" changes (one host fewer): the new cluster's stats replace the
	// old, and the host that left is no longer exported. "e" is removed.
	mustUpdate(t, m, static(t, "a", addrs("10.0.0.2:80")))
	if s.clusters["a"] == a.Stats() || s.clusters["a"] != cluster(t, m, "a").Stats() {
		t.Error("replaced cluster's stats not re-registered")
	}
	if _, ok := s.clusters["e"]; ok {
		t.Error("removed cluster still exported")
	}
	if got := s.hostKeys(); got != "a/10.0.0.2:80" {
		t.Errorf("after replace: %s", got)
	}
	if s.hosts["a/10.0.0.2:80"] != cluster(t, m, "a").Hosts()[0].Stats() {
		t.Error("kept address exports the old host's stats")
	}
	m.Close()
	if len(s.clusters) != 0 || s.hostKeys() != "" {
		t.Error("Close left stats exported")
	}
}

func TestValidate(t *testing.T) {
	if err := Validate(static(t, "a", addrs("10.0.0.1:80")), tlsctx.Options{}); err != nil {
		t.Error(err)
	}
	if err := Validate(static(t, "", nil), tlsctx.Options{}); err == nil || err.Error() != "name: required" {
		t.Errorf("err = %v", err)
	}
	err := Validate(static(t, "a", addrs("x:80")), tlsctx.Options{})
	if err == nil || err.Error() != `load_assignment.endpoints[0].lb_endpoints[0].endpoint.address.socket_address.address: "x" is not an IP address` {
		t.Errorf("err = %v", err)
	}
}

// TestSnapshotAdminShape checks that the admin server can render the
// snapshot as Envoy-style text.
func TestSnapshotAdminShape(t *testing.T) {
	m := newManager(t, Options{})
	mustUpdate(t, m, static(t, "b", []ep{{addr: "10.0.0.1:80", weight: 2}, {addr: "10.0.0.2:80", health: corev3.HealthStatus_DRAINING}}))
	h := cluster(t, m, "b").Hosts()[0]
	h.Stats().ConnTotal.Add(7)
	b, err := json.Marshal(m.Snapshot())
	if err != nil {
		t.Fatal(err)
	}
	var got []admin.ClusterStatus
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("snapshot JSON does not fit admin.ClusterStatus: %v\n%s", err, b)
	}
	if len(got) != 1 || got[0].Name != "b" || got[0].CircuitBreakers["max_retries"] != 3 || len(got[0].Hosts) != 2 {
		t.Fatalf("admin view %+v", got)
	}
	h0, h1 := got[0].Hosts[0], got[0].Hosts[1]
	if h0.Address != "10.0.0.1:80" || h0.Weight != 2 || h0.Zone != "z1" || h0.Stats["cx_total"] != 7 || h0.HealthFlags != "" {
		t.Errorf("host 0 %+v", h0)
	}
	if h1.HealthFlags != "/failed_eds_health" {
		t.Errorf("host 1 %+v", h1)
	}
}
