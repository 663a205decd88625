// Package pool is a per-host pool of plain net.Conn for HTTP/1-style
// protocols: one request at a time per connection, idle connections reused
// newest first, capped by the cluster's max_connections breaker.
package pool

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftmesh/weft/api"
)

// DefaultIdleTimeout is Envoy's default upstream idle timeout
// (common_http_protocol_options.idle_timeout).
const DefaultIdleTimeout = time.Hour

var (
	// ErrOverflow means the max_connections breaker is full and no
	// connection came free before the context ended (or the pending-request
	// breaker was full too).
	ErrOverflow = errors.New("pool: connection limit reached")
	// ErrClosed means the pool is draining or closed.
	ErrClosed = errors.New("pool: closed")
)

// Limits is the circuit-breaker budget the pool draws on; api.Cluster
// satisfies it. The pool takes one api.ResConnections unit per open
// connection and one api.ResPendingRequests unit per caller waiting for a
// connection.
type Limits interface {
	TryAcquire(r api.Resource) bool
	Release(r api.Resource)
}

// Config tunes a Pool.
type Config struct {
	// IdleTimeout closes a connection that stayed idle this long; 0 means
	// DefaultIdleTimeout and a negative value never closes idle conns.
	IdleTimeout time.Duration
	// MaxRequestsPerConn closes a connection after it served this many
	// requests (Gets); 0 means no limit.
	MaxRequestsPerConn int
	// TrustIdle is how long a connection may sit idle and still be handed
	// out without the liveness peek (0: always peek). Servers close
	// keep-alive connections after seconds, not milliseconds, so a short
	// window saves a syscall per request under load; the caller must then
	// retry a request whose reused connection turns out closed before any
	// response byte, as the HTTP/1 proxy does.
	TrustIdle time.Duration
	// Limits is the cluster's breaker; nil means unlimited.
	Limits Limits
}

// Pool is a pool of connections to one host. It implements api.ConnPool.
type Pool struct {
	host   api.Host
	cfg    Config
	limits Limits

	mu       sync.Mutex
	idle     []*Conn // LIFO: the newest idle conn is last
	waiters  []*waiter
	conns    map[*Conn]struct{} // every open conn, idle or busy
	draining bool
	// next, set by DrainTo, takes the connections put back while p drains.
	next *Pool
	// heir is set once p is another pool's next: connections may still
	// come, so p's own DrainTo must pass them on even if p has none.
	heir bool
}

// adopter is a host that can take over a connection that another host of
// the same address dialled (upstream.Host does): from then on the
// connection counts in its stats. DrainTo hands connections only to a pool
// whose host is one.
type adopter interface {
	Adopt(nc net.Conn) bool
}

var _ api.ConnPool = (*Pool)(nil)

type connState uint8

const (
	stateBusy connState = iota
	stateIdle
	stateClosed
)

// Conn is one pooled connection. It embeds the net.Conn from Host.Dial; the
// holder owns it between Get and Put.
type Conn struct {
	net.Conn
	// State is the protocol's per-connection state (for HTTP/1 its
	// response reader); it lives as long as the connection, across reuse.
	State any
	// p is the owning pool; it changes only when DrainTo hands the
	// connection to the next pool, while nobody holds it.
	p      atomic.Pointer[Pool]
	served int
	state  connState // guarded by the owning pool's mu
	idleAt time.Time // guarded by the owning pool's mu
	timer  *time.Timer
	peeker
}

type waiter struct {
	// ch receives a handed-over connection, or nil when capacity came
	// free (or the pool drains) and the waiter should retry.
	ch chan *Conn
}

type unlimited struct{}

func (unlimited) TryAcquire(api.Resource) bool { return true }
func (unlimited) Release(api.Resource)         {}

// New returns an empty pool for host. Connections are dialled with
// host.Dial, which carries the cluster's connect timeout and connection
// stats.
func New(host api.Host, cfg Config) *Pool {
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	p := &Pool{host: host, cfg: cfg, limits: cfg.Limits, conns: map[*Conn]struct{}{}}
	if p.limits == nil {
		p.limits = unlimited{}
	}
	return p
}

// GetIdle returns an idle connection without dialling or waiting, or nil.
// The proxy tries it first so that the common case needs no context (and
// allocates nothing).
func (p *Pool) GetIdle() (*Conn, error) {
	c, err := p.popIdle()
	if c != nil {
		c.served++
	}
	return c, err
}

