package controlplane

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/structpb"
)

const waitFor = 5 * time.Second

const testServices = `services:
- name: reviews
  protocol: http
  endpoints:
  - {address: 127.0.0.1:9081, labels: {version: v1}}
  - {address: 127.0.0.1:9082, labels: {version: v2}}
- name: ratings
  protocol: http
  endpoints: [{address: 127.0.0.1:9091}]
`

const testRoutes = `routes:
- service: reviews
  rules:
  - destinations:
    - {subset: {version: v1}, weight: 90}
    - {subset: {version: v2}, weight: 10}
`

const testSidecars = `sidecars:
- name: web
  match: {node_id: "web-*"}
  listeners:
  - {name: http_egress, address: 127.0.0.1:15001, protocol: http}
- name: ratings-only
  match: {metadata: {app: ratings}}
  listeners:
  - {name: http_egress, address: 127.0.0.1:15002, protocol: http, services: [ratings]}
`

func writeRules(t *testing.T, dir string, kv ...string) {
	t.Helper()
	for i := 0; i+1 < len(kv); i += 2 {
		p := filepath.Join(dir, kv[i])
		tmp := p + ".tmp" // not a rule file: renamed into place at once
		if err := os.WriteFile(tmp, []byte(kv[i+1]), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, p); err != nil {
			t.Fatal(err)
		}
	}
}

func testDir(t *testing.T) string {
	dir := t.TempDir()
	writeRules(t, dir, "services.yaml", testServices, "routes.yaml", testRoutes, "sidecars.yaml", testSidecars)
	return dir
}

