package upstream

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/api"
)

// ep is a test endpoint: "ip:port" or "name:port" plus options.
type ep struct {
	addr     string
	weight   uint32
	priority uint32
	health   corev3.HealthStatus
	meta     map[string]map[string]any
}

func lbEndpoint(t testing.TB, e ep) *endpointv3.LbEndpoint {
	host, port, err := net.SplitHostPort(e.addr)
	if err != nil {
		t.Fatal(err)
	}
	var p uint32
	for _, c := range port {
		p = p*10 + uint32(c-'0')
	}
	le := &endpointv3.LbEndpoint{
		HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
			Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
				Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: p},
			}}},
		}},
		HealthStatus: e.health,
	}
	if e.weight > 0 {
		le.LoadBalancingWeight = wrapperspb.UInt32(e.weight)
	}
	if e.meta != nil {
		le.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{}}
		for ns, kv := range e.meta {
			st, err := structpb.NewStruct(kv)
			if err != nil {
				t.Fatal(err)
			}
			le.Metadata.FilterMetadata[ns] = st
		}
	}
	return le
}

func cla(t testing.TB, name string, eps ...ep) *endpointv3.ClusterLoadAssignment {
	c := &endpointv3.ClusterLoadAssignment{ClusterName: name}
	byPrio := map[uint32]*endpointv3.LocalityLbEndpoints{}
	for _, e := range eps {
		l, ok := byPrio[e.priority]
		if !ok {
			l = &endpointv3.LocalityLbEndpoints{Priority: e.priority,
				Locality: &corev3.Locality{Region: "r1", Zone: "z1"}}
			byPrio[e.priority] = l
			c.Endpoints = append(c.Endpoints, l)
		}
		l.LbEndpoints = append(l.LbEndpoints, lbEndpoint(t, e))
	}
	return c
}

func addrs(as ...string) []ep {
	out := make([]ep, len(as))
	for i, a := range as {
		out[i] = ep{addr: a}
	}
	return out
}

func static(t testing.TB, name string, eps []ep, mods ...func(*clusterv3.Cluster)) *clusterv3.Cluster {
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(time.Second),
		LoadAssignment:       cla(t, name, eps...),
	}
	for _, m := range mods {
		m(c)
	}
	return c
}

func eds(name string, mods ...func(*clusterv3.Cluster)) *clusterv3.Cluster {
	c := &clusterv3.Cluster{
		Name:                 name,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
	}
	for _, m := range mods {
		m(c)
	}
	return c
}

func withHTTPCheck(path string, interval time.Duration) func(*clusterv3.Cluster) {
	return func(c *clusterv3.Cluster) {
		c.HealthChecks = append(c.HealthChecks, &corev3.HealthCheck{
			Timeout:            durationpb.New(2 * time.Second),
			Interval:           durationpb.New(interval),
			UnhealthyThreshold: wrapperspb.UInt32(1),
			HealthyThreshold:   wrapperspb.UInt32(1),
			HealthChecker: &corev3.HealthCheck_HttpHealthCheck_{HttpHealthCheck: &corev3.HealthCheck_HttpHealthCheck{
				Path: path,
			}},
		})
	}
}

func withTCPCheck(interval time.Duration) func(*clusterv3.Cluster) {
	return func(c *clusterv3.Cluster) {
		c.HealthChecks = append(c.HealthChecks, &corev3.HealthCheck{
			Timeout:            durationpb.New(2 * time.Second),
			Interval:           durationpb.New(interval),
			UnhealthyThreshold: wrapperspb.UInt32(1),
			HealthyThreshold:   wrapperspb.UInt32(1),
			HealthChecker:      &corev3.HealthCheck_TcpHealthCheck_{TcpHealthCheck: &corev3.HealthCheck_TcpHealthCheck{}},
		})
	}
}

func withLB(p clusterv3.Cluster_LbPolicy) func(*clusterv3.Cluster) {
	return func(c *clusterv3.Cluster) { c.LbPolicy = p }
}

func newManager(t *testing.T, opts Options) *Manager {
	t.Helper()
	m := NewManager(opts)
	t.Cleanup(m.Close)
	return m
}

func mustUpdate(t *testing.T, m *Manager, cs ...*clusterv3.Cluster) {
	t.Helper()
	if err := m.Update(cs); err != nil {
		t.Fatal(err)
	}
}

func cluster(t *testing.T, m *Manager, name string) *Cluster {
	t.Helper()
	c := m.Get(name)
	if c == nil {
		t.Fatalf("cluster %q missing", name)
	}
	return c
}

func hostByAddr(c *Cluster, addr string) *Host {
	for _, h := range c.Hosts() {
		if h.Address() == addr {
			return h
		}
	}
	return nil
}

func hostAddrs(c *Cluster) []string {
	var out []string
	for _, h := range c.Hosts() {
		out = append(out, h.Address())
	}
	return out
}

type keyCtx struct {
	key uint64
	ok  bool
}

func (k *keyCtx) HashKey() (uint64, bool) { return k.key, k.ok }
func (k *keyCtx) Headers() api.HeaderMap  { return nil }

