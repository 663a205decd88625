package controlplane

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"path"
	"sort"
	"strconv"
	"strings"
	"time"

	xdstypev3 "github.com/cncf/xds/go/xds/type/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	routerv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/router/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"github.com/envoyproxy/go-control-plane/pkg/cache/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/internal/registry"
	"github.com/weftmesh/weft/internal/router"
	"github.com/weftmesh/weft/internal/tlsctx"
	"github.com/weftmesh/weft/internal/upstream"
)

// Names and type URLs of what the compiler emits.
const (
	hcmName        = "envoy.filters.network.http_connection_manager"
	tcpProxyName   = "envoy.filters.network.tcp_proxy"
	routerName     = "envoy.filters.http.router"
	rpcProxyName   = "weft.filters.network.rpc_proxy"
	rpcProxyType   = "type.weftmesh.io/weft.filters.network.rpc_proxy.v1.RpcProxy"
	httpOptionsKey = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
	// lbNamespace is the filter_metadata namespace of endpoint labels,
	// as Envoy's subset load balancer reads them.
	lbNamespace = "envoy.lb"
)

// model is a compiled rule set with the endpoints known when it was
// compiled: one snapshot per sidecar rule, ready to hand to nodes.
type model struct {
	rules    *ruleSet
	built    time.Time
	groups   []*group // one per sidecar, in rule order, then noSidecar
	none     *group   // nodes that match no sidecar: every cluster, no listener
	warnings []Problem
	// endpoints counts the endpoints of each service (static + registry).
	endpoints map[string]int
}

// group is what every node matching one sidecar rule receives.
type group struct {
	sidecar  *sidecar // nil for nodes that match no sidecar
	snapshot *cache.Snapshot
	version  string            // of the whole snapshot
	versions map[string]string // per type URL
}

// compile turns rules and registry instances (by service name) into
// snapshots. An error means a defect the validator let through; the caller
// refuses the rule set with it.
func compile(rs *ruleSet, instances map[string][]registry.Instance) (*model, error) {
	m := &model{rules: rs, built: time.Now(), endpoints: map[string]int{}}
	ps := &problems{}
	clusters := map[string]*clusterv3.Cluster{}
	loads := map[string]*endpointv3.ClusterLoadAssignment{}
	for _, name := range rs.names {
		s := rs.services[name]
		eps := mergeEndpoints(s, instances[name], ps)
		m.endpoints[name] = len(eps)
		c, err := clusterProto(s, name)
		if err != nil {
			return nil, err
		}
		clusters[name] = c
		loads[name] = loadAssignment(name, eps)
		for _, cn := range sortedKeys(s.subsets) {
			use := s.subsets[cn]
			sel := selectEndpoints(eps, use.labels)
			if len(sel) == 0 {
				ps.warnf(use.at, "route %s: destination subset %s: no endpoints of service %s have label %s",
					use.route, labelString(use.labels), name, labelString(use.labels))
			}
			sc, err := clusterProto(s, cn)
			if err != nil {
				return nil, err
			}
			clusters[cn] = sc
			loads[cn] = loadAssignment(cn, sel)
		}
	}
	hashes := hashCache{}
	for _, sc := range rs.sidecars {
		g, err := buildGroup(rs, sc, clusters, loads, hashes)
		if err != nil {
			return nil, fmt.Errorf("sidecar %s (%s): %w", sc.name, sc.rule.at(), err)
		}
		m.groups = append(m.groups, g)
	}
	none, err := buildGroup(rs, nil, clusters, loads, hashes)
	if err != nil {
		return nil, err
	}
	if err := checkClusters(none); err != nil {
		return nil, err
	}
	m.none = none
	_, m.warnings = ps.split()
	return m, nil
}

// groupFor picks the first sidecar rule that matches the node.
func (m *model) groupFor(id string, meta map[string]string) *group {
	for _, g := range m.groups {
		if g.sidecar.matches(id, meta) {
			return g
		}
	}
	return m.none
}