// startServer runs a control plane on loopback ports from :0, closed at
// cleanup.
func startServer(t *testing.T, o Options) *Server {
	t.Helper()
	if o.XDSAddress == "" {
		o.XDSAddress = "127.0.0.1:0"
	}
	if o.AdminAddress == "" {
		o.AdminAddress = "127.0.0.1:0"
	}
	if o.PollInterval == 0 {
		o.PollInterval = 20 * time.Millisecond
	}
	if o.Debounce == 0 {
		o.Debounce = 20 * time.Millisecond
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	s.Start()
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// leakCheck, called first in a test, checks after every other cleanup
// that no server goroutine is left.
func leakCheck(t *testing.T) {
	t.Cleanup(func() { noLeak(t) })
}

// noLeak waits for the servers' goroutines to end.
func noLeak(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for {
		buf := make([]byte, 1<<20)
		stacks := string(buf[:runtime.Stack(buf, true)])
		var left []string
		for _, g := range strings.Split(stacks, "\n\n") {
			if strings.Contains(g, "controlplane.(*Server)") || strings.Contains(g, "go-control-plane/pkg/server") ||
				strings.Contains(g, "grpc.(*Server)") || strings.Contains(g, "net/http.(*Server)") {
				left = append(left, g)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d goroutines left after Close:\n%s", len(left), strings.Join(left, "\n\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitFor)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func dial(t *testing.T, addr string) discoveryv3.AggregatedDiscoveryServiceClient {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return discoveryv3.NewAggregatedDiscoveryServiceClient(cc)
}

// sotw is a state-of-the-world ADS client, as a sidecar runs one.
type sotw struct {
	t      *testing.T
	stream grpc.BidiStreamingClient[discoveryv3.DiscoveryRequest, discoveryv3.DiscoveryResponse]
	node   *corev3.Node
	resps  chan *discoveryv3.DiscoveryResponse
	errc   chan error
	first  bool
}

func newSOTW(t *testing.T, addr string, node *corev3.Node) *sotw {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st, err := dial(t, addr).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	c := &sotw{t: t, stream: st, node: node, resps: make(chan *discoveryv3.DiscoveryResponse, 16), errc: make(chan error, 1), first: true}
	go func() {
		for {
			r, err := st.Recv()
			if err != nil {
				c.errc <- err
				return
			}
			c.resps <- r
		}
	}()
	return c
}

func (c *sotw) send(typeURL string, names []string, version, nonce string, nack string) {
	c.t.Helper()
	req := &discoveryv3.DiscoveryRequest{TypeUrl: typeURL, ResourceNames: names, VersionInfo: version, ResponseNonce: nonce}
	if c.first {
		req.Node, c.first = c.node, false
	}
	if nack != "" {
		req.ErrorDetail = &status.Status{Code: 3, Message: nack}
	}
	if err := c.stream.Send(req); err != nil {
		c.t.Fatal(err)
	}
}

// expect returns the next response, which must be of typeURL.
func (c *sotw) expect(typeURL string) *discoveryv3.DiscoveryResponse {
	c.t.Helper()
	select {
	case r := <-c.resps:
		if r.GetTypeUrl() != typeURL {
			c.t.Fatalf("got a %s response, want %s", r.GetTypeUrl(), typeURL)
		}
		return r
	case err := <-c.errc:
		c.t.Fatalf("stream ended waiting for %s: %v", typeURL, err)
	case <-time.After(waitFor):
		c.t.Fatalf("no %s response", typeURL)
	}
	return nil
}

// quiet checks that no response comes for d.
func (c *sotw) quiet(d time.Duration) {
	c.t.Helper()
	select {
	case r := <-c.resps:
		c.t.Fatalf("unexpected %s response version %s", r.GetTypeUrl(), r.GetVersionInfo())
	case <-time.After(d):
	}
}

// ack accepts r and keeps watching names of its type.
func (c *sotw) ack(r *discoveryv3.DiscoveryResponse, names []string) {
	c.send(r.GetTypeUrl(), names, r.GetVersionInfo(), r.GetNonce(), "")
}

func resourceNames(t *testing.T, r *discoveryv3.DiscoveryResponse) []string {
	t.Helper()
	var out []string
	for _, a := range r.GetResources() {
		out = append(out, nameOf(t, a))
	}
	sort.Strings(out)
	return out
}

func nameOf(t *testing.T, a *anypb.Any) string {
	t.Helper()
	m, err := a.UnmarshalNew()
	if err != nil {
		t.Fatal(err)
	}
	switch x := m.(type) {
	case *clusterv3.Cluster:
		return x.GetName()
	case *endpointv3.ClusterLoadAssignment:
		return x.GetClusterName()
	case *routev3.RouteConfiguration:
		return x.GetName()
	case interface{ GetName() string }:
		return x.GetName()
	}
	t.Fatalf("resource %T has no name", m)
	return ""
}

// subscribe takes a node through CDS, EDS, LDS and RDS, ACKing each, as a
// sidecar starting up does, and returns the last response of each type.
func (c *sotw) subscribe() map[string]*discoveryv3.DiscoveryResponse {
	c.t.Helper()
	out := map[string]*discoveryv3.DiscoveryResponse{}
	c.send(resource.ClusterType, nil, "", "", "")
	cds := c.expect(resource.ClusterType)
	c.ack(cds, nil)
	out[resource.ClusterType] = cds
	clusters := resourceNames(c.t, cds)
	c.send(resource.EndpointType, clusters, "", "", "")
	eds := c.expect(resource.EndpointType)
	c.ack(eds, clusters)
	out[resource.EndpointType] = eds
	c.send(resource.ListenerType, nil, "", "", "")
	lds := c.expect(resource.ListenerType)
	c.ack(lds, nil)
	out[resource.ListenerType] = lds
	routes := resourceNames(c.t, lds) // the listeners' RDS names are their own
	c.send(resource.RouteType, routes, "", "", "")
	rds := c.expect(resource.RouteType)
	c.ack(rds, routes)
	out[resource.RouteType] = rds
	return out
}

// acked waits until the server saw node ACK every type's current version.
func acked(t *testing.T, s *Server, node string) NodeStatus {
	t.Helper()
	var n NodeStatus
	eventually(t, "node "+node+" to ACK its snapshot", func() bool {
		st := s.Status(node)
		if len(st.Nodes) != 1 {
			return false
		}
		n = st.Nodes[0]
		for _, k := range []string{"clusters", "endpoints", "listeners", "routes"} {
			ts := n.Types[k]
			if ts.Want == "" || ts.Acked != ts.Want {
				return false
			}
		}
		return true
	})
	return n
}

func webNode(id string) *corev3.Node { return &corev3.Node{Id: id, Cluster: "web"} }

// TestADSStateOfTheWorld connects a real ADS client, takes it through
// CDS/EDS/LDS/RDS with ACKs, then changes a rule file: only the route
// configuration is pushed. A NACK shows in the node's status.
func TestADSStateOfTheWorld(t *testing.T) {
	leakCheck(t)
	dir := testDir(t)
	s := startServer(t, Options{RulesDir: dir})
	c := newSOTW(t, s.XDSAddr(), webNode("web-1"))
	got := c.subscribe()
	if n := resourceNames(t, got[resource.ClusterType]); !slices.Equal(n, []string{"ratings", "reviews", "reviews|version=v1", "reviews|version=v2"}) {
		t.Errorf("clusters %v", n)
	}
	if n := resourceNames(t, got[resource.ListenerType]); !slices.Equal(n, []string{"http_egress"}) {
		t.Errorf("listeners %v", n)
	}
	st := acked(t, s, "web-1")
	if st.Sidecar != "web" || st.Streams != 1 {
		t.Errorf("status %+v", st)
	}
	if all := s.Status(""); all.NodeCount != 1 || all.InSync != 1 || all.Nacking != 0 {
		t.Errorf("counts: %d nodes, %d in sync, %d nacking", all.NodeCount, all.InSync, all.Nacking)
	}
	oldRDS := got[resource.RouteType].GetVersionInfo()

	// A weight change is a route change only.
	writeRules(t, dir, "routes.yaml", strings.Replace(strings.Replace(testRoutes, "90", "50", 1), "10}", "50}", 1))
	rds := c.expect(resource.RouteType)
	if rds.GetVersionInfo() == oldRDS {
		t.Fatal("pushed the same route version")
	}
	rc := &routev3.RouteConfiguration{}
	if err := rds.GetResources()[0].UnmarshalTo(rc); err != nil {
		t.Fatal(err)
	}
	var weights []uint32
	for _, vh := range rc.GetVirtualHosts() {
		for _, w := range vh.GetRoutes()[0].GetRoute().GetWeightedClusters().GetClusters() {
			weights = append(weights, w.GetWeight().GetValue())
		}
	}
	if !slices.Equal(weights, []uint32{50, 50}) {
		t.Errorf("weights %v", weights)
	}
	c.ack(rds, []string{"http_egress"})
	c.quiet(200 * time.Millisecond)
	acked(t, s, "web-1")

	// A NACK is shown until the node ACKs that version.
	writeRules(t, dir, "routes.yaml", testRoutes)
	rds = c.expect(resource.RouteType)
	c.send(resource.RouteType, []string{"http_egress"}, "", rds.GetNonce(), "route http_egress: no such cluster")
	eventually(t, "the NACK in status", func() bool {
		n := s.Status("web-1").Nodes[0].Types["routes"]
		return n.NackVersion == rds.GetVersionInfo() && n.NackError == "route http_egress: no such cluster"
	})
	if all := s.Status(""); all.InSync != 0 || all.Nacking != 1 {
		t.Errorf("after the NACK: %d in sync, %d nacking", all.InSync, all.Nacking)
	}
}

// TestADSDelta runs the incremental protocol: only changed resources are
// sent.
func TestADSDelta(t *testing.T) {
	leakCheck(t)
	dir := testDir(t)
	s := startServer(t, Options{RulesDir: dir})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	st, err := dial(t, s.XDSAddr()).DeltaAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	resps := make(chan *discoveryv3.DeltaDiscoveryResponse, 16)
	go func() {
		for {
			r, err := st.Recv()
			if err != nil {
				close(resps)
				return
			}
			resps <- r
		}
	}()
	send := func(req *discoveryv3.DeltaDiscoveryRequest) {
		t.Helper()
		if err := st.Send(req); err != nil {
			t.Fatal(err)
		}
	}
	expect := func(typeURL string) *discoveryv3.DeltaDiscoveryResponse {
		t.Helper()
		select {
		case r, ok := <-resps:
			if !ok {
				t.Fatal("stream ended")
			}
			if r.GetTypeUrl() != typeURL {
				t.Fatalf("got %s, want %s", r.GetTypeUrl(), typeURL)
			}
			return r
		case <-time.After(waitFor):
			t.Fatalf("no %s response", typeURL)
		}
		return nil
	}
	names := func(r *discoveryv3.DeltaDiscoveryResponse) []string {
		var out []string
		for _, res := range r.GetResources() {
			out = append(out, res.GetName())
		}
		sort.Strings(out)
		return out
	}
	send(&discoveryv3.DeltaDiscoveryRequest{Node: webNode("web-delta"), TypeUrl: resource.ClusterType})
	cds := expect(resource.ClusterType)
	clusters := names(cds)
	if !slices.Equal(clusters, []string{"ratings", "reviews", "reviews|version=v1", "reviews|version=v2"}) {
		t.Errorf("clusters %v", clusters)
	}
	send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.ClusterType, ResponseNonce: cds.GetNonce()})
	send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResourceNamesSubscribe: clusters})
	eds := expect(resource.EndpointType)
	if got := names(eds); !slices.Equal(got, clusters) {
		t.Errorf("endpoints %v", got)
	}
	send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResponseNonce: eds.GetNonce()})
	send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.ListenerType})
	lds := expect(resource.ListenerType)
	send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.ListenerType, ResponseNonce: lds.GetNonce()})
	send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.RouteType, ResourceNamesSubscribe: []string{"http_egress"}})
	rds := expect(resource.RouteType)
	send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.RouteType, ResponseNonce: rds.GetNonce()})
	acked(t, s, "web-delta")

	// A new v2 endpoint changes reviews and reviews|version=v2 only.
	writeRules(t, dir, "services.yaml", strings.Replace(testServices, "  - {address: 127.0.0.1:9082, labels: {version: v2}}\n",
		"  - {address: 127.0.0.1:9082, labels: {version: v2}}\n  - {address: 127.0.0.1:9083, labels: {version: v2}}\n", 1))
	eds = expect(resource.EndpointType)
	if got := names(eds); !slices.Equal(got, []string{"reviews", "reviews|version=v2"}) {
		t.Errorf("delta pushed %v, want only the changed assignments", got)
	}
	send(&discoveryv3.DeltaDiscoveryRequest{TypeUrl: resource.EndpointType, ResponseNonce: eds.GetNonce()})
	n := acked(t, s, "web-delta")
	if n.Types["endpoints"].Acked != eds.GetSystemVersionInfo() {
		t.Errorf("acked %q, want %q", n.Types["endpoints"].Acked, eds.GetSystemVersionInfo())
	}
	select {
	case r := <-resps:
		t.Fatalf("unexpected %s push", r.GetTypeUrl())
	case <-time.After(200 * time.Millisecond):
	}
}

