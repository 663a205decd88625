package stream

import (
	"context"
	"errors"
	"io"
	"net"
	"sync/atomic"
	"time"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/codec/http1"
	"github.com/weftmesh/weft/internal/network"
)

// idleGrace is how long a keep-alive connection waits for its next request
// with its read buffer held before it releases it and parks.
const idleGrace = 100 * time.Millisecond

// Connection states, for drain: an idle connection is closed at once, a
// busy one after its response.
const (
	stateIdle int32 = iota
	stateBusy
	stateClosing
)

// ServeConn implements api.ConnHandler: one goroutine serves one HTTP/1.1
// downstream connection, request after request. All per-connection state
// lives in one serverConn allocated here and reused for every request, so
// a steady keep-alive connection allocates nothing per request.
func (c *Config) ServeConn(ctx context.Context, nc net.Conn) {
	if c.isH2(nc) {
		c.serveH2(ctx, nc)
		return
	}
	if c.HTTP1 != nil {
		c.HTTP1.ServeConn(ctx, nc)
		return
	}
	sc := &serverConn{cfg: c, nc: nc, ctx: ctx}
	sc.dc.Conn = nc
	sc.br = http1.NewReader(&sc.dc, c.BufPool)
	sc.w.w = &sc.dc
	sc.s.sc = sc
	if dn, ok := nc.(api.DrainNotifier); ok {
		dn.OnDrain(sc.onDrain)
	}
	// When the listener gives up on its connections (drain timeout), a
	// request waiting on its upstream is cut at once.
	sc.stopAbort = context.AfterFunc(ctx, sc.abort)
	st := c.Stats
	st.DownstreamCxTotal.Inc()
	st.DownstreamCxHTTP1Total.Inc()
	st.DownstreamCxActive.Inc()
	sc.run()
}

// countBytes adds the bytes moved since the last call to the connection
// manager's counters (after each request and at close).
func (sc *serverConn) countBytes() {
	st := sc.cfg.Stats
	st.DownstreamCxRxBytes.Add(uint64(sc.dc.rx - sc.rxDone))
	st.DownstreamCxTxBytes.Add(uint64(sc.dc.tx - sc.txDone))
	sc.rxDone, sc.txDone = sc.dc.rx, sc.dc.tx
}

// abort unblocks whatever the connection is waiting on.
func (sc *serverConn) abort() {
	now := time.Now()
	if uc := sc.cur.Load(); uc != nil {
		_ = uc.pc.SetDeadline(now)
	}
	_ = sc.nc.SetDeadline(now)
}

type serverConn struct {
	cfg   *Config
	nc    net.Conn
	dc    idleConn // nc as the reader and writer see it
	ctx   context.Context
	br    *http1.Reader
	w     flushWriter // downstream writes
	uw    flushWriter // upstream writes of the current request
	rip   string      // downstream IP, formatted on first use
	state atomic.Int32
	cur   atomic.Pointer[upConn] // the upstream connection in use, for abort
	s     stream

	stopAbort      func() bool
	rxDone, txDone int64 // bytes already added to the stats
	nreq           int
}

func (sc *serverConn) onDrain() {
	if sc.state.Swap(stateClosing) == stateIdle {
		_ = sc.nc.Close()
	}
}

// run serves requests until the connection ends, or until it goes idle:
// then it hands the connection to a fresh goroutine that waits for the
// next request and returns. The goroutine that proxied (whose stack grew
// on the way) ends, and the parked one holds a minimal stack and no
// buffers, which is what keeps an idle keep-alive connection at a few KiB.
func (sc *serverConn) run() {
	if sc.serve() {
		go sc.park()
		return
	}
	sc.finish()
}

// park waits, holding nothing, until the client sends or the idle timeout
// (or a drain) ends the connection.
func (sc *serverConn) park() {
	_ = sc.nc.SetReadDeadline(network.Deadline(time.Now(), sc.cfg.IdleTimeout))
	if err := network.WaitReadable(sc.nc); err != nil || sc.state.Load() != stateIdle {
		sc.finish()
		return
	}
	sc.run()
}

func (sc *serverConn) finish() {
	if dn, ok := sc.nc.(api.DrainNotifier); ok {
		dn.OnDrain(nil)
	}
	sc.stopAbort()
	st := sc.cfg.Stats
	st.DownstreamCxActive.Dec()
	sc.countBytes()
	_ = sc.nc.Close()
	sc.br.Release()
	sc.w.release(sc.cfg.BufPool)
	sc.uw.release(sc.cfg.BufPool)
}