// matches reports whether a node id and metadata select this sidecar.
func (sc *sidecar) matches(id string, meta map[string]string) bool {
	if sc.nodeID != "" {
		if ok, _ := path.Match(sc.nodeID, id); !ok {
			return false
		}
	}
	for k, v := range sc.metadata {
		if got, ok := meta[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// mergeEndpoints returns the static endpoints of s and the registry
// instances of its protocol, sorted by address. A static endpoint wins
// over an instance at the same address.
func mergeEndpoints(s *service, inst []registry.Instance, ps *problems) []endpoint {
	out := append([]endpoint(nil), s.endpoints...)
	seen := map[netip.AddrPort]bool{}
	for _, e := range out {
		seen[e.addr] = true
	}
	for _, in := range inst {
		if !instanceServes(s.protocol, in.Protocol) {
			continue
		}
		ap, err := netip.ParseAddrPort(in.Address)
		if err != nil || ap.Port() == 0 || ap.Addr().Zone() != "" {
			ps.warnAt("", 0, "service %s: registry instance %s: address is not ip:port, skipped", s.name, in.Address)
			continue
		}
		ap = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		if seen[ap] {
			continue
		}
		seen[ap] = true
		e := endpoint{addr: ap, weight: 1, labels: map[string]string{}}
		for k, v := range in.Metadata {
			if labelRE.MatchString(k) && labelRE.MatchString(v) {
				e.labels[k] = v
			}
		}
		if w, err := strconv.Atoi(in.Metadata["weight"]); err == nil && w > 0 && w <= 1_000_000 {
			e.weight = uint32(w)
		}
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].addr.Compare(out[j].addr) < 0 })
	return out
}

// instanceServes reports whether a registry instance of protocol p is an
// endpoint of a service of protocol sp.
func instanceServes(sp, p string) bool {
	return p == sp || sp == protoGRPC && p == "triple"
}

func selectEndpoints(eps []endpoint, labels map[string]string) []endpoint {
	var out []endpoint
next:
	for _, e := range eps {
		for k, v := range labels {
			if e.labels[k] != v {
				continue next
			}
		}
		out = append(out, e)
	}
	return out
}

func labelString(labels map[string]string) string {
	parts := make([]string, 0, len(labels))
	for _, k := range sortedKeys(labels) {
		parts = append(parts, k+"="+labels[k])
	}
	return strings.Join(parts, ",")
}

func adsSource() *corev3.ConfigSource {
	return &corev3.ConfigSource{
		ResourceApiVersion:    corev3.ApiVersion_V3,
		ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}},
	}
}

var lbPolicyOf = map[string]clusterv3.Cluster_LbPolicy{
	"":              clusterv3.Cluster_ROUND_ROBIN,
	"round_robin":   clusterv3.Cluster_ROUND_ROBIN,
	"least_request": clusterv3.Cluster_LEAST_REQUEST,
	"random":        clusterv3.Cluster_RANDOM,
	"ring_hash":     clusterv3.Cluster_RING_HASH,
	"maglev":        clusterv3.Cluster_MAGLEV,
}

func u32(p *int) *wrapperspb.UInt32Value {
	if p == nil {
		return nil
	}
	return wrapperspb.UInt32(uint32(*p))
}

// clusterProto is the EDS cluster name for service s (its own cluster or
// one of its subsets): the traffic policy applies to both.
func clusterProto(s *service, name string) (*clusterv3.Cluster, error) {
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{EdsConfig: adsSource()},
	}
	if tp := s.rule.TrafficPolicy; tp != nil {
		c.LbPolicy = lbPolicyOf[tp.LBPolicy]
		if tp.ConnectTimeout.Set {
			c.ConnectTimeout = durationpb.New(tp.ConnectTimeout.D)
		}
		if cb := tp.CircuitBreakers; cb != nil {
			c.CircuitBreakers = &clusterv3.CircuitBreakers{Thresholds: []*clusterv3.CircuitBreakers_Thresholds{{
				Priority:           corev3.RoutingPriority_DEFAULT,
				MaxConnections:     u32(cb.MaxConnections),
				MaxPendingRequests: u32(cb.MaxPendingRequests),
				MaxRequests:        u32(cb.MaxRequests),
				MaxRetries:         u32(cb.MaxRetries),
			}}}
		}
		if hc := tp.HealthCheck; hc != nil {
			c.HealthChecks = []*corev3.HealthCheck{healthCheckProto(hc)}
		}
	}
	if s.protocol == protoGRPC {
		opts, err := newAny(&httpv3.HttpProtocolOptions{
			UpstreamProtocolOptions: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_{
				ExplicitHttpConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig{
					ProtocolConfig: &httpv3.HttpProtocolOptions_ExplicitHttpConfig_Http2ProtocolOptions{
						Http2ProtocolOptions: &corev3.Http2ProtocolOptions{},
					},
				},
			},
		})
		if err != nil {
			return nil, err
		}
		c.TypedExtensionProtocolOptions = map[string]*anypb.Any{httpOptionsKey: opts}
	}
	return c, nil
}