func getJSON(t *testing.T, url string, v any) int {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			t.Fatalf("%s: %v: %s", url, err, b)
		}
	}
	return resp.StatusCode
}

// TestBadRulesKeepLastGood: a bad file refuses the whole rule set; nodes
// keep the last good configuration and /status shows the error with its
// file and line until the file is fixed.
func TestBadRulesKeepLastGood(t *testing.T) {
	leakCheck(t)
	dir := testDir(t)
	s := startServer(t, Options{RulesDir: dir})
	c := newSOTW(t, s.XDSAddr(), webNode("web-1"))
	c.subscribe()
	acked(t, s, "web-1")
	good := s.Status("").Rules.Version

	writeRules(t, dir, "routes.yaml", testRoutes+"- service: reviws\n  rules: [{destinations: [{}]}]\n")
	var st Status
	eventually(t, "the error in /status", func() bool {
		getJSON(t, "http://"+s.AdminAddr()+"/status", &st)
		return st.LastError != nil
	})
	want := filepath.Join(dir, "routes.yaml") + `:7: route reviws: unknown service "reviws"`
	if len(st.LastError.Messages) != 1 || st.LastError.Messages[0] != want {
		t.Errorf("last error %v, want %q", st.LastError.Messages, want)
	}
	if p := st.LastError.Problems[0]; p.File != filepath.Join(dir, "routes.yaml") || p.Line != 7 {
		t.Errorf("problem %+v", p)
	}
	if st.Rules.Version != good || !st.Ready {
		t.Errorf("serving %s (ready %v), want the last good %s", st.Rules.Version, st.Ready, good)
	}
	if code := getJSON(t, "http://"+s.AdminAddr()+"/ready", nil); code != http.StatusOK {
		t.Errorf("/ready %d", code)
	}
	c.quiet(200 * time.Millisecond)

	// A service added while routes.yaml is still broken is not served.
	writeRules(t, dir, "extra.yaml", "services:\n- {name: extra, protocol: http, endpoints: [{address: 127.0.0.1:9999}]}\n")
	c.quiet(200 * time.Millisecond)

	// Fixing the file loads everything.
	writeRules(t, dir, "routes.yaml", testRoutes)
	cds := c.expect(resource.ClusterType)
	if !slices.Contains(resourceNames(t, cds), "extra") {
		t.Errorf("clusters %v", resourceNames(t, cds))
	}
	eventually(t, "the error to clear", func() bool { return s.Status("").LastError == nil })
}

