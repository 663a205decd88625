package xds_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
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
	clusterservice "github.com/envoyproxy/go-control-plane/envoy/service/cluster/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	endpointservice "github.com/envoyproxy/go-control-plane/envoy/service/endpoint/v3"
	listenerservice "github.com/envoyproxy/go-control-plane/envoy/service/listener/v3"
	routeservice "github.com/envoyproxy/go-control-plane/envoy/service/route/v3"
	secretservice "github.com/envoyproxy/go-control-plane/envoy/service/secret/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"github.com/envoyproxy/go-control-plane/pkg/server/sotw/v3"
	server "github.com/envoyproxy/go-control-plane/pkg/server/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/weftmesh/weft/internal/xds"
)

const (
	nodeID  = "node-1"
	waitFor = 10 * time.Second
)

var (
	lds = resource.ListenerType
	cds = resource.ClusterType
	rds = resource.RouteType
	eds = resource.EndpointType
	sds = resource.SecretType
)

// notifier wakes waiters whenever something they watch changes.
type notifier struct {
	mu sync.Mutex
	ch chan struct{}
}

func (n *notifier) wait() <-chan struct{} {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch == nil {
		n.ch = make(chan struct{})
	}
	return n.ch
}

func (n *notifier) notify() {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.ch != nil {
		close(n.ch)
		n.ch = nil
	}
}

