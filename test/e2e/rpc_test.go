package e2e

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/weftmesh/weft/test/rpcpeer"
)

var rpcProtocols = []rpcpeer.Protocol{rpcpeer.Bolt, rpcpeer.Dubbo}

// TestRPCThroughTwoSidecars: client -> egress sidecar -> ingress sidecar ->
// provider, for Bolt and Dubbo, with independent peers (test/rpcpeer):
// bodies, headers/attachments both ways, Bolt v2 and CRC, one-way
// requests, heartbeats answered by the sidecar, a pass-through error
// status, an unrouted service answered by Weft, and per-method metrics.
func TestRPCThroughTwoSidecars(t *testing.T) {
	t.Parallel()
	for _, p := range rpcProtocols {
		t.Run(string(p), func(t *testing.T) {
			t.Parallel()
			prov := rpcServe(t, p, "provider-1", 0)
			_, ingress := startRPCSidecar(t, rpcConfig{StatPrefix: "ingress", Protocols: []string{string(p)}},
				staticCluster("up", portOf(t, prov.Addr())))
			egressW, egress := startRPCSidecar(t, rpcConfig{StatPrefix: "egress",
				VirtualHosts: fmt.Sprintf(`[{name: echo, domains: [%q], routes: [{match: {prefix: ""}, route: {cluster: remote, timeout: 5s}}]}]`, echoService)},
				staticCluster("remote", portOf(t, ingress)))
			c := rpcDial(t, p, egress)

			req := echoReq("hello through two sidecars")
			req.Headers = map[string]string{"x-trace-id": "trace-123", "rpc_trace_context.sofaTraceId": "0a1b2c"}
			r := rpcCall(t, c, req)
			if r.Status != okStatus(p) || string(r.Body) != "hello through two sidecars" {
				t.Fatalf("status %d body %q", r.Status, r.Body)
			}
			if r.Headers["x-served-by"] != "provider-1" || r.Headers["x-trace-id"] != "trace-123" {
				t.Errorf("response headers/attachments did not round-trip: %v", r.Headers)
			}
			if h := prov.LastRequestHeaders(); h["x-trace-id"] != "trace-123" || h["rpc_trace_context.sofaTraceId"] != "0a1b2c" {
				t.Errorf("provider saw headers %v", h)
			}
			if p == rpcpeer.Bolt {
				for _, v := range []struct{ v2, crc bool }{{true, false}, {true, true}} {
					req := echoReq("v2")
					req.BoltV2, req.BoltCRC = v.v2, v.crc
					if r := rpcCall(t, c, req); r.Status != rpcpeer.BoltSuccess || string(r.Body) != "v2" {
						t.Errorf("bolt v2 (crc %v): status %d body %q", v.crc, r.Status, r.Body)
					}
				}
			}

			// Many calls in flight on one client connection.
			var wg sync.WaitGroup
			var bad atomic.Int64
			for i := 0; i < 200; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					body := fmt.Sprintf("call-%d", i)
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					defer cancel()
					r, err := c.Call(ctx, echoReq(body))
					if err != nil || r.Status != okStatus(p) || string(r.Body) != body {
						bad.Add(1)
					}
				}()
			}
			wg.Wait()
			if bad.Load() > 0 {
				t.Fatalf("%d of 200 concurrent calls failed or were mixed up", bad.Load())
			}

			// One-way: delivered, nothing comes back.
			before := prov.Stats().Oneways
			ow := echoReq("fire and forget")
			ow.Oneway = true
			if r := rpcCall(t, c, ow); r != nil {
				t.Errorf("one-way call got a response %+v", r)
			}
			waitFor(t, 3*time.Second, "one-way request delivered", func() bool { return prov.Stats().Oneways == before+1 })

			// Heartbeats are answered by the sidecar, never forwarded.
			hbBefore := prov.Stats().Heartbeats
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			hb, err := c.Heartbeat(ctx)
			cancel()
			if err != nil || !hb.Heartbeat || hb.Status != okStatus(p) {
				t.Fatalf("heartbeat: %+v %v", hb, err)
			}
			if prov.Stats().Heartbeats != hbBefore {
				t.Errorf("the client's heartbeat reached the provider")
			}

			// The provider's own error status passes through untouched.
			busy := echoReq("x")
			busy.Method = "busy"
			wantBusy := 4 // SERVER_THREADPOOL_BUSY
			if p == rpcpeer.Dubbo {
				wantBusy = 100 // SERVER_THREADPOOL_EXHAUSTED_ERROR
			}
			if r := rpcCall(t, c, busy); r.Status != wantBusy {
				t.Errorf("busy: status %d, want %d", r.Status, wantBusy)
			}

			// A service no route knows is answered by Weft.
			unknown := echoReq("x")
			unknown.Service = "com.example.Nobody"
			wantNoRoute := 6 // NO_PROCESSOR
			if p == rpcpeer.Dubbo {
				wantNoRoute = 60 // SERVICE_NOT_FOUND
			}
			if r := rpcCall(t, c, unknown); r.Status != wantNoRoute {
				t.Errorf("unrouted service: status %d, want %d", r.Status, wantNoRoute)
			}

			// Metrics per service and method.
			// echo: 1 + 200 (+ 2 Bolt v2) two-way calls and one one-way.
			twoWay := 201.0
			if p == rpcpeer.Bolt {
				twoWay = 203
			}
			labels := []string{"stat_prefix=egress", "protocol=" + string(p), "service=" + echoService, "method=echo"}
			if v := egressW.metricValue("weft_rpc_method_requests_total", labels...); v != twoWay+1 {
				t.Errorf("weft_rpc_method_requests_total = %v, want %v", v, twoWay+1)
			}
			if v := egressW.metricValue("weft_rpc_method_responses_total", append(labels, fmt.Sprintf("status=%d", okStatus(p)))...); v != twoWay {
				t.Errorf("weft_rpc_method_responses_total{status=ok} = %v, want %v", v, twoWay)
			}
			if v := egressW.metricValue("weft_rpc_method_errors_total", append(labels[:2:2], "method=busy")...); v != 1 {
				t.Errorf("weft_rpc_method_errors_total{method=busy} = %v, want 1", v)
			}
			if v := egressW.metricValue("weft_rpc_no_route_total", "stat_prefix=egress"); v != 1 {
				t.Errorf("weft_rpc_no_route_total = %v, want 1", v)
			}
			if v := egressW.metricValue("weft_rpc_downstream_heartbeat_total", "stat_prefix=egress"); v != 1 {
				t.Errorf("weft_rpc_downstream_heartbeat_total = %v, want 1", v)
			}
		})
	}
}

