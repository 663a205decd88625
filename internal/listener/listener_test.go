package listener

import (
	"context"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/api"
)

func TestCompileMatch(t *testing.T) {
	cases := []struct {
		name    string
		in      *listenerv3.FilterChainMatch
		wantErr bool
		check   func(Match) bool
	}{
		{"nil matches all", nil, false, func(m Match) bool { return m.DestinationPort == 0 && m.Prefixes == nil }},
		{"port and prefix", &listenerv3.FilterChainMatch{
			DestinationPort: wrapperspb.UInt32(8080),
			PrefixRanges:    []*corev3.CidrRange{{AddressPrefix: "127.0.0.0", PrefixLen: wrapperspb.UInt32(8)}},
		}, false, func(m Match) bool {
			return m.DestinationPort == 8080 && len(m.Prefixes) == 1 && m.Prefixes[0] == netip.MustParsePrefix("127.0.0.0/8")
		}},
		{"source ports", &listenerv3.FilterChainMatch{SourcePorts: []uint32{1, 2}}, false, func(m Match) bool {
			return m.SourcePorts[1] && m.SourcePorts[2] && !m.SourcePorts[3]
		}},
		{"bad prefix", &listenerv3.FilterChainMatch{PrefixRanges: []*corev3.CidrRange{{AddressPrefix: "nope"}}}, true, nil},
		{"prefix length too long", &listenerv3.FilterChainMatch{SourcePrefixRanges: []*corev3.CidrRange{{AddressPrefix: "10.0.0.0", PrefixLen: wrapperspb.UInt32(40)}}}, true, nil},
		{"server names", &listenerv3.FilterChainMatch{ServerNames: []string{"A.example", "*.b.example"}}, false, func(m Match) bool {
			return m.NeedsInspector() && m.ServerNames[0] == "a.example" && m.ServerNames[1] == "*.b.example"
		}},
		{"bad wildcard", &listenerv3.FilterChainMatch{ServerNames: []string{"a.*.example"}}, true, nil},
		{"tls transport", &listenerv3.FilterChainMatch{TransportProtocol: "tls"}, false, func(m Match) bool { return m.NeedsInspector() }},
		{"unknown transport", &listenerv3.FilterChainMatch{TransportProtocol: "quic"}, true, nil},
		{"raw_buffer accepted", &listenerv3.FilterChainMatch{TransportProtocol: "raw_buffer"}, false, func(Match) bool { return true }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := CompileMatch(tc.in)
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, wantErr %v", err, tc.wantErr)
			}
			if err == nil && !tc.check(m) {
				t.Fatalf("unexpected match %+v", m)
			}
		})
	}
}

type counts struct{ accepted, closed, nomatch chan struct{} }

func (c counts) Accepted()     { c.accepted <- struct{}{} }
func (c counts) Closed()       { c.closed <- struct{}{} }
func (c counts) NoChainMatch() { c.nomatch <- struct{}{} }

func newCounts() counts {
	return counts{make(chan struct{}, 16), make(chan struct{}, 16), make(chan struct{}, 16)}
}

func wait(t *testing.T, ch chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("timed out waiting for %s", what)
	}
}

// TestDrainRunsHooksAndWaits: Drain stops accepting and calls each
// connection's hook; Wait returns once handlers closed their connections.
func TestDrainRunsHooksAndWaits(t *testing.T) {
	st := newCounts()
	served := make(chan net.Conn, 1)
	h := api.ConnHandlerFunc(func(ctx context.Context, c net.Conn) {
		c.(api.DrainNotifier).OnDrain(func() { _ = c.Close() })
		served <- c
	})
	l, err := Listen(Config{Name: "t", Address: "127.0.0.1:0", Chains: []Chain{{Handler: h}}, Stats: st})
	if err != nil {
		t.Fatal(err)
	}
	go l.Serve()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	wait(t, st.accepted, "accept")
	<-served
	if l.Active() != 1 {
		t.Fatalf("active = %d", l.Active())
	}
	l.Drain()
	// The hook closed the connection: the client sees EOF and Wait is quick.
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("client read after drain: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if n := l.Wait(ctx); n != 0 {
		t.Fatalf("Wait forced %d connections", n)
	}
	wait(t, st.closed, "close")
	if _, err := net.DialTimeout("tcp", l.Addr().String(), time.Second); err == nil {
		t.Fatal("listener still accepting after drain")
	}
}

