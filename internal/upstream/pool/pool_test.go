package pool

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/api"
)

type testHost struct {
	addr  string
	dials atomic.Int64
	stats api.HostStats
	act   api.Gauge
}

func (h *testHost) Address() string        { return h.addr }
func (h *testHost) Cluster() string        { return "test" }
func (h *testHost) Healthy() bool          { return true }
func (h *testHost) Metadata(string) string { return "" }
func (h *testHost) Dial(ctx context.Context) (net.Conn, error) {
	h.dials.Add(1)
	var d net.Dialer
	return d.DialContext(ctx, "tcp", h.addr)
}
func (h *testHost) Pool(string, func(api.Host) api.ConnPool) api.ConnPool { return nil }
func (h *testHost) Stats() *api.HostStats                                 { return &h.stats }
func (h *testHost) ActiveRequests() *api.Gauge                            { return &h.act }

// limits is a test breaker with a hook when a caller starts waiting.
type limits struct {
	max     [4]int64
	cur     [4]atomic.Int64
	pending chan struct{}
}

func newLimits(maxConns, maxPending int64) *limits {
	return &limits{max: [4]int64{maxConns, maxPending, 1 << 30, 3}, pending: make(chan struct{}, 16)}
}

func (l *limits) TryAcquire(r api.Resource) bool {
	for {
		v := l.cur[r].Load()
		if v >= l.max[r] {
			return false
		}
		if l.cur[r].CompareAndSwap(v, v+1) {
			if r == api.ResPendingRequests {
				select {
				case l.pending <- struct{}{}:
				default: // nobody is counting (a stress test)
				}
			}
			return true
		}
	}
}

func (l *limits) Release(r api.Resource) { l.cur[r].Add(-1) }

// server is a loopback line-echo server that reports closed conns.
type server struct {
	ln      net.Listener
	closed  chan struct{} // one value per server-side conn that ended
	accepts atomic.Int64
	// mode decides what the server does after answering one line.
	mode atomic.Int32
}

const (
	modeEcho       = iota // keep echoing
	modeCloseOne          // answer one line then close
	modeChatterOne        // answer one line then send unsolicited bytes
)

func newServer(t *testing.T) *server {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &server{ln: ln, closed: make(chan struct{}, 1024)}
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
	)
	acceptDone := make(chan struct{})
	go func() {
		defer close(acceptDone)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepts.Add(1)
			mu.Lock()
			conns = append(conns, c)
			wg.Add(1)
			mu.Unlock()
			go func() { defer wg.Done(); s.serve(c) }()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-acceptDone
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return s
}

func (s *server) serve(c net.Conn) {
	defer func() {
		c.Close()
		s.closed <- struct{}{}
	}()
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		mode := s.mode.Load()
		if mode == modeChatterOne {
			// One write, so the stray bytes arrive with the answer.
			line += "surprise\n"
		}
		if _, err := io.WriteString(c, line); err != nil {
			return
		}
		if mode == modeCloseOne {
			return
		}
	}
}

func (s *server) waitClosed(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-s.closed:
		case <-time.After(5 * time.Second):
			t.Fatal("server conn did not close")
		}
	}
}

func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg)+1)
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatal(err)
	}
	if string(buf) != msg+"\n" {
		t.Fatalf("echo %q, want %q", buf, msg)
	}
}

func ctxTimeout(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func setup(t *testing.T, cfg Config) (*server, *testHost, *Pool) {
	s := newServer(t)
	h := &testHost{addr: s.ln.Addr().String()}
	p := New(h, cfg)
	t.Cleanup(p.Close)
	return s, h, p
}

func TestReuseLIFO(t *testing.T) {
	_, h, p := setup(t, Config{})
	ctx := ctxTimeout(t, 5*time.Second)
	a, reused, err := p.Get(ctx)
	if err != nil || reused {
		t.Fatalf("first Get: reused=%v err=%v", reused, err)
	}
	b, _, err := p.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, a, "a")
	roundTrip(t, b, "b")
	p.Put(a, true)
	p.Put(b, true)
	if p.Idle() != 2 {
		t.Fatalf("idle = %d", p.Idle())
	}
	c, reused, err := p.Get(ctx)
	if err != nil || !reused || c != b {
		t.Fatalf("Get = %p reused=%v err=%v, want newest idle %p", c, reused, err, b)
	}
	roundTrip(t, c, "again")
	if c.Served() != 2 {
		t.Errorf("served = %d", c.Served())
	}
	p.Put(c, true)
	if got := h.dials.Load(); got != 2 {
		t.Errorf("dials = %d, want 2", got)
	}
}

