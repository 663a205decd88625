package upstream

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"sync/atomic"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"

	"github.com/weftmesh/weft/api"
)

// Host is one upstream endpoint of a Cluster. It implements api.Host. A
// Host keeps its identity (and its pools and stats) for as long as its
// address stays in the cluster; weight, metadata, locality and EDS health
// may change underneath it.
type Host struct {
	c     *Cluster
	addr  string
	attrs atomic.Pointer[hostAttrs]
	// hcFailed has bit i set while health check i says unhealthy; hosts of
	// a cluster with health checks start with every bit set.
	hcFailed  atomic.Uint32
	hcChecked atomic.Bool
	removed   atomic.Bool
	stats     api.HostStats
	active    api.Gauge

	hcMu      sync.Mutex
	hcReasons []string           // per check, "" when passing
	hcSeeded  bool               // health carried over from a replaced cluster
	hcCancel  context.CancelFunc // guarded by c.mu

	poolMu sync.Mutex
	// pools is copy-on-write so Pool's hit path is one atomic load and a
	// map read, no lock.
	pools atomic.Pointer[map[string]hostPool]
}

// hostPool is one protocol's pool and the constructor that made it, kept to
// make the same kind of pool on the host that replaces this one.
type hostPool struct {
	pool api.ConnPool
	mk   func(api.Host) api.ConnPool
}

// drainer is a pool that can hand its connections to the pool of the host
// replacing its own (pool.Pool; internal/rpc's multiplexed pool is not one
// and simply drains).
type drainer interface {
	DrainTo(next func() api.ConnPool)
}

// hostAttrs are the config-derived attributes, replaced as a whole.
type hostAttrs struct {
	weight     uint32
	priority   uint32
	hostname   string
	locality   *corev3.Locality
	meta       map[string]string
	edsHealthy bool
	edsStatus  corev3.HealthStatus
}

var _ api.Host = (*Host)(nil)

func newHost(c *Cluster, e endpointSpec) *Host {
	h := &Host{c: c, addr: e.addr}
	h.setAttrs(e)
	if n := len(c.spec.healthChecks); n > 0 {
		h.hcFailed.Store(1<<n - 1)
		h.hcReasons = make([]string, n)
		if seed, ok := c.healthSeed[e.addr]; ok {
			// The cluster this one replaced had checked this address with
			// the same health checks: keep its verdict rather than start
			// every host unhealthy on a config push.
			h.hcFailed.Store(seed.failed)
			copy(h.hcReasons, seed.reasons)
			h.hcChecked.Store(true)
			h.hcSeeded = true
		}
	}
	return h
}

func (h *Host) setAttrs(e endpointSpec) {
	h.attrs.Store(&hostAttrs{
		weight:     e.weight,
		priority:   e.priority,
		hostname:   e.hostname,
		locality:   e.locality,
		meta:       e.meta,
		edsHealthy: e.health != corev3.HealthStatus_UNHEALTHY && e.health != corev3.HealthStatus_DRAINING && e.health != corev3.HealthStatus_TIMEOUT,
		edsStatus:  e.health,
	})
}

// Address is "ip:port".
func (h *Host) Address() string { return h.addr }

// Cluster names the owning cluster.
func (h *Host) Cluster() string { return h.c.spec.name }

// Healthy is false while any active health check fails (including before
// the first check) or while EDS/config marks the endpoint UNHEALTHY,
// DRAINING or TIMEOUT.
func (h *Host) Healthy() bool {
	return h.hcFailed.Load() == 0 && h.attrs.Load().edsHealthy
}

// Metadata returns the endpoint's filter_metadata value at
// "namespace.key" (e.g. "envoy.lb.version"), "" if none.
func (h *Host) Metadata(key string) string { return h.attrs.Load().meta[key] }

// Weight is the endpoint's load_balancing_weight (default 1).
func (h *Host) Weight() uint32 { return h.attrs.Load().weight }

// Priority is the endpoint's locality priority (0 is the highest).
func (h *Host) Priority() uint32 { return h.attrs.Load().priority }

