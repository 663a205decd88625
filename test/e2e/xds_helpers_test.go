package e2e

import (
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	cachev3 "github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	serverv3 "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/internal/controlplane"
)

// mgmt is go-control-plane's own management server (snapshot cache, ADS,
// state of the world and delta) on a loopback port, recording what the
// client ACKs and NACKs.
type mgmt struct {
	t     *testing.T
	Addr  string
	cache cachev3.SnapshotCache
	srv   *grpc.Server
	lis   net.Listener

	mu    sync.Mutex
	acks  map[string]string // type URL -> last version ACKed
	nacks []nack
	reqs  int
}

type nack struct {
	TypeURL, Version, Detail string
}

// xdsNode is the node id every test sidecar uses.
const xdsNode = "sidecar-1"

func startMgmt(t *testing.T) *mgmt {
	t.Helper()
	return startMgmtOn(t, "127.0.0.1:0")
}

func startMgmtOn(t *testing.T, addr string) *mgmt {
	t.Helper()
	m := &mgmt{t: t, acks: map[string]string{}}
	m.cache = cachev3.NewSnapshotCache(true, cachev3.IDHash{}, nil)
	m.serve(addr)
	t.Cleanup(m.stop)
	return m
}

func (m *mgmt) serve(addr string) {
	m.t.Helper()
	var lis net.Listener
	var err error
	for i := 0; i < 50; i++ { // a restart may race the old socket's close
		if lis, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		m.t.Fatal(err)
	}
	m.lis = lis
	m.Addr = lis.Addr().String()
	cb := serverv3.CallbackFuncs{
		StreamRequestFunc: func(_ int64, r *discoveryv3.DiscoveryRequest) error {
			m.record(r.GetTypeUrl(), r.GetVersionInfo(), r.GetResponseNonce(), r.GetErrorDetail().GetMessage())
			return nil
		},
		StreamDeltaRequestFunc: func(_ int64, r *discoveryv3.DeltaDiscoveryRequest) error {
			m.record(r.GetTypeUrl(), "", r.GetResponseNonce(), r.GetErrorDetail().GetMessage())
			return nil
		},
	}
	s := serverv3.NewServer(context.Background(), m.cache, cb)
	m.srv = grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(m.srv, s)
	go func() { _ = m.srv.Serve(lis) }()
}

func (m *mgmt) record(typeURL, version, nonce, detail string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reqs++
	if nonce == "" {
		return // a subscription, not an answer
	}
	if detail != "" {
		m.nacks = append(m.nacks, nack{typeURL, version, detail})
		return
	}
	m.acks[typeURL] = version
}

func (m *mgmt) stop() {
	m.srv.Stop()
}

// restart stops the server and serves again on the same address with the
// same cache (so the same config) after pause.
func (m *mgmt) restart(pause time.Duration) {
	addr := m.Addr
	m.srv.Stop()
	time.Sleep(pause)
	m.serve(addr)
}

func (m *mgmt) acked(typeURL string) string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.acks[typeURL]
}

func (m *mgmt) nackList() []nack {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]nack(nil), m.nacks...)
}

// set installs a snapshot for the test node.
func (m *mgmt) set(version string, res map[resourcev3.Type][]types.Resource) {
	m.t.Helper()
	snap, err := cachev3.NewSnapshot(version, res)
	if err != nil {
		m.t.Fatal(err)
	}
	if err := m.cache.SetSnapshot(context.Background(), xdsNode, snap); err != nil {
		m.t.Fatal(err)
	}
}

// waitAck waits until every type of the snapshot was ACKed at version
// (SotW; for delta it waits for a request without error per type).
func (m *mgmt) waitAck(version string, typeURLs ...string) {
	m.t.Helper()
	waitFor(m.t, 15*time.Second, "ACK of version "+version, func() bool {
		for _, tu := range typeURLs {
			if m.acked(tu) != version {
				return false
			}
		}
		return true
	})
}

// xdsBootstrap is a sidecar bootstrap that takes everything from m over ADS.
func xdsBootstrap(m *mgmt, delta bool) string {
	b, err := controlplane.SidecarBootstrap(xdsNode, m.Addr, 0, delta)
	if err != nil {
		m.t.Fatal(err)
	}
	return b
}

