package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/test/rpcpeer"
)

// Bad input on the RPC path: each case shows a clear outcome for the bad
// peer (closed, or answered with the protocol's error) and that a steady
// client on the same listener loses nothing.

// rawRPC writes b on a fresh connection and reports whether weft closed
// the connection within d, with what it sent back.
func rawRPC(t *testing.T, addr string, b []byte, d time.Duration) (closed bool, got []byte) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write(b); err != nil {
		return true, nil
	}
	_ = c.SetReadDeadline(time.Now().Add(d))
	var buf bytes.Buffer
	_, err = io.Copy(&buf, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false, buf.Bytes()
	}
	return true, buf.Bytes()
}

func TestRPCBadFrames(t *testing.T) {
	t.Parallel()
	bolt := rpcServe(t, rpcpeer.Bolt, "b", 0)
	dubbo := rpcServe(t, rpcpeer.Dubbo, "d", 0)
	rc := rpcConfig{
		VirtualHosts: `[{name: all, domains: ["*"], routes: [
		  {match: {prefix: "", headers: [{name: x-proto, string_match: {exact: dubbo}}]}, route: {cluster: dubbo}},
		  {match: {prefix: ""}, route: {cluster: bolt}}]}]`,
		Extra: `{max_frame_bytes: 1048576, idle_timeout: 1s}`,
	}
	w, addr := startRPCSidecar(t, rc, staticCluster("bolt", portOf(t, bolt.Addr())), staticCluster("dubbo", portOf(t, dubbo.Addr())))
	steady := startSteadyRPC(t, rpcpeer.Bolt, addr)

	boltReq := rpcpeer.EncodeRequest(rpcpeer.Bolt, 1, echoReq("ok"))
	dubboReq := rpcpeer.EncodeRequest(rpcpeer.Dubbo, 1, &rpcpeer.Request{Service: echoService, Method: "echo", Body: []byte("ok"),
		Headers: map[string]string{"x-proto": "dubbo"}})
	mutate := func(b []byte, f func([]byte)) []byte {
		c := bytes.Clone(b)
		f(c)
		return c
	}
	cases := []struct {
		name string
		b    []byte
		// wantReply: a decodable response comes back before the close.
		wantReply bool
	}{
		{"garbage first bytes", []byte("\x07\x08garbage that is no protocol at all"), false},
		{"bolt unknown codec id", mutate(boltReq, func(b []byte) { b[9] = 99 }), false},
		{"bolt content length 1 GiB", mutate(boltReq, func(b []byte) { binary.BigEndian.PutUint32(b[18:], 1<<30) }), false},
		{"bolt class name over the limit", mutate(boltReq, func(b []byte) { binary.BigEndian.PutUint16(b[14:], 30000) }), false},
		{"bolt negative content length", mutate(boltReq, func(b []byte) { binary.BigEndian.PutUint32(b[18:], 0xffffff00) }), false},
		{"bolt unknown command type", mutate(boltReq, func(b []byte) { b[1] = 9 }), false},
		{"dubbo unknown serialization", mutate(dubboReq, func(b []byte) { b[2] = b[2]&^0x1f | 7 }), false},
		{"dubbo body length 1 GiB", mutate(dubboReq, func(b []byte) { binary.BigEndian.PutUint32(b[12:], 1<<30) }), false},
		{"valid bolt then wrong magic", append(bytes.Clone(boltReq), 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), true},
		{"valid dubbo then wrong magic", append(bytes.Clone(dubboReq), 0xda, 0xbc, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), true},
	}
	for _, tc := range cases {
		start := time.Now()
		closed, got := rawRPC(t, addr, tc.b, 3*time.Second)
		if !closed {
			t.Errorf("%s: connection still open after 3s", tc.name)
			continue
		}
		if el := time.Since(start); el > 900*time.Millisecond {
			t.Errorf("%s: closed only after %v (must fail fast, not wait for the idle timeout)", tc.name, el)
		}
		if tc.wantReply {
			p := rpcpeer.Bolt
			if tc.b[0] == 0xda {
				p = rpcpeer.Dubbo
			}
			if _, r, _, err := rpcpeer.DecodeResponse(p, got); err != nil || r.Status != okStatus(p) {
				t.Errorf("%s: the valid request before the bad bytes was not answered: %v %v", tc.name, r, err)
			}
		}
	}
	if v := w.metricValue("weft_rpc_downstream_cx_protocol_error_total", "stat_prefix=rpc"); v < float64(len(cases)) {
		t.Errorf("weft_rpc_downstream_cx_protocol_error_total = %v, want >= %d", v, len(cases))
	}

	// A truncated frame: the connection waits for the rest, then the idle
	// timeout closes it; nothing else is held up meanwhile.
	start := time.Now()
	closed, _ := rawRPC(t, addr, boltReq[:len(boltReq)-5], 4*time.Second)
	if el := time.Since(start); !closed || el < 900*time.Millisecond {
		t.Errorf("truncated frame: closed=%v after %v, want closed by the 1s idle timeout", closed, el)
	}
	// A Dubbo request whose body does not parse gets BAD_REQUEST and the
	// connection stays usable.
	bad := mutate(dubboReq, func(b []byte) { b[16] = 0x7f }) // not a hessian string tag
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write(append(bad, dubboReq...))
	_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
	for i, want := range []int{40, rpcpeer.DubboOK} {
		_, r, err := rpcpeer.ReadResponse(rpcpeer.Dubbo, c)
		if err != nil || r.Status != want {
			t.Errorf("dubbo bad body, response %d: %+v %v (want status %d)", i, r, err, want)
		}
	}
	steady.finish(t)
}

