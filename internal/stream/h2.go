package stream

import (
	"bufio"
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

// countingConn is a downstream HTTP/2 connection as x/net's server sees
// it. It counts bytes for the cx_rx/tx stats and does two things for the
// hot path:
//   - reads are buffered: x/net's server reads each frame header and
//     payload straight from the connection, two read(2) calls per frame;
//     through the buffer, the frames that arrived together cost one;
//   - writes are gathered: the server flushes whenever its queue runs dry,
//     which with many streams in flight is several small writes per
//     response. Write appends to a pending buffer and one writer goroutine
//     sends whatever gathered meanwhile, as an event loop would. The buffer
//     is bounded (Write waits past maxPendingWrite, so a client that does
//     not read still stops the server), a write error is returned by the
//     next Write, and Close sends what is pending first (within a second).
type countingConn struct {
	net.Conn
	br      *bufio.Reader
	rx, tx  atomic.Int64
	timeout time.Duration // per write(2); <= 0: none

	wmu     sync.Mutex
	wcond   sync.Cond
	pend    []byte
	writing bool
	err     error
	closed  bool
	wake    chan struct{}
	drained chan struct{} // closed by the writer once closed and nothing is pending
}

// maxPendingWrite bounds the bytes gathered for the writer.
const maxPendingWrite = 256 << 10

// rawReader reads the connection under the buffer, counting.
type rawReader struct{ c *countingConn }

func (r rawReader) Read(b []byte) (int, error) {
	n, err := r.c.Conn.Read(b)
	r.c.rx.Add(int64(n))
	return n, err
}

func (c *countingConn) init(nc net.Conn, timeout time.Duration) {
	c.Conn = nc
	c.timeout = timeout
	c.br = bufio.NewReaderSize(rawReader{c}, h2ReadBuffer)
	c.wcond.L = &c.wmu
	c.wake = make(chan struct{}, 1)
	c.drained = make(chan struct{})
	go c.writeLoop()
}

func (c *countingConn) Read(b []byte) (int, error) { return c.br.Read(b) }

func (c *countingConn) Write(b []byte) (int, error) {
	c.wmu.Lock()
	for len(c.pend) >= maxPendingWrite && c.err == nil && !c.closed {
		c.wcond.Wait()
	}
	switch {
	case c.err != nil:
		err := c.err
		c.wmu.Unlock()
		return 0, err
	case c.closed:
		c.wmu.Unlock()
		return 0, net.ErrClosed
	}
	c.pend = append(c.pend, b...)
	c.wmu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	return len(b), nil
}

func (c *countingConn) writeLoop() {
	var out []byte
	for range c.wake {
		c.wmu.Lock()
		for len(c.pend) > 0 && c.err == nil {
			out, c.pend = c.pend, out[:0]
			c.writing = true
			c.wmu.Unlock()
			if c.timeout > 0 {
				_ = c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
			}
			n, err := c.Conn.Write(out)
			c.tx.Add(int64(n))
			if cap(out) > 64<<10 {
				out = nil // one burst does not pin a large buffer
			}
			c.wmu.Lock()
			c.writing = false
			if err != nil {
				c.err = err
				_ = c.Conn.Close()
			}
			c.wcond.Broadcast()
		}
		done := c.closed
		c.wmu.Unlock()
		if done {
			close(c.drained)
			return
		}
	}
}

// Close sends what is pending (within a second), then closes.
func (c *countingConn) Close() error {
	c.wmu.Lock()
	if c.closed {
		c.wmu.Unlock()
		return nil
	}
	c.closed = true
	c.wcond.Broadcast()
	c.wmu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
	select {
	case <-c.drained:
	case <-time.After(time.Second):
	}
	return c.Conn.Close()
}

// serveH2 serves one HTTP/2 connection until it ends.
func (c *Config) serveH2(ctx context.Context, nc net.Conn) {
	st := c.Stats
	st.DownstreamCxTotal.Inc()
	st.DownstreamCxHTTP2Total.Inc()
	st.DownstreamCxActive.Inc()
	hc := &h2conn{cfg: c, nc: nc, tls: isTLS(nc)}
	hc.cc.init(nc, c.StreamIdleTimeout)
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
	_ = hc.cc.Close()
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

// h2ReadBuffer is the read buffer of a downstream HTTP/2 connection.
const h2ReadBuffer = 8 << 10

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
