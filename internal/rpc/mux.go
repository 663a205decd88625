package rpc

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/network"
	"github.com/weftmesh/weft/internal/stats"
)

// Failures of a try, as the stream sees them.
var (
	// errConnect: no connection to the host could be made.
	errConnect = errors.New("upstream connect failure")
	// errOverflow: the cluster's connection breaker is open and no
	// connection exists.
	errOverflow = errors.New("upstream connection overflow")
	// errNotSent: the connection died before the request was written; it
	// is safe to send again anywhere.
	errNotSent = errors.New("upstream connection closed before the request was sent")
	// errReset: the connection died with the request in flight.
	errReset = errors.New("upstream connection closed with the request in flight")
	// errPoolClosed: the pool was closed (its host went away).
	errPoolClosed = errors.New("upstream pool closed")
)

// call is one request waiting for its response on a muxConn. A stream owns
// one and reuses it for every try; done has room for one signal, sent by
// whoever removes the call from the pending map (the reader with a
// response, or the connection's failure with err).
type call struct {
	done chan struct{}
	resp api.Frame
	err  error
}

// hbCall marks a pending heartbeat.
var hbCall = &call{}

// shadowCall marks a mirrored request whose response is dropped.
var shadowCall = &call{}

// muxPool is the multiplexed pool of one upstream host for one protocol.
type muxPool struct {
	host  api.Host
	codec api.Codec
	cfg   *PoolConfig
	stats *stats.RPCStats
	log   func(msg string, args ...any)
	cl    api.Cluster // for the connection breaker; may be nil

	frames *sync.Pool // frames of codec

	mu     sync.Mutex
	conns  []*muxConn
	closed bool
	// heir gives the pool of the host that replaced this one when a
	// cluster was rebuilt (DrainTo); connections move there once idle.
	heir func() api.ConnPool
}

func newMuxPool(h api.Host, c api.Codec, cfg *PoolConfig, st *stats.RPCStats, cl api.Cluster, frames *sync.Pool, log func(string, ...any)) *muxPool {
	return &muxPool{host: h, codec: c, cfg: cfg, stats: st, cl: cl, frames: frames, log: log}
}

// acquire reserves a request slot on a connection, dialing one when every
// connection is at MaxRequestsPerConn and the host has room for another.
// The caller must release the connection exactly once.
func (p *muxPool) acquire(ctx context.Context) (*muxConn, error) {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, errPoolClosed
	}
	var best *muxConn
	for _, c := range p.conns {
		if c.evicting || c.dead {
			continue
		}
		if best == nil || c.reserved < best.reserved {
			best = c
		}
	}
	live := 0
	for _, c := range p.conns {
		if !c.evicting && !c.dead {
			live++
		}
	}
	if best == nil || best.reserved >= p.cfg.MaxRequestsPerConn && live < p.cfg.MaxConnsPerHost {
		if p.cl == nil || p.cl.TryAcquire(api.ResConnections) {
			c := &muxConn{ready: make(chan struct{}), pending: map[uint32]*call{}, breaker: p.cl != nil, lastUse: time.Now()}
			c.pp.Store(p)
			c.reserved = 1
			p.conns = append(p.conns, c)
			p.mu.Unlock()
			c.dial(ctx)
			if c.dialErr != nil {
				return nil, c.dialErr
			}
			return c, nil
		}
		if best == nil {
			p.mu.Unlock()
			return nil, errOverflow
		}
	}
	best.reserved++
	p.mu.Unlock()
	select {
	case <-best.ready:
	case <-ctx.Done():
		p.release(best)
		return nil, ctx.Err()
	}
	if best.dialErr != nil {
		p.release(best)
		return nil, best.dialErr
	}
	return best, nil
}

