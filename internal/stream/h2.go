package stream

import (
	"context"
	"crypto/tls"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http2"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/network"
)

// Downstream codecs of the connection manager (codec_type).
const (
	CodecAuto  = iota // HTTP/1.1, or HTTP/2 by ALPN or the client preface
	CodecHTTP1        // HTTP/1.1 only
	CodecHTTP2        // HTTP/2 only
)

// H2Options are the connection manager's http2_protocol_options.
type H2Options struct {
	// MaxConcurrentStreams is SETTINGS_MAX_CONCURRENT_STREAMS: streams past
	// it are refused (REFUSED_STREAM).
	MaxConcurrentStreams uint32
	// StreamWindow and ConnWindow are the flow-control windows Weft grants
	// a client: what it buffers of request bodies before the client must
	// wait for the upstream to read.
	StreamWindow, ConnWindow int32
	// KeepaliveInterval and KeepaliveTimeout are connection_keepalive: a
	// PING after the connection was quiet this long, closed when it is not
	// answered in time.
	KeepaliveInterval, KeepaliveTimeout time.Duration
	// MaxPrematureResets closes a connection whose client reset this many
	// streams before their response started, when they are at least half
	// of its streams (rapid reset, CVE-2023-44487).
	MaxPrematureResets int
}

// Envoy's defaults for a downstream HTTP/2 connection; streams are capped
// lower than Envoy's 2^31-1 so a single client cannot open thousands.
const (
	DefaultH2MaxStreams       = 1024
	DefaultH2StreamWindow     = 256 << 10
	DefaultH2ConnWindow       = 1 << 20
	DefaultMaxPrematureResets = 500
)

// clientPreface is what an HTTP/2 client sends first (RFC 9113 3.4).
const clientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// isH2 decides the codec of a new connection: ALPN when TLS negotiated
// one, else the first bytes (peeked, not consumed) against the client
// preface. Only the first 3 bytes are needed to tell: "PRI" is no HTTP/1
// method Weft serves.
func (c *Config) isH2(nc net.Conn) bool {
	switch c.Codec {
	case CodecHTTP1:
		return false
	case CodecHTTP2:
		return true
	}
	if tc := tlsConn(nc); tc != nil {
		return tc.ConnectionState().NegotiatedProtocol == "h2"
	}
	rc := rawConn(nc)
	if rc == nil {
		return false
	}
	var b [3]byte
	have := 0
	// A new connection may wait for its first request as long as an idle
	// one; the wait holds no buffer.
	_ = nc.SetReadDeadline(network.Deadline(time.Now(), c.IdleTimeout))
	defer func() { _ = nc.SetReadDeadline(time.Time{}) }()
	for have < len(b) {
		n, eof, err := network.PeekMore(rc, b[:], have)
		if err != nil || eof || n <= have {
			return false
		}
		have = n
	}
	return string(b[:]) == clientPreface[:3]
}

func tlsConn(nc net.Conn) *tls.Conn {
	for {
		switch c := nc.(type) {
		case *tls.Conn:
			return c
		case interface{ Unwrap() net.Conn }:
			nc = c.Unwrap()
		default:
			return nil
		}
	}
}

func isTLS(nc net.Conn) bool { return tlsConn(nc) != nil }

