package controlplane

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	xdstypev3 "github.com/cncf/xds/go/xds/type/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/app"
	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/registry"
	"github.com/weftmesh/weft/internal/router"
	"github.com/weftmesh/weft/internal/upstream"

	// Weft's own parsers for the network filters the compiler emits, as
	// cmd/weft links them.
	_ "github.com/weftmesh/weft/extensions/codecs/bolt"
	_ "github.com/weftmesh/weft/extensions/codecs/dubbo"
	_ "github.com/weftmesh/weft/extensions/filters/network/hcm"
	_ "github.com/weftmesh/weft/extensions/filters/network/rpcproxy"
	_ "github.com/weftmesh/weft/extensions/filters/network/tcpproxy"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

const exampleRules = "../../examples/control-plane/rules"

func loadDir(t *testing.T, dir string, inst map[string][]registry.Instance) *model {
	t.Helper()
	sc := scanDir(dir, nil)
	if sc.err != nil {
		t.Fatal(sc.err)
	}
	m, errs, _ := loadRules(sc.files, inst)
	if len(errs) > 0 {
		t.Fatalf("rules refused: %v", errs)
	}
	return m
}

func resources[T proto.Message](g *group, t types.ResponseType) map[string]T {
	out := map[string]T{}
	for n, r := range g.snapshot.Resources[t].Items {
		out[n] = r.Resource.(T)
	}
	return out
}

