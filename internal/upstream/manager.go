// Package upstream owns Weft's upstream clusters: discovery (static, DNS,
// EDS-shaped updates), hosts, load balancing, circuit breakers and active
// health checks. Manager implements api.ClusterManager.
package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/tlsctx"
)

// Options configure a Manager. Every field is optional.
type Options struct {
	// Logger receives DNS failures and host health transitions.
	Logger *slog.Logger
	// Dial replaces the dialer for upstream and health-check connections
	// (tests); when set, upstream_connection_options.tcp_keepalive is the
	// hook's business.
	Dial func(ctx context.Context, network, address string) (net.Conn, error)
	// Resolver resolves STRICT_DNS / LOGICAL_DNS host names; nil means
	// net.DefaultResolver.
	Resolver Resolver
	// OnHealthChange, if set, is called after a host's health verdict
	// flips (active health checks only), once the new host set is live.
	OnHealthChange func(cluster, address string, healthy bool)
	// Stats, if set, exports cluster and host counters; *stats.Store
	// implements it.
	Stats StatsSink
	// Secrets serves the TLS secrets clusters name (static_resources.secrets);
	// nil refuses every secret reference.
	Secrets tlsctx.Provider
	// SDS serves the secrets clusters take by sds_config, at each
	// handshake; nil refuses sds_config (no xDS client).
	SDS tlsctx.Provider
}

// StatsSink is where clusters and hosts register their counters for
// export. A cluster registers when it starts (replacing the counters of
// the cluster it replaces), each host when it joins; hosts unregister when
// they leave and a cluster (with its hosts) when it is removed.
type StatsSink interface {
	RegisterCluster(name string, cs *api.ClusterStats)
	UnregisterCluster(name string)
	RegisterHost(cluster, addr string, hs *api.HostStats, active *api.Gauge)
	UnregisterHost(cluster, addr string)
}

type noStats struct{}

func (noStats) RegisterCluster(string, *api.ClusterStats)               {}
func (noStats) UnregisterCluster(string)                                {}
func (noStats) RegisterHost(string, string, *api.HostStats, *api.Gauge) {}
func (noStats) UnregisterHost(string, string)                           {}

// Validate checks one cluster config without building anything (for
// `weft validate` and config loading). The error names the field path
// within the cluster. secrets serves TLS secrets by name (zero: none).
func Validate(c *clusterv3.Cluster, secrets tlsctx.Options) error {
	if c.GetName() == "" {
		return errors.New("name: required")
	}
	_, err := parseCluster(c, secrets)
	return err
}

// Manager owns every upstream cluster. Cluster lookups read an immutable
// map through an atomic pointer and never lock; Update, UpdateEndpoints and
// Close are serialized.
type Manager struct {
	opts     Options
	log      *slog.Logger
	clusters atomic.Pointer[map[string]*Cluster]

	mu      sync.Mutex
	closed  bool
	lastErr error
}

var _ api.ClusterManager = (*Manager)(nil)

// NewManager returns a manager with no clusters.
func NewManager(opts Options) *Manager {
	m := &Manager{opts: opts, log: opts.Logger}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	m.log = m.log.With("component", "upstream")
	if m.opts.Resolver == nil {
		m.opts.Resolver = net.DefaultResolver
	}
	if m.opts.Stats == nil {
		m.opts.Stats = noStats{}
	}
	m.clusters.Store(&map[string]*Cluster{})
	return m
}

// Cluster returns the named cluster.
func (m *Manager) Cluster(name string) (api.Cluster, bool) {
	c, ok := (*m.clusters.Load())[name]
	if !ok {
		return nil, false
	}
	return c, true
}

// Get returns the named cluster with its concrete type (for Hosts,
// PoolConfig), or nil.
func (m *Manager) Get(name string) *Cluster { return (*m.clusters.Load())[name] }