// TestRPCSharedPort: one listener takes Bolt, Dubbo and HTTP/1.1; the first
// bytes choose, and HTTP goes on to the HTTP connection manager that
// follows the RPC proxy in the chain.
func TestRPCSharedPort(t *testing.T) {
	t.Parallel()
	bolt := rpcServe(t, rpcpeer.Bolt, "bolt-provider", 0)
	dubbo := rpcServe(t, rpcpeer.Dubbo, "dubbo-provider", 0)
	web := newUpstream(t, "web", echoHandler())
	rc := rpcConfig{VirtualHosts: `[
	  {name: b, domains: ["com.example.BoltEcho"], routes: [{match: {prefix: ""}, route: {cluster: bolt}}]},
	  {name: d, domains: ["com.example.DubboEcho"], routes: [{match: {prefix: ""}, route: {cluster: dubbo}}]}]`}
	hcm := M{"name": "envoy.filters.network.http_connection_manager", "typed_config": hcmConfig{Routes: routeTo("web")}.typedConfig(t)}
	w := startWeft(t, bootstrap(t, []M{listenerOn("shared", rc.filter(t), hcm)},
		staticCluster("bolt", portOf(t, bolt.Addr())), staticCluster("dubbo", portOf(t, dubbo.Addr())), staticCluster("web", web.Port)))
	addr := w.Listener("shared")
	for _, x := range []struct {
		p       rpcpeer.Protocol
		service string
		by      string
	}{{rpcpeer.Bolt, "com.example.BoltEcho", "bolt-provider"}, {rpcpeer.Dubbo, "com.example.DubboEcho", "dubbo-provider"}} {
		c := rpcDial(t, x.p, addr)
		r := rpcCall(t, c, &rpcpeer.Request{Service: x.service, Method: "echo", Body: []byte("shared")})
		if r.Status != okStatus(x.p) || r.Headers["x-served-by"] != x.by {
			t.Errorf("%s on the shared port: status %d served by %q", x.p, r.Status, r.Headers["x-served-by"])
		}
	}
	code, body := httpGet("http://" + addr + "/hello")
	if code != 200 || !strings.Contains(body, "/hello") {
		t.Errorf("HTTP on the shared port: %d %q", code, body)
	}
}

