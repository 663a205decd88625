package e2e

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/test/rpcpeer"
)

const (
	rpcProxyName    = "weft.filters.network.rpc_proxy"
	rpcProxyType    = "type.weftmesh.io/weft.filters.network.rpc_proxy.v1.RpcProxy"
	typedStructType = "type.googleapis.com/xds.type.v3.TypedStruct"
	echoService     = "com.example.EchoService"
)

// rpcConfig describes one rpc_proxy filter.
type rpcConfig struct {
	StatPrefix string
	Protocols  []string
	// VirtualHosts is a YAML list of virtual hosts; empty routes every
	// service to cluster "up".
	VirtualHosts string
	// Filters is a YAML list of rpc_filters.
	Filters string
	// Extra is a YAML map merged into the filter's value.
	Extra string
}

func (r rpcConfig) filter(t *testing.T) M {
	t.Helper()
	if r.StatPrefix == "" {
		r.StatPrefix = "rpc"
	}
	if len(r.Protocols) == 0 {
		r.Protocols = []string{"bolt", "dubbo"}
	}
	if r.VirtualHosts == "" {
		r.VirtualHosts = rpcRouteAll("up", "")
	}
	protos := make([]any, len(r.Protocols))
	for i, p := range r.Protocols {
		protos[i] = p
	}
	v := M{
		"stat_prefix":  r.StatPrefix,
		"protocols":    protos,
		"route_config": M{"name": "rpc", "virtual_hosts": y(t, r.VirtualHosts)},
	}
	if r.Filters != "" {
		v["rpc_filters"] = y(t, r.Filters)
	}
	if r.Extra != "" {
		for k, x := range ym(t, r.Extra) {
			v[k] = x
		}
	}
	return M{"name": rpcProxyName, "typed_config": M{"@type": typedStructType, "type_url": rpcProxyType, "value": v}}
}

// rpcRouteAll is a virtual host list sending every service and method to
// cluster; extra is YAML merged into the route action ("timeout: 1s").
func rpcRouteAll(cluster, extra string) string {
	if extra != "" {
		extra = ", " + extra
	}
	return fmt.Sprintf(`[{name: all, domains: ["*"], routes: [{match: {prefix: ""}, route: {cluster: %s, timeout: 5s%s}}]}]`, cluster, extra)
}

// startRPCSidecar starts weft with one rpc_proxy listener "rpc" and returns
// it with the listener address.
func startRPCSidecar(t *testing.T, rc rpcConfig, clusters ...M) (*Weft, string) {
	t.Helper()
	w := startWeft(t, bootstrap(t, []M{listenerOn("rpc", rc.filter(t))}, clusters...))
	return w, w.Listener("rpc")
}

// rpcServe starts an rpcpeer echo server.
func rpcServe(t *testing.T, p rpcpeer.Protocol, name string, delay time.Duration) *rpcpeer.Server {
	t.Helper()
	s, err := rpcpeer.Serve(p, "127.0.0.1:0", rpcpeer.ServerOptions{Name: name, Delay: delay})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// rpcDial connects an rpcpeer client.
func rpcDial(t *testing.T, p rpcpeer.Protocol, addr string) *rpcpeer.Client {
	t.Helper()
	c, err := rpcpeer.Dial(p, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// rpcCall makes one call with a 5 s bound and fails the test on a
// transport error.
func rpcCall(t *testing.T, c *rpcpeer.Client, r *rpcpeer.Request) *rpcpeer.Response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Call(ctx, r)
	if err != nil {
		t.Fatalf("call %s.%s: %v", r.Service, r.Method, err)
	}
	return resp
}

func echoReq(body string) *rpcpeer.Request {
	return &rpcpeer.Request{Service: echoService, Method: "echo", Version: "1.0", Body: []byte(body)}
}

// portOf returns the port of "host:port".
func portOf(t *testing.T, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return n
}

// okStatus is the protocol's success status.
func okStatus(p rpcpeer.Protocol) int {
	if p == rpcpeer.Dubbo {
		return rpcpeer.DubboOK
	}
	return rpcpeer.BoltSuccess
}

// steadyRPC calls through addr in the background until stop and counts
// failures, to show that a bad peer harms nobody else.
type steadyRPC struct {
	ok, failed int
	done       chan struct{}
	stop       chan struct{}
}

func startSteadyRPC(t *testing.T, p rpcpeer.Protocol, addr string) *steadyRPC {
	t.Helper()
	c := rpcDial(t, p, addr)
	s := &steadyRPC{done: make(chan struct{}), stop: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			select {
			case <-s.stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			r, err := c.Call(ctx, echoReq("steady"))
			cancel()
			if err != nil || r.Status != okStatus(p) {
				s.failed++
			} else {
				s.ok++
			}
		}
	}()
	return s
}

// finish stops the steady client and checks it never failed.
func (s *steadyRPC) finish(t *testing.T) {
	t.Helper()
	close(s.stop)
	<-s.done
	if s.failed > 0 || s.ok == 0 {
		t.Errorf("steady client: %d ok, %d failed (a bad peer harmed others)", s.ok, s.failed)
	}
}

// rawRPCUpstream is a hand-driven provider: every frame read on an
// accepted connection (numbered from 1) is decoded and handed to handle,
// which writes whatever it likes. It returns the address and a count of
// closed connections.
func rawRPCUpstream(t *testing.T, decode func([]byte) (any, int, error), handle func(c net.Conn, conn int64, f any)) (string, *atomic.Int64) {
	t.Helper()
	ln := freeListener(t)
	var accepted atomic.Int64
	closed := &atomic.Int64{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conn := accepted.Add(1)
			go func() {
				defer func() { closed.Add(1); _ = c.Close() }()
				var buf []byte
				tmp := make([]byte, 64<<10)
				for {
					n, err := c.Read(tmp)
					if err != nil {
						return
					}
					buf = append(buf, tmp[:n]...)
					for {
						f, used, err := decode(buf)
						if err != nil {
							break
						}
						buf = buf[used:]
						handle(c, conn, f)
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), closed
}

func decodeBolt(b []byte) (any, int, error)  { return rpcpeer.DecodeBolt(b) }
func decodeDubbo(b []byte) (any, int, error) { return rpcpeer.DecodeDubbo(b) }