// Update replaces the cluster set with clusters, all or nothing: if any
// cluster is invalid nothing changes and the error names every invalid
// cluster and its field path, e.g.
//
//	cluster "x": load_assignment.endpoints[0].lb_endpoints[1].endpoint.address.socket_address.address: "db" is not an IP address
//
// A cluster whose config is unchanged (proto.Equal) keeps its Cluster,
// hosts, pools, breaker counts and health state. A changed cluster is
// rebuilt (an EDS cluster carries its last endpoint assignment over, a DNS
// cluster its last resolved addresses) and the old one is stopped like a
// removed one: its health checks and DNS end and its pools drain. If only
// settings that do not shape an open connection changed (circuit breakers,
// load balancing, connect_timeout, health checks...; see connCompatible),
// the pooled connections of each address the rebuilt cluster still has
// move to its host of that address instead of closing, so a config push
// does not make every upstream connection reconnect.
func (m *Manager) Update(clusters []*clusterv3.Cluster) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errors.New("upstream: manager closed")
	}
	old := *m.clusters.Load()
	return m.apply(old, make(map[string]*Cluster, len(clusters)), clusters)
}

// Upsert adds or replaces clusters and removes the named ones, leaving
// every other cluster untouched (not even compared): the incremental form
// of Update for a caller that manages thousands of clusters one at a time,
// as the mesh agent does with its subscriptions. The rules for a changed or
// unchanged cluster are Update's.
func (m *Manager) Upsert(clusters []*clusterv3.Cluster, remove []string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errors.New("upstream: manager closed")
	}
	old := *m.clusters.Load()
	next := make(map[string]*Cluster, len(old)+len(clusters))
	for name, c := range old {
		next[name] = c
	}
	for _, name := range remove {
		delete(next, name)
	}
	return m.apply(old, next, clusters)
}

// apply builds clusters into next (which may already hold clusters to
// keep), then swaps next in and stops what it no longer holds. On error
// nothing changes.
func (m *Manager) apply(old, next map[string]*Cluster, clusters []*clusterv3.Cluster) error {
	var fresh []*Cluster
	var errs []error
	seen := map[string]int{}
	for i, pc := range clusters {
		name := pc.GetName()
		if name == "" {
			errs = append(errs, fmt.Errorf("clusters[%d]: name: required", i))
			continue
		}
		if j, dup := seen[name]; dup {
			errs = append(errs, fmt.Errorf("cluster %q: name: duplicate of clusters[%d]", name, j))
			continue
		}
		seen[name] = i
		if oc, ok := old[name]; ok && proto.Equal(oc.spec.proto, pc) {
			next[name] = oc
			continue
		}
		s, err := parseCluster(pc, tlsctx.Options{Secrets: m.opts.Secrets, SDS: m.opts.SDS})
		if err != nil {
			errs = append(errs, fmt.Errorf("cluster %q: %w", name, err))
			continue
		}
		c := newCluster(s, m)
		next[name] = c
		fresh = append(fresh, c)
	}
	if len(errs) > 0 {
		for _, c := range fresh {
			c.cancel()
		}
		m.lastErr = errors.Join(errs...)
		return m.lastErr
	}
	// heirs are, per replaced cluster whose connections its successor can
	// reuse, the successor's hosts by address: found before the swap, so
	// that the handover right after it is quick (requests that reach the
	// successor before it dial new connections).
	var heirs map[string]map[string]*Host
	for _, c := range fresh {
		oc, ok := old[c.spec.name]
		if ok {
			c.inherit(oc)
		}
		c.start()
		if ok && oc.spec.connCompatible(c.spec) {
			if heirs == nil {
				heirs = map[string]map[string]*Host{}
			}
			heirs[c.spec.name] = c.hostsByAddr()
		}
	}
	m.clusters.Store(&next)
	// Halt every replaced cluster before waiting for any.
	for name, oc := range old {
		if next[name] != oc {
			oc.halt(heirs[name])
		}
	}
	for name, oc := range old {
		switch nc := next[name]; {
		case nc == nil:
			oc.wg.Wait()
			m.opts.Stats.UnregisterCluster(name)
		case nc != oc:
			oc.wg.Wait()
			nc.unexportStale(oc)
		}
	}
	m.lastErr = nil
	if len(fresh) > 0 || len(old) != len(next) {
		m.log.Debug("clusters updated", "total", len(next), "built", len(fresh))
	}
	return nil
}