// serve runs the request loop. It returns true when the connection went
// idle and should park, false when it must close.
func (sc *serverConn) serve() (idle bool) {
	cfg := sc.cfg
	for {
		if sc.br.Buffered() == 0 {
			// A busy keep-alive connection reads the next request with its
			// buffer held, as a plain read would (read, park, read). Only
			// a connection idle past idleGrace gives its buffers back.
			_ = sc.nc.SetReadDeadline(time.Now().Add(idleGrace))
			if err := sc.br.Fill(); err != nil {
				if !network.IsTimeout(err) {
					return false
				}
				sc.br.Release()
				sc.w.release(cfg.BufPool)
				sc.uw.release(cfg.BufPool)
				sc.s.req.Release()
				sc.s.resp.Release()
				return true
			}
		}
		if !sc.state.CompareAndSwap(stateIdle, stateBusy) {
			return false // draining
		}
		start := time.Now()
		_ = sc.nc.SetReadDeadline(network.Deadline(start, cfg.RequestHeadersTimeout))
		s := &sc.s
		s.reset(start)
		err := sc.br.ReadRequestHead(&s.req, cfg.Limits)
		if err != nil {
			sc.headError(err)
			return false
		}
		// No deadline refresh here: body reads and every write refresh
		// their own (idleConn), which saves timer updates per request.
		sc.nreq++
		keep := sc.handle(s)
		if !keep || (cfg.MaxRequestsPerConn > 0 && sc.nreq >= cfg.MaxRequestsPerConn) {
			return false
		}
		if !sc.state.CompareAndSwap(stateBusy, stateIdle) {
			return false // drain arrived while busy; the response said close
		}
	}
}

// headError answers a request head that could not be read.
func (sc *serverConn) headError(err error) {
	s := &sc.s
	switch {
	case errors.Is(err, io.EOF):
		return // clean close between requests
	case network.IsTimeout(err):
		// Bytes had arrived (the wait before the head returned data), so
		// this is a head that did not finish in time.
		s.flag(api.FlagRequestHeaderTimeout)
		sc.cfg.Stats.DownstreamRqHeaderTimeout.Inc()
		sc.localReply(s, 408, "request header timeout", true)
	case errors.Is(err, http1.ErrHeaderTooLarge):
		s.flag(api.FlagDownstreamProtocol)
		sc.cfg.Stats.DownstreamCxProtocolError.Inc()
		sc.localReply(s, 431, "request header fields too large", true)
	case errors.Is(err, http1.ErrMalformed), errors.Is(err, io.ErrUnexpectedEOF):
		if errors.Is(err, io.ErrUnexpectedEOF) && sc.br.Buffered() == 0 {
			return
		}
		s.flag(api.FlagDownstreamProtocol)
		sc.cfg.Stats.DownstreamCxProtocolError.Inc()
		sc.localReply(s, 400, "bad request: "+err.Error(), true)
	default:
		return
	}
	sc.log(s)
}

// flushWriter coalesces a response head and a small body into one write
// (one syscall instead of two), using a pooled buffer held only while a
// request is active.
type flushWriter struct {
	w   io.Writer
	buf *[]byte
	n   int64
}

func (f *flushWriter) grab(p *http1.BufPool) []byte {
	if f.buf == nil {
		f.buf = p.Get()
		*f.buf = (*f.buf)[:0]
	}
	return *f.buf
}

func (f *flushWriter) Write(p []byte) (int, error) {
	if f.buf != nil {
		b := *f.buf
		if len(b)+len(p) <= cap(b) {
			*f.buf = append(b, p...)
			return len(p), nil
		}
		if err := f.Flush(); err != nil {
			return 0, err
		}
	}
	n, err := f.w.Write(p)
	f.n += int64(n)
	return n, err
}

// Flush writes whatever is buffered.
func (f *flushWriter) Flush() error {
	if f.buf == nil || len(*f.buf) == 0 {
		return nil
	}
	n, err := f.w.Write(*f.buf)
	f.n += int64(n)
	*f.buf = (*f.buf)[:0]
	return err
}

func (f *flushWriter) release(p *http1.BufPool) {
	if f.buf != nil {
		*f.buf = (*f.buf)[:cap(*f.buf)]
		p.Put(f.buf)
		f.buf = nil
	}
}