func TestIdleTimeout(t *testing.T) {
	s, _, p := setup(t, Config{IdleTimeout: 30 * time.Millisecond})
	ctx := ctxTimeout(t, 5*time.Second)
	c, _, err := p.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	roundTrip(t, c, "x")
	p.Put(c, true)
	s.waitClosed(t, 1) // the pool's timer closed it; the server saw EOF
	if p.Open() != 0 || p.Idle() != 0 {
		t.Errorf("open=%d idle=%d after idle timeout", p.Open(), p.Idle())
	}
}

func TestIdleTimeoutRearmsAfterReuse(t *testing.T) {
	s, _, p := setup(t, Config{IdleTimeout: 40 * time.Millisecond})
	ctx := ctxTimeout(t, 5*time.Second)
	c, _, _ := p.Get(ctx)
	p.Put(c, true)
	c2, reused, _ := p.Get(ctx)
	if !reused || c2 != c {
		t.Fatal("not reused")
	}
	p.Put(c2, true)
	s.waitClosed(t, 1)
	if p.Open() != 0 {
		t.Errorf("open = %d", p.Open())
	}
}

func TestServerClosedIdleConnIsNotReused(t *testing.T) {
	tests := []struct {
		name string
		mode int32
	}{
		{"server closed", modeCloseOne},
		{"unsolicited bytes", modeChatterOne},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, h, p := setup(t, Config{})
			s.mode.Store(tt.mode)
			ctx := ctxTimeout(t, 5*time.Second)
			c, _, err := p.Get(ctx)
			if err != nil {
				t.Fatal(err)
			}
			roundTrip(t, c, "one")
			if tt.mode == modeCloseOne {
				s.waitClosed(t, 1)
			}
			p.Put(c, true)
			s.mode.Store(modeEcho)
			c2, reused, err := p.Get(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if reused || c2 == c {
				t.Fatal("dead idle connection was handed out")
			}
			roundTrip(t, c2, "two")
			p.Put(c2, true)
			if h.dials.Load() != 2 || p.Open() != 1 {
				t.Errorf("dials=%d open=%d", h.dials.Load(), p.Open())
			}
		})
	}
}

func TestMaxRequestsPerConn(t *testing.T) {
	s, h, p := setup(t, Config{MaxRequestsPerConn: 2})
	ctx := ctxTimeout(t, 5*time.Second)
	for i := range 5 {
		c, _, err := p.Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, c, fmt.Sprint(i))
		p.Put(c, true)
	}
	if got := h.dials.Load(); got != 3 {
		t.Errorf("dials = %d, want 3 for 5 requests at 2 per conn", got)
	}
	s.waitClosed(t, 2)
}

func TestBreakerWaitsForReleasedConn(t *testing.T) {
	tests := []struct {
		name     string
		reusable bool
		reused   bool
	}{
		{"handed over", true, true},
		{"capacity freed", false, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLimits(1, 10)
			_, h, p := setup(t, Config{Limits: l})
			ctx := ctxTimeout(t, 5*time.Second)
			first, _, err := p.Get(ctx)
			if err != nil {
				t.Fatal(err)
			}
			type result struct {
				c      *Conn
				reused bool
				err    error
			}
			done := make(chan result, 1)
			go func() {
				c, reused, err := p.Get(ctx)
				done <- result{c, reused, err}
			}()
			select {
			case <-l.pending:
			case <-time.After(5 * time.Second):
				t.Fatal("second Get never became pending")
			}
			p.Put(first, tt.reusable)
			var r result
			select {
			case r = <-done:
			case <-time.After(5 * time.Second):
				t.Fatal("waiter not served")
			}
			if r.err != nil || r.reused != tt.reused {
				t.Fatalf("reused=%v err=%v", r.reused, r.err)
			}
			if tt.reused && r.c != first {
				t.Error("waiter did not get the released conn")
			}
			roundTrip(t, r.c, "ok")
			p.Put(r.c, true)
			if l.cur[api.ResPendingRequests].Load() != 0 || l.cur[api.ResConnections].Load() != 1 {
				t.Errorf("breaker counts pending=%d conns=%d", l.cur[api.ResPendingRequests].Load(), l.cur[api.ResConnections].Load())
			}
			if want := int64(2); !tt.reused && h.dials.Load() != want {
				t.Errorf("dials = %d", h.dials.Load())
			}
		})
	}
}

