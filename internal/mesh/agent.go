package mesh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sort"
	"strconv"
	"sync"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/listener"
	"github.com/weftmesh/weft/internal/registry"
	"github.com/weftmesh/weft/internal/registry/embedded"
	"github.com/weftmesh/weft/internal/registry/etcd"
	"github.com/weftmesh/weft/internal/registry/zk"
	"github.com/weftmesh/weft/internal/router"
	"github.com/weftmesh/weft/internal/rpc"
	"github.com/weftmesh/weft/internal/stats"
	"github.com/weftmesh/weft/internal/stream"
	"github.com/weftmesh/weft/internal/upstream"
)

// Agent is a running mesh agent.
type Agent struct {
	cfg   *Config
	log   *slog.Logger
	store *stats.Store
	reg   registry.Registry
	sdk   *sdkServer

	ingress map[string]*side // protocol -> listener
	egress  map[string]*side

	mu        sync.Mutex
	published map[pubKey]*publication
	subs      map[subKey]*subscription
	clusters  map[string]*clusterv3.Cluster // what the manager holds
	closed    bool
}

// side is one agent listener: an RPC proxy whose route table the agent
// rewrites as services come and go.
type side struct {
	protocol string
	// cm holds one cluster per service, named by the service: the route
	// table is a single route that picks the cluster named by :authority,
	// so a new service changes one cluster and no route table.
	cm       *upstream.Manager
	clusters map[string]string // cluster name -> what it was built from
	ln       *listener.Listener
	addr     string
}

type pubKey struct{ service, protocol string }

type publication struct {
	Service  string            `json:"service"`
	Protocol string            `json:"protocol"`
	Port     int               `json:"port"`
	Metadata map[string]string `json:"metadata,omitempty"`
	Instance registry.Instance `json:"instance"`
	// Registered reports whether the registry has accepted it (false while
	// the registry is unreachable; it is registered as soon as it is back).
	Registered bool `json:"registered"`

	done bool // replaced or unpublished: stop confirming it
}

type subKey struct{ service, protocol string }

type subscription struct {
	cancel    context.CancelFunc
	instances []registry.Instance
	revision  uint64
	changed   chan struct{} // closed and replaced on every change
	known     bool          // the registry has answered once
	fed       bool          // its cluster has had the known endpoints
}

// Options are what the agent takes from the sidecar.
type Options struct {
	Logger *slog.Logger
	Store  *stats.Store
}

// New builds the agent and binds its listeners and SDK port; Start serves.
func New(cfg *Config, o Options) (_ *Agent, err error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Store == nil {
		o.Store = stats.NewStore()
	}
	a := &Agent{cfg: cfg, log: o.Logger.With("component", "mesh"), store: o.Store,
		ingress: map[string]*side{}, egress: map[string]*side{},
		published: map[pubKey]*publication{}, subs: map[subKey]*subscription{}, clusters: map[string]*clusterv3.Cluster{}}
	defer func() {
		if err != nil {
			a.closeListeners()
			if a.reg != nil {
				_ = a.reg.Close()
			}
		}
	}()
	for _, s := range []struct {
		name string
		m    map[string]string
		dst  map[string]*side
	}{{"ingress", cfg.Ingress, a.ingress}, {"egress", cfg.Egress, a.egress}} {
		for _, proto := range sortedKeys(s.m) {
			sd, err := a.listen(s.name, proto, s.m[proto])
			if err != nil {
				return nil, err
			}
			s.dst[proto] = sd
		}
	}
	reg, err := openRegistry(cfg, a.log)
	if err != nil {
		return nil, err
	}
	a.reg = reg
	if a.sdk, err = newSDKServer(a, cfg.SDKAddress); err != nil {
		return nil, err
	}
	return a, nil
}