func names[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func mustJSON(t *testing.T, m proto.Message) string {
	t.Helper()
	b, err := protojson.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var c bytes.Buffer
	if err := json.Compact(&c, b); err != nil {
		t.Fatal(err)
	}
	return c.String()
}

// TestCompileExample checks what the example rules compile to for each
// kind of node.
func TestCompileExample(t *testing.T) {
	m := loadDir(t, exampleRules, nil)

	pp := m.groupFor("productpage-1", nil)
	if pp.sidecar == nil || pp.sidecar.name != "productpage" {
		t.Fatalf("productpage-1 got sidecar %v", pp.sidecar)
	}
	clusters := resources[*clusterv3.Cluster](pp, types.Cluster)
	want := []string{"cache", "com.example.EchoService", "com.example.EchoService|version=1.0", "com.example.EchoService|version=2.0",
		"ratings", "reviews", "reviews|version=v1", "reviews|version=v2"}
	if got := names(clusters); !slices.Equal(got, want) {
		t.Errorf("clusters %v, want %v", got, want)
	}
	wantCluster := `{"name":"reviews|version=v2","type":"EDS","edsClusterConfig":{"edsConfig":{"ads":{},"resourceApiVersion":"V3"}},` +
		`"connectTimeout":"1s","circuitBreakers":{"thresholds":[{"maxConnections":1024,"maxPendingRequests":1024,"maxRequests":1024,"maxRetries":3}]},` +
		`"healthChecks":[{"timeout":"1s","interval":"5s","unhealthyThreshold":3,"healthyThreshold":2,"httpHealthCheck":{"path":"/healthz"}}]}`
	equalProto(t, clusters["reviews|version=v2"], wantCluster)
	if got := clusters["com.example.EchoService"].GetLbPolicy(); got != clusterv3.Cluster_LEAST_REQUEST {
		t.Errorf("echo lb_policy %v", got)
	}
	loads := resources[*endpointv3.ClusterLoadAssignment](pp, types.Endpoint)
	wantCLA := `{"clusterName":"reviews|version=v2","endpoints":[{"lbEndpoints":[{"endpoint":{"address":{"socketAddress":{"address":"127.0.0.1","portValue":9082}}},` +
		`"metadata":{"filterMetadata":{"envoy.lb":{"version":"v2"}}},"loadBalancingWeight":1}]}]}`
	equalProto(t, loads["reviews|version=v2"], wantCLA)
	if n := len(loads["reviews"].GetEndpoints()[0].GetLbEndpoints()); n != 2 {
		t.Errorf("reviews has %d endpoints, want 2", n)
	}

	listeners := resources[*listenerv3.Listener](pp, types.Listener)
	if got := names(listeners); !slices.Equal(got, []string{"bolt_egress", "cache", "http_egress"}) {
		t.Fatalf("listeners %v", got)
	}
	hcm := &hcmv3.HttpConnectionManager{}
	if err := listeners["http_egress"].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	if hcm.GetRds().GetRouteConfigName() != "http_egress" || hcm.GetRds().GetConfigSource().GetAds() == nil ||
		hcm.GetHttpFilters()[0].GetName() != routerName || hcm.GetStatPrefix() != "http_egress" {
		t.Errorf("hcm %s", mustJSON(t, hcm))
	}
	ts := &xdstypev3.TypedStruct{}
	bolt := listeners["bolt_egress"].GetFilterChains()[0].GetFilters()[0]
	if err := bolt.GetTypedConfig().UnmarshalTo(ts); err != nil {
		t.Fatal(err)
	}
	if got, want := mustJSON(t, ts), `{"typeUrl":"type.weftmesh.io/weft.filters.network.rpc_proxy.v1.RpcProxy","value":{"protocols":["bolt"],"rds":{"route_config_name":"bolt_egress"},"stat_prefix":"bolt_egress"}}`; got != want || bolt.GetName() != rpcProxyName {
		t.Errorf("rpc proxy %s %s, want %s", bolt.GetName(), got, want)
	}
	tcp := &tcpv3.TcpProxy{}
	if err := listeners["cache"].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().UnmarshalTo(tcp); err != nil || tcp.GetCluster() != "cache" {
		t.Errorf("tcp proxy %v %v", tcp, err)
	}
	if sa := listeners["http_egress"].GetAddress().GetSocketAddress(); sa.GetAddress() != "127.0.0.1" || sa.GetPortValue() != 15001 {
		t.Errorf("http_egress address %v", sa)
	}

	routes := resources[*routev3.RouteConfiguration](pp, types.Route)
	if got := names(routes); !slices.Equal(got, []string{"bolt_egress", "http_egress"}) {
		t.Fatalf("routes %v", got)
	}
	wantHTTP := `{"name":"http_egress","virtualHosts":[` +
		`{"name":"ratings","domains":["ratings","ratings:9090","ratings:15001"],"routes":[{"match":{"prefix":"/"},"route":{"cluster":"ratings"}}]},` +
		`{"name":"reviews","domains":["reviews","reviews:9080","reviews:15001"],"routes":[` +
		`{"match":{"prefix":"/","headers":[{"name":"end-user","stringMatch":{"exact":"jason"}}]},"route":{"cluster":"reviews|version=v2"},"name":"jason-sees-v2"},` +
		`{"match":{"prefix":"/"},"route":{"weightedClusters":{"clusters":[{"name":"reviews|version=v1","weight":90},{"name":"reviews|version=v2","weight":10}]},` +
		`"timeout":"3s","retryPolicy":{"retryOn":"connect-failure,5xx","numRetries":2,"perTryTimeout":"1s"}},"name":"canary"}]}]}`
	equalProto(t, routes["http_egress"], wantHTTP)
	wantBolt := `{"name":"bolt_egress","virtualHosts":[{"name":"com.example.EchoService","domains":["com.example.EchoService"],"routes":[` +
		`{"match":{"prefix":"","headers":[{"name":"version","stringMatch":{"exact":"2.0"}}]},"route":{"cluster":"com.example.EchoService|version=2.0"},"name":"callers-of-2.0"},` +
		`{"match":{"path":"refund"},"route":{"cluster":"com.example.EchoService|version=1.0","timeout":"10s"},"name":"refund"},` +
		`{"match":{"prefix":""},"route":{"cluster":"com.example.EchoService|version=1.0","timeout":"3s","retryPolicy":{"retryOn":"connect-failure,refused-stream","numRetries":1}},"name":"default"}]}]}`
	equalProto(t, routes["bolt_egress"], wantBolt)

	// The reviews sidecar only sees ratings.
	rv := m.groupFor("reviews-7", map[string]string{"app": "reviews"})
	if rv.sidecar == nil || rv.sidecar.name != "reviews" {
		t.Fatalf("reviews-7 got %v", rv.sidecar)
	}
	if got := names(resources[*clusterv3.Cluster](rv, types.Cluster)); !slices.Equal(got, []string{"ratings"}) {
		t.Errorf("reviews sidecar clusters %v", got)
	}
	// A node matching no sidecar: every cluster, no listener.
	none := m.groupFor("batch-job", map[string]string{"app": "batch"})
	if none.sidecar != nil || len(none.snapshot.Resources[types.Listener].Items) != 0 ||
		len(none.snapshot.Resources[types.Cluster].Items) != len(want) {
		t.Errorf("unmatched node: sidecar %v, %d listeners, %d clusters", none.sidecar, len(none.snapshot.Resources[types.Listener].Items), len(none.snapshot.Resources[types.Cluster].Items))
	}
	golden(t, "example.json", m)
}

// equalProto compares got with the message wantJSON describes.
func equalProto(t *testing.T, got proto.Message, wantJSON string) {
	t.Helper()
	want := got.ProtoReflect().New().Interface()
	if err := protojson.Unmarshal([]byte(wantJSON), want); err != nil {
		t.Fatalf("bad expectation %s: %v", wantJSON, err)
	}
	if !proto.Equal(got, want) {
		t.Errorf("%T:\n got %s\nwant %s", got, mustJSON(t, got), mustJSON(t, want))
	}
}

// golden compares the config dump of every group with a file.
func golden(t *testing.T, name string, m *model) {
	t.Helper()
	var b bytes.Buffer
	groups := append(append([]*group(nil), m.groups...), m.none)
	for _, g := range groups {
		title := "(no sidecar)"
		if g.sidecar != nil {
			title = g.sidecar.name
		}
		b.WriteString("# " + title + " " + g.version + "\n")
		for _, tt := range []types.ResponseType{types.Cluster, types.Endpoint, types.Listener, types.Route} {
			res := g.snapshot.Resources[tt]
			for _, n := range names(res.Items) {
				js := mustJSON(t, res.Items[n].Resource)
				var ind bytes.Buffer
				_ = json.Indent(&ind, []byte(js), "", "  ")
				b.Write(ind.Bytes())
				b.WriteByte('\n')
			}
		}
	}
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if !bytes.Equal(want, b.Bytes()) {
		t.Errorf("%s differs from the compiled output; run go test -run %s -update and review the diff", path, t.Name())
	}
}

// richRules exercises every protocol, listener kind and match kind.
var richRules = files("all.yaml", `services:
- name: web
  protocol: http
  hosts: [web.example.com, "*.web.internal"]
  endpoints:
  - {address: 10.0.0.1:8080, labels: {version: v1, zone: a}, weight: 3}
  - {address: "[::1]:8081", labels: {version: v2, zone: b}}
  traffic_policy: {lb_policy: ring_hash, health_check: {interval: 2s, timeout: 1s}}
- name: web-next
  protocol: http
  endpoints: [{address: 10.0.0.9:8080}]
- name: greeter
  protocol: grpc
  port: 50051
  endpoints: [{address: 10.0.0.2:50051}]
  traffic_policy: {lb_policy: maglev, connect_timeout: 250ms}
- name: com.foo.EchoService
  protocol: bolt
  endpoints: [{address: 10.0.0.3:12200, labels: {version: "1.0", group: blue}}]
- name: org.apache.dubbo.Demo
  protocol: dubbo
  endpoints: [{address: 10.0.0.4:20880, labels: {version: 2.0.0}}]
  traffic_policy: {lb_policy: random, circuit_breakers: {max_requests: 10}}
- name: db
  protocol: tcp
  endpoints: [{address: 10.0.0.5:5432}]
routes:
- service: web
  rules:
  - match:
      path: /exact
      headers:
      - {name: x-a, exact: "1"}
      - {name: x-b, prefix: p}
      - {name: x-c, suffix: s}
      - {name: x-d, regex: "^[a-z]+$"}
      - {name: x-e, present: true}
    destinations: [{subset: {version: v2, zone: b}}]
  - match: {prefix: /api}
    destinations:
    - {subset: {version: v1}, weight: 50}
    - {service: web-next, weight: 50}
    timeout: 0s
    retries: {attempts: 3, retry_on: [gateway-error, reset, retriable-4xx], per_try_timeout: 100ms}
  - destinations: [{}]
- service: org.apache.dubbo.Demo
  rules:
  - match: {method: sayHello, group: g1}
    destinations: [{service: com.foo.EchoService}]
  - destinations: [{}]
sidecars:
- name: everything
  listeners:
  - {name: http, address: 127.0.0.1:15001, protocol: http}
  - {name: bolt, address: 127.0.0.1:12200, protocol: bolt}
  - {name: dubbo, address: 127.0.0.1:20880, protocol: dubbo}
  - {name: rpc, address: "[::1]:15002", protocol: rpc}
  - {name: db, address: 0.0.0.0:15432, protocol: tcp, services: [db]}
`)

// TestEmittedConfigWeftAccepts runs everything the compiler emits through
// the go-control-plane validation rules and Weft's own parsers: network
// filters through their registered factories, route configurations
// through the router, clusters and endpoints through the upstream
// manager.
func TestEmittedConfigWeftAccepts(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    *model
	}{
		{"example", loadDir(t, exampleRules, nil)},
		{"rich", mustCompile(t, richRules)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, g := range append(append([]*group(nil), tc.m.groups...), tc.m.none) {
				checkWeftAccepts(t, g)
			}
		})
	}
}

