package upstream

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/upstream/health"
	"github.com/weftmesh/weft/internal/upstream/lb"
	"github.com/weftmesh/weft/internal/upstream/pool"
)

// dialFunc opens a connection; (*net.Dialer).DialContext is one.
type dialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// Cluster is a named group of hosts with a load balancer and circuit
// breakers. It implements api.Cluster. Pick reads an immutable host-set
// snapshot through an atomic pointer; membership and health changes build
// a new snapshot (and balancer) under the cluster's mutex.
type Cluster struct {
	spec   *spec
	log    *slog.Logger
	dial   dialFunc // for traffic: connect timeout and keepalive applied
	hcDial dialFunc // for health checks: no stats
	res    Resolver
	onHC   func(cluster, address string, healthy bool)
	sink   StatsSink

	stats api.ClusterStats
	cur   [4]atomic.Int64 // breaker occupancy, indexed by api.Resource
	set   atomic.Pointer[hostSet]

	ctx    context.Context // cancelled by stop
	cancel context.CancelFunc
	wg     sync.WaitGroup // DNS and health-check goroutines

	mu      sync.Mutex
	hosts   []*Host
	started bool
	stopped bool
	// lastEPs is the last EDS assignment, parsed (nil before the first):
	// it seeds a rebuilt cluster. Kept parsed, not as the decoded proto:
	// 434 instead of 2,179 bytes per endpoint (bench/xds-scale).
	lastEPs []endpointSpec
	// healthSeed is the health of the replaced cluster's hosts by address,
	// set by inherit when the health checks are the same; used by start.
	healthSeed map[string]hostHealth
	dnsCache   map[string][]netip.Addr // hostname -> last good addresses
	lastErr    string
	// stoppedHosts are the members at stop, for unexportStale.
	stoppedHosts []*Host
}

// hostSet is what Pick reads: immutable once stored.
type hostSet struct {
	hosts   []*Host
	lb      lb.Balancer // nil when there is nothing to pick
	healthy int
	panic   bool
}

var _ api.Cluster = (*Cluster)(nil)

