// Package listener runs accept loops, picks a filter chain per accepted
// connection and tracks connections so that a drain can reach every one of
// them.
package listener

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftmesh/weft/api"
)

// Chain is one filter chain of a listener with its match criteria.
type Chain struct {
	Name    string
	Match   Match
	Handler api.ConnHandler
	// Key identifies the chain's config across updates: Update drains the
	// connections of chains whose key is gone and leaves the others be.
	Key string
	// TLS terminates TLS with this config before the handler runs; nil
	// serves the connection as it comes.
	TLS *tls.Config
	// HandshakeTimeout bounds the TLS handshake; 0 means 15s.
	HandshakeTimeout time.Duration
}

// chainSet is what new connections are matched against; Update swaps it.
type chainSet struct {
	chains  []Chain
	def     *Chain
	inspect bool          // run the TLS inspector before choosing a chain
	timeout time.Duration // the inspector's
	cont    bool          // ContinueOnTimeout
}

// newSet is what cfg's chains and inspector settings make.
func newSet(cfg Config) *chainSet {
	s := &chainSet{chains: cfg.Chains, def: cfg.Default, inspect: cfg.Inspect,
		timeout: orDefault(cfg.InspectTimeout), cont: cfg.ContinueOnTimeout}
	for i := range cfg.Chains {
		s.inspect = s.inspect || cfg.Chains[i].Match.NeedsInspector()
	}
	return s
}

// TLSStats is implemented by Stats that count TLS handshakes.
type TLSStats interface {
	// Handshake counts a completed TLS handshake.
	Handshake()
	// HandshakeError counts a connection closed because its ClientHello
	// was malformed or late, or its handshake failed.
	HandshakeError()
}

// Stats are a listener's connection counters.
type Stats interface {
	Accepted()
	Closed()
	// NoChainMatch counts a connection closed because no filter chain
	// matched it.
	NoChainMatch()
}

// Config describes one listener.
type Config struct {
	Name    string
	Address string // host:port for net.Listen
	Chains  []Chain
	Default *Chain // used when no chain matches; nil closes the connection
	Stats   Stats  // may be nil
	Logger  *slog.Logger
	// Inspect runs the TLS inspector (listener filter tls_inspector) even
	// when no chain matches on what it finds; it always runs when one does.
	Inspect bool
	// InspectTimeout bounds the wait for the ClientHello
	// (listener_filters_timeout); 0 means 15s as in Envoy.
	InspectTimeout time.Duration
	// ContinueOnTimeout picks a chain without the inspector's findings
	// when the ClientHello is late, instead of closing.
	ContinueOnTimeout bool
}

// Listener is one bound accept loop.
type Listener struct {
	cfg    Config
	set    atomic.Pointer[chainSet]
	ln     net.Listener
	ctx    context.Context
	cancel context.CancelFunc

	mu       sync.Mutex
	conns    map[*Conn]struct{}
	draining bool
	serving  bool          // Serve was called
	done     chan struct{} // closed when accept loop exits (or Drain without Serve)
	doneOnce sync.Once
	wg       sync.WaitGroup
	active   atomic.Int64
}