// TestWaitForcesAfterDeadline: a handler that ignores the drain is cut
// when Wait's context ends.
func TestWaitForcesAfterDeadline(t *testing.T) {
	h := api.ConnHandlerFunc(func(ctx context.Context, c net.Conn) {
		_, _ = io.Copy(io.Discard, c) // returns when the listener force-closes c
		_ = c.Close()
	})
	l, err := Listen(Config{Name: "t", Address: "127.0.0.1:0", Chains: []Chain{{Handler: h}}})
	if err != nil {
		t.Fatal(err)
	}
	go l.Serve()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for l.Active() != 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	l.Drain()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	if n := l.Wait(ctx); n != 1 {
		t.Fatalf("Wait forced %d connections, want 1", n)
	}
	if time.Since(start) > 3*time.Second {
		t.Fatalf("Wait took %v", time.Since(start))
	}
}

// TestNoChainMatchCloses: a connection no chain matches is closed and
// counted.
func TestNoChainMatchCloses(t *testing.T) {
	st := newCounts()
	m, err := CompileMatch(&listenerv3.FilterChainMatch{SourcePorts: []uint32{1}})
	if err != nil {
		t.Fatal(err)
	}
	l, err := Listen(Config{Name: "t", Address: "127.0.0.1:0", Chains: []Chain{{Match: m, Handler: api.ConnHandlerFunc(func(context.Context, net.Conn) {})}}, Stats: st})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	go l.Serve()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	wait(t, st.nomatch, "no chain match")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read: %v", err)
	}
}

func TestSelectMostSpecific(t *testing.T) {
	mk := func(m *listenerv3.FilterChainMatch, name string) Chain {
		cm, err := CompileMatch(m)
		if err != nil {
			t.Fatal(err)
		}
		return Chain{Name: name, Match: cm}
	}
	chains := []Chain{
		mk(nil, "catch-all"), // listed first, yet the least specific
		mk(&listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(8080)}, "port"),
		mk(&listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(8080),
			SourcePrefixRanges: []*corev3.CidrRange{{AddressPrefix: "10.0.0.0", PrefixLen: wrapperspb.UInt32(8)}}}, "port+src/8"),
		mk(&listenerv3.FilterChainMatch{DestinationPort: wrapperspb.UInt32(8080),
			SourcePrefixRanges: []*corev3.CidrRange{{AddressPrefix: "10.1.0.0", PrefixLen: wrapperspb.UInt32(16)}}}, "port+src/16"),
		mk(&listenerv3.FilterChainMatch{PrefixRanges: []*corev3.CidrRange{{AddressPrefix: "127.0.0.2", PrefixLen: wrapperspb.UInt32(32)}}}, "dst/32"),
		mk(&listenerv3.FilterChainMatch{SourcePorts: []uint32{4000}}, "srcport"),
	}
	addr := func(s string) *net.TCPAddr { a, _ := net.ResolveTCPAddr("tcp", s); return a }
	cases := []struct{ local, remote, want string }{
		{"127.0.0.1:9000", "127.0.0.1:5000", "catch-all"},
		{"127.0.0.1:8080", "127.0.0.1:5000", "port"},
		{"127.0.0.1:8080", "10.9.9.9:5000", "port+src/8"},
		{"127.0.0.1:8080", "10.1.2.3:5000", "port+src/16"}, // longest source prefix wins
		{"127.0.0.2:9000", "127.0.0.1:5000", "dst/32"},
		{"127.0.0.2:8080", "127.0.0.1:5000", "port"}, // destination port is decided first
		{"127.0.0.1:9000", "127.0.0.1:4000", "srcport"},
	}
	for _, tc := range cases {
		got := Select(chains, addr(tc.local), addr(tc.remote), Inspected{})
		if got == nil || got.Name != tc.want {
			t.Errorf("%s <- %s: got %v, want %s", tc.local, tc.remote, got, tc.want)
		}
	}
	// Without a catch-all, an unmatched connection gets nothing.
	if got := Select(chains[1:2], addr("127.0.0.1:9000"), addr("127.0.0.1:1"), Inspected{}); got != nil {
		t.Errorf("got %s, want no chain", got.Name)
	}
}