// release gives back a slot taken by acquire.
func (p *muxPool) release(c *muxConn) {
	p = c.lockPool()
	c.reserved--
	c.lastUse = time.Now()
	idle := c.reserved == 0 && !c.dead
	closeNow := c.evicting && idle
	var heir func() api.ConnPool
	if idle && c.moving {
		heir = p.heir
	}
	p.mu.Unlock()
	if heir != nil {
		p.handOver(c, heir)
		return
	}
	if closeNow {
		c.close(errEvicted)
	}
}

var errEvicted = errors.New("evicted connection drained")

// remove drops c from the pool's list.
func (p *muxPool) remove(c *muxConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, x := range p.conns {
		if x == c {
			p.conns = append(p.conns[:i], p.conns[i+1:]...)
			break
		}
	}
}

// Drain implements api.ConnPool: every connection is evicted (no new
// requests, no heartbeats, closed once its requests are answered).
func (p *muxPool) Drain() {
	p.mu.Lock()
	conns := append([]*muxConn(nil), p.conns...)
	p.closed = true
	p.mu.Unlock()
	for _, c := range conns {
		c.evict()
	}
}

// DrainTo hands the pool's connections to the pool next returns (the
// same address's host in a rebuilt cluster): idle ones now, busy ones
// when their last request is answered. A connection the successor cannot
// take (other settings, its breaker full) is evicted as Drain does, so a
// config push that only changed breakers or load balancing does not
// reconnect every upstream connection.
func (p *muxPool) DrainTo(next func() api.ConnPool) {
	p.mu.Lock()
	p.closed = true
	p.heir = next
	var idle []*muxConn
	for _, c := range p.conns {
		if c.dead || c.evicting {
			continue
		}
		if c.reserved == 0 {
			idle = append(idle, c)
		} else {
			c.moving = true
		}
	}
	p.mu.Unlock()
	for _, c := range idle {
		p.handOver(c, next)
	}
}

// handOver moves idle connection c to the successor pool, or evicts it.
// Locks: p.mu then the successor's, never the other way round.
func (p *muxPool) handOver(c *muxConn, next func() api.ConnPool) {
	np, ok := next().(*muxPool)
	if !ok || np == p || np.codec.Name() != p.codec.Name() || np.stats != p.stats || *np.cfg != *p.cfg {
		c.evict()
		return
	}
	if np.cl != nil && !np.cl.TryAcquire(api.ResConnections) {
		c.evict()
		return
	}
	undo := func() {
		if np.cl != nil {
			np.cl.Release(api.ResConnections)
		}
	}
	p.mu.Lock()
	if c.pp.Load() != p || c.dead || c.evicting || c.reserved != 0 {
		p.mu.Unlock()
		undo()
		return
	}
	np.mu.Lock()
	if np.closed {
		np.mu.Unlock()
		p.mu.Unlock()
		undo()
		c.evict()
		return
	}
	for i, x := range p.conns {
		if x == c {
			p.conns = append(p.conns[:i], p.conns[i+1:]...)
			break
		}
	}
	np.conns = append(np.conns, c)
	held := c.breaker
	c.moving, c.breaker = false, np.cl != nil
	c.pp.Store(np)
	np.mu.Unlock()
	p.mu.Unlock()
	np.host.Stats().ConnActive.Inc()
	p.host.Stats().ConnActive.Dec()
	if np.cl != nil {
		np.cl.Stats().UpstreamConnActive.Inc()
	}
	if p.cl != nil {
		p.cl.Stats().UpstreamConnActive.Dec()
		if held {
			p.cl.Release(api.ResConnections)
		}
	}
}

// Close implements api.ConnPool: every connection closes now and its
// requests fail.
func (p *muxPool) Close() {
	p.mu.Lock()
	conns := append([]*muxConn(nil), p.conns...)
	p.closed = true
	p.mu.Unlock()
	for _, c := range conns {
		c.close(errPoolClosed)
	}
}

// Evict marks every current connection for eviction while the pool keeps
// serving on new ones: the hook a graceful upstream restart (S3) uses.
func (p *muxPool) Evict() {
	p.mu.Lock()
	conns := append([]*muxConn(nil), p.conns...)
	p.mu.Unlock()
	for _, c := range conns {
		c.evict()
	}
}