// TestRPCRouting: routes on service, method, version and group headers and
// weighted clusters apply to RPC as to HTTP.
func TestRPCRouting(t *testing.T) {
	t.Parallel()
	for _, p := range rpcProtocols {
		t.Run(string(p), func(t *testing.T) {
			t.Parallel()
			v1 := rpcServe(t, p, "v1", 0)
			v2 := rpcServe(t, p, "v2", 0)
			canary := rpcServe(t, p, "canary", 0)
			vh := fmt.Sprintf(`[{name: echo, domains: [%q], routes: [
			  {match: {prefix: "", headers: [{name: group, string_match: {exact: canary}}]}, route: {cluster: canary}},
			  {match: {prefix: "", headers: [{name: version, string_match: {exact: "2.0"}}]}, route: {cluster: v2}},
			  {match: {path: "admin"}, direct_response: {status: 403}},
			  {match: {prefix: "split"}, route: {weighted_clusters: {clusters: [{name: v1, weight: 50}, {name: v2, weight: 50}]}}},
			  {match: {prefix: ""}, route: {cluster: v1}}]}]`, echoService)
			_, addr := startRPCSidecar(t, rpcConfig{Protocols: []string{string(p)}, VirtualHosts: vh},
				staticCluster("v1", portOf(t, v1.Addr())), staticCluster("v2", portOf(t, v2.Addr())), staticCluster("canary", portOf(t, canary.Addr())))
			c := rpcDial(t, p, addr)
			served := func(r *rpcpeer.Request) string {
				t.Helper()
				resp := rpcCall(t, c, r)
				if resp.Status != okStatus(p) {
					return fmt.Sprintf("status %d", resp.Status)
				}
				return resp.Headers["x-served-by"]
			}
			if got := served(echoReq("a")); got != "v1" {
				t.Errorf("default route: served by %q", got)
			}
			r := echoReq("a")
			r.Version = "2.0"
			if got := served(r); got != "v2" {
				t.Errorf("version 2.0: served by %q", got)
			}
			r = echoReq("a")
			r.Group = "canary"
			if got := served(r); got != "canary" {
				t.Errorf("group canary: served by %q", got)
			}
			r = echoReq("a")
			r.Method = "admin"
			resp := rpcCall(t, c, r)
			if resp.Status == okStatus(p) {
				t.Errorf("direct_response 403 answered with success")
			}
			seen := map[string]int{}
			for i := 0; i < 100; i++ {
				r := echoReq("s")
				r.Method = "splitCall"
				seen[served(r)]++
			}
			if seen["v1"] < 15 || seen["v2"] < 15 || seen["v1"]+seen["v2"] != 100 {
				t.Errorf("weighted 50/50 split: %v", seen)
			}
		})
	}
}