func healthCheckProto(hc *healthCheckRule) *corev3.HealthCheck {
	unhealthy, healthy := hc.UnhealthyThreshold, hc.HealthyThreshold
	if unhealthy == 0 {
		unhealthy = 3
	}
	if healthy == 0 {
		healthy = 2
	}
	h := &corev3.HealthCheck{
		Timeout:            durationpb.New(hc.Timeout.D),
		Interval:           durationpb.New(hc.Interval.D),
		UnhealthyThreshold: wrapperspb.UInt32(uint32(unhealthy)),
		HealthyThreshold:   wrapperspb.UInt32(uint32(healthy)),
	}
	if hc.HTTPPath != "" {
		h.HealthChecker = &corev3.HealthCheck_HttpHealthCheck_{HttpHealthCheck: &corev3.HealthCheck_HttpHealthCheck{Path: hc.HTTPPath}}
	} else {
		h.HealthChecker = &corev3.HealthCheck_TcpHealthCheck_{TcpHealthCheck: &corev3.HealthCheck_TcpHealthCheck{}}
	}
	return h
}

// loadAssignment lists eps with their labels as envoy.lb metadata.
func loadAssignment(name string, eps []endpoint) *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	if len(eps) == 0 {
		return cla
	}
	lle := &endpointv3.LocalityLbEndpoints{}
	for _, e := range eps {
		le := &endpointv3.LbEndpoint{
			HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
				Address: socketAddress(e.addr.Addr().String(), uint32(e.addr.Port())),
			}},
			LoadBalancingWeight: wrapperspb.UInt32(e.weight),
		}
		if len(e.labels) > 0 {
			fields := make(map[string]*structpb.Value, len(e.labels))
			for k, v := range e.labels {
				fields[k] = structpb.NewStringValue(v)
			}
			le.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{lbNamespace: {Fields: fields}}}
		}
		lle.LbEndpoints = append(lle.LbEndpoints, le)
	}
	cla.Endpoints = []*endpointv3.LocalityLbEndpoints{lle}
	return cla
}

func socketAddress(host string, port uint32) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address:       host,
		PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: port},
	}}}
}

