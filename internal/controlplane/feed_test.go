package controlplane

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sort"
	"testing"
	"time"

	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"

	"github.com/weftmesh/weft/internal/registry"
	"github.com/weftmesh/weft/internal/registry/embedded"
)

const feedRules = `services:
- name: com.foo.EchoService
  protocol: bolt
  endpoints:
  - {address: 127.0.0.1:12201, labels: {version: "1.0"}}
routes:
- service: com.foo.EchoService
  rules:
  - match: {version: "2.0"}
    destinations: [{subset: {version: "2.0"}}]
  - destinations: [{}]
sidecars:
- name: consumer
  match: {node_id: "consumer-*"}
  listeners:
  - {name: bolt_egress, address: 127.0.0.1:12200, protocol: bolt}
`

// registryServer runs the embedded registry in this process.
func registryServer(t *testing.T) (addr string, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := embedded.NewServer(embedded.ServerOptions{SessionTTL: 2 * time.Second})
	done := make(chan struct{})
	go func() { defer close(done); _ = srv.Serve(ln) }()
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			_ = srv.Close()
			<-done
		}
	}
	t.Cleanup(stop)
	return ln.Addr().String(), stop
}

// endpointsByCluster reads an EDS response as cluster -> sorted addresses.
func endpointsByCluster(t *testing.T, r *discoveryv3.DiscoveryResponse) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, a := range r.GetResources() {
		cla := &endpointv3.ClusterLoadAssignment{}
		if err := a.UnmarshalTo(cla); err != nil {
			t.Fatal(err)
		}
		list := []string{}
		for _, l := range cla.GetEndpoints() {
			for _, le := range l.GetLbEndpoints() {
				sa := le.GetEndpoint().GetAddress().GetSocketAddress()
				list = append(list, fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue()))
			}
		}
		sort.Strings(list)
		out[cla.GetClusterName()] = list
	}
	return out
}

// TestRegistryFeed: instances registered in the embedded registry become
// endpoints of the service (and of the subsets their metadata puts them
// in), follow registrations and deregistrations, and survive a registry
// outage.
func TestRegistryFeed(t *testing.T) {
	leakCheck(t)
	addr, stopRegistry := registryServer(t)
	provider := embedded.New(embedded.Options{Address: addr, Logger: quietLog})
	t.Cleanup(func() { provider.Close() })
	ctx := context.Background()
	v2 := registry.Instance{Service: "com.foo.EchoService", Address: "127.0.0.1:12301", Protocol: "bolt", Metadata: map[string]string{"version": "2.0"}}
	if err := provider.Register(ctx, v2); err != nil {
		t.Fatal(err)
	}
	// A Dubbo provider of the same name is not an endpoint of a Bolt service.
	if err := provider.Register(ctx, registry.Instance{Service: "com.foo.EchoService", Address: "127.0.0.1:20880", Protocol: "dubbo"}); err != nil {
		t.Fatal(err)
	}
	feed := embedded.New(embedded.Options{Address: addr, Logger: quietLog})
	dir := t.TempDir()
	writeRules(t, dir, "rules.yaml", feedRules)
	s := startServer(t, Options{RulesDir: dir, Registry: feed, RegistryName: "embedded"})
	t.Cleanup(func() { feed.Close() }) // after the server (cleanups run last first)

	c := newSOTW(t, s.XDSAddr(), webNode("consumer-1"))
	got := c.subscribe()
	want := map[string][]string{
		"com.foo.EchoService":             {"127.0.0.1:12201", "127.0.0.1:12301"},
		"com.foo.EchoService|version=2.0": {"127.0.0.1:12301"},
	}
	if e := endpointsByCluster(t, got[resource.EndpointType]); !equalEndpoints(e, want) {
		t.Fatalf("endpoints %v, want %v", e, want)
	}
	acked(t, s, "consumer-1")
	if st := s.Status(""); st.Registry == nil || st.Registry.Services["com.foo.EchoService"] != 2 || len(st.Warnings) != 0 {
		t.Errorf("registry status %+v, warnings %v", st.Registry, st.Warnings)
	}

	// A new provider is pushed.
	v2b := registry.Instance{Service: "com.foo.EchoService", Address: "127.0.0.1:12302", Protocol: "bolt", Metadata: map[string]string{"version": "2.0"}}
	if err := provider.Register(ctx, v2b); err != nil {
		t.Fatal(err)
	}
	eds := c.expect(resource.EndpointType)
	want["com.foo.EchoService"] = []string{"127.0.0.1:12201", "127.0.0.1:12301", "127.0.0.1:12302"}
	want["com.foo.EchoService|version=2.0"] = []string{"127.0.0.1:12301", "127.0.0.1:12302"}
	if e := endpointsByCluster(t, eds); !equalEndpoints(e, want) {
		t.Fatalf("after register: %v, want %v", e, want)
	}
	c.ack(eds, names(want))

	// A deregistered one goes.
	if err := provider.Deregister(ctx, v2); err != nil {
		t.Fatal(err)
	}
	eds = c.expect(resource.EndpointType)
	want["com.foo.EchoService"] = []string{"127.0.0.1:12201", "127.0.0.1:12302"}
	want["com.foo.EchoService|version=2.0"] = []string{"127.0.0.1:12302"}
	if e := endpointsByCluster(t, eds); !equalEndpoints(e, want) {
		t.Fatalf("after deregister: %v, want %v", e, want)
	}
	c.ack(eds, names(want))
	acked(t, s, "consumer-1")

	// The registry goes away: the endpoints stay.
	stopRegistry()
	c.quiet(500 * time.Millisecond)
	if st := s.Status(""); st.Registry.Services["com.foo.EchoService"] != 2 { // the Bolt one and the Dubbo one
		t.Errorf("after the outage the registry status is %v", st.Registry.Services)
	}
}

