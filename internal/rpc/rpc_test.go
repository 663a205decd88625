package rpc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/codec/bolt"
	"github.com/weftmesh/weft/internal/router"
	"github.com/weftmesh/weft/internal/stats"
	"github.com/weftmesh/weft/internal/stream"
	"github.com/weftmesh/weft/internal/upstream"
)

// These tests drive the proxy in-process with Weft's own Bolt codec on both
// sides; test/e2e drives the real binary with independent peers.

// echoServer answers Bolt requests with their content, after delay; with
// silent set it reads and never answers (not even heartbeats).
type echoServer struct {
	ln       net.Listener
	delay    time.Duration
	silent   atomic.Bool
	requests atomic.Int64
	hbs      atomic.Int64
	mu       sync.Mutex
	conns    []net.Conn
}

func startEcho(tb testing.TB, delay time.Duration) *echoServer {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	s := &echoServer{ln: ln, delay: delay}
	tb.Cleanup(func() { s.close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
			go s.serve(c)
		}
	}()
	return s
}

func (s *echoServer) close() {
	_ = s.ln.Close()
	s.killConns()
}

func (s *echoServer) killConns() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.conns {
		_ = c.Close()
	}
	s.conns = nil
}

func (s *echoServer) serve(c net.Conn) {
	codec := &bolt.Codec{}
	var wmu sync.Mutex
	send := func(f api.Frame) {
		wmu.Lock()
		defer wmu.Unlock()
		b, _ := codec.Encode(nil, f)
		_, _ = c.Write(b)
	}
	buf := make([]byte, 0, 64<<10)
	f := &bolt.Frame{}
	for {
		if len(buf) == cap(buf) {
			buf = grow(buf)
		}
		n, err := c.Read(buf[len(buf):cap(buf)])
		if err != nil {
			return
		}
		buf = buf[:len(buf)+n]
		off := 0
		for {
			used, err := codec.Decode(f, buf[off:])
			if err != nil {
				break
			}
			off += used
			if s.silent.Load() {
				continue
			}
			switch f.Kind() {
			case api.KindHeartbeat:
				s.hbs.Add(1)
				send(codec.HeartbeatReply(f))
			case api.KindRequest:
				s.requests.Add(1)
				r := &bolt.Frame{Proto: f.Proto, Ver1: f.Ver1, Type: bolt.TypeResponse, CmdCode: bolt.CmdResponse, Ver2: 1,
					ID: f.ID, Codec: f.Codec, Switch: f.Switch, RespStatus: bolt.StatusSuccess,
					ClassName: []byte("com.alipay.sofa.rpc.core.response.SofaResponse"), Content: append([]byte(nil), f.Content...)}
				r.Header.Set("served-by", s.ln.Addr().String())
				if s.delay > 0 {
					time.AfterFunc(s.delay, func() { send(r) })
				} else {
					send(r)
				}
			case api.KindOneway:
				s.requests.Add(1)
			}
		}
		buf = compact(buf, off)
	}
}

func staticCluster(name string, addrs ...string) *clusterv3.Cluster {
	var eps []*endpointv3.LbEndpoint
	for _, a := range addrs {
		host, port, _ := net.SplitHostPort(a)
		p, _ := strconv.Atoi(port)
		eps = append(eps, &endpointv3.LbEndpoint{HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(p)},
			}}},
		}}})
	}
	return &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(time.Second),
		LoadAssignment: &endpointv3.ClusterLoadAssignment{ClusterName: name,
			Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: eps}}},
	}
}

func routeAll(cluster string, timeout time.Duration) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{{
		Name: "all", Domains: []string{"*"},
		Routes: []*routev3.Route{{
			Match: &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: ""}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{
				ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster},
				Timeout:          durationpb.New(timeout)}},
		}},
	}}}
}

type testProxy struct {
	addr  string
	stats *stats.RPCStats
	store *stats.Store
	p     *Proxy
	cm    *upstream.Manager
}