// pickCounts picks n times and counts hosts by address.
func pickCounts(c api.Cluster, n int) map[string]int {
	out := map[string]int{}
	for range n {
		if h := c.Pick(nil); h != nil {
			out[h.Address()]++
		} else {
			out[""]++
		}
	}
	return out
}

// checkGoroutines fails the test if, after the test's other cleanups,
// goroutines started during it are still running. Like grpc-go's
// leakcheck it polls: goroutines end asynchronously after their stop
// signal.
func checkGoroutines(t *testing.T) {
	t.Helper()
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(5 * time.Second)
		for {
			n := runtime.NumGoroutine()
			if n <= before {
				return
			}
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				buf = buf[:runtime.Stack(buf, true)]
				t.Errorf("%d goroutines before, %d after:\n%s", before, n, buf)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// eventually polls cond until true or fails after 5s; for state with no
// event to wait on (gauges).
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// dnsServer is a tiny authoritative UDP DNS server for A queries.
type dnsServer struct {
	pc      net.PacketConn
	mu      sync.Mutex
	zone    map[string][]netip.Addr // lower-case FQDN with trailing dot
	fail    bool                    // answer SERVFAIL
	gate    chan struct{}           // when non-nil, the first query waits for it to close
	queries chan string
	wg      sync.WaitGroup
}

// newDNSServer starts the server; with gated, the first query waits until
// s.gate is closed.
func newDNSServer(t *testing.T, gated bool) *dnsServer {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &dnsServer{pc: pc, zone: map[string][]netip.Addr{}, queries: make(chan string, 1000)}
	if gated {
		s.gate = make(chan struct{})
	}
	s.wg.Go(s.serve)
	t.Cleanup(func() { pc.Close(); s.wg.Wait() })
	return s
}

func (s *dnsServer) set(name string, ips ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var as []netip.Addr
	for _, ip := range ips {
		as = append(as, netip.MustParseAddr(ip))
	}
	s.zone[strings.ToLower(name)] = as
}

func (s *dnsServer) setFail(f bool) {
	s.mu.Lock()
	s.fail = f
	s.mu.Unlock()
}

// resolver returns a pure-Go resolver whose every query goes to s.
func (s *dnsServer) resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", s.pc.LocalAddr().String())
	}}
}

// waitQueries waits until n more queries have been answered.
func (s *dnsServer) waitQueries(t *testing.T, n int) {
	t.Helper()
	for range n {
		select {
		case <-s.queries:
		case <-time.After(5 * time.Second):
			t.Fatal("no DNS query")
		}
	}
}

func (s *dnsServer) serve() {
	buf := make([]byte, 1500)
	first := true
	for {
		n, from, err := s.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		if first {
			first = false
			if s.gate != nil {
				<-s.gate
			}
		}
		if resp := s.answer(buf[:n]); resp != nil {
			s.pc.WriteTo(resp, from)
			select {
			case s.queries <- "q":
			default:
			}
		}
	}
}

func (s *dnsServer) answer(q []byte) []byte {
	if len(q) < 12 || binary.BigEndian.Uint16(q[4:6]) != 1 {
		return nil
	}
	off := 12
	var name strings.Builder
	for {
		if off >= len(q) {
			return nil
		}
		l := int(q[off])
		off++
		if l == 0 {
			break
		}
		if l > 63 || off+l > len(q) {
			return nil
		}
		name.Write(q[off : off+l])
		name.WriteByte('.')
		off += l
	}
	if off+4 > len(q) {
		return nil
	}
	qtype := binary.BigEndian.Uint16(q[off : off+2])
	qend := off + 4
	s.mu.Lock()
	ips, known := s.zone[strings.ToLower(name.String())]
	fail := s.fail
	s.mu.Unlock()
	rcode := uint16(0)
	switch {
	case fail:
		rcode = 2 // SERVFAIL
		ips = nil
	case !known:
		rcode = 3 // NXDOMAIN
	}
	var answers [][]byte
	for _, ip := range ips {
		switch {
		case qtype == 1 && ip.Is4():
			a := ip.As4()
			answers = append(answers, a[:])
		case qtype == 28 && ip.Is6():
			a := ip.As16()
			answers = append(answers, a[:])
		}
	}
	resp := make([]byte, 12, 512)
	copy(resp, q[:2])
	binary.BigEndian.PutUint16(resp[2:], 0x8580|rcode) // QR AA RD RA
	binary.BigEndian.PutUint16(resp[4:], 1)
	binary.BigEndian.PutUint16(resp[6:], uint16(len(answers)))
	resp = append(resp, q[12:qend]...)
	for _, a := range answers {
		resp = append(resp, 0xc0, 0x0c)
		resp = binary.BigEndian.AppendUint16(resp, qtype)
		resp = binary.BigEndian.AppendUint16(resp, 1)
		resp = binary.BigEndian.AppendUint32(resp, 30)
		resp = binary.BigEndian.AppendUint16(resp, uint16(len(a)))
		resp = append(resp, a...)
	}
	return resp
}