func mustCompile(t *testing.T, fs []sourceFile) *model {
	t.Helper()
	m, errs, _ := loadRules(fs, nil)
	if len(errs) > 0 {
		t.Fatalf("rules refused: %v", errs)
	}
	return m
}

func checkWeftAccepts(t *testing.T, g *group) {
	t.Helper()
	mgr := upstream.NewManager(upstream.Options{})
	defer mgr.Close()
	var cs []*clusterv3.Cluster
	for name, r := range g.snapshot.Resources[types.Cluster].Items {
		c := r.Resource.(*clusterv3.Cluster)
		if err := c.ValidateAll(); err != nil {
			t.Errorf("cluster %s: PGV: %v", name, err)
		}
		cs = append(cs, c)
	}
	if err := mgr.Update(cs); err != nil {
		t.Errorf("Weft refuses the clusters: %v", err)
	}
	for name, r := range g.snapshot.Resources[types.Endpoint].Items {
		cla := r.Resource.(*endpointv3.ClusterLoadAssignment)
		if err := cla.ValidateAll(); err != nil {
			t.Errorf("endpoints %s: PGV: %v", name, err)
		}
		if err := mgr.UpdateEndpoints(name, proto.Clone(cla).(*endpointv3.ClusterLoadAssignment)); err != nil {
			t.Errorf("Weft refuses endpoints %s: %v", name, err)
		}
	}
	for name, r := range g.snapshot.Resources[types.Route].Items {
		rc := r.Resource.(*routev3.RouteConfiguration)
		if err := rc.ValidateAll(); err != nil {
			t.Errorf("routes %s: PGV: %v", name, err)
		}
		if _, err := router.Compile(rc); err != nil {
			t.Errorf("router.Compile(%s): %v", name, err)
			continue
		}
		for _, c := range clusterRefs(rc) {
			if _, ok := g.snapshot.Resources[types.Cluster].Items[c]; !ok {
				t.Errorf("routes %s name cluster %s, which the node does not get", name, c)
			}
		}
	}
	for name, r := range g.snapshot.Resources[types.Listener].Items {
		l := r.Resource.(*listenerv3.Listener)
		if err := l.ValidateAll(); err != nil {
			t.Errorf("listener %s: PGV: %v", name, err)
		}
		for _, fc := range l.GetFilterChains() {
			for _, f := range fc.GetFilters() {
				tu := config.TypeURL(f.GetTypedConfig())
				fac, ok := api.NetworkFilters.Lookup(f.GetName(), tu)
				if !ok {
					t.Errorf("listener %s: Weft knows no network filter %s (%s)", name, f.GetName(), tu)
					continue
				}
				p, err := fac.Parse(f.GetTypedConfig().GetValue(), tu)
				if err != nil {
					t.Errorf("listener %s: Weft's %s parser refuses the config: %v", name, f.GetName(), err)
					continue
				}
				if rn, ok := p.(interface{ RouteNames() []string }); ok {
					for _, n := range rn.RouteNames() {
						if _, ok := g.snapshot.Resources[types.Route].Items[n]; !ok {
							t.Errorf("listener %s wants routes %s, which the node does not get", name, n)
						}
					}
				}
				if cr, ok := p.(interface{ ClusterRefs() []string }); ok {
					for _, c := range cr.ClusterRefs() {
						if _, ok := g.snapshot.Resources[types.Cluster].Items[c]; !ok {
							t.Errorf("listener %s names cluster %s, which the node does not get", name, c)
						}
					}
				}
			}
		}
	}
}