func startProxy(tb testing.TB, rc *routev3.RouteConfiguration, pool PoolConfig, clusters ...*clusterv3.Cluster) *testProxy {
	tb.Helper()
	cm := upstream.NewManager(upstream.Options{})
	tb.Cleanup(cm.Close)
	if err := cm.Update(clusters); err != nil {
		tb.Fatal(err)
	}
	t, err := router.Compile(rc)
	if err != nil {
		tb.Fatal(err)
	}
	st := stats.NewStore()
	p := New(Config{
		StatPrefix: "test",
		Codecs:     []api.Codec{&bolt.Codec{}},
		Routes:     stream.NewStaticRoutes(t),
		Clusters:   cm,
		Store:      st,
		Pool:       pool,
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(func() { cancel(); _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.ServeConn(ctx, c)
		}
	}()
	return &testProxy{addr: ln.Addr().String(), stats: p.cfg.Stats, store: st, p: p, cm: cm}
}

// client is a pipelining Bolt client over Weft's codec.
type client struct {
	c       net.Conn
	codec   *bolt.Codec
	mu      sync.Mutex
	next    uint32
	waiting map[uint32]chan *bolt.Frame
	wmu     sync.Mutex
	err     error
}

func dialClient(tb testing.TB, addr string) *client {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		tb.Fatal(err)
	}
	cl := &client{c: c, codec: &bolt.Codec{}, waiting: map[uint32]chan *bolt.Frame{}}
	tb.Cleanup(func() { _ = c.Close() })
	go cl.read()
	return cl
}

func (cl *client) read() {
	buf := make([]byte, 0, 64<<10)
	for {
		if len(buf) == cap(buf) {
			buf = grow(buf)
		}
		n, err := cl.c.Read(buf[len(buf):cap(buf)])
		if err != nil {
			cl.mu.Lock()
			cl.err = err
			for id, ch := range cl.waiting {
				close(ch)
				delete(cl.waiting, id)
			}
			cl.mu.Unlock()
			return
		}
		buf = buf[:len(buf)+n]
		off := 0
		for {
			f := &bolt.Frame{}
			used, err := cl.codec.Decode(f, buf[off:])
			if err != nil {
				break
			}
			off += used
			cl.mu.Lock()
			ch := cl.waiting[f.ID]
			delete(cl.waiting, f.ID)
			cl.mu.Unlock()
			if ch != nil {
				ch <- f
			}
		}
		buf = compact(buf, off)
	}
}

func request(service, method string, content []byte) *bolt.Frame {
	f := &bolt.Frame{Proto: bolt.ProtoV1, Type: bolt.TypeRequest, CmdCode: bolt.CmdRequest, Ver2: 1,
		Codec: bolt.CodecHessian2, TimeoutMs: -1, ClassName: []byte("com.alipay.sofa.rpc.core.request.SofaRequest"),
		Content: content}
	f.Header.Set("service", service+":1.0")
	f.Header.Set("sofa_head_method_name", method)
	return f
}

func (cl *client) call(f *bolt.Frame, timeout time.Duration) (*bolt.Frame, error) {
	ch := make(chan *bolt.Frame, 1)
	cl.mu.Lock()
	if cl.err != nil {
		cl.mu.Unlock()
		return nil, cl.err
	}
	cl.next++
	f.ID = cl.next
	cl.waiting[f.ID] = ch
	cl.mu.Unlock()
	b, _ := cl.codec.Encode(nil, f)
	cl.wmu.Lock()
	_, err := cl.c.Write(b)
	cl.wmu.Unlock()
	if err != nil {
		return nil, err
	}
	select {
	case r, ok := <-ch:
		if !ok {
			return nil, errors.New("connection closed")
		}
		return r, nil
	case <-time.After(timeout):
		return nil, errors.New("timeout waiting for the response")
	}
}

func TestProxyEchoConcurrent(t *testing.T) {
	up := startEcho(t, 0)
	tp := startProxy(t, routeAll("up", 5*time.Second), PoolConfig{MaxRequestsPerConn: 8}, staticCluster("up", up.ln.Addr().String()))
	cl := dialClient(t, tp.addr)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for g := 0; g < 50; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 40; i++ {
				body := []byte(fmt.Sprintf("g%d-i%d", g, i))
				r, err := cl.call(request("com.example.Echo", "echo", body), 5*time.Second)
				if err != nil || r.RespStatus != bolt.StatusSuccess || string(r.Content) != string(body) {
					failed.Add(1)
					if err == nil {
						t.Errorf("status %d content %q want %q", r.RespStatus, r.Content, body)
					} else {
						t.Error(err)
					}
					return
				}
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d failed", failed.Load())
	}
	if got := up.requests.Load(); got != 2000 {
		t.Errorf("upstream saw %d requests, want 2000", got)
	}
	if c := tp.stats.UpstreamCxTotal.Value(); c < 2 {
		t.Errorf("upstream connections %d: with 50 in flight and 8 per connection the pool should open more", c)
	}
	// A request is counted once its answer has been written: the client
	// may read the last answer a moment before that.
	m := tp.store.RPCMethod("test", "bolt", "com.example.Echo", "echo")
	for deadline := time.Now().Add(2 * time.Second); m.Requests.Value() != 2000 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if m.Requests.Value() != 2000 || m.Status(0).Value() != 2000 {
		t.Errorf("method stats: requests %d, status 0: %d", m.Requests.Value(), m.Status(0).Value())
	}
}

func TestProxyUpstreamDiesInFlight(t *testing.T) {
	up := startEcho(t, time.Hour) // never answers in time
	tp := startProxy(t, routeAll("up", 30*time.Second), PoolConfig{}, staticCluster("up", up.ln.Addr().String()))
	cl := dialClient(t, tp.addr)
	const n = 1000
	res := make(chan *bolt.Frame, n)
	errs := make(chan error, n)
	for i := 0; i < n; i++ {
		go func() {
			r, err := cl.call(request("com.example.Echo", "echo", []byte("x")), 10*time.Second)
			if err != nil {
				errs <- err
				return
			}
			res <- r
		}()
	}
	deadline := time.Now().Add(5 * time.Second)
	for up.requests.Load() < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if up.requests.Load() != n {
		t.Fatalf("upstream got %d of %d", up.requests.Load(), n)
	}
	up.killConns()
	for i := 0; i < n; i++ {
		select {
		case r := <-res:
			if r.RespStatus != bolt.StatusConnectionClosed {
				t.Fatalf("status %#x, want CONNECTION_CLOSED", r.RespStatus)
			}
		case err := <-errs:
			t.Fatal(err)
		}
	}
	if got := tp.stats.UpstreamRqReset.Value(); got != n {
		t.Errorf("upstream_rq_reset %d, want %d", got, n)
	}
}

func TestProxyTimeoutFromFrame(t *testing.T) {
	up := startEcho(t, 300*time.Millisecond)
	tp := startProxy(t, routeAll("up", 5*time.Second), PoolConfig{}, staticCluster("up", up.ln.Addr().String()))
	cl := dialClient(t, tp.addr)
	req := request("com.example.Echo", "echo", []byte("x"))
	req.TimeoutMs = 50
	start := time.Now()
	r, err := cl.call(req, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if r.RespStatus != bolt.StatusTimeout {
		t.Fatalf("status %#x, want TIMEOUT", r.RespStatus)
	}
	if el := time.Since(start); el > 250*time.Millisecond {
		t.Errorf("timeout reply after %v, want ~50ms", el)
	}
	// The late answer is dropped, counted, and the connection still works.
	time.Sleep(400 * time.Millisecond)
	if tp.stats.UpstreamRqUnknownID.Value() != 1 {
		t.Errorf("upstream_rq_unknown_id %d, want 1", tp.stats.UpstreamRqUnknownID.Value())
	}
	r, err = cl.call(request("com.example.Echo", "echo", []byte("y")), 5*time.Second)
	if err != nil || r.RespStatus != bolt.StatusSuccess {
		t.Fatalf("after a timeout: %v %v", r, err)
	}
}

func TestProxyHeartbeats(t *testing.T) {
	up := startEcho(t, 0)
	tp := startProxy(t, routeAll("up", 5*time.Second), PoolConfig{HeartbeatInterval: 50 * time.Millisecond, HeartbeatMisses: 2},
		staticCluster("up", up.ln.Addr().String()))
	cl := dialClient(t, tp.addr)
	// A downstream heartbeat is answered by Weft, not forwarded.
	hb := (&bolt.Codec{}).Heartbeat(0).(*bolt.Frame)
	r, err := cl.call(hb, 2*time.Second)
	if err != nil || r.CmdCode != bolt.CmdHeartbeat || r.RespStatus != bolt.StatusSuccess {
		t.Fatalf("heartbeat reply %+v, %v", r, err)
	}
	if _, err := cl.call(request("com.example.Echo", "echo", []byte("x")), 2*time.Second); err != nil {
		t.Fatal(err)
	}
	// The idle upstream connection gets heartbeats...
	time.Sleep(300 * time.Millisecond)
	if up.hbs.Load() == 0 {
		t.Fatal("no upstream heartbeats on an idle connection")
	}
	// ...and is closed once they go unanswered.
	up.silent.Store(true)
	deadline := time.Now().Add(3 * time.Second)
	for tp.stats.UpstreamCxHeartbeatFail.Value() == 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if tp.stats.UpstreamCxHeartbeatFail.Value() != 1 {
		t.Fatalf("upstream_cx_heartbeat_failure = %d", tp.stats.UpstreamCxHeartbeatFail.Value())
	}
	up.silent.Store(false)
	r, err = cl.call(request("com.example.Echo", "echo", []byte("z")), 2*time.Second)
	if err != nil || r.RespStatus != bolt.StatusSuccess {
		t.Fatalf("after reconnect: %+v %v", r, err)
	}
}

func BenchmarkProxyBolt(b *testing.B) {
	up := startEcho(b, 0)
	tp := startProxy(b, routeAll("up", 5*time.Second), PoolConfig{}, staticCluster("up", up.ln.Addr().String()))
	cl := dialClient(b, tp.addr)
	body := make([]byte, 100)
	b.ReportAllocs()
	b.SetParallelism(16)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := cl.call(request("com.example.Echo", "echo", body), 5*time.Second); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