// inherit carries what the replaced cluster learned at run time: EDS
// endpoints or resolved DNS addresses, so a config change does not empty
// the cluster until the next push or lookup.
// hostHealth is a host's health check state carried to its successor.
type hostHealth struct {
	failed  uint32
	reasons []string
}

func (c *Cluster) inherit(old *Cluster) {
	old.mu.Lock()
	defer old.mu.Unlock()
	if n := len(c.spec.healthChecks); n > 0 && len(old.spec.healthChecks) == n &&
		sameHealthChecks(c.spec.proto.GetHealthChecks(), old.spec.proto.GetHealthChecks()) {
		c.healthSeed = make(map[string]hostHealth, len(old.hosts))
		for _, h := range old.hosts {
			if !h.hcChecked.Load() {
				continue
			}
			h.hcMu.Lock()
			c.healthSeed[h.addr] = hostHealth{failed: h.hcFailed.Load(), reasons: slices.Clone(h.hcReasons)}
			h.hcMu.Unlock()
		}
	}
	if c.spec.discovery == discoveryEDS && old.spec.discovery == discoveryEDS {
		c.lastEPs = old.lastEPs
	}
	if len(old.dnsCache) > 0 && (c.spec.discovery == discoveryStrictDNS || c.spec.discovery == discoveryLogicalDNS) {
		c.dnsCache = make(map[string][]netip.Addr, len(old.dnsCache))
		for _, e := range c.spec.endpoints {
			if a, ok := old.dnsCache[e.host]; ok {
				c.dnsCache[e.host] = a
			}
		}
	}
}

func sameHealthChecks(a, b []*corev3.HealthCheck) bool {
	return slices.EqualFunc(a, b, func(x, y *corev3.HealthCheck) bool { return proto.Equal(x, y) })
}

// connIgnored are the Cluster fields that do not shape an open upstream
// connection: a rebuilt cluster that differs from the one it replaces only
// in these keeps the old cluster's connections. Any other difference (a
// field not listed here included) drains them, the safe side.
var connIgnored = map[protoreflect.Name]bool{
	"type":                          true, // the addresses decide, not how they were learnt
	"cluster_type":                  true,
	"eds_cluster_config":            true,
	"connect_timeout":               true, // only for new connections
	"lb_policy":                     true,
	"load_assignment":               true, // hosts are matched by address
	"health_checks":                 true,
	"circuit_breakers":              true, // breaker units move with the connection
	"dns_refresh_rate":              true,
	"dns_failure_refresh_rate":      true,
	"respect_dns_ttl":               true,
	"dns_lookup_family":             true,
	"dns_resolvers":                 true,
	"use_tcp_for_dns_lookups":       true,
	"dns_resolution_config":         true,
	"typed_dns_resolver_config":     true,
	"wait_for_warm_on_init":         true,
	"outlier_detection":             true,
	"cleanup_interval":              true,
	"lb_subset_config":              true,
	"ring_hash_lb_config":           true,
	"maglev_lb_config":              true,
	"original_dst_lb_config":        true,
	"least_request_lb_config":       true,
	"round_robin_lb_config":         true,
	"common_lb_config":              true,
	"load_balancing_policy":         true,
	"metadata":                      true,
	"alt_stat_name":                 true,
	"track_timeout_budgets":         true,
	"track_cluster_stats":           true,
	"ignore_health_on_host_removal": true,
}