// Listen binds the address; Serve must be called to accept.
func Listen(cfg Config) (*Listener, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	lc := net.ListenConfig{}
	ln, err := lc.Listen(context.Background(), "tcp", cfg.Address)
	if err != nil {
		return nil, fmt.Errorf("listener %q: %w", cfg.Name, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &Listener{cfg: cfg, ln: ln, ctx: ctx, cancel: cancel, conns: map[*Conn]struct{}{}, done: make(chan struct{})}
	l.set.Store(newSet(cfg))
	return l, nil
}

// Update replaces the filter chains: new connections get the new chains at
// once, and connections served by a chain whose Key is not among the new
// ones are told to drain (finish what they are doing, then close), as
// Envoy does on a listener update. Connections of kept chains carry on.
// It returns how many connections were told to drain.
func (l *Listener) Update(chains []Chain, def *Chain) int {
	cfg := l.cfg
	cfg.Chains, cfg.Default = chains, def
	return l.UpdateConfig(cfg)
}

// UpdateConfig is Update taking the chains, the default chain and the
// inspector settings (Inspect, InspectTimeout, ContinueOnTimeout) of cfg;
// the rest of cfg is ignored.
func (l *Listener) UpdateConfig(cfg Config) int {
	chains, def := cfg.Chains, cfg.Default
	l.set.Store(newSet(cfg))
	keep := map[string]bool{}
	for _, c := range chains {
		keep[c.Key] = true
	}
	if def != nil {
		keep[def.Key] = true
	}
	l.mu.Lock()
	var hooks []func()
	for c := range l.conns {
		if keep[c.chain] {
			continue
		}
		if h := c.takeHook(); h != nil {
			hooks = append(hooks, h)
		}
	}
	l.mu.Unlock()
	for _, h := range hooks {
		h()
	}
	return len(hooks)
}

// Name is the listener's name.
func (l *Listener) Name() string { return l.cfg.Name }

// Addr is the bound address.
func (l *Listener) Addr() net.Addr { return l.ln.Addr() }

// Active is the number of open downstream connections.
func (l *Listener) Active() int64 { return l.active.Load() }

// Serve runs the accept loop until Drain or Close. Temporary accept errors
// (such as running out of file descriptors) back off instead of spinning.
func (l *Listener) Serve() {
	defer l.doneOnce.Do(func() { close(l.done) })
	l.mu.Lock()
	l.serving = true
	draining := l.draining
	l.mu.Unlock()
	if draining {
		return
	}
	var backoff time.Duration
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if backoff == 0 {
				backoff = 5 * time.Millisecond
			} else if backoff *= 2; backoff > time.Second {
				backoff = time.Second
			}
			l.cfg.Logger.Warn("accept failed", "listener", l.cfg.Name, "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
				continue
			case <-l.ctx.Done():
				return
			}
		}
		backoff = 0
		l.serveConn(c)
	}
}