func clusterRefs(rc *routev3.RouteConfiguration) []string {
	var out []string
	for _, vh := range rc.GetVirtualHosts() {
		for _, r := range vh.GetRoutes() {
			a := r.GetRoute()
			if c := a.GetCluster(); c != "" {
				out = append(out, c)
			}
			for _, w := range a.GetWeightedClusters().GetClusters() {
				out = append(out, w.GetName())
			}
		}
	}
	return out
}

// TestVersionsPerType: compiling the same rules twice gives the same
// versions; a change to one kind of resource changes only its type's
// version, so nodes get a push of that type alone.
func TestVersionsPerType(t *testing.T) {
	m1 := loadDir(t, exampleRules, nil)
	m2 := loadDir(t, exampleRules, nil)
	g1, g2 := m1.groupFor("productpage-1", nil), m2.groupFor("productpage-1", nil)
	if g1.version != g2.version {
		t.Fatalf("same rules, versions %s and %s", g1.version, g2.version)
	}
	// A registry instance of the Echo service changes endpoints only.
	m3 := loadDir(t, exampleRules, map[string][]registry.Instance{"com.example.EchoService": {
		{Service: "com.example.EchoService", Address: "127.0.0.1:12203", Protocol: "bolt", Metadata: map[string]string{"version": "2.0"}},
	}})
	g3 := m3.groupFor("productpage-1", nil)
	for _, tt := range []string{resource.ClusterType, resource.ListenerType, resource.RouteType} {
		if g1.versions[tt] != g3.versions[tt] {
			t.Errorf("%s version changed with the endpoints", tt)
		}
	}
	if g1.versions[resource.EndpointType] == g3.versions[resource.EndpointType] || g1.version == g3.version {
		t.Errorf("endpoint version did not change")
	}
	// The reviews sidecar does not see the Echo service: nothing changes.
	if a, b := m1.groupFor("r", map[string]string{"app": "reviews"}), m3.groupFor("r", map[string]string{"app": "reviews"}); a.version != b.version {
		t.Errorf("reviews sidecar version changed with an Echo endpoint")
	}
	// The instance is in the 2.0 subset, with its labels.
	cla := resources[*endpointv3.ClusterLoadAssignment](g3, types.Endpoint)["com.example.EchoService|version=2.0"]
	var addrs []string
	for _, le := range cla.GetEndpoints()[0].GetLbEndpoints() {
		sa := le.GetEndpoint().GetAddress().GetSocketAddress()
		addrs = append(addrs, fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue()))
	}
	if !slices.Equal(addrs, []string{"127.0.0.1:12202", "127.0.0.1:12203"}) {
		t.Errorf("2.0 subset %v", addrs)
	}
}