func TestMatchKey(t *testing.T) {
	a, _ := CompileMatch(&listenerv3.FilterChainMatch{SourcePorts: []uint32{2, 1},
		PrefixRanges: []*corev3.CidrRange{{AddressPrefix: "10.0.0.1", PrefixLen: wrapperspb.UInt32(8)}}})
	b, _ := CompileMatch(&listenerv3.FilterChainMatch{SourcePorts: []uint32{1, 2},
		PrefixRanges: []*corev3.CidrRange{{AddressPrefix: "10.0.0.0", PrefixLen: wrapperspb.UInt32(8)}}})
	if a.Key() != b.Key() {
		t.Fatalf("same rules, different keys: %q %q", a.Key(), b.Key())
	}
	c, _ := CompileMatch(nil)
	if c.Key() == a.Key() {
		t.Fatal("different rules, same key")
	}
}

// TestCloseWithoutServe: a listener bound but never served (the config
// failed after binding it) closes at once instead of waiting forever for
// an accept loop that never ran.
func TestCloseWithoutServe(t *testing.T) {
	l, err := Listen(Config{Name: "unserved", Address: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { l.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Close of a listener that never served hung")
	}
}

// TestUpdateDrainsReplacedChains: after Update, new connections get the new
// chain, connections of a replaced chain are told to drain (even one whose
// handler registers its hook only afterwards), and connections of a kept
// chain are left alone.
func TestUpdateDrainsReplacedChains(t *testing.T) {
	type tagged struct {
		tag string
		c   net.Conn
	}
	served := make(chan tagged, 8)
	drained := make(chan string, 8)
	late := make(chan struct{})
	handler := func(tag string, lateHook bool) api.ConnHandler {
		return api.ConnHandlerFunc(func(ctx context.Context, c net.Conn) {
			if lateHook {
				<-late
			}
			c.(api.DrainNotifier).OnDrain(func() { drained <- tag; _ = c.Close() })
			served <- tagged{tag, c}
		})
	}
	l, err := Listen(Config{Name: "u", Address: "127.0.0.1:0",
		Chains: []Chain{{Name: "a", Key: "a1", Handler: handler("a1", false),
			Match: Match{SourcePorts: nil}}}})
	if err != nil {
		t.Fatal(err)
	}
	go l.Serve()
	defer l.Close()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	dial()
	if got := <-served; got.tag != "a1" {
		t.Fatalf("first connection served by %s", got.tag)
	}
	// Same key: nothing drains.
	if n := l.Update([]Chain{{Name: "a", Key: "a1", Handler: handler("a1", false)}}, nil); n != 0 {
		t.Fatalf("an unchanged chain drained %d connections", n)
	}
	// A connection whose handler registers its hook late.
	l.Update([]Chain{{Name: "a", Key: "a1", Handler: handler("a1-late", true)}}, nil)
	dial()
	time.Sleep(50 * time.Millisecond)
	l.Update([]Chain{{Name: "a", Key: "a2", Handler: handler("a2", false)}}, nil)
	close(late)
	<-served // the late one
	got := map[string]bool{}
	for i := 0; i < 2; i++ {
		select {
		case tag := <-drained:
			got[tag] = true
		case <-time.After(5 * time.Second):
			t.Fatalf("only %v drained", got)
		}
	}
	if !got["a1"] || !got["a1-late"] {
		t.Fatalf("drained %v, want a1 and a1-late", got)
	}
	dial()
	if g := <-served; g.tag != "a2" {
		t.Fatalf("a new connection was served by %s, want a2", g.tag)
	}
	select {
	case tag := <-drained:
		t.Fatalf("%s drained without a change", tag)
	case <-time.After(100 * time.Millisecond):
	}
}
