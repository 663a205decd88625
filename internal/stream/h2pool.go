package stream

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/upstream"
	"github.com/weftmesh/weft/internal/upstream/pool"
)

// ProtocolH2 is the connection-pool key for HTTP/2 upstream connections.
const ProtocolH2 = "http2"

// h2Pool holds a host's HTTP/2 connections (h2cc). Streams multiplex: a
// request takes a stream on the newest connection that has one free, and
// a new connection is dialled only when none has (one dial at a time; the
// requests that arrive meanwhile wait for it).
type h2Pool struct {
	host   api.Host
	opts   h2ccOptions
	limits pool.Limits
	dial   func(context.Context) (net.Conn, error)
	tls    bool

	mu       sync.Mutex
	conns    []*h2cc
	dialing  chan struct{} // closed when the dial under way ends
	draining bool
}

var _ api.ConnPool = (*h2Pool)(nil)

// h2Dialer is a host that dials with ALPN h2 over TLS (upstream.Host).
type h2Dialer interface {
	DialH2(ctx context.Context) (net.Conn, error)
}

// newH2Pool makes a host's HTTP/2 pool on first use, with the cluster's
// HTTP/2 options: flow-control windows (what Weft buffers per stream from
// a host whose downstream reads slowly), keepalive pings, idle timeout.
func (c *Config) newH2Pool(h api.Host) api.ConnPool {
	o := upstream.HTTPOptions{StreamWindow: upstream.DefaultH2StreamWindow, ConnWindow: upstream.DefaultH2ConnWindow}
	pc := pool.Config{IdleTimeout: c.UpstreamIdleTimeout}
	var limits pool.Limits = unlimitedLimits{}
	if cl, ok := c.Clusters.Cluster(h.Cluster()); ok {
		if hc, ok := cl.(interface{ HTTPOptions() upstream.HTTPOptions }); ok {
			o = hc.HTTPOptions()
		}
		if pcfg, ok := cl.(interface{ PoolConfig() pool.Config }); ok {
			pc = pcfg.PoolConfig()
		}
		limits = cl
	}
	p := &h2Pool{host: h, limits: limits, dial: h.Dial, opts: h2ccOptions{
		streamWindow:  o.StreamWindow,
		connWindow:    o.ConnWindow,
		maxStreams:    o.MaxConcurrentStreams,
		maxHeaderList: uint32(c.Limits.MaxHeaderBytes),
		pingInterval:  o.KeepaliveInterval,
		pingWait:      o.KeepaliveTimeout,
		scheme:        "http",
	}}
	if pc.IdleTimeout > 0 {
		p.opts.idleTimeout = pc.IdleTimeout
	}
	if d, ok := h.(h2Dialer); ok {
		p.dial = d.DialH2
	}
	return p
}

type unlimitedLimits struct{}

func (unlimitedLimits) TryAcquire(api.Resource) bool { return true }
func (unlimitedLimits) Release(api.Resource)         {}

// errH2Draining is returned by a pool whose host left its cluster.
var errH2Draining = pool.ErrClosed

// get returns a connection with a stream reserved for the caller, who
// must use it (roundTrip) or give it back (release).
func (p *h2Pool) get(ctx context.Context) (*h2cc, error) {
	for {
		p.mu.Lock()
		if p.draining {
			p.mu.Unlock()
			return nil, errH2Draining
		}
		var busiest *h2cc
		live := p.conns[:0]
		for _, cc := range p.conns {
			if !cc.usable() {
				p.limits.Release(api.ResConnections)
				continue
			}
			live = append(live, cc)
			busiest = cc
		}
		clear(p.conns[len(live):])
		p.conns = live
		for i := len(p.conns) - 1; i >= 0; i-- {
			if cc := p.conns[i]; cc.reserve() {
				p.mu.Unlock()
				return cc, nil
			}
		}
		if ch := p.dialing; ch != nil {
			p.mu.Unlock()
			select {
			case <-ch:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if !p.limits.TryAcquire(api.ResConnections) {
			p.mu.Unlock()
			if busiest != nil {
				// At max_connections: wait for a stream on a connection
				// rather than fail.
				if err := busiest.waitSlot(ctx); err != nil {
					if errors.Is(err, errH2Refused) {
						continue
					}
					return nil, err
				}
				return busiest, nil
			}
			return nil, pool.ErrOverflow
		}
		ch := make(chan struct{})
		p.dialing = ch
		p.mu.Unlock()
		cc, err := p.connect(ctx)
		p.mu.Lock()
		p.dialing = nil
		close(ch)
		if err != nil {
			p.mu.Unlock()
			p.limits.Release(api.ResConnections)
			return nil, err
		}
		if p.draining {
			p.mu.Unlock()
			cc.Close()
			p.limits.Release(api.ResConnections)
			return nil, errH2Draining
		}
		p.conns = append(p.conns, cc)
		p.mu.Unlock()
	}
}

func (p *h2Pool) connect(ctx context.Context) (*h2cc, error) {
	nc, err := p.dial(ctx)
	if err != nil {
		return nil, err
	}
	o := p.opts
	if tc := tlsConn(nc); tc != nil {
		if proto := tc.ConnectionState().NegotiatedProtocol; proto != "h2" {
			_ = nc.Close()
			return nil, fmt.Errorf("cluster %q: host %s did not negotiate HTTP/2 over TLS (ALPN %q)", p.host.Cluster(), p.host.Address(), proto)
		}
		o.scheme = "https"
	}
	cc, err := newH2CC(nc, o)
	if err != nil {
		_ = nc.Close()
		return nil, err
	}
	return cc, nil
}

// Drain implements api.ConnPool: each connection sends GOAWAY, finishes
// its streams and closes.
func (p *h2Pool) Drain() {
	for _, cc := range p.takeAll() {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), drainWait)
			defer cancel()
			cc.Shutdown(ctx)
			p.limits.Release(api.ResConnections)
		}()
	}
}

// drainWait bounds how long a drained upstream connection waits for its
// streams (a long gRPC stream included) before it is closed.
const drainWait = 10 * time.Minute

// Close implements api.ConnPool.
func (p *h2Pool) Close() {
	for _, cc := range p.takeAll() {
		cc.Close()
		p.limits.Release(api.ResConnections)
	}
}

// takeAll stops the pool and hands over its connections.
func (p *h2Pool) takeAll() []*h2cc {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.draining = true
	conns := p.conns
	p.conns = nil
	return conns
}

// isH2Refused reports errors where the host never processed the stream
// (REFUSED_STREAM, GOAWAY above the stream id): safe to send again.
func isH2Refused(err error) bool { return errors.Is(err, errH2Refused) }
