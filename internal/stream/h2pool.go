package stream

import (
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/net/http2"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/upstream"
	"github.com/weftmesh/weft/internal/upstream/pool"
)

// ProtocolH2 is the connection-pool key for HTTP/2 upstream connections.
const ProtocolH2 = "http2"

// h2Pool holds a host's HTTP/2 connections. Streams multiplex: a request
// takes a stream on the newest connection that has one free, and a new
// connection is dialled only when none has (one dial at a time; the
// requests that arrive meanwhile wait for it). Framing, HPACK and flow
// control are golang.org/x/net/http2's ClientConn.
type h2Pool struct {
	host   api.Host
	tr     *http2.Transport
	limits pool.Limits
	dial   func(context.Context) (net.Conn, error)

	mu       sync.Mutex
	conns    []*http2.ClientConn
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
	t1 := &http.Transport{
		HTTP2: &http.HTTP2Config{
			MaxReceiveBufferPerStream:     int(o.StreamWindow),
			MaxReceiveBufferPerConnection: int(o.ConnWindow),
			SendPingTimeout:               o.KeepaliveInterval,
			PingTimeout:                   o.KeepaliveTimeout,
		},
	}
	tr, err := http2.ConfigureTransports(t1)
	if err != nil { // only when t1 is already configured: not here
		tr = &http2.Transport{}
	}
	tr.AllowHTTP = true
	tr.ReadIdleTimeout = o.KeepaliveInterval
	tr.PingTimeout = o.KeepaliveTimeout
	tr.MaxHeaderListSize = uint32(c.Limits.MaxHeaderBytes)
	if pc.IdleTimeout > 0 {
		tr.IdleConnTimeout = pc.IdleTimeout
	}
	p := &h2Pool{host: h, tr: tr, limits: limits, dial: h.Dial}
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

// get returns a connection with a stream reserved for the caller's
// RoundTrip (which consumes the reservation).
func (p *h2Pool) get(ctx context.Context) (*http2.ClientConn, error) {
	for {
		p.mu.Lock()
		if p.draining {
			p.mu.Unlock()
			return nil, errH2Draining
		}
		var busiest *http2.ClientConn
		live := p.conns[:0]
		for _, cc := range p.conns {
			st := cc.State()
			if st.Closed || st.Closing {
				p.limits.Release(api.ResConnections)
				continue
			}
			live = append(live, cc)
			busiest = cc
		}
		clear(p.conns[len(live):])
		p.conns = live
		for i := len(p.conns) - 1; i >= 0; i-- {
			if cc := p.conns[i]; cc.ReserveNewRequest() {
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
				// At max_connections: queue on a connection's streams
				// (RoundTrip waits for one to free) rather than fail.
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
			_ = cc.Close()
			p.limits.Release(api.ResConnections)
			return nil, errH2Draining
		}
		p.conns = append(p.conns, cc)
		p.mu.Unlock()
	}
}

func (p *h2Pool) connect(ctx context.Context) (*http2.ClientConn, error) {
	nc, err := p.dial(ctx)
	if err != nil {
		return nil, err
	}
	cc, err := p.tr.NewClientConn(nc)
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
			_ = cc.Shutdown(ctx)
			_ = cc.Close()
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
		_ = cc.Close()
		p.limits.Release(api.ResConnections)
	}
}

// takeAll stops the pool and hands over its connections.
func (p *h2Pool) takeAll() []*http2.ClientConn {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.draining = true
	conns := p.conns
	p.conns = nil
	return conns
}

// isH2Refused reports errors where the host never processed the stream
// (REFUSED_STREAM, GOAWAY above the stream id): safe to send again.
func isH2Refused(err error) bool {
	var se http2.StreamError
	if errors.As(err, &se) && se.Code == http2.ErrCodeRefusedStream {
		return true
	}
	var ga http2.GoAwayError
	return errors.As(err, &ga)
}
