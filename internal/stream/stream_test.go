package stream

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/weftmesh/weft/internal/codec/http1"
	"github.com/weftmesh/weft/internal/router"
	"github.com/weftmesh/weft/internal/stats"
	"github.com/weftmesh/weft/internal/upstream"
)

const fixedResponse = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello"

// fixedUpstream answers every request on a connection with fixedResponse. It
// reads heads by scanning for CRLFCRLF and allocates nothing per request.
func fixedUpstream(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				buf := make([]byte, 8192)
				resp := []byte(fixedResponse)
				have := 0
				for {
					n, err := c.Read(buf[have:])
					if err != nil {
						return
					}
					have += n
					for {
						i := bytes.Index(buf[:have], []byte("\r\n\r\n"))
						if i < 0 {
							break
						}
						have = copy(buf, buf[i+4:have])
						if _, err := c.Write(resp); err != nil {
							return
						}
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// newProxy serves cfg on a loopback listener with one cluster "up".
func newProxy(tb testing.TB, upAddr string, rc *routev3.RouteConfiguration, mod ...func(*clusterv3.Cluster)) string {
	tb.Helper()
	host, port, _ := net.SplitHostPort(upAddr)
	p, _ := strconv.Atoi(port)
	cm := upstream.NewManager(upstream.Options{})
	tb.Cleanup(cm.Close)
	cl := &clusterv3.Cluster{
		Name:                 "up",
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STATIC},
		ConnectTimeout:       durationpb.New(time.Second),
		LoadAssignment: &endpointv3.ClusterLoadAssignment{
			ClusterName: "up",
			Endpoints: []*endpointv3.LocalityLbEndpoints{{LbEndpoints: []*endpointv3.LbEndpoint{{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
						Address: host, PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: uint32(p)},
					}}},
				}},
			}}}},
		},
	}
	for _, m := range mod {
		m(cl)
	}
	err := cm.Update([]*clusterv3.Cluster{cl})
	if err != nil {
		tb.Fatal(err)
	}
	t, err := router.Compile(rc)
	if err != nil {
		tb.Fatal(err)
	}
	st := stats.NewStore()
	h := New(Config{
		Routes:   NewStaticRoutes(t),
		Clusters: cm,
		Store:    st,
		Stats:    st.HTTP("test"),
		BufPool:  http1.NewBufPool(16 << 10),
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
			go h.ServeConn(ctx, c)
		}
	}()
	return ln.Addr().String()
}

func routeAll(cluster string) *routev3.RouteConfiguration {
	return &routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{{
		Name: "all", Domains: []string{"*"},
		Routes: []*routev3.Route{{
			Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: "/"}},
			Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}},
		}},
	}}}
}

func TestProxyKeepAlive(t *testing.T) {
	addr := newProxy(t, fixedUpstream(t), routeAll("up"))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for i := 0; i < 5; i++ {
		if _, err := io.WriteString(c, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		status, _ := br.ReadString('\n')
		if !strings.HasPrefix(status, "HTTP/1.1 200") {
			t.Fatalf("request %d: status %q", i, status)
		}
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if l == "\r\n" {
				break
			}
		}
		body := make([]byte, 5)
		if _, err := io.ReadFull(br, body); err != nil || string(body) != "hello" {
			t.Fatalf("body %q %v", body, err)
		}
	}
}

func TestProxyNoRouteAndNoCluster(t *testing.T) {
	rc := routeAll("missing")
	addr := newProxy(t, fixedUpstream(t), rc)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	status, _ := bufio.NewReader(c).ReadString('\n')
	if !strings.HasPrefix(status, "HTTP/1.1 503") {
		t.Fatalf("status %q, want 503 for a missing cluster", status)
	}
}

// BenchmarkProxy measures one keep-alive request through the proxy to a
// loopback upstream (client, proxy and upstream in one process); allocs/op
// counts the whole process, so 0 means the proxy path allocates nothing.
func BenchmarkProxy(b *testing.B) {
	addr := newProxy(b, fixedUpstream(b), routeAll("up"))
	c, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req := []byte("GET /bench HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\nX-Request-Id: 1\r\n\r\n")
	buf := make([]byte, 4096)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		have := 0
		for {
			n, err := c.Read(buf[have:])
			if err != nil {
				b.Fatal(err)
			}
			have += n
			if bytes.HasSuffix(buf[:have], []byte("hello")) {
				break
			}
		}
	}
}