// until waits for cond, re-checking whenever n fires, and fails the test
// after waitFor.
func until(t *testing.T, n *notifier, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(waitFor)
	defer deadline.Stop()
	for {
		ch := n.wait()
		if cond() {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// eventually polls state that has no event to wait on (the client's
// Status).
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

// applyCall is one Apply the recorder saw.
type applyCall struct {
	typeURL          string
	all              []string
	changed, removed []string
}

// recorder is the fake Applier: it keeps what it was given, derives Wants
// from it the way the proxy does (EDS clusters, RDS names in HTTP
// connection managers, SDS names in upstream TLS contexts) and can be told
// to reject updates.
type recorder struct {
	notifier
	mu     sync.Mutex
	state  map[string]map[string]proto.Message
	calls  []applyCall
	static map[string][]string
	reject func(typeURL string, all map[string]proto.Message) error
}

func newRecorder() *recorder {
	return &recorder{state: map[string]map[string]proto.Message{}, static: map[string][]string{}}
}

func (r *recorder) Apply(typeURL string, all map[string]proto.Message, changed, removed []string) error {
	r.mu.Lock()
	defer r.notify()
	defer r.mu.Unlock()
	if r.reject != nil {
		if err := r.reject(typeURL, all); err != nil {
			return err
		}
	}
	r.state[typeURL] = all
	r.calls = append(r.calls, applyCall{typeURL, slices.Sorted(maps.Keys(all)), changed, removed})
	return nil
}

func (r *recorder) Wants(typeURL string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	names := slices.Clone(r.static[typeURL])
	switch typeURL {
	case eds:
		for _, m := range r.state[cds] {
			c := m.(*clusterv3.Cluster)
			if c.GetType() == clusterv3.Cluster_EDS {
				n := c.GetEdsClusterConfig().GetServiceName()
				if n == "" {
					n = c.GetName()
				}
				names = append(names, n)
			}
		}
	case sds:
		for _, m := range r.state[cds] {
			tc := &tlsv3.UpstreamTlsContext{}
			if a := m.(*clusterv3.Cluster).GetTransportSocket().GetTypedConfig(); a != nil && a.UnmarshalTo(tc) == nil {
				for _, s := range tc.GetCommonTlsContext().GetTlsCertificateSdsSecretConfigs() {
					names = append(names, s.GetName())
				}
			}
		}
	case rds:
		for _, m := range r.state[lds] {
			for _, fc := range m.(*listenerv3.Listener).GetFilterChains() {
				for _, f := range fc.GetFilters() {
					h := &hcmv3.HttpConnectionManager{}
					if f.GetTypedConfig().UnmarshalTo(h) == nil && h.GetRds() != nil {
						names = append(names, h.GetRds().GetRouteConfigName())
					}
				}
			}
		}
	}
	return names
}

func (r *recorder) names(typeURL string) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Sorted(maps.Keys(r.state[typeURL]))
}

func (r *recorder) has(typeURL string, names ...string) bool {
	return slices.Equal(r.names(typeURL), names)
}

func (r *recorder) get(typeURL, name string) proto.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state[typeURL][name]
}

func (r *recorder) callCount(typeURL string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.calls {
		if c.typeURL == typeURL {
			n++
		}
	}
	return n
}

// firstCall returns the index of the first Apply of typeURL whose set
// includes name, or -1.
func (r *recorder) firstCall(typeURL, name string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, c := range r.calls {
		if c.typeURL == typeURL && slices.Contains(c.all, name) {
			return i
		}
	}
	return -1
}

func (r *recorder) setReject(f func(string, map[string]proto.Message) error) {
	r.mu.Lock()
	r.reject = f
	r.mu.Unlock()
}

// request is one discovery request a server received, of either protocol.
type request struct {
	stream      int64
	typeURL     string
	version     string // SotW
	nonce       string
	errDetail   string
	hasErr      bool
	names       []string // SotW resource_names
	subscribe   []string // delta
	unsubscribe []string
	initial     map[string]string
	node        string
}

// xdsServer is go-control-plane's own server over a snapshot cache on a
// loopback port, recording every request it receives.
type xdsServer struct {
	notifier
	t     *testing.T
	cache cache.SnapshotCache
	srv   *grpc.Server
	addr  string

	stopFn func()

	mu     sync.Mutex
	reqs   []request
	opened []string      // type URL of every stream opened ("" for ADS)
	md     []metadata.MD // headers of every stream opened
}

// stop stops the server at once, breaking its streams.
func (s *xdsServer) stop() { s.stopFn() }

func startServer(t *testing.T, ads bool, addr string) *xdsServer {
	t.Helper()
	return startServerOn(t, ads, listen(t, addr))
}

// listen listens on addr, or on a free loopback port when addr is "".
func listen(t *testing.T, addr string) net.Listener {
	t.Helper()
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var lis net.Listener
	var err error
	// A restarted server reuses its port, which the kernel may hold for a
	// moment after the old listener closed.
	for range 100 {
		if lis, err = net.Listen("tcp", addr); err == nil {
			return lis
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal(err)
	return nil
}

// countingListener hangs up on every connection while counting is set,
// and counts them; then it hands connections to its server.
type countingListener struct {
	net.Listener
	counting atomic.Bool
	n        atomic.Int32
}

func (l *countingListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil || !l.counting.Load() {
			return c, err
		}
		l.n.Add(1)
		c.Close()
	}
}

func startServerOn(t *testing.T, ads bool, lis net.Listener) *xdsServer {
	t.Helper()
	s := &xdsServer{t: t, cache: cache.NewSnapshotCache(ads, cache.IDHash{}, nil), addr: lis.Addr().String()}
	ctx, cancel := context.WithCancel(context.Background())
	cb := server.CallbackFuncs{
		StreamOpenFunc: func(ctx context.Context, _ int64, typeURL string) error {
			md, _ := metadata.FromIncomingContext(ctx)
			s.mu.Lock()
			s.opened = append(s.opened, typeURL)
			s.md = append(s.md, md)
			s.mu.Unlock()
			s.notify()
			return nil
		},
		DeltaStreamOpenFunc: func(ctx context.Context, _ int64, typeURL string) error {
			md, _ := metadata.FromIncomingContext(ctx)
			s.mu.Lock()
			s.opened = append(s.opened, typeURL)
			s.md = append(s.md, md)
			s.mu.Unlock()
			s.notify()
			return nil
		},
		StreamRequestFunc: func(id int64, r *discoveryv3.DiscoveryRequest) error {
			s.record(request{stream: id, typeURL: r.GetTypeUrl(), version: r.GetVersionInfo(), nonce: r.GetResponseNonce(),
				errDetail: r.GetErrorDetail().GetMessage(), hasErr: r.GetErrorDetail() != nil,
				names: r.GetResourceNames(), node: r.GetNode().GetId()})
			return nil
		},
		StreamDeltaRequestFunc: func(id int64, r *discoveryv3.DeltaDiscoveryRequest) error {
			s.record(request{stream: id, typeURL: r.GetTypeUrl(), nonce: r.GetResponseNonce(),
				errDetail: r.GetErrorDetail().GetMessage(), hasErr: r.GetErrorDetail() != nil,
				subscribe: r.GetResourceNamesSubscribe(), unsubscribe: r.GetResourceNamesUnsubscribe(),
				initial: r.GetInitialResourceVersions(), node: r.GetNode().GetId()})
			return nil
		},
	}
	xs := server.NewServer(ctx, s.cache, cb, sotw.WithOrderedADS())
	s.srv = grpc.NewServer()
	discoveryv3.RegisterAggregatedDiscoveryServiceServer(s.srv, xs)
	listenerservice.RegisterListenerDiscoveryServiceServer(s.srv, xs)
	routeservice.RegisterRouteDiscoveryServiceServer(s.srv, xs)
	clusterservice.RegisterClusterDiscoveryServiceServer(s.srv, xs)
	endpointservice.RegisterEndpointDiscoveryServiceServer(s.srv, xs)
	secretservice.RegisterSecretDiscoveryServiceServer(s.srv, xs)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.srv.Serve(lis)
	}()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		s.srv.Stop()
		<-done
	}
	s.stopFn = stop
	t.Cleanup(stop)
	return s
}