// muxConn is one multiplexed upstream connection: a reader goroutine that
// matches responses to pending calls by id, a maintenance goroutine for
// heartbeats and the idle timeout, and a batching writer shared by every
// request.
type muxConn struct {
	// pp is the pool the connection belongs to: it changes once at most,
	// when a rebuilt cluster's pool takes the connection over (DrainTo).
	pp      atomic.Pointer[muxPool]
	ready   chan struct{} // closed when the dial finished
	dialErr error
	w       batchWriter
	breaker bool // holds a ResConnections unit

	// guarded by the owning pool's mu (lockPool)
	moving   bool // to be handed to the pool's heir once idle
	reserved int
	evicting bool
	dead     bool
	lastUse  time.Time

	mu      sync.Mutex // guards pending, nextID, closed
	pending map[uint32]*call
	nextID  uint32
	closed  bool

	lastRead atomic.Int64 // unix nanos of the last frame read
	stop     chan struct{}
	once     sync.Once
}

// pool is the pool c belongs to now.
func (c *muxConn) pool() *muxPool { return c.pp.Load() }

// lockPool locks the pool c belongs to and returns it; the fields guarded
// by the pool's mu may then be used (c cannot move while it is held).
func (c *muxConn) lockPool() *muxPool {
	for {
		p := c.pp.Load()
		p.mu.Lock()
		if c.pp.Load() == p {
			return p
		}
		p.mu.Unlock()
	}
}

func (c *muxConn) dial(ctx context.Context) {
	defer close(c.ready)
	nc, err := c.pool().host.Dial(ctx)
	if err != nil {
		c.dialErr = errConnect
		c.pool().host.Stats().ConnFailure.Inc()
		if c.pool().cl != nil {
			c.pool().cl.Stats().UpstreamConnFailure.Inc()
		}
		p := c.lockPool()
		c.dead = true
		p.mu.Unlock()
		p.remove(c)
		if c.breaker {
			p.cl.Release(api.ResConnections)
		}
		return
	}
	c.pool().stats.UpstreamCxTotal.Inc()
	c.pool().stats.UpstreamCxActive.Inc()
	c.pool().host.Stats().ConnTotal.Inc()
	c.pool().host.Stats().ConnActive.Inc()
	if c.pool().cl != nil {
		c.pool().cl.Stats().UpstreamConnTotal.Inc()
		c.pool().cl.Stats().UpstreamConnActive.Inc()
	}
	c.w = batchWriter{nc: nc, timeout: c.pool().cfg.WriteTimeout, max: c.pool().cfg.MaxWriteBacklog, refuse: true,
		onErr: func(err error) { c.close(err) }}
	// A provider that stops taking requests fails the connection (its
	// requests get error replies) instead of holding them unsent.
	_ = network.SetUserTimeout(nc, c.pool().cfg.WriteTimeout)
	c.stop = make(chan struct{})
	c.lastRead.Store(time.Now().UnixNano())
	go c.readLoop()
	go c.maintain()
}

// send writes req with a fresh upstream id, registering cl to receive the
// response (nil for a one-way request). req's own id is restored before
// send returns.
func (c *muxConn) send(req api.Frame, cl *call) (uint32, error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0, errNotSent
	}
	id := c.nextIDLocked()
	if cl != nil {
		c.pending[id] = cl
	}
	c.mu.Unlock()
	orig := req.RequestID()
	req.SetRequestID(uint64(id))
	err := c.w.write(c.pool().codec, req)
	req.SetRequestID(orig)
	if err != nil {
		if cl != nil && !c.forget(id, cl) {
			// The failure path already took the call and signalled it.
			<-cl.done
		}
		if err == errBacklog {
			return 0, errBacklog
		}
		return 0, errNotSent
	}
	return id, nil
}