// buildGroup assembles the snapshot of one sidecar rule (sc nil: the
// nodes matching none, which get every cluster and no listener).
func buildGroup(rs *ruleSet, sc *sidecar, clusters map[string]*clusterv3.Cluster,
	loads map[string]*endpointv3.ClusterLoadAssignment, hashes hashCache) (*group, error) {
	var listeners, routes []types.Resource
	var rpcRoutes []string
	want := map[string]bool{}
	addService := func(name string) {
		want[name] = true
		for _, cr := range rs.services[name].routes {
			for _, d := range cr.dests {
				want[d.cluster] = true
			}
		}
	}
	if sc == nil {
		for name := range clusters {
			want[name] = true
		}
	} else {
		for _, l := range sc.listeners {
			for _, n := range l.services {
				addService(n)
			}
			lp, err := listenerProto(l)
			if err != nil {
				return nil, fmt.Errorf("listener %s: %w", l.name, err)
			}
			listeners = append(listeners, lp)
			if l.protocol == protoTCP {
				continue
			}
			rc := routeConfig(rs, l)
			if _, err := router.Compile(rc); err != nil {
				return nil, fmt.Errorf("listener %s: routes: %w", l.name, err)
			}
			if err := rc.ValidateAll(); err != nil {
				return nil, fmt.Errorf("listener %s: routes: %w", l.name, err)
			}
			routes = append(routes, rc)
			if l.protocol != protoHTTP {
				rpcRoutes = append(rpcRoutes, l.name)
			}
		}
	}
	var cs, es []types.Resource
	for _, name := range sortedKeys(want) {
		c, ok := clusters[name]
		if !ok {
			return nil, fmt.Errorf("cluster %s: not compiled", name)
		}
		cs = append(cs, c)
		es = append(es, loads[name])
	}
	g := &group{sidecar: sc, versions: map[string]string{}}
	snap := &cache.Snapshot{}
	all := []struct {
		t     types.ResponseType
		items []types.Resource
	}{{types.Cluster, cs}, {types.Endpoint, es}, {types.Listener, listeners}, {types.Route, routes}}
	whole := sha256.New()
	for _, x := range all {
		v, err := hashes.version(x.items)
		if err != nil {
			return nil, err
		}
		url, _ := cache.GetResponseTypeURL(x.t)
		g.versions[url] = v
		snap.Resources[x.t] = cache.NewResources(v, x.items)
		whole.Write([]byte(v))
	}
	g.version = hex.EncodeToString(whole.Sum(nil))[:16]
	if err := consistent(snap, rpcRoutes); err != nil {
		return nil, err
	}
	g.snapshot = snap
	return g, nil
}

// consistent runs go-control-plane's Snapshot.Consistent, which knows the
// route names that HTTP connection managers reference but not those of
// Weft's RPC proxy, on the snapshot without the RPC route configurations,
// and checks those separately.
func consistent(s *cache.Snapshot, rpcRoutes []string) error {
	check := *s
	check.VersionMap = nil
	routes := check.Resources[types.Route]
	trimmed := cache.Resources{Version: routes.Version, Items: map[string]types.ResourceWithTTL{}}
	for n, r := range routes.Items {
		trimmed.Items[n] = r
	}
	for _, n := range rpcRoutes {
		if _, ok := trimmed.Items[n]; !ok {
			return fmt.Errorf("RPC listener %s: its route configuration is missing", n)
		}
		delete(trimmed.Items, n)
	}
	check.Resources[types.Route] = trimmed
	return check.Consistent()
}

// hashCache remembers resource hashes within one compile: groups share
// their clusters and endpoints.
type hashCache map[proto.Message]string

// version hashes a resource list (deterministic bytes, sorted by name)
// into a type version: unchanged resources keep their version, so a node
// gets no push for them.
func (h hashCache) version(items []types.Resource) (string, error) {
	type named struct{ name, sum string }
	list := make([]named, 0, len(items))
	for _, r := range items {
		sum, ok := h[r]
		if !ok {
			b, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
			if err != nil {
				return "", err
			}
			s := sha256.Sum256(b)
			sum = string(s[:])
			h[r] = sum
		}
		list = append(list, named{cache.GetResourceName(r), sum})
	}
	sort.Slice(list, func(i, j int) bool { return list[i].name < list[j].name })
	w := sha256.New()
	for _, n := range list {
		w.Write([]byte(n.name))
		w.Write([]byte{0})
		w.Write([]byte(n.sum))
	}
	return hex.EncodeToString(w.Sum(nil))[:16], nil
}

// listenerProto builds a sidecar listener: an HTTP connection manager,
// Weft's RPC proxy (both with routes over RDS on the same ADS stream), or a
// TCP proxy.
func listenerProto(l *listener) (*listenerv3.Listener, error) {
	var f *listenerv3.Filter
	var err error
	switch l.protocol {
	case protoHTTP:
		f, err = hcmFilter(l)
	case protoTCP:
		f, err = tcpFilter(l)
	default:
		f, err = rpcFilter(l)
	}
	if err != nil {
		return nil, err
	}
	lp := &listenerv3.Listener{
		Name:         l.name,
		Address:      socketAddress(l.host, l.port),
		FilterChains: []*listenerv3.FilterChain{{Filters: []*listenerv3.Filter{f}}},
	}
	if err := lp.ValidateAll(); err != nil {
		return nil, err
	}
	return lp, nil
}