func (s *xdsServer) record(r request) {
	s.mu.Lock()
	s.reqs = append(s.reqs, r)
	s.mu.Unlock()
	s.notify()
}

func (s *xdsServer) requests() []request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.reqs)
}

func (s *xdsServer) headers() []metadata.MD {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.md)
}

func (s *xdsServer) openedStreams() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.opened)
}

// find returns the requests of typeURL that match.
func (s *xdsServer) find(typeURL string, match func(request) bool) []request {
	var out []request
	for _, r := range s.requests() {
		if r.typeURL == typeURL && match(r) {
			out = append(out, r)
		}
	}
	return out
}

func (s *xdsServer) set(t *testing.T, snap *cache.Snapshot) {
	t.Helper()
	if err := s.cache.SetSnapshot(context.Background(), nodeID, snap); err != nil {
		t.Fatal(err)
	}
}

// config is the whole configuration a test snapshot describes.
type config struct {
	version   string
	clusters  []*clusterv3.Cluster
	endpoints []*endpointv3.ClusterLoadAssignment
	listeners []*listenerv3.Listener
	routes    []*routev3.RouteConfiguration
	secrets   []*tlsv3.Secret
}

func (c config) snapshot(t *testing.T) *cache.Snapshot {
	t.Helper()
	m := map[resource.Type][]types.Resource{}
	for _, r := range c.clusters {
		m[cds] = append(m[cds], r)
	}
	for _, r := range c.endpoints {
		m[eds] = append(m[eds], r)
	}
	for _, r := range c.listeners {
		m[lds] = append(m[lds], r)
	}
	for _, r := range c.routes {
		m[rds] = append(m[rds], r)
	}
	for _, r := range c.secrets {
		m[sds] = append(m[sds], r)
	}
	snap, err := cache.NewSnapshot(c.version, m)
	if err != nil {
		t.Fatal(err)
	}
	return snap
}

func mustAny(m proto.Message) *anypb.Any {
	a, err := anypb.New(m)
	if err != nil {
		panic(err)
	}
	return a
}

func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

// edsCluster is an EDS cluster; a secret name adds upstream TLS from SDS.
func edsCluster(name, secret string) *clusterv3.Cluster {
	c := &clusterv3.Cluster{
		Name:                 name,
		ConnectTimeout:       durationpb.New(time.Second),
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource()},
	}
	if secret != "" {
		c.TransportSocket = &corev3.TransportSocket{
			Name: "envoy.transport_sockets.tls",
			ConfigType: &corev3.TransportSocket_TypedConfig{TypedConfig: mustAny(&tlsv3.UpstreamTlsContext{
				CommonTlsContext: &tlsv3.CommonTlsContext{
					TlsCertificateSdsSecretConfigs: []*tlsv3.SdsSecretConfig{{Name: secret, SdsConfig: adsSource()}},
				},
			})},
		}
	}
	return c
}

func endpoints(cluster string, port uint32) *endpointv3.ClusterLoadAssignment {
	return &endpointv3.ClusterLoadAssignment{
		ClusterName: cluster,
		Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
						Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
					}}},
				}},
			}},
		}},
	}
}

func listener(name string, port uint32, routeName string) *listenerv3.Listener {
	hcm := &hcmv3.HttpConnectionManager{
		StatPrefix: name,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			RouteConfigName: routeName, ConfigSource: adsSource(),
		}},
		HttpFilters: []*hcmv3.HttpFilter{{
			Name:       "envoy.filters.http.router",
			ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: mustAny(&routerv3.Router{})},
		}},
	}
	return &listenerv3.Listener{
		Name: name,
		Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
			Address: "127.0.0.1", PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
		}}},
		FilterChains: []*listenerv3.FilterChain{{
			Filters: []*listenerv3.Filter{{
				Name:       "envoy.filters.network.http_connection_manager",
				ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: mustAny(hcm)},
			}},
		}},
	}
}

func routeConfig(name, cluster string) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{
		Name: name,
		VirtualHosts: []*routev3.VirtualHost{{
			Name: "all", Domains: []string{"*"},
			Routes: []*routev3.Route{{
				Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}},
			}},
		}},
	}
}