// Get returns an idle connection (reused = true) or dials a new one. When
// the max_connections breaker is full, Get waits, counted as a pending
// request, until a connection is released or ctx ends; without a deadline
// on ctx it fails at once. Errors are ErrOverflow, ErrClosed or the dial
// error.
//
// Before reusing an idle connection Get peeks at the socket without
// blocking (MSG_PEEK|MSG_DONTWAIT on Linux); one that the server closed, or
// that has unsolicited bytes waiting, is discarded. That costs one syscall
// instead of a background reader goroutine per idle connection.
func (p *Pool) Get(ctx context.Context) (c *Conn, reused bool, err error) {
	backoff := time.Millisecond
	for {
		c, err := p.popIdle()
		if err != nil {
			return nil, false, err
		}
		if c != nil {
			c.served++
			return c, true, nil
		}
		if p.limits.TryAcquire(api.ResConnections) {
			c, err := p.dial(ctx)
			return c, false, err
		}
		c, err = p.wait(ctx, backoff)
		if err != nil {
			return nil, false, err
		}
		if c != nil {
			c.served++
			return c, true, nil
		}
		backoff = min(backoff*2, 50*time.Millisecond)
	}
}

// popIdle takes the newest live idle connection, discarding dead ones.
func (p *Pool) popIdle() (*Conn, error) {
	p.mu.Lock()
	for {
		if p.draining {
			p.mu.Unlock()
			return nil, ErrClosed
		}
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			return nil, nil
		}
		c := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		c.state = stateBusy
		if c.timer != nil {
			c.timer.Stop()
		}
		p.mu.Unlock()
		// A recently idle conn is trusted as is (its holder sets its own
		// deadlines). Before a peek, clear any deadline the last holder
		// left: a past read deadline would make the peek fail.
		if time.Since(c.idleAt) < p.cfg.TrustIdle || (c.Conn.SetDeadline(time.Time{}) == nil && c.alive()) {
			return c, nil
		}
		p.mu.Lock()
		p.forget(c)
		p.mu.Unlock()
		p.closeConn(c)
		p.mu.Lock()
	}
}

func (p *Pool) dial(ctx context.Context) (*Conn, error) {
	nc, err := p.host.Dial(ctx)
	if err != nil {
		p.limits.Release(api.ResConnections)
		p.wakeOne()
		return nil, err // Host.Dial names the cluster and address

	}
	c := &Conn{Conn: nc, served: 1, state: stateBusy}
	c.p.Store(p)
	c.initPeek()
	p.mu.Lock()
	if p.draining {
		p.mu.Unlock()
		_ = nc.Close()
		p.limits.Release(api.ResConnections)
		return nil, ErrClosed
	}
	p.conns[c] = struct{}{}
	p.mu.Unlock()
	return c, nil
}

// wait queues for a connection. It returns a handed-over connection, or
// nil with a nil error when the caller should retry (capacity came free, or
// retry elapsed: the breaker is cluster-wide, so capacity freed by another
// host's pool is noticed by polling).
func (p *Pool) wait(ctx context.Context, retry time.Duration) (*Conn, error) {
	if _, ok := ctx.Deadline(); !ok {
		return nil, ErrOverflow
	}
	if !p.limits.TryAcquire(api.ResPendingRequests) {
		return nil, ErrOverflow
	}
	defer p.limits.Release(api.ResPendingRequests)
	w := &waiter{ch: make(chan *Conn, 1)}
	p.mu.Lock()
	if p.draining {
		p.mu.Unlock()
		return nil, ErrClosed
	}
	p.waiters = append(p.waiters, w)
	p.mu.Unlock()
	t := time.NewTimer(retry)
	defer t.Stop()
	select {
	case c := <-w.ch:
		return c, nil
	case <-t.C:
		return p.cancelWait(w), nil
	case <-ctx.Done():
		if c := p.cancelWait(w); c != nil {
			p.Put(c, true)
		}
		return nil, fmt.Errorf("%w: %w", ErrOverflow, context.Cause(ctx))
	}
}

// cancelWait dequeues w; if w was already served it returns what was sent.
func (p *Pool) cancelWait(w *waiter) *Conn {
	p.mu.Lock()
	for i, x := range p.waiters {
		if x == w {
			p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
			p.mu.Unlock()
			return nil
		}
	}
	p.mu.Unlock()
	return <-w.ch
}