func typedFilter(name string, m proto.Message) (*listenerv3.Filter, error) {
	a, err := newAny(m)
	if err != nil {
		return nil, err
	}
	return &listenerv3.Filter{Name: name, ConfigType: &listenerv3.Filter_TypedConfig{TypedConfig: a}}, nil
}

func hcmFilter(l *listener) (*listenerv3.Filter, error) {
	rt, err := newAny(&routerv3.Router{})
	if err != nil {
		return nil, err
	}
	h := &hcmv3.HttpConnectionManager{
		StatPrefix: l.name,
		CodecType:  hcmv3.HttpConnectionManager_AUTO,
		RouteSpecifier: &hcmv3.HttpConnectionManager_Rds{Rds: &hcmv3.Rds{
			RouteConfigName: l.name,
			ConfigSource:    adsSource(),
		}},
		HttpFilters: []*hcmv3.HttpFilter{{Name: routerName, ConfigType: &hcmv3.HttpFilter_TypedConfig{TypedConfig: rt}}},
	}
	if err := h.ValidateAll(); err != nil {
		return nil, err
	}
	return typedFilter(hcmName, h)
}

func tcpFilter(l *listener) (*listenerv3.Filter, error) {
	t := &tcpv3.TcpProxy{
		StatPrefix:       l.name,
		ClusterSpecifier: &tcpv3.TcpProxy_Cluster{Cluster: l.services[0]},
	}
	if err := t.ValidateAll(); err != nil {
		return nil, err
	}
	return typedFilter(tcpProxyName, t)
}

// rpcFilter is weft.filters.network.rpc_proxy in a TypedStruct (docs/rpc.md)
// whose routes come over RDS: rds.route_config_name instead of route_config.
func rpcFilter(l *listener) (*listenerv3.Filter, error) {
	protocols := []any{}
	for _, p := range served(l.protocol) {
		protocols = append(protocols, p)
	}
	v, err := structpb.NewStruct(map[string]any{
		"stat_prefix": l.name,
		"protocols":   protocols,
		"rds":         map[string]any{"route_config_name": l.name},
	})
	if err != nil {
		return nil, err
	}
	ts := &xdstypev3.TypedStruct{TypeUrl: rpcProxyType, Value: v}
	if err := ts.ValidateAll(); err != nil {
		return nil, err
	}
	return typedFilter(rpcProxyName, ts)
}

// routeConfig is the RDS resource of an HTTP or RPC listener: one virtual
// host per visible service.
func routeConfig(rs *ruleSet, l *listener) *routev3.RouteConfiguration {
	rc := &routev3.RouteConfiguration{Name: l.name}
	for _, n := range l.services {
		s := rs.services[n]
		vh := &routev3.VirtualHost{Name: n, Domains: domains(s, l)}
		if len(s.routes) == 0 {
			vh.Routes = []*routev3.Route{{
				Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: defaultPrefix(s)}},
				Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: n}}},
			}}
		}
		for _, cr := range s.routes {
			vh.Routes = append(vh.Routes, routeProto(s, cr))
		}
		rc.VirtualHosts = append(rc.VirtualHosts, vh)
	}
	return rc
}

// defaultPrefix matches every request: every HTTP path starts with "/",
// an RPC "path" is the bare method name.
func defaultPrefix(s *service) string {
	if isRPC(s.protocol) {
		return ""
	}
	return "/"
}