// connCompatible reports whether connections made for a cluster with spec
// s may serve one with spec n: the same pool settings (Limits aside), TCP
// keepalive, and the same Cluster proto apart from connIgnored fields
// (protocol options, upstream connection options, transport socket...).
func (s *spec) connCompatible(n *spec) bool {
	if s.pool != n.pool || (s.keepAlive == nil) != (n.keepAlive == nil) ||
		(s.keepAlive != nil && *s.keepAlive != *n.keepAlive) {
		return false
	}
	return proto.Equal(connFields(s.proto), connFields(n.proto))
}

// connFields is a shallow copy of c's fields that connIgnored does not
// list; it shares their values with c, so it must not be modified.
func connFields(c *clusterv3.Cluster) *clusterv3.Cluster {
	out := &clusterv3.Cluster{}
	dst := out.ProtoReflect()
	c.ProtoReflect().Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if !connIgnored[fd.Name()] {
			dst.Set(fd, v)
		}
		return true
	})
	return out
}

// UpdateEndpoints replaces the endpoints of EDS cluster name with cla (the
// shape of an EDS push). Hosts whose address stays keep their Host object,
// pools and health state; attributes (weight, metadata, locality, health
// status) are updated. An invalid assignment changes nothing, and its
// error (naming the field path) shows in the cluster's admin status until
// the next good one. The manager keeps the parsed endpoints (to seed a
// rebuilt cluster), not cla, which the caller may keep or drop.
func (m *Manager) UpdateEndpoints(name string, cla *endpointv3.ClusterLoadAssignment) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := (*m.clusters.Load())[name]
	if c == nil {
		return fmt.Errorf("cluster %q: not found", name)
	}
	if c.spec.discovery != discoveryEDS {
		return fmt.Errorf("cluster %q: type %s does not take endpoint updates", name, c.spec.discovery)
	}
	eps, err := parseCLA(cla, true)
	c.mu.Lock()
	defer c.mu.Unlock()
	if err != nil {
		err = fmt.Errorf("cluster %q: %w", name, err)
		c.lastErr = err.Error()
		return err
	}
	c.lastErr = ""
	c.lastEPs = eps
	c.setMembersLocked(eps)
	return nil
}

// LastError is the error of the last rejected Update, nil after a good one.
func (m *Manager) LastError() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.lastErr
}

// Close stops every cluster (health checks, DNS) and drains their pools.
// Later lookups find nothing and Update fails.
func (m *Manager) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return
	}
	m.closed = true
	old := *m.clusters.Load()
	m.clusters.Store(&map[string]*Cluster{})
	for name, c := range old {
		c.stop()
		m.opts.Stats.UnregisterCluster(name)
	}
}

// ClusterStatus is one cluster on the admin /clusters page. Its JSON has
// the shape the admin server renders as Envoy-style text.
type ClusterStatus struct {
	Name     string `json:"name"`
	Type     string `json:"type"` // STATIC, STRICT_DNS, LOGICAL_DNS, EDS
	LBPolicy string `json:"lb_policy"`
	// Panic is true while the healthy share is below the panic threshold
	// and traffic goes to all hosts.
	Panic bool `json:"panic,omitempty"`
	// CircuitBreakers are the DEFAULT-priority limits by Envoy name
	// (max_connections, max_pending_requests, max_requests, max_retries).
	CircuitBreakers map[string]uint64 `json:"circuit_breakers"`
	// Breakers is the occupancy and limit of each budget, indexed by
	// api.Resource.
	Breakers [4]BreakerStatus `json:"breakers"`
	// LastError is the last rejected endpoint update or DNS failure.
	LastError string `json:"last_error,omitempty"`
	// Stats are the live cluster counters (exported through /stats).
	Stats *api.ClusterStats `json:"-"`
	Hosts []HostStatus      `json:"host_statuses"`
}

// BreakerStatus is one circuit-breaker budget.
type BreakerStatus struct {
	Open int64 `json:"open"`
	Max  int64 `json:"max"`
}