// TestRegistryMerge: instances of other protocols, bad addresses and
// duplicates of static endpoints are left out; metadata becomes labels and
// "weight" the load-balancing weight.
func TestRegistryMerge(t *testing.T) {
	m := mustCompile(t, files("s.yaml", baseServices))
	s := m.rules.services["com.foo.EchoService"]
	ps := &problems{}
	eps := mergeEndpoints(s, []registry.Instance{
		{Address: "127.0.0.1:12201", Protocol: "bolt", Metadata: map[string]string{"version": "9"}}, // static wins
		{Address: "10.0.0.7:12200", Protocol: "bolt", Metadata: map[string]string{"version": "2.0", "weight": "100", "bad key": "x"}},
		{Address: "10.0.0.8:20880", Protocol: "dubbo"},
		{Address: "host:1", Protocol: "bolt"},
	}, ps)
	if len(eps) != 2 || eps[0].addr.String() != "10.0.0.7:12200" || eps[0].weight != 100 || eps[0].labels["version"] != "2.0" ||
		len(eps[0].labels) != 2 || eps[1].labels["version"] != "1.0" {
		t.Errorf("endpoints %+v", eps)
	}
	if len(ps.list) != 1 || !strings.Contains(ps.list[0].Message, "host:1") {
		t.Errorf("problems %v", ps.list)
	}
}

