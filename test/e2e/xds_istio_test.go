package e2e

import (
	"strings"
	"testing"
	"time"

	xdstypev3 "github.com/cncf/xds/go/xds/type/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	faultv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/fault/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
)

// istioListener shapes an HTTP listener the way istiod generates an
// outbound one: rds with initial_fetch_timeout 0s, Istio's listener
// filters, and Istio's http filter list (its telemetry filters are Wasm
// configs in a TypedStruct). optional marks the filters Weft does not
// implement is_optional, as an operator's EnvoyFilter can.
func istioListener(t *testing.T, addr, rds string, optional bool) *listenerv3.Listener {
	t.Helper()
	l := xdsHTTPListener(t, "0.0.0.0_8080", addr, rds, "outbound_0.0.0.0_8080")
	hcm := &hcmv3.HttpConnectionManager{}
	if err := l.FilterChains[0].Filters[0].GetTypedConfig().UnmarshalTo(hcm); err != nil {
		t.Fatal(err)
	}
	hcm.GetRds().ConfigSource.InitialFetchTimeout = durationpb.New(0)
	wasm := func(name, code string) *hcmv3.HttpFilter {
		v, _ := structpb.NewStruct(map[string]any{"config": map[string]any{"vm_config": map[string]any{
			"runtime": "envoy.wasm.runtime.null", "code": map[string]any{"local": map[string]any{"inline_string": code}}}}})
		ts, _ := anypb.New(&xdstypev3.TypedStruct{TypeUrl: "type.googleapis.com/envoy.extensions.filters.http.wasm.v3.Wasm", Value: v})
		return &hcmv3.HttpFilter{Name: name, IsOptional: optional, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: ts}}
	}
	fault, _ := anypb.New(&faultv3.HTTPFault{})
	grpcStats, _ := anypb.New(&xdstypev3.TypedStruct{TypeUrl: "type.googleapis.com/envoy.extensions.filters.http.grpc_stats.v3.FilterConfig"})
	router := hcm.HttpFilters[len(hcm.HttpFilters)-1]
	hcm.HttpFilters = []*hcmv3.HttpFilter{
		wasm("istio.metadata_exchange", "envoy.wasm.metadata_exchange"),
		{Name: "envoy.filters.http.grpc_stats", IsOptional: optional, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: grpcStats}},
		{Name: "envoy.filters.http.fault", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: fault}},
		wasm("istio.stats", "envoy.wasm.stats"),
		router,
	}
	tc, err := anypb.New(hcm)
	if err != nil {
		t.Fatal(err)
	}
	l.FilterChains[0].Filters[0].ConfigType = &listenerv3.Filter_TypedConfig{TypedConfig: tc}
	inspector := func(name string) *listenerv3.ListenerFilter { return &listenerv3.ListenerFilter{Name: name} }
	l.ListenerFilters = []*listenerv3.ListenerFilter{inspector("envoy.filters.listener.tls_inspector"), inspector("envoy.filters.listener.http_inspector")}
	l.TrafficDirection = corev3.TrafficDirection_OUTBOUND
	return l
}

// TestXDSIstioShapedConfig: configuration shaped as istiod generates it.
// Istio's own filters (Wasm telemetry, grpc_stats) are not optional in
// what istiod sends, so Weft NACKs the listener naming the first of them
// and serves nothing wrong; marked optional they are skipped and the
// listener serves, with Istio-style names (outbound|port||host clusters,
// RDS names like "8080", initial_fetch_timeout 0s).
func TestXDSIstioShapedConfig(t *testing.T) {
	t.Parallel()
	a := namedUpstream(t, "reviews-v1")
	m := startMgmt(t)
	addr := freeAddr(t)
	const cluster = "outbound|9080||reviews.default.svc.cluster.local"
	c := xdsEDSCluster(cluster)
	c.EdsClusterConfig.ServiceName = cluster
	routes := xdsRoutes("8080", "1", map[string]uint32{cluster: 1})
	routes.VirtualHosts[0].Domains = []string{"reviews.default.svc.cluster.local", "reviews.default.svc.cluster.local:9080", "reviews", "reviews:9080", "*"}
	m.set("1", snapshot(c, xdsEndpoints(cluster, a.Port), istioListener(t, addr, "8080", false), routes))
	// No listener applies, so initialization completes by the fetch
	// timeout path only for LDS; weft still becomes ready.
	w := startWeft(t, xdsBootstrap(m, false))
	waitFor(t, 10*time.Second, "a NACK naming istio.metadata_exchange", func() bool {
		for _, n := range m.nackList() {
			if n.TypeURL == resourcev3.ListenerType && strings.Contains(n.Detail, "istio.metadata_exchange") {
				return true
			}
		}
		return false
	})
	m.set("2", snapshot(c, xdsEndpoints(cluster, a.Port), istioListener(t, addr, "8080", true), routes))
	m.waitAck("2", allTypes...)
	r := get(t, client(), "http://"+addr+"/reviews/1", "Host: reviews:9080")
	if r.Status != 200 || r.Body != "reviews-v1" {
		t.Fatalf("istio-shaped listener: %d %q", r.Status, r.Body)
	}
	if !strings.Contains(w.Output(), "unknown optional filter") {
		t.Errorf("skipping the optional filters was not logged")
	}
}