// TestRPCUpstreamUnknownID: an upstream answer with an id nobody waits
// for is dropped and counted; the real answer still gets through.
func TestRPCUpstreamUnknownID(t *testing.T) {
	t.Parallel()
	up, _ := rawRPCUpstream(t, decodeBolt, func(c net.Conn, _ int64, fr any) {
		f := fr.(*rpcpeer.BoltFrame)
		if f.CmdCode != 1 {
			return
		}
		resp := &rpcpeer.Response{Status: rpcpeer.BoltSuccess, Body: f.Content, ClassName: rpcpeer.SofaResponseClass}
		_, _ = c.Write(rpcpeer.EncodeResponse(rpcpeer.Bolt, uint64(f.ID)+100000, resp))
		_, _ = c.Write(rpcpeer.EncodeResponse(rpcpeer.Bolt, uint64(f.ID), resp))
	})
	w, addr := startRPCSidecar(t, rpcConfig{Protocols: []string{"bolt"}}, staticCluster("up", portOf(t, up)))
	c := rpcDial(t, rpcpeer.Bolt, addr)
	for i := 0; i < 5; i++ {
		if r := rpcCall(t, c, echoReq("x")); r.Status != rpcpeer.BoltSuccess || string(r.Body) != "x" {
			t.Fatalf("status %d body %q", r.Status, r.Body)
		}
	}
	if v := w.metricValue("weft_rpc_upstream_rq_unknown_id_total", "stat_prefix=rpc"); v != 5 {
		t.Errorf("weft_rpc_upstream_rq_unknown_id_total = %v, want 5", v)
	}
}

// TestRPCUpstreamDiesInFlight: an upstream that dies with 1,000 requests in
// flight: every one gets the protocol's error response, none hangs.
func TestRPCUpstreamDiesInFlight(t *testing.T) {
	t.Parallel()
	for _, p := range rpcProtocols {
		t.Run(string(p), func(t *testing.T) {
			t.Parallel()
			prov := rpcServe(t, p, "p", time.Hour)
			w, addr := startRPCSidecar(t, rpcConfig{Protocols: []string{string(p)}, VirtualHosts: rpcRouteAll("up", "timeout: 60s")},
				staticCluster("up", portOf(t, prov.Addr())))
			c := rpcDial(t, p, addr)
			const n = 1000
			statuses := make(chan int, n)
			for i := 0; i < n; i++ {
				go func() {
					ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
					defer cancel()
					r, err := c.Call(ctx, echoReq("doomed"))
					if err != nil {
						statuses <- -1
						return
					}
					statuses <- r.Status
				}()
			}
			waitFor(t, 10*time.Second, "1000 requests at the provider", func() bool { return prov.Stats().Requests == n })
			prov.KillConns()
			want := 0x10 // CONNECTION_CLOSED
			if p == rpcpeer.Dubbo {
				want = 80 // SERVER_ERROR
			}
			deadline := time.After(10 * time.Second)
			for i := 0; i < n; i++ {
				select {
				case s := <-statuses:
					if s != want {
						t.Fatalf("request %d: status %d, want %d", i, s, want)
					}
				case <-deadline:
					t.Fatalf("only %d of %d requests were answered after the upstream died", i, n)
				}
			}
			if v := w.metricValue("weft_rpc_upstream_rq_reset_total", "stat_prefix=rpc"); v != n {
				t.Errorf("weft_rpc_upstream_rq_reset_total = %v, want %d", v, n)
			}
			// The pool recovers: the next request opens a new connection.
			before := prov.Stats().Accepted
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				_, _ = c.Call(ctx, echoReq("after"))
			}()
			waitFor(t, 3*time.Second, "a new upstream connection", func() bool { return prov.Stats().Accepted > before })
		})
	}
}