// TestSidecarMatch: node id globs and metadata select the first matching
// sidecar rule.
func TestSidecarMatch(t *testing.T) {
	m := mustCompile(t, files("s.yaml", baseServices+`sidecars:
- name: canary-web
  match: {node_id: "web-*", metadata: {track: canary}}
  listeners: [{name: l, address: 127.0.0.1:1, protocol: http}]
- name: web
  match: {node_id: "web-*"}
  listeners: [{name: l, address: 127.0.0.1:2, protocol: http}]
- name: zone-a
  match: {metadata: {zone: a, app: x}}
  listeners: [{name: l, address: 127.0.0.1:3, protocol: http}]
`))
	for _, tc := range []struct {
		id   string
		meta map[string]string
		want string
	}{
		{"web-1", map[string]string{"track": "canary"}, "canary-web"},
		{"web-1", map[string]string{"track": "stable"}, "web"},
		{"web-1", nil, "web"},
		{"db-1", map[string]string{"zone": "a", "app": "x"}, "zone-a"},
		{"db-1", map[string]string{"zone": "a"}, ""},
		{"web", nil, ""},
	} {
		g := m.groupFor(tc.id, tc.meta)
		got := ""
		if g.sidecar != nil {
			got = g.sidecar.name
		}
		if got != tc.want {
			t.Errorf("node %s %v: sidecar %q, want %q", tc.id, tc.meta, got, tc.want)
		}
	}
}

// TestExampleSidecarBootstrap: examples/control-plane/sidecar.yaml is a
// bootstrap Weft accepts, whose xds cluster points at the control plane's
// default address.
func TestExampleSidecarBootstrap(t *testing.T) {
	b, err := config.Load("../../examples/control-plane/sidecar.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := app.Check(b); err != nil {
		t.Fatal(err)
	}
	if b.GetNode().GetId() != "productpage-1" || b.GetDynamicResources().GetAdsConfig().GetGrpcServices()[0].GetEnvoyGrpc().GetClusterName() != "xds" {
		t.Errorf("node %v, ads %v", b.GetNode(), b.GetDynamicResources().GetAdsConfig())
	}
	sa := b.GetStaticResources().GetClusters()[0].GetLoadAssignment().GetEndpoints()[0].GetLbEndpoints()[0].GetEndpoint().GetAddress().GetSocketAddress()
	if got := fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue()); got != DefaultXDSAddress {
		t.Errorf("xds cluster at %s, the control plane's default is %s", got, DefaultXDSAddress)
	}
	// The node matches the productpage sidecar rule.
	m := loadDir(t, exampleRules, nil)
	meta := flattenMetadata(b.GetNode().GetMetadata())
	if g := m.groupFor(b.GetNode().GetId(), meta); g.sidecar == nil || g.sidecar.name != "productpage" {
		t.Errorf("the example node gets sidecar %v", g.sidecar)
	}
}