func openRegistry(cfg *Config, log *slog.Logger) (registry.Registry, error) {
	r := cfg.Registry
	// Each case checks err itself: a nil *etcd.Registry in a non-nil
	// interface would pass an err == nil test later.
	switch r.Kind {
	case "etcd":
		c, err := etcd.New(context.Background(), etcd.Options{Endpoints: r.Endpoints, Prefix: r.Root, TTL: r.ttl, Logger: log})
		if err != nil {
			return nil, err
		}
		return c, nil
	case "zookeeper":
		c, err := zk.New(zk.Options{Servers: r.Servers, Root: r.Root, SessionTimeout: r.ttl, Logger: log})
		if err != nil {
			return nil, err
		}
		return c, nil
	}
	return embedded.New(embedded.Options{Address: r.Address, Logger: log}), nil
}

// listen binds one agent listener. Its route table never changes: every
// service goes to the cluster of the same name in the side's own cluster
// manager, and a service with no cluster gets the protocol's "service not
// found" answer.
func (a *Agent) listen(kind, proto, addr string) (*side, error) {
	mk, _ := api.Codecs.Lookup(proto, "")
	name := "mesh_" + kind + "_" + proto
	cm := upstream.NewManager(upstream.Options{Logger: a.log, Stats: a.store})
	rc := &routev3.RouteConfiguration{Name: name, VirtualHosts: []*routev3.VirtualHost{{
		Name: "services", Domains: []string{"*"},
		Routes: []*routev3.Route{{
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: ""}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{
				ClusterSpecifier:            &routev3.RouteAction_ClusterHeader{ClusterHeader: ":authority"},
				ClusterNotFoundResponseCode: routev3.RouteAction_NOT_FOUND,
				// A request that never reached a provider (connection
				// refused, provider gone) may go to another one.
				RetryPolicy: &routev3.RetryPolicy{RetryOn: "connect-failure"},
			}},
		}},
	}}}
	p := rpc.New(rpc.Config{
		StatPrefix: name,
		Codecs:     []api.Codec{mk(api.CodecLimits{})},
		Routes:     stream.NewStaticRoutes(mustCompile(rc)),
		Clusters:   cm,
		Store:      a.store,
		Log:        a.log,
	})
	ln, err := listener.Listen(listener.Config{Name: name, Address: addr, Logger: a.log,
		Chains: []listener.Chain{{Name: name, Handler: p}}})
	if err != nil {
		cm.Close()
		return nil, fmt.Errorf("mesh %s listener for %s: %w", kind, proto, err)
	}
	return &side{protocol: proto, cm: cm, clusters: map[string]string{}, ln: ln, addr: ln.Addr().String()}, nil
}

func mustCompile(rc *routev3.RouteConfiguration) *router.Table {
	t, err := router.Compile(rc)
	if err != nil {
		panic(fmt.Sprintf("mesh: generated route table does not compile: %v", err))
	}
	return t
}

// Start serves the listeners and the SDK API.
func (a *Agent) Start() {
	for _, m := range []map[string]*side{a.ingress, a.egress} {
		for _, s := range m {
			go s.ln.Serve()
		}
	}
	a.sdk.start()
	a.log.Info("mesh agent started", "sdk", a.sdk.addr(), "registry", a.cfg.Registry.Kind)
}

// DrainGrace is how long a deregistered instance keeps serving.
func (a *Agent) DrainGrace() time.Duration { return a.cfg.drainGrace }

// SDKAddr is the bound SDK API address.
func (a *Agent) SDKAddr() string { return a.sdk.addr() }

// Shutdown deregisters every published instance first, keeps serving for
// the drain grace so consumers' sidecars stop sending new requests, then
// drains the listeners (requests in flight finish) within ctx.
func (a *Agent) Shutdown(ctx context.Context) {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return
	}
	a.closed = true
	subs := a.subs
	a.subs = map[subKey]*subscription{}
	n := len(a.published)
	a.mu.Unlock()
	a.sdk.close()
	_ = a.reg.Close() // deregisters everything this sidecar published
	if n > 0 {
		select {
		case <-time.After(a.cfg.drainGrace):
		case <-ctx.Done():
		}
	}
	for _, s := range subs {
		s.cancel()
	}
	for _, m := range []map[string]*side{a.ingress, a.egress} {
		for _, s := range m {
			s.ln.Drain()
		}
	}
	for _, m := range []map[string]*side{a.ingress, a.egress} {
		for _, s := range m {
			s.ln.Wait(ctx)
			s.cm.Close()
		}
	}
}