func equalEndpoints(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}

// TestRegistryFeedFollowsRules: a service added to the rules is watched,
// one removed is not.
func TestRegistryFeedFollowsRules(t *testing.T) {
	leakCheck(t)
	addr, _ := registryServer(t)
	provider := embedded.New(embedded.Options{Address: addr, Logger: quietLog})
	t.Cleanup(func() { provider.Close() })
	if err := provider.Register(context.Background(), registry.Instance{Service: "late", Address: "127.0.0.1:7001", Protocol: "http"}); err != nil {
		t.Fatal(err)
	}
	feed := embedded.New(embedded.Options{Address: addr, Logger: quietLog})
	dir := t.TempDir()
	writeRules(t, dir, "rules.yaml", feedRules)
	s := startServer(t, Options{RulesDir: dir, Registry: feed})
	t.Cleanup(func() { feed.Close() })
	eventually(t, "ready", s.Ready)

	writeRules(t, dir, "late.yaml", "services: [{name: late, protocol: http}]\n")
	eventually(t, "the new service's instances", func() bool {
		return s.Status("").Registry.Services["late"] == 1
	})
	c := newSOTW(t, s.XDSAddr(), webNode("nobody")) // no sidecar: every cluster
	c.send(resource.ClusterType, nil, "", "", "")
	cds := c.expect(resource.ClusterType)
	clusters := resourceNames(t, cds)
	c.send(resource.EndpointType, clusters, "", "", "")
	// The rules loaded before the registry answered for the new service:
	// its endpoints may come in a second push.
	for i := 0; ; i++ {
		eds := c.expect(resource.EndpointType)
		if e := endpointsByCluster(t, eds); slices.Equal(e["late"], []string{"127.0.0.1:7001"}) {
			break
		} else if i == 1 {
			t.Fatalf("late endpoints %v", e["late"])
		}
		c.ack(eds, clusters)
	}
	writeRules(t, dir, "late.yaml", "# gone\n")
	eventually(t, "the watch to stop", func() bool {
		_, ok := s.Status("").Registry.Services["late"]
		return !ok
	})
}

var quietLog = slog.New(slog.DiscardHandler)
