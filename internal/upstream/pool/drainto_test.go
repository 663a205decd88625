package pool

import (
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/api"
)

// adoptHost is a testHost that adopts connections (as upstream.Host does),
// unless refuse is set.
type adoptHost struct {
	testHost
	refuse  bool
	adopted atomic.Int64
}

func (h *adoptHost) Adopt(net.Conn) bool {
	if h.refuse {
		return false
	}
	h.adopted.Add(1)
	return true
}

// twoPools returns a pool p with the given open connections (busy ones
// first, then idle ones), and a pool n of a second adopting host of the
// same address, each with its own breaker.
func twoPools(t *testing.T, cfg Config, busy, idle int, nLimits *limits) (s *server, p, n *Pool, pl *limits, held []*Conn, nh *adoptHost) {
	t.Helper()
	s = newServer(t)
	addr := s.ln.Addr().String()
	pl = newLimits(100, 100)
	pcfg := cfg
	pcfg.Limits = pl
	p = New(&adoptHost{testHost: testHost{addr: addr}}, pcfg)
	t.Cleanup(p.Close)
	nh = &adoptHost{testHost: testHost{addr: addr}}
	ncfg := cfg
	ncfg.Limits = nLimits
	n = New(nh, ncfg)
	t.Cleanup(n.Close)
	ctx := ctxTimeout(t, 5*time.Second)
	var all []*Conn
	for range busy + idle {
		c, _, err := p.Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		roundTrip(t, c, "x")
		all = append(all, c)
	}
	for _, c := range all[busy:] {
		p.Put(c, true)
	}
	return s, p, n, pl, all[:busy], nh
}

func TestDrainTo(t *testing.T) {
	tests := []struct {
		name     string
		ncfg     func(*Config)
		nMax     int64
		refuse   bool
		nDrained bool
		// want is how many of the 2 idle + 1 busy connections n ends with.
		want int
	}{
		{name: "same settings", nMax: 100, want: 3},
		{name: "next breaker has room for two", nMax: 2, want: 2},
		{name: "next breaker full", nMax: 0, want: 0},
		{name: "other idle timeout", ncfg: func(c *Config) { c.IdleTimeout = time.Minute }, nMax: 100, want: 0},
		{name: "other max requests", ncfg: func(c *Config) { c.MaxRequestsPerConn = 7 }, nMax: 100, want: 0},
		{name: "host does not adopt", refuse: true, nMax: 100, want: 0},
		{name: "next draining", nDrained: true, nMax: 100, want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nl := newLimits(tt.nMax, 100)
			s, p, n, pl, held, nh := twoPools(t, Config{}, 1, 2, nl)
			nh.refuse = tt.refuse
			if tt.ncfg != nil {
				tt.ncfg(&n.cfg)
			}
			if tt.nDrained {
				n.Drain()
			}
			calls := 0
			p.DrainTo(func() api.ConnPool { calls++; return n })
			if calls != 1 {
				t.Fatalf("next called %d times", calls)
			}
			if _, err := p.GetIdle(); !errors.Is(err, ErrClosed) {
				t.Errorf("GetIdle on the drained pool: %v", err)
			}
			// The busy one moves when it comes back.
			held[0].Release(true)
			if p.Open() != 0 || pl.cur[api.ResConnections].Load() != 0 {
				t.Errorf("old pool: open %d, breaker %d", p.Open(), pl.cur[api.ResConnections].Load())
			}
			if got := n.Open(); got != tt.want || n.Idle() != tt.want && !tt.nDrained {
				t.Errorf("next pool: open %d idle %d, want %d", got, n.Idle(), tt.want)
			}
			if got := nl.cur[api.ResConnections].Load(); got != int64(tt.want) {
				t.Errorf("next breaker = %d, want %d", got, tt.want)
			}
			if got := nh.adopted.Load(); got != int64(tt.want) {
				t.Errorf("adopted %d, want %d", got, tt.want)
			}
			s.waitClosed(t, 3-tt.want)
			// The moved connections serve the next pool, without a dial.
			ctx := ctxTimeout(t, 5*time.Second)
			for range tt.want {
				c, reused, err := n.Get(ctx)
				if err != nil || !reused {
					t.Fatalf("Get from next: reused=%v err=%v", reused, err)
				}
				roundTrip(t, c, "again")
				defer c.Release(true)
			}
			if s.accepts.Load() != 3 || nh.dials.Load() != 0 {
				t.Errorf("accepts %d, next dials %d", s.accepts.Load(), nh.dials.Load())
			}
		})
	}
}