// TestUnchangedNoPush: rewriting a file with the same content does not
// reload; a change that compiles to the same resources (a comment) loads
// but pushes nothing.
func TestUnchangedNoPush(t *testing.T) {
	leakCheck(t)
	dir := testDir(t)
	s := startServer(t, Options{RulesDir: dir})
	c := newSOTW(t, s.XDSAddr(), webNode("web-1"))
	c.subscribe()
	n := acked(t, s, "web-1")
	before := s.Status("")

	writeRules(t, dir, "routes.yaml", testRoutes) // same bytes, new mtime
	time.Sleep(100 * time.Millisecond)
	if after := s.Status(""); after.Rules.LoadedAt != before.Rules.LoadedAt {
		t.Error("reloaded identical files")
	}
	writeRules(t, dir, "routes.yaml", "# a comment\n"+testRoutes)
	eventually(t, "the reload", func() bool { return s.Status("").Rules.Version != before.Rules.Version })
	c.quiet(200 * time.Millisecond)
	after := s.Status("web-1")
	if after.Pushes != before.Pushes || after.Nodes[0].SnapshotVersion != n.SnapshotVersion {
		t.Errorf("pushes %d -> %d, snapshot %s -> %s", before.Pushes, after.Pushes, n.SnapshotVersion, after.Nodes[0].SnapshotVersion)
	}
}

