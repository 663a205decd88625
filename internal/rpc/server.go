package rpc

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/network"
	"github.com/weftmesh/weft/internal/stats"
)

// Proxy is a built RPC proxy; it serves downstream connections.
type Proxy struct {
	cfg     Config
	frames  map[string]*sync.Pool // codec name -> pool of its frames
	mkPool  map[string]func(api.Host) api.ConnPool
	poolKy  map[string]string
	ms      stats.MethodTable
	routes  sync.Map // *router.Route -> *stats.RouteStats
	latency sync.Map // cluster name -> *stats.Histogram
}

var _ api.ConnHandler = (*Proxy)(nil)

// New returns a ready proxy for c with defaults filled in.
func New(c Config) *Proxy {
	c.defaults()
	p := &Proxy{cfg: c, frames: map[string]*sync.Pool{}, mkPool: map[string]func(api.Host) api.ConnPool{}, poolKy: map[string]string{}}
	p.ms.Init(p.cfg.Store, p.cfg.StatPrefix, p.cfg.MaxMethodStats)
	for _, cd := range c.Codecs {
		cd := cd
		frames := &sync.Pool{New: func() any { return cd.NewFrame() }}
		p.frames[cd.Name()] = frames
		// One pool per host, protocol and stat prefix: pool settings are
		// the listener's, so two listeners with different settings do
		// not share connections.
		p.poolKy[cd.Name()] = "rpc/" + cd.Name() + "/" + c.StatPrefix
		p.mkPool[cd.Name()] = func(h api.Host) api.ConnPool {
			var cl api.Cluster
			if x, ok := p.cfg.Clusters.Cluster(h.Cluster()); ok {
				cl = x
			}
			return newMuxPool(h, cd, &p.cfg.Pool, p.cfg.Stats, cl, frames, p.logf)
		}
	}
	return p
}

func (p *Proxy) logf(msg string, args ...any) { p.cfg.Log.Warn(msg, args...) }

// ServeConn implements api.ConnHandler: it picks the protocol from the
// first bytes when the listener speaks several (or shares its port with
// HTTP), then serves frames until the connection ends.
func (p *Proxy) ServeConn(ctx context.Context, nc net.Conn) {
	codec := p.cfg.Codecs[0]
	if len(p.cfg.Codecs) > 1 || p.cfg.Next != nil {
		c, rc, err := p.detect(nc)
		nc = rc
		if err != nil {
			if c == nil && errors.Is(err, errNoCodec) && p.cfg.Next != nil {
				p.cfg.Next.ServeConn(ctx, nc)
				return
			}
			if errors.Is(err, errNoCodec) {
				p.cfg.Stats.DownstreamCxProtocolError.Inc()
			}
			p.cfg.Log.Debug("rpc: protocol detection failed", "remote", nc.RemoteAddr().String(), "err", err)
			_ = nc.Close()
			return
		}
		codec = c
	}
	sc := newServerConn(p, codec, nc)
	sc.serve(ctx)
}

// serverConn is one downstream connection.
type serverConn struct {
	p        *Proxy
	codec    api.Codec
	nc       net.Conn
	w        batchWriter
	sem      chan struct{} // one token per request in flight
	done     chan struct{} // closed when the connection ends
	dead     atomic.Bool
	draining atomic.Bool
	reqs     sync.WaitGroup
	frame    *sync.Pool
	ctx      context.Context // cancelled when the connection ends
	stop     context.CancelFunc
}

func newServerConn(p *Proxy, codec api.Codec, nc net.Conn) *serverConn {
	sc := &serverConn{p: p, codec: codec, nc: nc,
		sem: make(chan struct{}, p.cfg.MaxConcurrentRequests), done: make(chan struct{}),
		frame: p.frames[codec.Name()]}
	sc.w = batchWriter{nc: nc, timeout: p.cfg.WriteTimeout, max: p.cfg.MaxWriteBacklog,
		onBytes: &p.cfg.Stats.DownstreamCxTxBytes, onErr: sc.writeFailed}
	// The write timeout also bounds how long answers may sit unacknowledged
	// in the kernel: writes that fit in the send buffer never block, so
	// without this a client that stopped reading goes unnoticed.
	if err := network.SetUserTimeout(nc, p.cfg.WriteTimeout); err != nil {
		p.cfg.Log.Debug("rpc: TCP_USER_TIMEOUT not set", "err", err)
	}
	return sc
}

// writeFailed closes a connection whose client does not read (or is gone).
func (sc *serverConn) writeFailed(err error) {
	if errors.Is(err, errBacklog) || network.IsTimeout(err) {
		sc.slowReader(err)
	}
	sc.shut()
}

// slowReader counts and logs a connection closed because its client does
// not take its responses.
func (sc *serverConn) slowReader(err error) {
	sc.p.cfg.Stats.DownstreamCxSlowReader.Inc()
	sc.p.cfg.Log.Warn("rpc: closing a connection whose client does not read its responses",
		"remote", sc.nc.RemoteAddr().String(), "err", err)
}

// shut closes the connection once; streams in flight see done.
func (sc *serverConn) shut() {
	if sc.dead.CompareAndSwap(false, true) {
		close(sc.done)
		if sc.stop != nil {
			sc.stop()
		}
		_ = sc.nc.Close()
	}
}