func newCluster(s *spec, m *Manager) *Cluster {
	c := &Cluster{
		spec:   s,
		log:    m.log.With("cluster", s.name),
		hcDial: m.opts.Dial,
		res:    m.opts.Resolver,
		onHC:   m.opts.OnHealthChange,
		sink:   m.opts.Stats,
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.dial = m.opts.Dial
	if c.dial == nil {
		d := &net.Dialer{}
		if s.keepAlive != nil {
			d.KeepAliveConfig = *s.keepAlive
		}
		c.dial = d.DialContext
	}
	if c.hcDial == nil {
		c.hcDial = (&net.Dialer{}).DialContext
	}
	if s.tls != nil {
		// Health checks speak to the host as traffic does: over TLS.
		plain := c.hcDial
		c.hcDial = func(ctx context.Context, network, address string) (net.Conn, error) {
			nc, err := plain(ctx, network, address)
			if err != nil {
				return nil, err
			}
			return handshake(ctx, nc, s.tls)
		}
	}
	for _, w := range s.warnings {
		c.log.Warn(w)
	}
	c.set.Store(&hostSet{})
	return c
}

// Name is the cluster name.
func (c *Cluster) Name() string { return c.spec.name }

// Pick chooses a host with the cluster's LB policy among the healthy hosts
// of the highest priority level that has any; in panic mode (healthy share
// below healthy_panic_threshold) among all hosts of that level. It returns
// nil when there is nothing to pick (the caller counts NoHealthyHost).
// ctx may be nil. Pick takes no lock and does not allocate.
func (c *Cluster) Pick(ctx api.LBContext) api.Host {
	if b := c.set.Load().lb; b != nil {
		return b.Pick(ctx)
	}
	return nil
}

// TryAcquire takes one unit of breaker budget r; false (with the Overflow
// counter bumped) means the breaker is open.
func (c *Cluster) TryAcquire(r api.Resource) bool {
	if r < 0 || int(r) >= len(c.cur) {
		return false
	}
	limit := c.spec.limits[r]
	for {
		v := c.cur[r].Load()
		if v >= limit {
			// A full connection budget only makes the request wait in the
			// pool (it counts once as pending overflow if that is full
			// too); the budgets that shed a request count here.
			if r != api.ResConnections {
				c.stats.Overflow.Inc()
			}
			return false
		}
		if c.cur[r].CompareAndSwap(v, v+1) {
			return true
		}
	}
}

// Release returns one unit of budget r taken by TryAcquire.
func (c *Cluster) Release(r api.Resource) {
	if r >= 0 && int(r) < len(c.cur) {
		c.cur[r].Add(-1)
	}
}

// Stats are the cluster's counters.
func (c *Cluster) Stats() *api.ClusterStats { return &c.stats }

// Hosts returns the current members, healthy or not.
func (c *Cluster) Hosts() []*Host { return slices.Clone(c.set.Load().hosts) }

// HTTPOptions is how the cluster speaks HTTP to its hosts.
func (c *Cluster) HTTPOptions() HTTPOptions { return c.spec.http }

// PoolConfig is the pool.Config for this cluster's hosts: idle timeout and
// max requests per connection from its HTTP protocol options, and the
// cluster itself as the max_connections / max_pending_requests breaker.
func (c *Cluster) PoolConfig() pool.Config {
	cfg := c.spec.pool
	cfg.Limits = c
	return cfg
}

// start brings a built cluster to life: static members and their health
// checks, or the DNS resolver loop.
func (c *Cluster) start() {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer func() { c.healthSeed = nil }() // only for the first members
	c.started = true
	c.sink.RegisterCluster(c.spec.name, &c.stats)
	switch c.spec.discovery {
	case discoveryStatic:
		c.setMembersLocked(c.spec.endpoints)
	case discoveryStrictDNS, discoveryLogicalDNS:
		if len(c.dnsCache) > 0 {
			c.setMembersLocked(c.resolvedLocked())
		}
		c.wg.Go(c.runDNS)
	case discoveryEDS:
		if c.lastEPs != nil {
			c.setMembersLocked(c.lastEPs)
		}
	}
}

// stop ends DNS and health checking, drains every host's pools and waits
// for the cluster's goroutines.
func (c *Cluster) stop() {
	c.halt(nil)
	c.wg.Wait()
}

// halt is stop without the wait. Each host of c whose address is in heirs
// (the hosts of the cluster that replaces c, when it can reuse c's
// connections) hands its pooled connections to that host (Host.remove)
// instead of closing them.
func (c *Cluster) halt(heirs map[string]*Host) {
	c.mu.Lock()
	c.stopped = true
	c.cancel()
	hosts := c.hosts
	c.stoppedHosts = hosts
	c.hosts = nil
	c.set.Store(&hostSet{})
	c.mu.Unlock()
	// Outside c.mu: a handover makes next's pools with the protocol
	// layer's constructor. Nothing else touches a stopped cluster's hosts.
	for _, h := range hosts {
		h.remove(heirs[h.addr])
	}
}

// hostsByAddr indexes the current members by address.
func (c *Cluster) hostsByAddr() map[string]*Host {
	c.mu.Lock()
	defer c.mu.Unlock()
	m := make(map[string]*Host, len(c.hosts))
	for _, h := range c.hosts {
		m[h.addr] = h
	}
	return m
}

// unexportStale unregisters the hosts of old, the cluster c replaced, that
// c does not have. It holds c.mu so a host c adds meanwhile is not lost.
func (c *Cluster) unexportStale(old *Cluster) {
	c.mu.Lock()
	defer c.mu.Unlock()
	have := make(map[string]bool, len(c.hosts))
	for _, h := range c.hosts {
		have[h.addr] = true
	}
	for _, h := range old.stoppedHosts {
		if !have[h.addr] {
			c.sink.UnregisterHost(c.spec.name, h.addr)
		}
	}
	old.stoppedHosts = nil
}

// setMembersLocked makes eps the member list, keeping the Host of every
// address that stays (updating its attributes), creating hosts for new
// addresses and removing the rest. c.mu is held.
func (c *Cluster) setMembersLocked(eps []endpointSpec) {
	if c.stopped {
		return
	}
	old := make(map[string]*Host, len(c.hosts))
	for _, h := range c.hosts {
		old[h.addr] = h
	}
	hosts := make([]*Host, 0, len(eps))
	for _, e := range eps {
		if h, ok := old[e.addr]; ok {
			h.setAttrs(e)
			delete(old, e.addr)
			hosts = append(hosts, h)
			continue
		}
		h := newHost(c, e)
		c.startHealthChecksLocked(h)
		c.sink.RegisterHost(c.spec.name, h.addr, &h.stats, &h.active)
		hosts = append(hosts, h)
	}
	// Publish the new set before the leaving hosts close their pools: a
	// request that picks in between must not get a host already removed.
	c.hosts = hosts
	c.rebuildLocked()
	for _, h := range old {
		h.remove(nil)
		c.sink.UnregisterHost(c.spec.name, h.addr)
	}
}

func (c *Cluster) startHealthChecksLocked(h *Host) {
	if len(c.spec.healthChecks) == 0 || !c.started {
		return
	}
	ctx, cancel := context.WithCancel(c.ctx)
	h.hcCancel = cancel
	for i := range c.spec.healthChecks {
		cfg := &c.spec.healthChecks[i]
		var from *bool
		if h.hcSeeded {
			ok := h.hcFailed.Load()&(1<<i) == 0
			from = &ok
		}
		c.wg.Go(func() {
			health.RunFrom(ctx, cfg, health.DialFunc(c.hcDial), h.addr, from, func(r health.Result) { c.observe(h, i, r) })
		})
	}
}

// observe applies health check i's verdict on h.
func (c *Cluster) observe(h *Host, i int, r health.Result) {
	reason := ""
	if r.Err != nil {
		h.stats.HealthCheckFail.Inc()
		reason = r.Err.Error()
	}
	h.hcMu.Lock()
	h.hcReasons[i] = reason
	h.hcMu.Unlock()
	h.hcChecked.Store(true)
	if !r.Changed {
		return
	}
	bit := uint32(1) << i
	var before uint32
	if r.Healthy {
		before = h.hcFailed.And(^bit)
	} else {
		before = h.hcFailed.Or(bit)
	}
	after := h.hcFailed.Load()
	if (before == 0) == (after == 0) {
		return // another check still decides
	}
	c.mu.Lock()
	if c.stopped || h.removed.Load() {
		c.mu.Unlock()
		return
	}
	c.rebuildLocked()
	c.mu.Unlock()
	healthy := h.Healthy()
	c.log.Info("upstream host health changed", "host", h.addr, "healthy", healthy, "reason", reason)
	if c.onHC != nil {
		c.onHC(c.spec.name, h.addr, healthy)
	}
}

// rebuildLocked stores a new host set and balancer from c.hosts and their
// current health. c.mu is held.
//
// Priorities are simplified from Envoy's spill-over: the highest priority
// level (lowest number) with a healthy host takes all traffic; panic mode
// applies within it. With no healthy host anywhere, panic mode spreads
// traffic over the highest level's hosts (unless the threshold is 0).
func (c *Cluster) rebuildLocked() {
	hosts := slices.Clone(c.hosts)
	s := &hostSet{hosts: hosts}
	healthyByPrio := map[uint32]int{}
	levels := []uint32{}
	for _, h := range hosts {
		p := h.Priority()
		if _, ok := healthyByPrio[p]; !ok {
			levels = append(levels, p)
			healthyByPrio[p] = 0
		}
		if h.Healthy() {
			healthyByPrio[p]++
			s.healthy++
		}
	}
	slices.Sort(levels)
	c.stats.MembershipTotal.Set(int64(len(hosts)))
	c.stats.MembershipHealthy.Set(int64(s.healthy))
	if len(hosts) > 0 {
		level := levels[0]
		for _, p := range levels {
			if healthyByPrio[p] > 0 {
				level = p
				break
			}
		}
		var all, healthy []lb.Endpoint
		for _, h := range hosts {
			if h.Priority() != level {
				continue
			}
			e := lb.Endpoint{Host: h, Weight: h.Weight()}
			all = append(all, e)
			if h.Healthy() {
				healthy = append(healthy, e)
			}
		}
		th := c.spec.panicThreshold
		switch {
		case th > 0 && float64(len(healthy))*100 < th*float64(len(all)):
			s.panic = true
			s.lb = lb.New(c.spec.lb, all)
		case len(healthy) > 0:
			s.lb = lb.New(c.spec.lb, healthy)
		}
	}
	c.set.Store(s)
}

// HasEndpoints reports whether an EDS cluster has received (or inherited)
// an endpoint assignment; other kinds always have their endpoints.
func (c *Cluster) HasEndpoints() bool {
	if c.spec.discovery != discoveryEDS {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastEPs != nil
}