// TestScopingPerNode: nodes get the listeners and clusters of the sidecar
// rule they match, chosen by id or metadata.
func TestScopingPerNode(t *testing.T) {
	leakCheck(t)
	s := startServer(t, Options{RulesDir: testDir(t)})
	meta, _ := structpb.NewStruct(map[string]any{"app": "ratings"})
	r := newSOTW(t, s.XDSAddr(), &corev3.Node{Id: "ratings-client-1", Metadata: meta}).subscribe()
	if n := resourceNames(t, r[resource.ClusterType]); !slices.Equal(n, []string{"ratings"}) {
		t.Errorf("ratings-only node got clusters %v", n)
	}
	w := newSOTW(t, s.XDSAddr(), webNode("web-9")).subscribe()
	if n := resourceNames(t, w[resource.ClusterType]); len(n) != 4 {
		t.Errorf("web node got clusters %v", n)
	}
	o := newSOTW(t, s.XDSAddr(), webNode("batch"))
	o.send(resource.ListenerType, nil, "", "", "")
	if lds := o.expect(resource.ListenerType); len(lds.GetResources()) != 0 {
		t.Errorf("unmatched node got listeners")
	}
	st := s.Status("")
	var sidecars []string
	for _, n := range st.Nodes {
		sidecars = append(sidecars, n.ID+"="+n.Sidecar)
	}
	if !slices.Equal(sidecars, []string{"batch=", "ratings-client-1=ratings-only", "web-9=web"}) {
		t.Errorf("nodes %v", sidecars)
	}
	var dump map[string]any
	if code := getJSON(t, "http://"+s.AdminAddr()+"/config_dump?node=ratings-client-1", &dump); code != 200 || dump["sidecar"] != "ratings-only" {
		t.Errorf("config_dump %d %v", code, dump["sidecar"])
	}
	if code := getJSON(t, "http://"+s.AdminAddr()+"/config_dump?node=x&meta.app=ratings", &dump); code != 200 || dump["sidecar"] != "ratings-only" {
		t.Errorf("config_dump by metadata %d %v", code, dump["sidecar"])
	}
}