func rawConn(nc net.Conn) syscall.RawConn {
	if tlsConn(nc) != nil {
		return nil // TLS: ALPN decides, the bytes are ciphertext
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// h2conn is one downstream HTTP/2 connection. golang.org/x/net/http2's
// server does the framing, HPACK, flow control, stream states and limits;
// every stream arrives at ServeHTTP on its own goroutine and is proxied
// like an HTTP/1 request (same filters, router, clusters, logs).
type h2conn struct {
	cfg *Config
	nc  net.Conn
	cc  countingConn
	hs  *http.Server
	tls bool
	rip string
	// rapid-reset accounting
	streams   atomic.Int64
	premature atomic.Int64
	closed    atomic.Bool
}

// countingConn counts the bytes of a connection for the cx_rx/tx stats.
type countingConn struct {
	net.Conn
	rx, tx atomic.Int64
}

func (c *countingConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.rx.Add(int64(n))
	return n, err
}

func (c *countingConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	c.tx.Add(int64(n))
	return n, err
}

// serveH2 serves one HTTP/2 connection until it ends.
func (c *Config) serveH2(ctx context.Context, nc net.Conn) {
	st := c.Stats
	st.DownstreamCxTotal.Inc()
	st.DownstreamCxHTTP2Total.Inc()
	st.DownstreamCxActive.Inc()
	hc := &h2conn{cfg: c, nc: nc, tls: isTLS(nc)}
	hc.cc.Conn = nc
	hc.rip = remoteIP(nc)
	hs := &http.Server{MaxHeaderBytes: c.Limits.MaxHeaderBytes, ErrorLog: c.errLog}
	o := c.H2
	h2s := &http2.Server{
		MaxConcurrentStreams:         o.MaxConcurrentStreams,
		MaxUploadBufferPerStream:     o.StreamWindow,
		MaxUploadBufferPerConnection: o.ConnWindow,
		CountError:                   hc.countError,
		MaxReadFrameSize:             16 << 10, // the RFC default, as Envoy
		ReadIdleTimeout:              o.KeepaliveInterval,
		PingTimeout:                  o.KeepaliveTimeout,
	}
	if c.IdleTimeout > 0 {
		h2s.IdleTimeout = c.IdleTimeout
	}
	_ = http2.ConfigureServer(hs, h2s)
	hc.hs = hs
	if dn, ok := nc.(api.DrainNotifier); ok {
		// Drain: GOAWAY, streams in flight finish, then the server closes.
		dn.OnDrain(func() { go func() { _ = hs.Shutdown(context.Background()) }() })
	}
	stop := context.AfterFunc(ctx, func() { _ = nc.Close() })
	h2s.ServeConn(&hc.cc, &http2.ServeConnOpts{Context: ctx, BaseConfig: hs, Handler: hc})
	stop()
	if dn, ok := nc.(api.DrainNotifier); ok {
		dn.OnDrain(nil)
	}
	_ = nc.Close()
	st.DownstreamCxActive.Dec()
	st.DownstreamCxRxBytes.Add(uint64(hc.cc.rx.Load()))
	st.DownstreamCxTxBytes.Add(uint64(hc.cc.tx.Load()))
}

// countError counts the protocol errors the HTTP/2 server detected.
func (hc *h2conn) countError(string) { hc.cfg.Stats.DownstreamCxProtocolError.Inc() }

func (hc *h2conn) remoteIP() string { return hc.rip }

func (hc *h2conn) scheme() string {
	if hc.tls {
		return "https"
	}
	return "http"
}

// DownstreamRemoteAddress implements router.VarSource.
func (hc *h2conn) DownstreamRemoteAddress() string { return hc.nc.RemoteAddr().String() }

// prematureReset counts a stream the client reset before its response
// started; a connection doing mostly that is closed (rapid reset: each
// reset stream costs an upstream request while costing the client a
// frame).
func (hc *h2conn) prematureReset() {
	n := hc.premature.Add(1)
	limit := int64(hc.cfg.H2.MaxPrematureResets)
	if limit > 0 && n >= limit && 2*n >= hc.streams.Load() && hc.closed.CompareAndSwap(false, true) {
		hc.cfg.Stats.DownstreamCxProtocolError.Inc()
		hc.cfg.Log.Warn("closing HTTP/2 connection: too many streams reset by the client before their response", "remote", hc.nc.RemoteAddr(), "resets", n)
		// GOAWAY first (no new streams), then the close a moment later
		// whatever the client does.
		go func() { _ = hc.hs.Shutdown(context.Background()) }()
		time.AfterFunc(goAwayGrace, func() { _ = hc.nc.Close() })
	}
}

// goAwayGrace is how long a connection closed for abuse has to read its
// GOAWAY.
const goAwayGrace = time.Second

var h2streams = sync.Pool{New: func() any { return new(h2stream) }}

// ServeHTTP implements http.Handler: one HTTP/2 stream.
func (hc *h2conn) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hc.streams.Add(1)
	s := h2streams.Get().(*h2stream)
	s.begin(hc, w, r)
	hc.cfg.serveH2Stream(s)
	s.end()
	h2streams.Put(s)
}