// TestRPCTimeouts: the frame's own timeout (Bolt timeout field, Dubbo
// "timeout" attachment) or the route's bounds the call; Weft answers with
// the protocol's timeout status and drops the late answer.
func TestRPCTimeouts(t *testing.T) {
	t.Parallel()
	for _, p := range rpcProtocols {
		t.Run(string(p), func(t *testing.T) {
			t.Parallel()
			prov := rpcServe(t, p, "slow", 600*time.Millisecond)
			w, addr := startRPCSidecar(t, rpcConfig{Protocols: []string{string(p)}, VirtualHosts: fmt.Sprintf(`[{name: all, domains: ["*"], routes: [
			  {match: {prefix: "routeTimeout"}, route: {cluster: up, timeout: 0.15s}},
			  {match: {prefix: ""}, route: {cluster: up, timeout: 5s}}]}]`)},
				staticCluster("up", portOf(t, prov.Addr())))
			c := rpcDial(t, p, addr)
			want := 7 // TIMEOUT
			if p == rpcpeer.Dubbo {
				want = 31 // SERVER_TIMEOUT
			}
			r := echoReq("x")
			r.Timeout = 100 * time.Millisecond
			start := time.Now()
			resp := rpcCall(t, c, r)
			if resp.Status != want {
				t.Errorf("frame timeout: status %d, want %d", resp.Status, want)
			}
			if el := time.Since(start); el < 90*time.Millisecond || el > 450*time.Millisecond {
				t.Errorf("frame timeout answered after %v, want ~100ms", el)
			}
			r = echoReq("x")
			r.Method = "routeTimeout"
			start = time.Now()
			if resp := rpcCall(t, c, r); resp.Status != want {
				t.Errorf("route timeout: status %d, want %d", resp.Status, want)
			}
			if el := time.Since(start); el < 140*time.Millisecond || el > 500*time.Millisecond {
				t.Errorf("route timeout answered after %v, want ~150ms", el)
			}
			// Without a timeout the slow provider answers; the late answers
			// to the timed-out calls were dropped, not misdelivered.
			if resp := rpcCall(t, c, echoReq("patient")); resp.Status != okStatus(p) || string(resp.Body) != "patient" {
				t.Errorf("slow call: status %d body %q", resp.Status, resp.Body)
			}
			waitFor(t, 3*time.Second, "late answers dropped", func() bool {
				return w.metricValue("weft_rpc_upstream_rq_unknown_id_total", "stat_prefix=rpc") == 2
			})
			if v := w.metricValue("weft_rpc_downstream_rq_timeout_total", "stat_prefix=rpc"); v != 2 {
				t.Errorf("weft_rpc_downstream_rq_timeout_total = %v, want 2", v)
			}
		})
	}
}

// TestRPCRetryAndFault: a retry policy sends a request whose connection
// failed to another host; the fault filter aborts with the protocol's
// status.
func TestRPCRetryAndFault(t *testing.T) {
	t.Parallel()
	prov := rpcServe(t, rpcpeer.Bolt, "live", 0)
	dead := freeListener(t)
	deadPort := portOf(t, dead.Addr().String())
	_ = dead.Close()
	_, addr := startRPCSidecar(t, rpcConfig{Protocols: []string{"bolt"},
		VirtualHosts: rpcRouteAll("up", `retry_policy: {retry_on: connect-failure, num_retries: 3}`),
		Filters:      fmt.Sprintf(`[{name: envoy.filters.http.fault, typed_config: {"@type": %s, abort: {header_abort: {}, percentage: {numerator: 100}}}}]`, faultType)},
		with(t, staticCluster("up", deadPort, portOf(t, prov.Addr())), `{lb_policy: ROUND_ROBIN}`))
	c := rpcDial(t, rpcpeer.Bolt, addr)
	for i := 0; i < 20; i++ {
		if r := rpcCall(t, c, echoReq("retry me")); r.Status != rpcpeer.BoltSuccess {
			t.Fatalf("call %d with one dead host and retries: status %d", i, r.Status)
		}
	}
	r := echoReq("abort me")
	r.Headers = map[string]string{"x-envoy-fault-abort-request": "503"}
	if resp := rpcCall(t, c, r); resp.Status != 4 { // SERVER_THREADPOOL_BUSY
		t.Errorf("fault abort 503: status %d, want 4", resp.Status)
	}
	if n := prov.Stats().Requests; n != 20 {
		t.Errorf("provider saw %d requests, want 20 (the aborted one must not reach it)", n)
	}
}