func (l *Listener) serveConn(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	set := l.set.Load()
	if !set.inspect {
		l.start(c, l.pick(set, c, Inspected{}))
		return
	}
	// The inspector waits for the client: off the accept loop, and closed
	// by a forced shutdown.
	go func() {
		stop := context.AfterFunc(l.ctx, func() { _ = c.Close() })
		in, err := inspect(c, set.timeout)
		if !stop() {
			return
		}
		if err != nil && set.cont && isTimeout(err) {
			in, err = Inspected{}, nil
		}
		if err != nil {
			l.tlsError()
			l.cfg.Logger.Debug("tls inspector closed the connection", "listener", l.cfg.Name, "remote", c.RemoteAddr(), "err", err)
			_ = c.Close()
			return
		}
		l.start(c, l.pick(set, c, in))
	}()
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func orDefault(d time.Duration) time.Duration {
	if d <= 0 {
		return 15 * time.Second
	}
	return d
}

func (l *Listener) tlsError() {
	if ts, ok := l.cfg.Stats.(TLSStats); ok {
		ts.HandshakeError()
	}
}

// start registers c with the chain ch (nil: none matched) and runs the
// chain's handler on its own goroutine, after the TLS handshake when the
// chain terminates TLS.
func (l *Listener) start(c net.Conn, ch *Chain) {
	if ch == nil {
		if l.cfg.Stats != nil {
			l.cfg.Stats.NoChainMatch()
		}
		l.cfg.Logger.Debug("no filter chain matched", "listener", l.cfg.Name, "remote", c.RemoteAddr())
		_ = c.Close()
		return
	}
	tc := &Conn{Conn: c, l: l, chain: ch.Key}
	if ch.TLS != nil {
		tc.Conn = tls.Server(c, ch.TLS)
	}
	l.mu.Lock()
	if l.draining {
		l.mu.Unlock()
		_ = c.Close()
		return
	}
	l.conns[tc] = struct{}{}
	l.wg.Add(1)
	l.mu.Unlock()
	l.active.Add(1)
	if l.cfg.Stats != nil {
		l.cfg.Stats.Accepted()
	}
	// The handler owns tc and closes it, possibly from another goroutine
	// after ServeConn returned (the HTTP connection manager parks idle
	// connections on fresh goroutines); Close deregisters it.
	if ch.TLS == nil {
		go ch.Handler.ServeConn(l.ctx, tc)
		return
	}
	go func() {
		if err := l.handshake(tc, ch.HandshakeTimeout); err != nil {
			l.tlsError()
			l.cfg.Logger.Debug("TLS handshake failed", "listener", l.cfg.Name, "remote", c.RemoteAddr(), "err", err)
			_ = tc.Close()
			return
		}
		if ts, ok := l.cfg.Stats.(TLSStats); ok {
			ts.Handshake()
		}
		ch.Handler.ServeConn(l.ctx, tc)
	}()
}

// handshake completes tc's TLS handshake within timeout (0: 15s).
func (l *Listener) handshake(tc *Conn, timeout time.Duration) error {
	t := tc.Conn.(*tls.Conn)
	_ = t.SetDeadline(time.Now().Add(orDefault(timeout)))
	if err := t.HandshakeContext(l.ctx); err != nil {
		return err
	}
	return t.SetDeadline(time.Time{})
}

func (l *Listener) release(tc *Conn) {
	l.mu.Lock()
	delete(l.conns, tc)
	l.mu.Unlock()
	l.active.Add(-1)
	if l.cfg.Stats != nil {
		l.cfg.Stats.Closed()
	}
	l.wg.Done()
}

func (l *Listener) pick(set *chainSet, c net.Conn, in Inspected) *Chain {
	if ch := Select(set.chains, c.LocalAddr(), c.RemoteAddr(), in); ch != nil {
		return ch
	}
	return set.def
}

// Drain stops accepting and tells every open connection to finish what it
// is doing and close. It returns at once; Wait blocks until they are gone.
func (l *Listener) Drain() {
	l.mu.Lock()
	if l.draining {
		l.mu.Unlock()
		return
	}
	l.draining = true
	_ = l.ln.Close()
	if !l.serving {
		// No accept loop will close done: a listener bound but never
		// served (a config that failed after binding) must not hang Close.
		l.doneOnce.Do(func() { close(l.done) })
	}
	hooks := make([]func(), 0, len(l.conns))
	for c := range l.conns {
		if h := c.takeHook(); h != nil {
			hooks = append(hooks, h)
		}
	}
	l.mu.Unlock()
	for _, h := range hooks {
		h()
	}
}

// Wait blocks until every connection has closed or ctx ends; then it
// closes whatever is left and returns how many were forced.
func (l *Listener) Wait(ctx context.Context) int {
	idle := make(chan struct{})
	go func() { l.wg.Wait(); close(idle) }()
	select {
	case <-idle:
		<-l.done
		return 0
	case <-ctx.Done():
	}
	l.mu.Lock()
	n := len(l.conns)
	for c := range l.conns {
		_ = c.Conn.Close()
	}
	l.mu.Unlock()
	l.cancel()
	<-idle
	<-l.done
	return n
}

// Close drains and force-closes at once.
func (l *Listener) Close() {
	l.Drain()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	l.Wait(ctx)
}

// Conn is an accepted connection tracked by its listener. It implements
// api.DrainNotifier.
type Conn struct {
	net.Conn
	l     *Listener
	chain string // Key of the chain serving it
	mu    sync.Mutex
	hook  func()
	shut  bool // the hook was run (or will never be)
	// pending: told to drain before a hook was registered
	pending bool
	closed  sync.Once
}

// Close closes the socket and, the first time, deregisters the connection
// from its listener.
func (c *Conn) Close() error {
	err := c.Conn.Close()
	c.closed.Do(func() { c.l.release(c) })
	return err
}

// OnDrain registers the drain hook; if the connection was already told
// to drain (its listener draining, or its chain replaced before the hook
// was registered) the hook runs at once.
func (c *Conn) OnDrain(hook func()) {
	c.l.mu.Lock()
	draining := c.l.draining
	c.l.mu.Unlock()
	c.mu.Lock()
	if c.shut {
		c.mu.Unlock()
		return
	}
	if (draining || c.pending) && hook != nil {
		c.shut = true
		c.mu.Unlock()
		hook()
		return
	}
	c.hook = hook
	c.mu.Unlock()
}

// takeHook returns the drain hook to run, once; a connection whose handler
// has not registered one yet remembers that it must drain.
func (c *Conn) takeHook() func() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.shut {
		return nil
	}
	h := c.hook
	c.hook = nil
	if h == nil {
		c.pending = true
		return nil
	}
	c.shut = true
	return h
}

// Unwrap returns the connection under the listener's bookkeeping: the
// *tls.Conn on a TLS chain (for its negotiated ALPN), else the socket.
func (c *Conn) Unwrap() net.Conn { return c.Conn }

// SyscallConn exposes the raw socket for readiness waits.
func (c *Conn) SyscallConn() (syscallConn, error) {
	if sc, ok := c.Conn.(interface {
		SyscallConn() (syscallConn, error)
	}); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}

// CloseWrite half-closes the connection when the socket supports it (on
// TLS: sends close_notify).
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Close()
}