// TestRPCClientNeverReads: a client that sends and never reads its
// responses is disconnected when its backlog passes the limit; weft's
// memory stays bounded and a steady client is unaffected.
func TestRPCClientNeverReads(t *testing.T) {
	t.Parallel()
	prov := rpcServe(t, rpcpeer.Bolt, "p", 0)
	w, addr := startRPCSidecar(t, rpcConfig{Protocols: []string{"bolt"},
		Extra: `{max_write_backlog_bytes: 1048576, write_timeout: 2s, max_concurrent_requests: 32}`},
		staticCluster("up", portOf(t, prov.Addr())))
	steady := startSteadyRPC(t, rpcpeer.Bolt, addr)
	rss0 := biRSSMB(t, w)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.(*net.TCPConn).SetReadBuffer(4096)
	big := echoReq(string(bytes.Repeat([]byte("z"), 16<<10)))
	var sent atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := uint64(1); ; i++ {
			_ = c.SetWriteDeadline(time.Now().Add(30 * time.Second))
			if _, err := c.Write(rpcpeer.EncodeRequest(rpcpeer.Bolt, i, big)); err != nil {
				return
			}
			sent.Add(1)
		}
	}()
	waitFor(t, 30*time.Second, "weft to drop the client that never reads", func() bool {
		return w.metricValue("weft_rpc_downstream_cx_slow_reader_total", "stat_prefix=rpc") >= 1
	})
	_ = c.Close()
	wg.Wait()
	// Bounded: the backlog limit (1 MiB), 32 requests in flight and the
	// socket buffers; the race detector's shadow memory roughly triples it.
	limit := 40.0
	if os.Getenv("WEFT_E2E_RACE") != "" {
		limit = 120
	}
	grow := biRSSMB(t, w) - rss0
	if grow > limit {
		t.Errorf("weft RSS grew by %.1f MiB for one client that never reads", grow)
	}
	t.Logf("weft RSS grew by %.1f MiB", grow)
	t.Logf("the client wrote %d requests of 16 KiB before weft dropped it", sent.Load())
	steady.finish(t)
}

// TestRPCDubboReadonlyDrains: a Dubbo provider that announces its shutdown
// (a READONLY event) gets no new requests on that connection, which closes
// once its requests are answered; the next request opens a new one.
func TestRPCDubboReadonlyDrains(t *testing.T) {
	t.Parallel()
	up, closed := rawRPCUpstream(t, decodeDubbo, func(c net.Conn, conn int64, fr any) {
		f := fr.(*rpcpeer.DubboFrame)
		if f.Flags&0x20 != 0 { // heartbeat
			return
		}
		inv, err := rpcpeer.ParseDubboRequest(f.Body)
		if err != nil {
			_ = c.Close()
			return
		}
		if conn == 1 {
			// Going away: READONLY event, then the answer.
			_, _ = c.Write(rpcpeer.AppendDubbo(nil, &rpcpeer.DubboFrame{Flags: 0xa2, ID: 99, Body: []byte{0x01, 'R'}}))
		}
		body, _ := inv.Args[0].(string)
		resp := &rpcpeer.Response{Status: rpcpeer.DubboOK, Body: []byte(body), Headers: map[string]string{"conn": fmt.Sprint(conn)}}
		_, _ = c.Write(rpcpeer.EncodeResponse(rpcpeer.Dubbo, f.ID, resp))
	})
	w, addr := startRPCSidecar(t, rpcConfig{Protocols: []string{"dubbo"}}, staticCluster("up", portOf(t, up)))
	c := rpcDial(t, rpcpeer.Dubbo, addr)
	for i, want := range []string{"1", "2", "2"} {
		r := rpcCall(t, c, echoReq(fmt.Sprint("call ", i)))
		if r.Status != rpcpeer.DubboOK || r.Headers["conn"] != want {
			t.Fatalf("call %d: status %d on upstream connection %q, want %q", i, r.Status, r.Headers["conn"], want)
		}
	}
	waitFor(t, 3*time.Second, "the drained connection closed", func() bool { return closed.Load() == 1 })
	if v := w.metricValue("weft_rpc_upstream_cx_going_away_total", "stat_prefix=rpc"); v != 1 {
		t.Errorf("weft_rpc_upstream_cx_going_away_total = %v", v)
	}
}