// Locality is the endpoint's locality; nil if none was configured. The
// returned message must not be modified.
func (h *Host) Locality() *corev3.Locality { return h.attrs.Load().locality }

// Stats are the host's counters.
func (h *Host) Stats() *api.HostStats { return &h.stats }

// ActiveRequests is the in-flight request gauge least-request reads.
func (h *Host) ActiveRequests() *api.Gauge { return &h.active }

// Dial connects to the host within the cluster's connect_timeout (and
// ctx), with TCP_NODELAY and the cluster's TCP keepalive settings. It
// counts the connection in the host and cluster stats; closing the
// returned conn decrements the active gauges.
func (h *Host) Dial(ctx context.Context) (net.Conn, error) { return h.dial(ctx, h.c.spec.tls) }

// DialH2 is Dial for an HTTP/2 connection: over TLS it offers ALPN h2.
func (h *Host) DialH2(ctx context.Context) (net.Conn, error) {
	if h.c.spec.tlsH2 != nil {
		return h.dial(ctx, h.c.spec.tlsH2)
	}
	return h.dial(ctx, h.c.spec.tls)
}

func (h *Host) dial(ctx context.Context, tcfg *tls.Config) (net.Conn, error) {
	c := h.c
	ctx, cancel := context.WithTimeout(ctx, c.spec.connectTimeout)
	defer cancel()
	nc, err := c.dial(ctx, "tcp", h.addr)
	if err != nil {
		h.stats.ConnFailure.Inc()
		c.stats.UpstreamConnFailure.Inc()
		return nil, fmt.Errorf("cluster %q: %w", c.spec.name, err)
	}
	h.stats.ConnTotal.Inc()
	c.stats.UpstreamConnTotal.Inc()
	h.connOpened()
	var out net.Conn
	if tc, ok := nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
		t := &tcpConn{TCPConn: tc}
		t.h.Store(h)
		out = t
	} else {
		t := &conn{Conn: nc}
		t.h.Store(h)
		out = t
	}
	if tcfg == nil {
		return out, nil
	}
	// The TLS handshake is part of connecting: within connect_timeout. The
	// pool's liveness peek looks at the socket under the TLS conn
	// (NetConn), so a peer's close_notify or FIN retires it.
	tc, err := handshake(ctx, out, tcfg)
	if err != nil {
		h.stats.ConnFailure.Inc()
		c.stats.UpstreamConnFailure.Inc()
		return nil, fmt.Errorf("cluster %q: %w", c.spec.name, err)
	}
	return tc, nil
}

// handshake runs a client TLS handshake on nc within ctx; on failure nc is
// closed and the error names the cause (e.g. an unknown authority).
func handshake(ctx context.Context, nc net.Conn, cfg *tls.Config) (net.Conn, error) {
	tc := tls.Client(nc, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = nc.Close()
		return nil, fmt.Errorf("TLS handshake: %w", err)
	}
	return tc, nil
}

func (h *Host) connOpened() {
	h.stats.ConnActive.Inc()
	h.c.stats.UpstreamConnActive.Inc()
}

func (h *Host) connClosed() {
	h.stats.ConnActive.Dec()
	h.c.stats.UpstreamConnActive.Dec()
}

// Adopt moves nc, an open connection that another Host with h's address
// dialled (the host h replaces in a rebuilt cluster), to h: from now on h
// and its cluster count it as active (cx_active) instead of the old host
// and cluster, and closing it decrements theirs. cx_total is not bumped:
// no connection was made. It returns false, changing nothing, if nc is
// closed or not such a connection. The pool calls it when a draining pool
// hands a connection to its successor (pool.Pool.DrainTo).
func (h *Host) Adopt(nc net.Conn) bool {
	var owner *atomic.Pointer[Host]
	switch c := nc.(type) {
	case *tcpConn:
		owner = &c.h
	case *conn:
		owner = &c.h
	case *tls.Conn:
		return h.Adopt(c.NetConn())
	default:
		return false
	}
	h.connOpened() // first, so no gauge ever dips below the truth
	for {
		old := owner.Load()
		if old == nil || old.addr != h.addr {
			h.connClosed()
			return false
		}
		if old == h {
			h.connClosed()
			return true
		}
		if owner.CompareAndSwap(old, h) {
			old.connClosed()
			return true
		}
	}
}