func (a *Agent) closeListeners() {
	for _, m := range []map[string]*side{a.ingress, a.egress} {
		for _, s := range m {
			s.ln.Close()
			s.cm.Close()
		}
	}
}

// Errors of the SDK operations, mapped to HTTP statuses by the API.
var (
	errBadRequest = errors.New("bad request")
	errNotServing = errors.New("nothing listens on the application port")
)

// Publish makes a local service reachable through this sidecar's ingress
// and registers the ingress (not the application's port) in the registry.
// The application's port is checked first: a port nobody listens on is
// refused.
func (a *Agent) Publish(ctx context.Context, service, protocol string, port int, md map[string]string) (*publication, error) {
	in, ok := a.ingress[protocol]
	if !ok {
		return nil, fmt.Errorf("%w: this sidecar has no %q ingress (configured: %v)", errBadRequest, protocol, sortedKeys(a.cfg.Ingress))
	}
	if port <= 0 || port > 65535 {
		return nil, fmt.Errorf("%w: port %d", errBadRequest, port)
	}
	local := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	c, err := net.DialTimeout("tcp", local, time.Second)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", errNotServing, local, err)
	}
	_ = c.Close()
	meta := map[string]string{}
	for k, v := range a.cfg.Metadata {
		meta[k] = v
	}
	for k, v := range md {
		meta[k] = v
	}
	meta["meshed"] = "true"
	_, inPort, _ := net.SplitHostPort(in.addr)
	inst := registry.Instance{Service: service, Protocol: protocol, Address: net.JoinHostPort(a.cfg.AdvertiseIP, inPort), Metadata: meta}
	if err := inst.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", errBadRequest, err)
	}
	pub := &publication{Service: service, Protocol: protocol, Port: port, Metadata: md, Instance: inst}
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil, registry.ErrClosed
	}
	if old := a.published[pubKey{service, protocol}]; old != nil {
		old.done = true // this publication replaces it
	}
	a.published[pubKey{service, protocol}] = pub
	err = a.applyLocked()
	a.mu.Unlock()
	if err != nil {
		return nil, err
	}
	// Routes first, registration second: a consumer never learns of an
	// instance that cannot serve yet.
	if err := a.reg.Register(ctx, inst); err != nil {
		if errors.Is(err, registry.ErrClosed) {
			return nil, err // shutting down
		}
		a.log.Warn("registry unreachable; the instance is registered when it is back", "service", service, "err", err)
		go a.confirm(pub)
		return pub, nil
	}
	a.mu.Lock()
	pub.Registered = true
	a.mu.Unlock()
	a.log.Info("published", "service", service, "protocol", protocol, "app_port", port, "registered", inst.Address)
	return pub, nil
}