// nextIDLocked returns an id not in use (0 is skipped: some peers treat
// it as "no id").
func (c *muxConn) nextIDLocked() uint32 {
	for {
		c.nextID++
		if c.nextID == 0 {
			continue
		}
		if _, busy := c.pending[c.nextID]; !busy {
			return c.nextID
		}
	}
}

// forget removes a pending call that will not be waited for (timeout,
// downstream gone). It reports false when the call was already taken by a
// response or a failure, whose signal the caller must then consume.
func (c *muxConn) forget(id uint32, cl *call) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.pending[id] == cl {
		delete(c.pending, id)
		return true
	}
	return false
}

func (c *muxConn) readLoop() {
	p := c.pool()
	codec := p.codec
	buf := make([]byte, 0, 16<<10)
	f := p.frames.Get().(api.Frame)
	defer func() { p.frames.Put(f) }()
	for {
		if len(buf) == cap(buf) {
			buf = grow(buf)
		}
		n, err := c.w.nc.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err != nil {
			c.close(err)
			return
		}
		c.lastRead.Store(time.Now().UnixNano())
		off := 0
		for off < len(buf) {
			used, derr := codec.Decode(f, buf[off:])
			if derr == api.ErrNeedMore {
				break
			}
			if derr != nil && used == 0 {
				p.log("rpc: bad frame from upstream, closing", "host", p.host.Address(), "err", derr)
				c.close(derr)
				return
			}
			off += used
			if derr != nil {
				continue // a whole frame we cannot read; skip it
			}
			f = c.dispatch(f)
		}
		buf = compact(buf, off)
		if len(buf) == 0 && cap(buf) > keepReadBuf {
			buf = make([]byte, 0, 16<<10)
		}
	}
}

// keepReadBuf is the largest read buffer kept once it is empty again.
const keepReadBuf = 64 << 10

// dispatch handles one frame read from upstream and returns the frame to
// decode into next (a fresh one when f was handed to a waiting call).
func (c *muxConn) dispatch(f api.Frame) api.Frame {
	p := c.pool()
	switch f.Kind() {
	case api.KindResponse, api.KindHeartbeatReply:
		id := uint32(f.RequestID())
		c.mu.Lock()
		cl := c.pending[id]
		if cl != nil {
			delete(c.pending, id)
		}
		c.mu.Unlock()
		switch cl {
		case nil:
			p.stats.UpstreamRqUnknownID.Inc()
		case hbCall, shadowCall:
		default:
			cl.resp = f
			cl.done <- struct{}{}
			return p.frames.Get().(api.Frame)
		}
	case api.KindHeartbeat:
		// The provider checks on us: answer at once.
		_ = c.w.write(p.codec, p.codec.HeartbeatReply(f))
	default:
		if ga, ok := f.(api.GoingAway); ok && ga.GoingAway() {
			p.log("rpc: upstream is going away, draining its connection", "host", p.host.Address())
			p.stats.UpstreamCxGoingAway.Inc()
			c.evict()
		}
	}
	return f
}