// tcpConn embeds *net.TCPConn so every TCPConn method (SyscallConn,
// CloseWrite, ReadFrom, SetKeepAlive...) stays available; only Close is
// wrapped to keep the active-connection gauges right.
type tcpConn struct {
	*net.TCPConn
	// h is the host whose gauges count the connection; nil once closed.
	// Adopt swaps it.
	h atomic.Pointer[Host]
}

// Close closes the connection and, the first time, updates the gauges.
func (c *tcpConn) Close() error {
	if h := c.h.Swap(nil); h != nil {
		h.connClosed()
	}
	return c.TCPConn.Close()
}

// NetConn returns the underlying *net.TCPConn (as tls.Conn.NetConn does).
func (c *tcpConn) NetConn() net.Conn { return c.TCPConn }

type conn struct {
	net.Conn
	h atomic.Pointer[Host] // as in tcpConn
}

// Close closes the connection and, the first time, updates the gauges.
func (c *conn) Close() error {
	if h := c.h.Swap(nil); h != nil {
		h.connClosed()
	}
	return c.Conn.Close()
}

// NetConn returns the dialled connection.
func (c *conn) NetConn() net.Conn { return c.Conn }

// Pool returns the host's pool for protocol, creating it with mk on first
// use. A pool created after the host left its cluster is returned already
// draining.
func (h *Host) Pool(protocol string, mk func(api.Host) api.ConnPool) api.ConnPool {
	if m := h.pools.Load(); m != nil {
		if e, ok := (*m)[protocol]; ok {
			return e.pool
		}
	}
	h.poolMu.Lock()
	defer h.poolMu.Unlock()
	old := h.pools.Load()
	if old != nil {
		if e, ok := (*old)[protocol]; ok {
			return e.pool
		}
	}
	p := mk(h)
	if h.removed.Load() {
		p.Drain()
		return p
	}
	next := make(map[string]hostPool, 1)
	if old != nil {
		for k, v := range *old {
			next[k] = v
		}
	}
	next[protocol] = hostPool{pool: p, mk: mk}
	h.pools.Store(&next)
	return p
}

// remove takes the host out of service: health checks stop and its pools
// drain (idle connections close now, busy ones when released). With succ,
// the host that replaces h in a rebuilt cluster (same address, compatible
// connection settings), pools that can hand their connections to succ's
// pool of the same protocol, made with the same constructor, do so instead
// of closing them. remove calls no pool constructor with a lock held.
func (h *Host) remove(succ *Host) {
	h.removed.Store(true)
	if h.hcCancel != nil {
		h.hcCancel()
	}
	h.poolMu.Lock()
	m := h.pools.Load()
	h.pools.Store(nil)
	h.poolMu.Unlock()
	if m == nil {
		return
	}
	for protocol, e := range *m {
		if d, ok := e.pool.(drainer); ok && succ != nil {
			d.DrainTo(func() api.ConnPool { return succ.Pool(protocol, e.mk) })
			continue
		}
		e.pool.Drain()
	}
}

// healthFailure joins the failing checks' reasons.
func (h *Host) healthFailure() string {
	h.hcMu.Lock()
	defer h.hcMu.Unlock()
	var out string
	for _, r := range h.hcReasons {
		if r == "" {
			continue
		}
		if out != "" {
			out += "; "
		}
		out += r
	}
	return out
}

// healthFlags says why the host is unhealthy in Envoy's admin spelling
// ("/failed_active_hc/pending_active_hc"), "" when healthy.
func (h *Host) healthFlags() string {
	var f string
	if h.hcFailed.Load() != 0 {
		f += "/failed_active_hc"
		if !h.hcChecked.Load() {
			f += "/pending_active_hc"
		}
	}
	if !h.attrs.Load().edsHealthy {
		f += "/failed_eds_health"
	}
	return f
}