// confirm registers a publication the registry could not take at publish
// time, retrying with back-off until it succeeds (then Registered turns
// true) or the publication is replaced or unpublished. The backend would
// register it on its own once the registry is back; this also tells the
// application (GET /v1/status) when that happened.
func (a *Agent) confirm(pub *publication) {
	delay := 200 * time.Millisecond
	for {
		time.Sleep(delay)
		delay = min(2*delay, 5*time.Second)
		a.mu.Lock()
		stop := a.closed || pub.done
		a.mu.Unlock()
		if stop {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := a.reg.Register(ctx, pub.Instance)
		cancel()
		if err != nil {
			continue
		}
		a.mu.Lock()
		undo := pub.done && a.published[pubKey{pub.Service, pub.Protocol}] == nil
		if !pub.done {
			pub.Registered = true
		}
		a.mu.Unlock()
		if undo {
			// Unpublished while we registered it: take it back.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_ = a.reg.Deregister(ctx, pub.Instance)
			cancel()
		}
		a.log.Info("published (registry back)", "service", pub.Service, "protocol", pub.Protocol)
		return
	}
}

// Unpublish deregisters the instance, waits the drain grace so consumers
// stop sending, then removes the ingress route.
func (a *Agent) Unpublish(ctx context.Context, service, protocol string) error {
	a.mu.Lock()
	pub := a.published[pubKey{service, protocol}]
	a.mu.Unlock()
	if pub == nil {
		return fmt.Errorf("%w: %s (%s) is not published here", errBadRequest, service, protocol)
	}
	a.mu.Lock()
	pub.done = true
	a.mu.Unlock()
	if err := a.reg.Deregister(ctx, pub.Instance); err != nil {
		return err
	}
	select {
	case <-time.After(a.cfg.drainGrace):
	case <-ctx.Done():
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.published[pubKey{service, protocol}] == pub {
		delete(a.published, pubKey{service, protocol})
	}
	return a.applyLocked()
}

// Subscribe makes the sidecar follow a service's providers and returns the
// egress address the application should call.
func (a *Agent) Subscribe(service, protocol string) (string, error) {
	eg, ok := a.egress[protocol]
	if !ok {
		return "", fmt.Errorf("%w: this sidecar has no %q egress (configured: %v)", errBadRequest, protocol, sortedKeys(a.cfg.Egress))
	}
	if err := (registry.Instance{Service: service, Protocol: protocol, Address: "0.0.0.0:1"}).Validate(); err != nil {
		return "", fmt.Errorf("%w: %v", errBadRequest, err)
	}
	k := subKey{service, protocol}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return "", registry.ErrClosed
	}
	if _, ok := a.subs[k]; ok {
		return eg.addr, nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &subscription{cancel: cancel, changed: make(chan struct{})}
	a.subs[k] = s
	if err := a.applyLocked(); err != nil {
		delete(a.subs, k)
		cancel()
		return "", err
	}
	go func() {
		_ = a.reg.Watch(ctx, service, func(list []registry.Instance) { a.onProviders(k, s, list) })
	}()
	return eg.addr, nil
}

// onProviders feeds a subscription's cluster with the providers the
// registry reports (only those of the subscribed protocol).
func (a *Agent) onProviders(k subKey, s *subscription, list []registry.Instance) {
	var mine []registry.Instance
	for _, in := range list {
		if in.Protocol == k.protocol {
			mine = append(mine, in)
		}
	}
	registry.Sort(mine)
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.subs[k] != s {
		return
	}
	s.instances, s.known = mine, true
	s.revision++
	close(s.changed)
	s.changed = make(chan struct{})
	if err := a.egress[k.protocol].cm.UpdateEndpoints(k.service, cla(k.service, mine)); err != nil {
		a.log.Warn("mesh: endpoint update refused", "service", k.service, "err", err)
	} else {
		s.fed = true
	}
	a.log.Info("providers changed", "service", k.service, "protocol", k.protocol, "count", len(mine))
}

// applyLocked brings each side's clusters in line with what is published
// and subscribed, one cluster at a time (Upsert): the others keep their
// connections and endpoints and are not even compared, so thousands of
// subscriptions stay cheap.
func (a *Agent) applyLocked() error {
	// Clusters are described by a short signature; a proto is built only
	// for one that changes.
	want := map[*side]map[string]func() *clusterv3.Cluster{}
	sig := map[*side]map[string]string{}
	add := func(s *side, name, signature string, mk func() *clusterv3.Cluster) {
		if want[s] == nil {
			want[s], sig[s] = map[string]func() *clusterv3.Cluster{}, map[string]string{}
		}
		want[s][name], sig[s][name] = mk, signature
	}
	for k, p := range a.published {
		port := p.Port
		add(a.ingress[k.protocol], k.service, "static:"+strconv.Itoa(port), func() *clusterv3.Cluster { return staticCluster(k.service, port) })
	}
	for k := range a.subs {
		add(a.egress[k.protocol], k.service, "eds", func() *clusterv3.Cluster { return edsCluster(k.service) })
	}
	for _, m := range []map[string]*side{a.ingress, a.egress} {
		for _, s := range m {
			var upsert []*clusterv3.Cluster
			var remove []string
			for name, mk := range want[s] {
				if s.clusters[name] != sig[s][name] {
					upsert = append(upsert, mk())
				}
			}
			for name := range s.clusters {
				if _, ok := want[s][name]; !ok {
					remove = append(remove, name)
				}
			}
			if len(upsert) == 0 && len(remove) == 0 {
				continue
			}
			if err := s.cm.Upsert(upsert, remove); err != nil {
				return err
			}
			s.clusters = sig[s]
			if s.clusters == nil {
				s.clusters = map[string]string{}
			}
		}
	}
	// A new EDS cluster starts empty: give it what is known (clusters that
	// existed before keep their endpoints).
	for k, s := range a.subs {
		if s.known && !s.fed {
			_ = a.egress[k.protocol].cm.UpdateEndpoints(k.service, cla(k.service, s.instances))
			s.fed = true
		}
	}
	return nil
}

func sortedPubs(m map[pubKey]*publication) []pubKey {
	out := make([]pubKey, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].service+out[i].protocol < out[j].service+out[j].protocol })
	return out
}