// TestRPCMuxPool: requests share upstream connections up to
// max_requests_per_connection in flight each; past that the pool opens
// another, up to max_connections_per_host.
func TestRPCMuxPool(t *testing.T) {
	t.Parallel()
	prov := rpcServe(t, rpcpeer.Dubbo, "p", 300*time.Millisecond)
	_, addr := startRPCSidecar(t, rpcConfig{Protocols: []string{"dubbo"},
		Extra: `{upstream: {max_requests_per_connection: 10, max_connections_per_host: 6}}`},
		staticCluster("up", portOf(t, prov.Addr())))
	c := rpcDial(t, rpcpeer.Dubbo, addr)
	if r := rpcCall(t, c, echoReq("warm")); r.Status != rpcpeer.DubboOK {
		t.Fatalf("warm-up: %d", r.Status)
	}
	if n := prov.Stats().Accepted; n != 1 {
		t.Fatalf("one request opened %d upstream connections", n)
	}
	var wg sync.WaitGroup
	var bad atomic.Int64
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if r, err := c.Call(ctx, echoReq("m")); err != nil || r.Status != rpcpeer.DubboOK {
				bad.Add(1)
			}
		}()
	}
	wg.Wait()
	if bad.Load() > 0 {
		t.Fatalf("%d calls failed", bad.Load())
	}
	if n := prov.Stats().Accepted; n != 6 {
		t.Errorf("100 calls in flight at 10 per connection, at most 6 connections: provider accepted %d", n)
	}
}

// TestRPCUpstreamHeartbeats: an idle upstream connection gets heartbeats;
// one whose peer stops answering is closed after the configured misses and
// the next request opens a fresh one.
func TestRPCUpstreamHeartbeats(t *testing.T) {
	t.Parallel()
	for _, p := range rpcProtocols {
		t.Run(string(p), func(t *testing.T) {
			t.Parallel()
			prov := rpcServe(t, p, "p", 0)
			w, addr := startRPCSidecar(t, rpcConfig{Protocols: []string{string(p)},
				Extra: `{upstream: {heartbeat_interval: 0.1s, heartbeat_misses: 2}}`},
				staticCluster("up", portOf(t, prov.Addr())))
			c := rpcDial(t, p, addr)
			if r := rpcCall(t, c, echoReq("x")); r.Status != okStatus(p) {
				t.Fatalf("status %d", r.Status)
			}
			waitFor(t, 3*time.Second, "heartbeats on the idle upstream connection", func() bool { return prov.Stats().Heartbeats >= 2 })
			prov.SetStall(true)
			waitFor(t, 5*time.Second, "connection closed after missed heartbeats", func() bool {
				return w.metricValue("weft_rpc_upstream_cx_heartbeat_failure_total", "stat_prefix=rpc") == 1
			})
			prov.SetStall(false)
			if r := rpcCall(t, c, echoReq("y")); r.Status != okStatus(p) {
				t.Fatalf("after the heartbeat failure: status %d", r.Status)
			}
			if n := prov.Stats().Accepted; n != 2 {
				t.Errorf("provider accepted %d connections, want 2 (one replaced)", n)
			}
		})
	}
}

// TestRPCDrain: on SIGTERM requests in flight are answered before the
// sidecar exits.
func TestRPCDrain(t *testing.T) {
	t.Parallel()
	prov := rpcServe(t, rpcpeer.Bolt, "p", 500*time.Millisecond)
	w, addr := startRPCSidecar(t, rpcConfig{Protocols: []string{"bolt"}}, staticCluster("up", portOf(t, prov.Addr())))
	c := rpcDial(t, rpcpeer.Bolt, addr)
	var wg sync.WaitGroup
	var bad atomic.Int64
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if r, err := c.Call(ctx, echoReq("in flight")); err != nil || r.Status != rpcpeer.BoltSuccess {
				bad.Add(1)
			}
		}()
	}
	waitFor(t, 3*time.Second, "requests in flight", func() bool { return prov.Stats().Requests == 50 })
	w.Signal(syscall.SIGTERM)
	wg.Wait()
	if bad.Load() > 0 {
		t.Errorf("%d of 50 requests in flight failed during the drain", bad.Load())
	}
	if !w.Wait(10 * time.Second) {
		t.Fatal("weft did not exit after the drain")
	}
}