func TestBreakerOverflow(t *testing.T) {
	tests := []struct {
		name       string
		maxPending int64
		ctx        func(t *testing.T) context.Context
	}{
		{"deadline passes", 10, func(t *testing.T) context.Context { return ctxTimeout(t, 30*time.Millisecond) }},
		{"no deadline", 10, func(*testing.T) context.Context { return context.Background() }},
		{"pending full", 0, func(t *testing.T) context.Context { return ctxTimeout(t, 5*time.Second) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLimits(1, tt.maxPending)
			_, _, p := setup(t, Config{Limits: l})
			c, _, err := p.Get(ctxTimeout(t, 5*time.Second))
			if err != nil {
				t.Fatal(err)
			}
			_, _, err = p.Get(tt.ctx(t))
			if !errors.Is(err, ErrOverflow) {
				t.Fatalf("err = %v, want ErrOverflow", err)
			}
			p.Put(c, true)
			if l.cur[api.ResPendingRequests].Load() != 0 {
				t.Error("pending budget leaked")
			}
		})
	}
}

func TestDialErrorReleasesBreaker(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: connection refused
	l := newLimits(1, 1)
	p := New(&testHost{addr: addr}, Config{Limits: l})
	t.Cleanup(p.Close)
	if _, _, err := p.Get(ctxTimeout(t, 5*time.Second)); err == nil {
		t.Fatal("dial to closed port succeeded")
	}
	if l.cur[api.ResConnections].Load() != 0 {
		t.Error("connection budget leaked on dial error")
	}
}

func TestDrainAndClose(t *testing.T) {
	s, _, p := setup(t, Config{})
	ctx := ctxTimeout(t, 5*time.Second)
	idle, _, _ := p.Get(ctx)
	busy, _, _ := p.Get(ctx)
	p.Put(idle, true)
	p.Drain()
	s.waitClosed(t, 1) // the idle one
	if _, _, err := p.Get(ctx); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Drain: %v", err)
	}
	roundTrip(t, busy, "still works")
	p.Put(busy, true) // closes: the pool is draining
	s.waitClosed(t, 1)

	_, _, p2 := setup(t, Config{})
	c, _, _ := p2.Get(ctx)
	p2.Close()
	if _, err := c.Write([]byte("x\n")); err == nil {
		t.Error("Close left a busy conn open")
	}
	p2.Put(c, true) // no-op after Close
	if p2.Open() != 0 {
		t.Errorf("open = %d", p2.Open())
	}
}

func TestDrainWakesWaiters(t *testing.T) {
	l := newLimits(1, 10)
	_, _, p := setup(t, Config{Limits: l})
	ctx := ctxTimeout(t, 5*time.Second)
	c, _, _ := p.Get(ctx)
	done := make(chan error, 1)
	go func() {
		_, _, err := p.Get(ctx)
		done <- err
	}()
	<-l.pending
	p.Drain()
	select {
	case err := <-done:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("waiter err = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("waiter not woken by Drain")
	}
	p.Put(c, true)
}

func TestConcurrentGetPut(t *testing.T) {
	l := newLimits(4, 1000)
	_, _, p := setup(t, Config{Limits: l})
	ctx := ctxTimeout(t, 20*time.Second)
	go func() {
		for range l.pending { // drain the hook channel
		}
	}()
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := range 50 {
				c, _, err := p.Get(ctx)
				if err != nil {
					t.Error(err)
					return
				}
				roundTrip(t, c, fmt.Sprintf("%d-%d", g, i))
				p.Put(c, i%7 != 0)
			}
		})
	}
	wg.Wait()
	close(l.pending)
	if n := l.cur[api.ResConnections].Load(); n != int64(p.Open()) || n > 4 {
		t.Errorf("breaker says %d conns, pool has %d", n, p.Open())
	}
}

func TestGetPutDoesNotAllocate(t *testing.T) {
	_, _, p := setup(t, Config{})
	ctx := ctxTimeout(t, 5*time.Second)
	c, _, err := p.Get(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p.Put(c, true)
	n := testing.AllocsPerRun(1000, func() {
		c, _, err := p.Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		p.Put(c, true)
	})
	if n != 0 {
		t.Errorf("%v allocs per Get/Put", n)
	}
}

func BenchmarkGetPut(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { io.Copy(io.Discard, c); c.Close() }()
		}
	}()
	for _, par := range []bool{false, true} {
		b.Run(fmt.Sprintf("parallel=%v", par), func(b *testing.B) {
			p := New(&testHost{addr: ln.Addr().String()}, Config{Limits: newLimits(1024, 1024)})
			defer p.Close()
			ctx := context.Background()
			b.ReportAllocs()
			if !par {
				for b.Loop() {
					c, _, err := p.Get(ctx)
					if err != nil {
						b.Fatal(err)
					}
					p.Put(c, true)
				}
				return
			}
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					c, _, err := p.Get(ctx)
					if err != nil {
						b.Fatal(err)
					}
					p.Put(c, true)
				}
			})
		})
	}
}