func sortedSubs(m map[subKey]*subscription) []subKey {
	out := make([]subKey, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].service+out[i].protocol < out[j].service+out[j].protocol })
	return out
}

func addr(host string, port int) *corev3.Address {
	return &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
		Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(port)},
	}}}
}

func staticCluster(name string, port int) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(time.Second),
		LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{
			LbEndpoints: []*endpointv3.LbEndpoint{{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{
				Endpoint: &endpointv3.Endpoint{Address: addr("127.0.0.1", port)}}}},
		}}},
	}
}

func edsCluster(name string) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		ConnectTimeout:       durationpb.New(time.Second),
		EdsClusterConfig:     &clusterv3.Cluster_EdsClusterConfig{ServiceName: name},
	}
}

// cla is the endpoint assignment of a subscription: every provider, its
// metadata under "envoy.lb" (version, group, zone... for routing).
func cla(name string, list []registry.Instance) *endpointv3.ClusterLoadAssignment {
	var eps []*endpointv3.LbEndpoint
	for _, in := range list {
		host, p, err := net.SplitHostPort(in.Address)
		port, perr := strconv.Atoi(p)
		if err != nil || perr != nil || net.ParseIP(host) == nil {
			continue // the registry holds a name or garbage: not dialable here
		}
		ep := &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{Address: addr(host, port)}}}
		if len(in.Metadata) > 0 {
			fields := map[string]any{}
			for k, v := range in.Metadata {
				fields[k] = v
			}
			if st, err := structpb.NewStruct(fields); err == nil {
				ep.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{"envoy.lb": st}}
			}
		}
		eps = append(eps, ep)
	}
	return &endpointv3.ClusterLoadAssignment{ClusterName: name, Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: eps}}}
}

// ListenerAddrs names the agent's listeners ("mesh_ingress_bolt"...,
// and "mesh_sdk" for the local API) with their bound addresses, for the
// admin /listeners page.
func (a *Agent) ListenerAddrs() map[string]string {
	out := map[string]string{"mesh_sdk": a.sdk.addr()}
	for _, m := range []map[string]*side{a.ingress, a.egress} {
		for _, s := range m {
			out[s.ln.Name()] = s.addr
		}
	}
	return out
}

// Clusters is the status of every agent cluster (one per service and
// side), named "<listener>/<service>", for the admin /clusters page.
func (a *Agent) Clusters() []upstream.ClusterStatus {
	var out []upstream.ClusterStatus
	for _, m := range []map[string]*side{a.ingress, a.egress} {
		for _, proto := range sortedSides(m) {
			s := m[proto]
			for _, c := range s.cm.Snapshot() {
				c.Name = s.ln.Name() + "/" + c.Name
				out = append(out, c)
			}
		}
	}
	return out
}

func sortedSides(m map[string]*side) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