// Put returns c to the pool. A reusable connection goes to a waiter or the
// idle list; otherwise (or when the pool drains, or c reached
// MaxRequestsPerConn) it is closed, unless the pool drains into a next one
// (DrainTo), which then takes it. Put after Close is a no-op.
func (p *Pool) Put(c *Conn, reusable bool) {
	p.mu.Lock()
	if c.state != stateBusy {
		p.mu.Unlock()
		return
	}
	if !reusable || (p.draining && p.next == nil) || (p.cfg.MaxRequestsPerConn > 0 && c.served >= p.cfg.MaxRequestsPerConn) {
		p.forget(c)
		p.mu.Unlock()
		p.closeConn(c)
		return
	}
	if p.draining {
		next := p.next
		p.mu.Unlock()
		p.handOver(c, next, 0)
		return
	}
	p.idleLocked(c, 0)
}

// idleLocked gives c, a connection of p that nobody holds, to the first
// waiter or makes it idle, as if for idleFor already (0 when just put
// back), and unlocks p.mu.
func (p *Pool) idleLocked(c *Conn, idleFor time.Duration) {
	if len(p.waiters) > 0 {
		w := p.waiters[0]
		p.waiters = p.waiters[1:]
		c.state = stateBusy
		p.mu.Unlock()
		w.ch <- c
		return
	}
	c.state = stateIdle
	p.idle = append(p.idle, c)
	if p.cfg.IdleTimeout > 0 {
		c.idleAt = time.Now().Add(-idleFor)
		left := max(p.cfg.IdleTimeout-idleFor, 0)
		if c.timer == nil {
			c.timer = time.AfterFunc(left, c.expire)
		} else {
			c.timer.Reset(left)
		}
	}
	p.mu.Unlock()
}

// Release is shorthand for c's pool's Put.
func (c *Conn) Release(reusable bool) { c.p.Load().Put(c, reusable) }

// Served is how many requests (Gets) this connection has carried.
func (c *Conn) Served() int { return c.served }

// expire closes c if it is still idle and has been for IdleTimeout. It runs
// on c's timer; a stale firing after c was reused and re-idled re-arms.
func (c *Conn) expire() {
	p := c.p.Load()
	p.mu.Lock()
	if c.p.Load() != p || c.state != stateIdle {
		p.mu.Unlock()
		return
	}
	if left := p.cfg.IdleTimeout - time.Since(c.idleAt); left > 0 {
		c.timer.Reset(left)
		p.mu.Unlock()
		return
	}
	for i, x := range p.idle {
		if x == c {
			p.idle = append(p.idle[:i], p.idle[i+1:]...)
			break
		}
	}
	p.forget(c)
	p.mu.Unlock()
	p.closeConn(c)
}

// forget marks c closed and drops it from the open set; p.mu is held.
func (p *Pool) forget(c *Conn) {
	c.state = stateClosed
	delete(p.conns, c)
}

// closeConn closes a forgotten connection, returns its breaker unit and
// lets one waiter retry.
func (p *Pool) closeConn(c *Conn) {
	if c.timer != nil {
		c.timer.Stop()
	}
	_ = c.Conn.Close()
	p.limits.Release(api.ResConnections)
	p.wakeOne()
}

func (p *Pool) wakeOne() {
	p.mu.Lock()
	if len(p.waiters) == 0 {
		p.mu.Unlock()
		return
	}
	w := p.waiters[0]
	p.waiters = p.waiters[1:]
	p.mu.Unlock()
	w.ch <- nil
}

// Drain stops handing out connections, closes the idle ones now and the
// busy ones when they are Put back. Waiting callers get ErrClosed.
func (p *Pool) Drain() {
	p.mu.Lock()
	p.draining = true
	idle := p.idle
	p.idle = nil
	for _, c := range idle {
		p.forget(c)
	}
	waiters := p.waiters
	p.waiters = nil
	p.mu.Unlock()
	for _, c := range idle {
		p.closeConn(c)
	}
	for _, w := range waiters {
		w.ch <- nil
	}
}