func TestDrainToWithoutConnsIsDrain(t *testing.T) {
	_, p, n, _, _, _ := twoPools(t, Config{}, 0, 0, newLimits(10, 10))
	p.DrainTo(func() api.ConnPool { t.Fatal("next made for an empty pool"); return n })
	if _, err := p.GetIdle(); !errors.Is(err, ErrClosed) {
		t.Errorf("GetIdle: %v", err)
	}
}

func TestDrainToHandsToWaiter(t *testing.T) {
	nl := newLimits(0, 10) // n cannot dial: its caller waits
	_, p, n, _, held, _ := twoPools(t, Config{}, 1, 0, nl)
	got := make(chan *Conn, 1)
	go func() {
		c, reused, err := n.Get(ctxTimeout(t, 5*time.Second))
		if err != nil || !reused {
			t.Errorf("waiter: reused=%v err=%v", reused, err)
		}
		got <- c
	}()
	select {
	case <-nl.pending:
	case <-time.After(5 * time.Second):
		t.Fatal("Get did not wait")
	}
	nl.max[api.ResConnections] = 1 // room for the one moving in
	p.DrainTo(func() api.ConnPool { return n })
	held[0].Release(true)
	select {
	case c := <-got:
		if c != held[0] || c.Served() != 2 {
			t.Errorf("waiter got %p served %d, want the handed conn %p", c, c.Served(), held[0])
		}
		c.Release(true)
	case <-time.After(5 * time.Second):
		t.Fatal("waiter not served")
	}
}

func TestDrainToFollowsChain(t *testing.T) {
	// A connection busy across two handovers goes to the last pool.
	_, p, n, _, held, _ := twoPools(t, Config{}, 1, 1, newLimits(10, 10))
	p.DrainTo(func() api.ConnPool { return n })
	third := New(&adoptHost{testHost: testHost{addr: n.host.Address()}}, Config{Limits: newLimits(10, 10)})
	t.Cleanup(third.Close)
	n.DrainTo(func() api.ConnPool { return third })
	held[0].Release(true)
	if n.Open() != 0 || third.Open() != 2 || third.Idle() != 2 {
		t.Errorf("open: n %d third %d (idle %d), want 0, 2, 2", n.Open(), third.Open(), third.Idle())
	}
}

func TestDrainToKeepsIdleClock(t *testing.T) {
	s, p, n, _, _, _ := twoPools(t, Config{IdleTimeout: 80 * time.Millisecond}, 0, 1, newLimits(10, 10))
	since := p.idle[0].idleAt
	time.Sleep(20 * time.Millisecond)
	p.DrainTo(func() api.ConnPool { return n })
	n.mu.Lock()
	if len(n.idle) != 1 {
		n.mu.Unlock()
		t.Fatalf("idle = %d", len(n.idle))
	}
	d := n.idle[0].idleAt.Sub(since)
	n.mu.Unlock()
	if d < -5*time.Millisecond || d > 5*time.Millisecond {
		t.Errorf("idle since moved by %v", d)
	}
	s.waitClosed(t, 1) // and the timer still closes it
	if n.Open() != 0 {
		t.Errorf("open = %d after idle timeout", n.Open())
	}
}

func TestDrainToConcurrent(t *testing.T) {
	// Gets, Puts and expiries race the handover; every breaker unit and
	// connection ends up accounted for.
	nl := newLimits(4, 100)
	s, p, n, pl, _, _ := twoPools(t, Config{IdleTimeout: time.Millisecond}, 0, 0, nl)
	ctx := ctxTimeout(t, 10*time.Second)
	done := make(chan struct{})
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			for {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				c, _, err := p.Get(ctx)
				if errors.Is(err, ErrClosed) {
					c, _, err = n.Get(ctx)
				}
				if err != nil {
					errs <- err
					return
				}
				c.Release(true)
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	p.DrainTo(func() api.ConnPool { return n })
	time.Sleep(20 * time.Millisecond)
	close(done)
	for range 8 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if p.Open() != 0 || pl.cur[api.ResConnections].Load() != 0 {
		t.Errorf("old: open %d breaker %d", p.Open(), pl.cur[api.ResConnections].Load())
	}
	// Idle timers may be closing conns right now: between forgetting one
	// and returning its unit the counts differ for a moment.
	deadline := time.Now().Add(5 * time.Second)
	for nl.cur[api.ResConnections].Load() != int64(n.Open()) {
		if time.Now().After(deadline) {
			t.Fatalf("next: breaker %d, open %d", nl.cur[api.ResConnections].Load(), n.Open())
		}
		time.Sleep(time.Millisecond)
	}
	n.Close()
	s.waitClosed(t, int(s.accepts.Load()))
}