// Resource builders for the tests.

func xdsEDSCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		ConnectTimeout:       durationpb.New(time.Second),
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{
			EdsConfig: &corev3.ConfigSource{ResourceApiVersion: corev3.ApiVersion_V3,
				ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}},
		},
	}
}

func xdsEndpoints(cluster string, ports ...int) *endpointv3.ClusterLoadAssignment {
	var lbs []*endpointv3.LbEndpoint
	for _, p := range ports {
		lbs = append(lbs, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(p)}}}}}}})
	}
	return &endpointv3.ClusterLoadAssignment{ClusterName: cluster, Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: lbs}}}
}

// xdsRoutes sends every request to clusters with the given weights
// (one cluster: a plain route). Extra response header "x-route-version"
// tells which version answered.
func xdsRoutes(name, version string, clusters map[string]uint32) *routev3.RouteConfiguration {
	action := &routev3.RouteAction{}
	if len(clusters) == 1 {
		for c := range clusters {
			action.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: c}
		}
	} else {
		wc := &routev3.WeightedCluster{}
		for c, w := range clusters {
			wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{Name: c, Weight: wrapperspb.UInt32(w)})
		}
		action.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}
	}
	return &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{{
		Name: "all", Domains: []string{"*"},
		Routes: []*routev3.Route{{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: action},
		}},
		ResponseHeadersToAdd: []*corev3.HeaderValueOption{{Header: &corev3.HeaderValue{Key: "x-route-version", Value: version}}},
	}}}
}

// xdsHTTPListener is an HTTP listener on addr taking route config rds by
// RDS; statPrefix varies the chain (a changed chain drains).
func xdsHTTPListener(t *testing.T, name, addr, rds, statPrefix string) *listenerv3.Listener {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	var p uint32
	fmt.Sscan(port, &p)
	router, _ := anypb.New(&routerv3.Router{})
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: statPrefix,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{RouteConfigName: rds,
			ConfigSource: &corev3.ConfigSource{ResourceApiVersion: corev3.ApiVersion_V3,
				ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}}}},
		HttpFilters: []*hcmv3.HttpFilter{{Name: "envoy.filters.http.router", ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: router}}},
	}
	tc, err := anypb.New(hcm)
	if err != nil {
		t.Fatal(err)
	}
	return &listenerv3.Listener{
		Name: name,
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: p}}}},
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{{
			Name: "envoy.filters.network.http_connection_manager", ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: tc}}}}},
	}
}

// freeAddr picks a loopback address nobody listens on right now.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := l.Addr().String()
	_ = l.Close()
	return a
}

// allTypes are the four types a plain snapshot carries.
var allTypes = []string{resourcev3.ClusterType, resourcev3.EndpointType, resourcev3.ListenerType, resourcev3.RouteType}

// snapshot assembles resources by type.
func snapshot(rs ...types.Resource) map[resourcev3.Type][]types.Resource {
	out := map[resourcev3.Type][]types.Resource{}
	for _, r := range rs {
		var tu string
		switch r.(type) {
		case *clusterv3.Cluster:
			tu = resourcev3.ClusterType
		case *endpointv3.ClusterLoadAssignment:
			tu = resourcev3.EndpointType
		case *listenerv3.Listener:
			tu = resourcev3.ListenerType
		case *routev3.RouteConfiguration:
			tu = resourcev3.RouteType
		case *tlsv3.Secret:
			tu = resourcev3.SecretType
		}
		out[tu] = append(out[tu], r)
	}
	return out
}

// configDumpXDS returns the "xds" part of /config_dump as text.
func configDumpXDS(t *testing.T, w *Weft) string {
	t.Helper()
	code, body := w.Admin("/config_dump")
	if code != 200 {
		t.Fatalf("/config_dump: %d", code)
	}
	i := strings.Index(body, `"xds"`)
	if i < 0 {
		t.Fatalf("/config_dump has no xds part:\n%s", body)
	}
	return body[i:]
}