// DrainTo drains p like Drain, except that its connections go to the pool
// next returns (the pool of the host that replaces p's host, for the same
// address and protocol) instead of closing: the idle ones now, the busy
// ones when they are Put back reusable. That keeps a cluster's connections
// across a config change that rebuilds its hosts (xDS hitless update).
//
// next is called at most once, outside p's lock, and only if p has
// connections (or may still get some, being another pool's next). If it
// returns anything but a *Pool with the same settings (Limits aside) whose
// host can adopt connections, DrainTo is Drain. Each connection moves from
// p's breaker to next's: if next's max_connections is full, or next
// drains, the connection is closed instead. A moved idle connection keeps
// its idle clock. Waiting callers get ErrClosed, as with Drain.
func (p *Pool) DrainTo(next func() api.ConnPool) {
	p.mu.Lock()
	pass := len(p.conns) > 0 || p.heir
	draining := p.draining
	p.mu.Unlock()
	if draining {
		return
	}
	var n *Pool
	if pass {
		n, _ = next().(*Pool)
	}
	if n == nil || n == p || !n.accepts(p) {
		p.Drain()
		return
	}
	n.mu.Lock()
	n.heir = true
	n.mu.Unlock()
	p.mu.Lock()
	if p.draining {
		p.mu.Unlock()
		return
	}
	p.draining = true
	p.next = n
	idle := p.idle
	p.idle = nil
	idleFor := make([]time.Duration, len(idle))
	for i, c := range idle {
		c.state = stateBusy // as if taken: handOver moves busy conns
		if c.timer != nil {
			c.timer.Stop()
		}
		idleFor[i] = time.Since(c.idleAt) // meaningless (unused) without an idle timeout
	}
	waiters := p.waiters
	p.waiters = nil
	p.mu.Unlock()
	for _, w := range waiters {
		w.ch <- nil
	}
	for i, c := range idle {
		p.handOver(c, n, idleFor[i])
	}
}

// accepts reports whether p can take connections made for old: the same
// connection settings and a host that adopts connections.
func (p *Pool) accepts(old *Pool) bool {
	if _, ok := p.host.(adopter); !ok {
		return false
	}
	return p.cfg.IdleTimeout == old.cfg.IdleTimeout &&
		p.cfg.MaxRequestsPerConn == old.cfg.MaxRequestsPerConn &&
		p.cfg.TrustIdle == old.cfg.TrustIdle
}

// handOver moves c, a busy connection of p that nobody holds, to n, as
// idle for idleFor already: its breaker unit moves from p's limits to n's, its stats to n's
// host. If n has no room or no longer takes connections, c is closed. If n
// drains into a pool of its own (a second config change while c was busy),
// c goes to the last pool of that chain.
func (p *Pool) handOver(c *Conn, n *Pool, idleFor time.Duration) {
	n, open := n.last()
	if !open || !n.limits.TryAcquire(api.ResConnections) {
		p.drop(c)
		return
	}
	if !n.host.(adopter).Adopt(c.Conn) {
		n.limits.Release(api.ResConnections)
		p.drop(c)
		return
	}
	p.mu.Lock()
	if c.state == stateClosed { // Close took it meanwhile
		p.mu.Unlock()
		n.limits.Release(api.ResConnections)
		n.wakeOne()
		return
	}
	p.forget(c)
	c.p.Store(n) // under p.mu: a concurrent expire sees either owner consistently
	p.mu.Unlock()
	p.limits.Release(api.ResConnections)
	p.wakeOne()
	n.mu.Lock()
	if n.draining {
		n.mu.Unlock()
		n.closeConn(c)
		return
	}
	n.conns[c] = struct{}{}
	n.idleLocked(c, idleFor)
}

// last follows DrainTo successors from p to the pool that has none, and
// says whether that one still takes connections.
func (p *Pool) last() (last *Pool, open bool) {
	for {
		p.mu.Lock()
		next, draining := p.next, p.draining
		p.mu.Unlock()
		if next == nil {
			return p, !draining
		}
		p = next
	}
}

// drop closes c, a busy connection of p, unless Close got it first.
func (p *Pool) drop(c *Conn) {
	p.mu.Lock()
	if c.state == stateClosed {
		p.mu.Unlock()
		return
	}
	p.forget(c)
	p.mu.Unlock()
	p.closeConn(c)
}

// Close drains the pool and closes busy connections too.
func (p *Pool) Close() {
	p.Drain()
	p.mu.Lock()
	busy := make([]*Conn, 0, len(p.conns))
	for c := range p.conns {
		p.forget(c)
		busy = append(busy, c)
	}
	p.mu.Unlock()
	for _, c := range busy {
		p.closeConn(c)
	}
}

// Idle is the number of idle connections.
func (p *Pool) Idle() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// Open is the number of open connections, idle or busy.
func (p *Pool) Open() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.conns)
}