func routeProto(s *service, cr *compiledRule) *routev3.Route {
	ru := cr.rule
	m := &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: defaultPrefix(s)}}
	if mr := ru.Match; mr != nil {
		switch {
		case mr.Prefix != nil:
			m.PathSpecifier = &routev3.RouteMatch_Prefix{Prefix: *mr.Prefix}
		case mr.Path != nil:
			m.PathSpecifier = &routev3.RouteMatch_Path{Path: *mr.Path}
		case mr.Method != nil:
			m.PathSpecifier = &routev3.RouteMatch_Path{Path: *mr.Method}
		}
		for _, h := range mr.Headers {
			if h != nil {
				m.Headers = append(m.Headers, headerProto(h))
			}
		}
		if mr.Version != nil {
			m.Headers = append(m.Headers, exactHeader("version", *mr.Version))
		}
		if mr.Group != nil {
			m.Headers = append(m.Headers, exactHeader("group", *mr.Group))
		}
	}
	a := &routev3.RouteAction{}
	if len(cr.dests) == 1 {
		a.ClusterSpecifier = &routev3.RouteAction_Cluster{Cluster: cr.dests[0].cluster}
	} else {
		wc := &routev3.WeightedCluster{}
		for _, d := range cr.dests {
			wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{Name: d.cluster, Weight: wrapperspb.UInt32(d.weight)})
		}
		a.ClusterSpecifier = &routev3.RouteAction_WeightedClusters{WeightedClusters: wc}
	}
	if ru.Timeout.Set {
		a.Timeout = durationpb.New(ru.Timeout.D)
	}
	if r := ru.Retries; r != nil {
		on := r.RetryOn
		if len(on) == 0 {
			on = defaultRetryOn
		}
		rp := &routev3.RetryPolicy{RetryOn: strings.Join(on, ","), NumRetries: wrapperspb.UInt32(uint32(r.Attempts))}
		if r.PerTryTimeout.Set {
			rp.PerTryTimeout = durationpb.New(r.PerTryTimeout.D)
		}
		a.RetryPolicy = rp
	}
	return &routev3.Route{Name: ru.Name, Match: m, Action: &routev3.Route_Route{Route: a}}
}

func exactHeader(name, v string) *routev3.HeaderMatcher {
	return &routev3.HeaderMatcher{Name: name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{
		StringMatch: &matcherv3.StringMatcher{MatchPattern: &matcherv3.StringMatcher_Exact{Exact: v}},
	}}
}

func headerProto(h *headerMatch) *routev3.HeaderMatcher {
	var p matcherv3.StringMatcher
	switch {
	case h.Present != nil:
		return &routev3.HeaderMatcher{Name: h.Name, HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: *h.Present}}
	case h.Exact != nil:
		p.MatchPattern = &matcherv3.StringMatcher_Exact{Exact: *h.Exact}
	case h.Prefix != nil:
		p.MatchPattern = &matcherv3.StringMatcher_Prefix{Prefix: *h.Prefix}
	case h.Suffix != nil:
		p.MatchPattern = &matcherv3.StringMatcher_Suffix{Suffix: *h.Suffix}
	case h.Regex != nil:
		p.MatchPattern = &matcherv3.StringMatcher_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: *h.Regex}}
	}
	return &routev3.HeaderMatcher{Name: h.Name, HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &p}}
}

// newAny packs m with deterministic bytes: map fields (a TypedStruct's
// value) would otherwise come out in random order, change the resource's
// hash, and push an unchanged configuration to every node.
func newAny(m proto.Message) (*anypb.Any, error) {
	a := &anypb.Any{}
	if err := anypb.MarshalFrom(a, m, proto.MarshalOptions{Deterministic: true}); err != nil {
		return nil, err
	}
	return a, nil
}

// checkClusters runs Weft's own cluster parser over every cluster, so a
// rule set that compiles to something Weft refuses is refused here.
func checkClusters(g *group) error {
	for name, r := range g.snapshot.Resources[types.Cluster].Items {
		c := r.Resource.(*clusterv3.Cluster)
		if err := c.ValidateAll(); err != nil {
			return fmt.Errorf("cluster %s: %w", name, err)
		}
		if err := upstream.Validate(c, tlsctx.Options{}); err != nil {
			return fmt.Errorf("cluster %s: %w", name, err)
		}
	}
	for name, r := range g.snapshot.Resources[types.Endpoint].Items {
		if err := r.Resource.(*endpointv3.ClusterLoadAssignment).ValidateAll(); err != nil {
			return fmt.Errorf("endpoints %s: %w", name, err)
		}
	}
	return nil
}