// maintain sends a heartbeat when nothing was read for HeartbeatInterval,
// closes the connection when HeartbeatMisses heartbeats in a row got no
// sign of life (any frame counts), and closes it when it has had nothing
// in flight for IdleTimeout.
func (c *muxConn) maintain() {
	cfg := c.pool().cfg
	tick := time.Second
	if cfg.HeartbeatInterval > 0 && cfg.HeartbeatInterval/4 < tick {
		tick = max(cfg.HeartbeatInterval/4, time.Millisecond)
	}
	if cfg.IdleTimeout > 0 && cfg.IdleTimeout/4 < tick {
		tick = max(cfg.IdleTimeout/4, time.Millisecond)
	}
	t := time.NewTicker(tick)
	defer t.Stop()
	misses := 0
	var hbID uint32      // id of the last heartbeat sent
	var sentAt time.Time // last heartbeat not yet answered; zero: none
	for {
		select {
		case <-c.stop:
			return
		case now := <-t.C:
			p := c.lockPool()
			evicting := c.evicting
			idle := c.reserved == 0 && now.Sub(c.lastUse) >= cfg.IdleTimeout
			p.mu.Unlock()
			if cfg.IdleTimeout > 0 && idle {
				c.pool().stats.UpstreamCxIdleTimeout.Inc()
				c.close(errIdle)
				return
			}
			if evicting || cfg.HeartbeatInterval <= 0 {
				continue
			}
			lastRead := time.Unix(0, c.lastRead.Load())
			switch {
			case !sentAt.IsZero() && lastRead.After(sentAt):
				sentAt, misses = time.Time{}, 0
			case !sentAt.IsZero() && now.Sub(sentAt) >= cfg.HeartbeatInterval:
				misses++
				if misses >= cfg.HeartbeatMisses {
					c.pool().stats.UpstreamCxHeartbeatFail.Inc()
					c.pool().log("rpc: upstream missed heartbeats, closing", "host", c.pool().host.Address(), "misses", misses)
					c.close(errHeartbeat)
					return
				}
				hbID = c.heartbeat(hbID)
				sentAt = now
			case sentAt.IsZero() && now.Sub(lastRead) >= cfg.HeartbeatInterval:
				hbID = c.heartbeat(hbID)
				sentAt = now
			}
		}
	}
}

var (
	errIdle      = errors.New("upstream connection idle")
	errHeartbeat = errors.New("upstream connection missed heartbeats")
)

// heartbeat sends a heartbeat, forgetting the previous one if it is still
// unanswered (a provider that answers requests but not heartbeats must not
// fill the pending map), and returns its id.
func (c *muxConn) heartbeat(prev uint32) uint32 {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0
	}
	if prev != 0 && c.pending[prev] == hbCall {
		delete(c.pending, prev)
	}
	id := c.nextIDLocked()
	c.pending[id] = hbCall
	c.mu.Unlock()
	_ = c.w.write(c.pool().codec, c.pool().codec.Heartbeat(uint64(id)))
	return id
}

// evict stops heartbeats and new requests; the connection closes once its
// requests are answered.
func (c *muxConn) evict() {
	p := c.lockPool()
	c.evicting = true
	closeNow := c.reserved == 0 && !c.dead
	p.mu.Unlock()
	if closeNow {
		c.close(errEvicted)
	}
}

// close shuts the connection and fails every pending call with errReset.
func (c *muxConn) close(reason error) {
	c.once.Do(func() {
		p := c.lockPool()
		c.dead = true
		p.mu.Unlock()
		p.remove(c)
		c.mu.Lock()
		c.closed = true
		pending := c.pending
		c.pending = map[uint32]*call{}
		c.mu.Unlock()
		if c.w.nc != nil {
			_ = c.w.nc.Close()
			close(c.stop)
			p.stats.UpstreamCxActive.Dec()
			p.host.Stats().ConnActive.Dec()
			if p.cl != nil {
				p.cl.Stats().UpstreamConnActive.Dec()
			}
		}
		if c.breaker {
			p.cl.Release(api.ResConnections)
		}
		failed := 0
		for _, cl := range pending {
			if cl == hbCall || cl == shadowCall {
				continue
			}
			cl.err = errReset
			cl.done <- struct{}{}
			failed++
		}
		if failed > 0 {
			p.log("rpc: upstream connection closed with requests in flight", "host", p.host.Address(), "requests", failed, "err", reason)
		}
	})
}

// grow doubles b's capacity, keeping its contents.
func grow(b []byte) []byte {
	nb := make([]byte, len(b), 2*cap(b))
	copy(nb, b)
	return nb
}

// compact drops the first off bytes of b, moving the rest to the front.
func compact(b []byte, off int) []byte {
	if off == 0 {
		return b
	}
	n := copy(b, b[off:])
	return b[:n]
}