// breakerNames are Envoy's threshold names, indexed by api.Resource.
var breakerNames = [4]string{"max_connections", "max_pending_requests", "max_requests", "max_retries"}

// HostStatus is one host on the admin /clusters page.
type HostStatus struct {
	Address  string `json:"address"`
	Hostname string `json:"hostname,omitempty"`
	Healthy  bool   `json:"healthy"`
	// HealthFlags say why a host is unhealthy in Envoy's spelling, e.g.
	// "/failed_active_hc/pending_active_hc" or "/failed_eds_health"; ""
	// when healthy.
	HealthFlags string `json:"health_flags,omitempty"`
	// HealthCheckFailure is the failing check's reason, "" if passing.
	HealthCheckFailure string `json:"health_check_failure,omitempty"`
	Weight             uint32 `json:"weight"`
	Priority           uint32 `json:"priority"`
	Region             string `json:"region,omitempty"`
	Zone               string `json:"zone,omitempty"`
	SubZone            string `json:"sub_zone,omitempty"`
	// Metadata is the flattened filter metadata ("namespace.key"); it is
	// shared with the host and must not be modified.
	Metadata map[string]string `json:"metadata,omitempty"`
	// Stats is a point-in-time copy of the host counters by Envoy name
	// (cx_total, cx_active, cx_connect_fail, rq_total, rq_active,
	// rq_error, health_check_fail).
	Stats map[string]int64 `json:"stats"`
	// Counters are the live host counters.
	Counters *api.HostStats `json:"-"`
}

// Snapshot describes every cluster, sorted by name, for the admin API.
func (m *Manager) Snapshot() []ClusterStatus {
	cs := *m.clusters.Load()
	out := make([]ClusterStatus, 0, len(cs))
	for _, c := range cs {
		out = append(out, c.status())
	}
	slices.SortFunc(out, func(a, b ClusterStatus) int { return strings.Compare(a.Name, b.Name) })
	return out
}

func (c *Cluster) status() ClusterStatus {
	s := c.set.Load()
	st := ClusterStatus{
		Name:            c.spec.name,
		Type:            c.spec.discovery.String(),
		LBPolicy:        c.spec.lb.Policy.String(),
		Panic:           s.panic,
		Stats:           &c.stats,
		CircuitBreakers: make(map[string]uint64, len(breakerNames)),
	}
	for r := range st.Breakers {
		st.Breakers[r] = BreakerStatus{Open: c.cur[r].Load(), Max: c.spec.limits[r]}
		st.CircuitBreakers[breakerNames[r]] = uint64(c.spec.limits[r])
	}
	c.mu.Lock()
	st.LastError = c.lastErr
	c.mu.Unlock()
	for _, h := range s.hosts {
		a := h.attrs.Load()
		hs := HostStatus{
			Address:            h.addr,
			Hostname:           a.hostname,
			Healthy:            h.Healthy(),
			HealthFlags:        h.healthFlags(),
			HealthCheckFailure: h.healthFailure(),
			Weight:             a.weight,
			Priority:           a.priority,
			Region:             a.locality.GetRegion(),
			Zone:               a.locality.GetZone(),
			SubZone:            a.locality.GetSubZone(),
			Metadata:           a.meta,
			Stats: map[string]int64{
				"cx_total":          int64(h.stats.ConnTotal.Value()),
				"cx_active":         h.stats.ConnActive.Value(),
				"cx_connect_fail":   int64(h.stats.ConnFailure.Value()),
				"rq_total":          int64(h.stats.Requests.Value()),
				"rq_active":         h.active.Value(),
				"rq_error":          int64(h.stats.Responses5xx.Value()),
				"health_check_fail": int64(h.stats.HealthCheckFail.Value()),
			},
			Counters: &h.stats,
		}
		st.Hosts = append(st.Hosts, hs)
	}
	return st
}