func secret(name string) *tlsv3.Secret {
	return &tlsv3.Secret{
		Name: name,
		Type: &tlsv3.Secret_TlsCertificate{TlsCertificate: &tlsv3.TlsCertificate{
			CertificateChain: &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "cert-" + name}},
			PrivateKey:       &corev3.DataSource{Specifier: &corev3.DataSource_InlineString{InlineString: "key-" + name}},
		}},
	}
}

// baseConfig has one of each: listener l1 -> route r1 -> EDS cluster c1
// with endpoints and an SDS secret s1.
func baseConfig(version string) config {
	return config{
		version:   version,
		clusters:  []*clusterv3.Cluster{edsCluster("c1", "s1")},
		endpoints: []*endpointv3.ClusterLoadAssignment{endpoints("c1", 8001)},
		listeners: []*listenerv3.Listener{listener("l1", 10001, "r1")},
		routes:    []*routev3.RouteConfiguration{routeConfig("r1", "c1")},
		secrets:   []*tlsv3.Secret{secret("s1")},
	}
}

// logBuffer collects the client's log and prints it when the test fails.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func testLogger(t *testing.T) (*slog.Logger, *logBuffer) {
	lb := &logBuffer{}
	t.Cleanup(func() {
		if t.Failed() || os.Getenv("XDS_TEST_LOG") != "" {
			t.Logf("client log:\n%s", lb.String())
		}
	})
	return slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug})), lb
}

// newConfig is a client configuration with test-sized timers.
func newConfig(t *testing.T) *xds.Config {
	cfg := &xds.Config{Node: &corev3.Node{Id: nodeID}, InitialFetchTimeout: 5 * time.Second}
	cfg.Backoff.Base, cfg.Backoff.Max = 20*time.Millisecond, 200*time.Millisecond
	cfg.Logger, _ = testLogger(t)
	return cfg
}

func adsConfig(t *testing.T, addr string, delta bool) *xds.Config {
	cfg := newConfig(t)
	cfg.ADS = &xds.Source{Target: addr, Delta: delta}
	cfg.LDS, cfg.CDS = cfg.ADS, cfg.ADS
	return cfg
}

// startClient starts a client and closes it at cleanup, checking that
// Close returns promptly and leaves no goroutine behind.
func startClient(t *testing.T, cfg *xds.Config, a xds.Applier) *xds.Client {
	t.Helper()
	c := xds.New(cfg, a)
	c.Start(context.Background())
	t.Cleanup(func() { closeAndCheck(t, c) })
	return c
}

func closeAndCheck(t *testing.T, c *xds.Client) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		c.Close()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return within 5s")
	}
	checkNoLeaks(t)
}

// leakMarkers are frames only a running client has: its own goroutines
// and its gRPC client connections (the test servers are gRPC servers).
var leakMarkers = []string{
	"weft/internal/xds.(*stream)",
	"weft/internal/xds.(*Client)",
	"grpc/internal/transport.(*http2Client)",
	"grpc.(*addrConn)",
}

// checkNoLeaks polls, like grpc-go's leakcheck, until no goroutine of a
// client is left: goroutines end asynchronously after their stop signal.
func checkNoLeaks(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		buf := make([]byte, 4<<20)
		buf = buf[:runtime.Stack(buf, true)]
		var leaked []string
		for _, g := range strings.Split(string(buf), "\n\n") {
			for _, m := range leakMarkers {
				if strings.Contains(g, m) {
					leaked = append(leaked, g)
					break
				}
			}
		}
		if len(leaked) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("%d goroutines left after Close:\n%s", len(leaked), strings.Join(leaked, "\n\n"))
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func waitInitialized(t *testing.T, c *xds.Client) {
	t.Helper()
	select {
	case <-c.Initialized():
	case <-time.After(waitFor):
		t.Fatal("client not initialized")
	}
}

func typeStatus(c *xds.Client, typeURL string) xds.TypeStatus {
	for _, st := range c.Status() {
		if st.TypeURL == typeURL {
			return st
		}
	}
	return xds.TypeStatus{}
}

// protocols runs a test for state-of-the-world and for delta.
func protocols(t *testing.T, f func(t *testing.T, delta bool)) {
	t.Run("sotw", func(t *testing.T) { f(t, false) })
	t.Run("delta", func(t *testing.T) { f(t, true) })
}

var errRejected = errors.New("rejected")

func rejectNamed(typeURL, name string) func(string, map[string]proto.Message) error {
	return func(t string, all map[string]proto.Message) error {
		if _, ok := all[name]; ok && t == typeURL {
			return fmt.Errorf("%w: %s %q is not allowed", errRejected, "listener", name)
		}
		return nil
	}
}