func (sc *serverConn) serve(ctx context.Context) {
	p := sc.p
	st := p.cfg.Stats
	st.DownstreamCxTotal.Inc()
	st.DownstreamCxActive.Inc()
	defer st.DownstreamCxActive.Dec()
	if dn, ok := sc.nc.(api.DrainNotifier); ok {
		dn.OnDrain(func() { sc.onDrain() })
		defer dn.OnDrain(nil)
	}
	sc.ctx, sc.stop = context.WithCancel(ctx)
	go func() {
		select {
		case <-ctx.Done():
			sc.shut()
		case <-sc.done:
		}
	}()
	err := sc.readLoop()
	if err != nil && !sc.dead.Load() {
		p.cfg.Log.Debug("rpc: downstream connection ended", "remote", sc.nc.RemoteAddr().String(), "err", err)
	}
	// Let requests in flight finish and answer before closing (also after
	// a protocol error: the frames before it were good), unless the peer
	// is gone: then they see done and give up.
	if !sc.dead.Load() {
		if tc, ok := sc.nc.(interface{ CloseRead() error }); ok && errors.Is(err, errProtocol) {
			_ = tc.CloseRead()
		}
		sc.reqs.Wait()
	}
	sc.shut()
	sc.reqs.Wait()
}

// onDrain closes an idle connection now; a busy one stops reading and
// closes when its requests are answered (the read loop sees drainNow).
func (sc *serverConn) onDrain() {
	sc.p.cfg.Stats.DownstreamCxDrainClose.Inc()
	// Unblock the reader: it ends, waits for requests in flight, closes.
	// The flag goes first: the reader sets its deadline, then checks it.
	sc.draining.Store(true)
	_ = sc.nc.SetReadDeadline(time.Now())
}

var errProtocol = errors.New("rpc: protocol error")

// readLoop decodes frames and dispatches them until the connection ends.
func (sc *serverConn) readLoop() error {
	p := sc.p
	cfg := &p.cfg
	buf := make([]byte, 0, 16<<10)
	f := sc.frame.Get().(api.Frame)
	defer func() { sc.frame.Put(f) }()
	for {
		if len(buf) == cap(buf) {
			buf = grow(buf)
		}
		if cfg.IdleTimeout > 0 {
			_ = sc.nc.SetReadDeadline(time.Now().Add(cfg.IdleTimeout))
		}
		if sc.draining.Load() {
			return nil
		}
		n, err := sc.nc.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		cfg.Stats.DownstreamCxRxBytes.Add(uint64(n))
		if err != nil {
			if sc.draining.Load() {
				return nil
			}
			if network.IsPeerTimeout(err) && n == 0 {
				// TCP_USER_TIMEOUT: our answers sat unacknowledged.
				sc.slowReader(err)
				return err
			}
			if network.IsDeadline(err) && n == 0 {
				if len(sc.sem) > 0 {
					continue // busy, not idle: requests in flight
				}
				cfg.Stats.DownstreamCxIdleTimeout.Inc()
				return err
			}
			if n == 0 {
				return err
			}
		}
		off := 0
		for off < len(buf) {
			used, derr := sc.codec.Decode(f, buf[off:])
			if derr == api.ErrNeedMore {
				break
			}
			if derr != nil && used == 0 {
				cfg.Stats.DownstreamCxProtocolError.Inc()
				cfg.Log.Info("rpc: malformed frame from downstream, closing", "remote", sc.nc.RemoteAddr().String(), "protocol", sc.codec.Name(), "err", derr)
				return errProtocol
			}
			off += used
			if derr != nil {
				// A whole frame whose body does not parse: answer it and
				// go on, as a server does.
				cfg.Stats.DownstreamRqDecodeError.Inc()
				if f.Kind() == api.KindRequest {
					cfg.Stats.LocalReply.Inc()
					_ = sc.w.write(sc.codec, sc.codec.ErrorReply(f, 400, derr.Error()))
				}
				continue
			}
			var ok bool
			if f, ok = sc.dispatch(f); !ok {
				return nil
			}
		}
		buf = compact(buf, off)
		if len(buf) == 0 && cap(buf) > keepReadBuf {
			buf = make([]byte, 0, 16<<10)
		}
		if err != nil {
			return err
		}
	}
}

// dispatch handles one downstream frame and returns the frame to decode
// into next. It reports false when the connection is done.
func (sc *serverConn) dispatch(f api.Frame) (api.Frame, bool) {
	cfg := &sc.p.cfg
	switch f.Kind() {
	case api.KindHeartbeat:
		cfg.Stats.DownstreamHeartbeat.Inc()
		_ = sc.w.write(sc.codec, sc.codec.HeartbeatReply(f))
		return f, true
	case api.KindRequest, api.KindOneway:
	default:
		// Responses and heartbeat replies from a client answer nothing
		// we sent; drop them.
		return f, true
	}
	// Back-pressure: past MaxConcurrentRequests stop reading until a
	// request finishes.
	select {
	case sc.sem <- struct{}{}:
	case <-sc.done:
		return f, false
	}
	s := getStream(sc, f)
	sc.reqs.Add(1)
	go s.run()
	return sc.frame.Get().(api.Frame), true
}