// TestNotReadyUntilGoodRules: nodes get nothing (not an empty
// configuration) until a good rule set is loaded.
func TestNotReadyUntilGoodRules(t *testing.T) {
	leakCheck(t)
	dir := t.TempDir()
	writeRules(t, dir, "services.yaml", "services: [{name: a, protocol: nope}]\n")
	s := startServer(t, Options{RulesDir: dir})
	if code := getJSON(t, "http://"+s.AdminAddr()+"/ready", nil); code != http.StatusServiceUnavailable {
		t.Errorf("/ready %d with bad rules", code)
	}
	c := newSOTW(t, s.XDSAddr(), webNode("web-1"))
	c.send(resource.ClusterType, nil, "", "", "")
	c.quiet(200 * time.Millisecond)
	writeRules(t, dir, "services.yaml", testServices)
	if cds := c.expect(resource.ClusterType); len(cds.GetResources()) != 2 {
		t.Errorf("clusters %v", resourceNames(t, cds))
	}
}

// TestNodeIDRequired: a stream without a node id is refused.
func TestNodeIDRequired(t *testing.T) {
	leakCheck(t)
	s := startServer(t, Options{RulesDir: testDir(t)})
	c := newSOTW(t, s.XDSAddr(), &corev3.Node{})
	c.send(resource.ClusterType, nil, "", "", "")
	select {
	case err := <-c.errc:
		if !strings.Contains(err.Error(), "node.id is required") {
			t.Errorf("error %v", err)
		}
	case <-time.After(waitFor):
		t.Fatal("stream not refused")
	}
}

// TestNodeGoneAndBack: a node whose last stream closes is forgotten; it
// gets its snapshot again when it reconnects.
func TestNodeGoneAndBack(t *testing.T) {
	leakCheck(t)
	s := startServer(t, Options{RulesDir: testDir(t)})
	ctx, cancel := context.WithCancel(context.Background())
	st, err := dial(t, s.XDSAddr()).StreamAggregatedResources(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Send(&discoveryv3.DiscoveryRequest{Node: webNode("web-1"), TypeUrl: resource.ClusterType}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	cancel()
	eventually(t, "the node to be forgotten", func() bool { return len(s.Status("").Nodes) == 0 })
	c := newSOTW(t, s.XDSAddr(), webNode("web-1"))
	c.subscribe()
	acked(t, s, "web-1")
}
