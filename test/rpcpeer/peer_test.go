package rpcpeer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	hessian "github.com/apache/dubbo-go-hessian2"
)

var protocols = []Protocol{Bolt, Dubbo}

func startServer(t *testing.T, p Protocol, o ServerOptions) *Server {
	t.Helper()
	s, err := Serve(p, "127.0.0.1:0", o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func dial(t *testing.T, p Protocol, addr string) *Client {
	t.Helper()
	c, err := Dial(p, addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond for up to 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func okStatus(p Protocol) int {
	if p == Dubbo {
		return DubboOK
	}
	return BoltSuccess
}

func TestEcho(t *testing.T) {
	for _, p := range protocols {
		t.Run(string(p), func(t *testing.T) {
			s := startServer(t, p, ServerOptions{Name: "up-1"})
			c := dial(t, p, s.Addr())
			req := &Request{
				Service: "com.weftmesh.demo.EchoService", Method: "echo", Version: "2.0", Group: "blue",
				Headers: map[string]string{"x-user": "alice", "rpc_trace_context.sofaTraceId": "abc", "x-served-by": "forged"},
				Body:    []byte("héllo wörld"),
				Timeout: 1500 * time.Millisecond,
			}
			resp, err := c.Call(ctxT(t, 5*time.Second), req)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Status != okStatus(p) || !bytes.Equal(resp.Body, req.Body) || resp.Heartbeat || resp.Exception {
				t.Fatalf("response %+v", resp)
			}
			if resp.Headers["x-served-by"] != "up-1" || resp.Headers["x-user"] != "alice" || resp.Headers["rpc_trace_context.sofaTraceId"] != "abc" {
				t.Fatalf("headers %v", resp.Headers)
			}
			got := s.LastRequestHeaders()
			var want map[string]string
			if p == Bolt {
				if resp.ClassName != SofaResponseClass {
					t.Errorf("class %q", resp.ClassName)
				}
				svc := "com.weftmesh.demo.EchoService:2.0:blue"
				want = map[string]string{"service": svc, "sofa_head_target_service": svc, "sofa_head_method_name": "echo",
					"sofa_head_target_app": "rpcpeer", "x-user": "alice", "rpc_trace_context.sofaTraceId": "abc", "x-served-by": "forged"}
			} else {
				want = map[string]string{"path": req.Service, "interface": req.Service, "version": "2.0", "group": "blue",
					"timeout": "1500", "x-user": "alice", "rpc_trace_context.sofaTraceId": "abc", "x-served-by": "forged"}
			}
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("server saw %v\nwant %v", got, want)
			}
			for k, v := range want {
				if k != "x-served-by" && resp.Headers[k] != v {
					t.Errorf("echoed %s = %q, want %q", k, resp.Headers[k], v)
				}
			}
			if st := s.Stats(); st.Requests != 1 || st.Accepted != 1 || st.Open != 1 || st.Oneways != 0 || st.Heartbeats != 0 {
				t.Errorf("stats %+v", st)
			}
			// Empty and large bodies.
			for _, n := range []int{0, 1 << 20} {
				body := bytes.Repeat([]byte("z"), n)
				resp, err := c.Call(ctxT(t, 5*time.Second), &Request{Service: "s", Method: "m", Body: body})
				if err != nil || resp.Status != okStatus(p) || !bytes.Equal(resp.Body, body) {
					t.Fatalf("body of %d: %v, %v", n, resp, err)
				}
			}
		})
	}
}

func TestBoltVersions(t *testing.T) {
	s := startServer(t, Bolt, ServerOptions{Name: "b"})
	c := dial(t, Bolt, s.Addr())
	for _, tc := range []struct {
		name        string
		v2, crc     bool
		proto, ver1 byte
		sw          byte
	}{
		{"v1", false, false, 1, 0, 0},
		{"v2", true, false, 2, 1, 0},
		{"v2crc", true, true, 2, 2, 1},
		{"crc implies v2", false, true, 2, 2, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req := &Request{Service: "svc", Method: "m", Body: []byte{0, 1, 2, 0xff}, BoltV2: tc.v2, BoltCRC: tc.crc,
				Headers: map[string]string{"k": "v"}}
			resp, err := c.Call(ctxT(t, 5*time.Second), req)
			if err != nil || resp.Status != BoltSuccess || !bytes.Equal(resp.Body, req.Body) || resp.Headers["k"] != "v" {
				t.Fatalf("%+v, %v", resp, err)
			}
			// The request as written and the reply as read.
			wire := EncodeRequest(Bolt, 77, req)
			f, n, err := DecodeBolt(wire)
			if err != nil || n != len(wire) || f.Proto != tc.proto || f.Ver1 != tc.ver1 || f.Switch != tc.sw || f.HasCRC() != tc.crc {
				t.Fatalf("request frame %+v, %d, %v", f, n, err)
			}
			conn, err := net.Dial("tcp", s.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.Write(wire)
			r := readFrame(t, Bolt, conn)
			g, _, err := DecodeBolt(r)
			if err != nil {
				t.Fatal(err)
			}
			if g.Proto != tc.proto || g.Ver1 != tc.ver1 || g.Switch != tc.sw || g.ID != 77 || g.Type != 0 || g.CmdCode != 2 ||
				g.Status != 0 || !bytes.Equal(g.Content, req.Body) || g.ClassName != SofaResponseClass {
				t.Fatalf("reply %+v", g)
			}
			if want := len(f.Header) + 1; len(g.Header) != want || g.Header[want-1] != (KV{"x-served-by", "b"}) {
				t.Fatalf("reply header %v", g.Header)
			}
			for i := range f.Header {
				if g.Header[i] != f.Header[i] {
					t.Fatalf("reply header %v, request %v", g.Header, f.Header)
				}
			}
		})
	}
}

// readFrame reads one whole frame from r.
func readFrame(t *testing.T, p Protocol, r io.Reader) []byte {
	t.Helper()
	if c, ok := r.(net.Conn); ok {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
	}
	var buf []byte
	for {
		need, complete, err := frameNeed(p, buf)
		if err != nil {
			t.Fatal(err)
		}
		if complete && len(buf) == need {
			return buf
		}
		n := len(buf)
		buf = append(buf, make([]byte, need-n)...)
		if _, err := io.ReadFull(r, buf[n:]); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOnewayAndHeartbeat(t *testing.T) {
	for _, p := range protocols {
		t.Run(string(p), func(t *testing.T) {
			s := startServer(t, p, ServerOptions{Name: "x"})
			c := dial(t, p, s.Addr())
			for i := 0; i < 10; i++ {
				resp, err := c.Call(ctxT(t, 5*time.Second), &Request{Service: "s", Method: "log", Body: []byte("e" + strconv.Itoa(i)), Oneway: true,
					Headers: map[string]string{"seq": strconv.Itoa(i)}})
				if resp != nil || err != nil {
					t.Fatalf("oneway = %v, %v", resp, err)
				}
			}
			eventually(t, "10 one-ways", func() bool { return s.Stats().Oneways == 10 })
			if h := s.LastRequestHeaders(); h["seq"] != "9" {
				t.Errorf("last headers %v", h)
			}
			for i := 0; i < 3; i++ {
				resp, err := c.Heartbeat(ctxT(t, 5*time.Second))
				if err != nil || !resp.Heartbeat || resp.Status != okStatus(p) || resp.Body != nil {
					t.Fatalf("heartbeat = %+v, %v", resp, err)
				}
			}
			// A two-way call after them gets its own answer.
			resp, err := c.Call(ctxT(t, 5*time.Second), &Request{Service: "s", Method: "m", Body: []byte("after")})
			if err != nil || string(resp.Body) != "after" {
				t.Fatalf("%v, %v", resp, err)
			}
			if st := s.Stats(); st.Oneways != 10 || st.Heartbeats != 3 || st.Requests != 1 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

func TestBusy(t *testing.T) {
	for _, p := range protocols {
		t.Run(string(p), func(t *testing.T) {
			s := startServer(t, p, ServerOptions{Name: "x"})
			c := dial(t, p, s.Addr())
			resp, err := c.Call(ctxT(t, 5*time.Second), &Request{Service: "s", Method: "busy", Body: []byte("b")})
			if err != nil {
				t.Fatal(err)
			}
			if p == Bolt {
				msg, err := parseHessianString(resp.Body)
				if resp.Status != BoltServerThreadpoolBusy || resp.ClassName != "java.lang.String" || err != nil || msg != busyMessage ||
					resp.Headers["x-served-by"] != "x" {
					t.Fatalf("%+v (%q, %v)", resp, msg, err)
				}
			} else if resp.Status != DubboThreadpoolExhausted || string(resp.Body) != busyMessage {
				t.Fatalf("%+v", resp)
			}
		})
	}
}

func TestConcurrency(t *testing.T) {
	for _, p := range protocols {
		t.Run(string(p), func(t *testing.T) {
			s := startServer(t, p, ServerOptions{Name: "x"})
			c := dial(t, p, s.Addr())
			const G, N = 200, 50
			ctx := ctxT(t, 60*time.Second)
			var wg sync.WaitGroup
			errs := make(chan error, G)
			for g := 0; g < G; g++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < N; i++ {
						body := fmt.Sprintf("g%d-i%d", g, i)
						req := &Request{Service: "s", Method: "m", Body: []byte(body), Headers: map[string]string{"g": strconv.Itoa(g)},
							BoltCRC: i%3 == 0, BoltV2: i%3 == 1}
						resp, err := c.Call(ctx, req)
						if err != nil {
							errs <- err
							return
						}
						if string(resp.Body) != body || resp.Headers["g"] != strconv.Itoa(g) {
							errs <- fmt.Errorf("sent %q got %q (%v)", body, resp.Body, resp.Headers)
							return
						}
						if i%10 == 0 {
							if _, err := c.Call(ctx, &Request{Service: "s", Method: "m", Oneway: true}); err != nil {
								errs <- err
								return
							}
						}
					}
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				t.Fatal(err)
			}
			if st := s.Stats(); st.Requests != G*N || st.Accepted != 1 {
				t.Errorf("stats %+v", st)
			}
			eventually(t, "one-ways", func() bool { return s.Stats().Oneways == G*N/10 })
			c.mu.Lock()
			left := len(c.calls)
			c.mu.Unlock()
			if left != 0 {
				t.Errorf("%d calls left registered", left)
			}
		})
	}
}

func TestContextTimeoutStalled(t *testing.T) {
	for _, p := range protocols {
		t.Run(string(p), func(t *testing.T) {
			s := startServer(t, p, ServerOptions{Name: "x"})
			c := dial(t, p, s.Addr())
			s.SetStall(true)
			start := time.Now()
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			resp, err := c.Call(ctx, &Request{Service: "s", Method: "m"})
			cancel()
			if resp != nil || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("= %v, %v", resp, err)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %v", d)
			}
			ctx, cancel = context.WithTimeout(context.Background(), 50*time.Millisecond)
			if _, err := c.Heartbeat(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("heartbeat while stalled: %v", err)
			}
			cancel()
			// Canceled before sending.
			ctx, cancel = context.WithCancel(context.Background())
			cancel()
			if _, err := c.Call(ctx, &Request{Service: "s", Method: "m"}); !errors.Is(err, context.Canceled) {
				t.Fatalf("canceled: %v", err)
			}
			eventually(t, "the stalled request and heartbeat counted", func() bool {
				st := s.Stats()
				return st.Requests == 1 && st.Heartbeats == 1
			})
			s.SetStall(false)
			c.mu.Lock()
			left := len(c.calls)
			c.mu.Unlock()
			if left != 0 {
				t.Errorf("%d calls left registered", left)
			}
			// A late reply (slept past the caller's deadline) is dropped
			// and does not disturb the next call.
			ctx, cancel = context.WithTimeout(context.Background(), 30*time.Millisecond)
			_, err = c.Call(ctx, &Request{Service: "s", Method: "m", Body: []byte("late"), Headers: map[string]string{"x-sleep-ms": "150"}})
			cancel()
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("late: %v", err)
			}
			time.Sleep(250 * time.Millisecond)
			resp, err = c.Call(ctxT(t, 5*time.Second), &Request{Service: "s", Method: "m", Body: []byte("next")})
			if err != nil || string(resp.Body) != "next" {
				t.Fatalf("after late reply: %v, %v", resp, err)
			}
		})
	}
}

func TestDelay(t *testing.T) {
	for _, p := range protocols {
		t.Run(string(p), func(t *testing.T) {
			s := startServer(t, p, ServerOptions{Name: "x", Delay: 80 * time.Millisecond})
			c := dial(t, p, s.Addr())
			// Concurrent delayed calls overlap: the reader is not blocked.
			start := time.Now()
			var wg sync.WaitGroup
			for i := 0; i < 20; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					if _, err := c.Call(ctxT(t, 5*time.Second), &Request{Service: "s", Method: "m"}); err != nil {
						t.Error(err)
					}
				}()
			}
			wg.Wait()
			if d := time.Since(start); d < 80*time.Millisecond || d > 1500*time.Millisecond {
				t.Errorf("20 delayed calls took %v", d)
			}
			start = time.Now()
			if _, err := c.Call(ctxT(t, 5*time.Second), &Request{Service: "s", Method: "m", Headers: map[string]string{"x-sleep-ms": "100"}}); err != nil {
				t.Fatal(err)
			}
			if d := time.Since(start); d < 180*time.Millisecond {
				t.Errorf("Delay + x-sleep-ms took only %v", d)
			}
		})
	}
}

func TestKillConns(t *testing.T) {
	for _, p := range protocols {
		t.Run(string(p), func(t *testing.T) {
			s := startServer(t, p, ServerOptions{Name: "x"})
			c := dial(t, p, s.Addr())
			s.SetStall(true)
			const N = 20
			errs := make(chan error, N)
			for i := 0; i < N; i++ {
				go func() {
					_, err := c.Call(context.Background(), &Request{Service: "s", Method: "m"})
					errs <- err
				}()
			}
			eventually(t, "requests at the server", func() bool { return s.Stats().Requests == N })
			s.KillConns()
			deadline := time.After(2 * time.Second)
			for i := 0; i < N; i++ {
				select {
				case err := <-errs:
					if err == nil {
						t.Fatal("call succeeded on a killed connection")
					}
				case <-deadline:
					t.Fatalf("only %d of %d calls returned", i, N)
				}
			}
			if _, err := c.Call(ctxT(t, time.Second), &Request{Service: "s", Method: "m"}); err == nil || errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("call on a dead client: %v", err)
			}
			eventually(t, "no open conns", func() bool { return s.Stats().Open == 0 })
			s.SetStall(false)
			c2 := dial(t, p, s.Addr())
			if _, err := c2.Call(ctxT(t, 5*time.Second), &Request{Service: "s", Method: "m"}); err != nil {
				t.Fatal(err)
			}
			if st := s.Stats(); st.Accepted != 2 || st.Open != 1 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

func TestClientClose(t *testing.T) {
	for _, p := range protocols {
		t.Run(string(p), func(t *testing.T) {
			s := startServer(t, p, ServerOptions{})
			s.SetStall(true)
			c, err := Dial(p, s.Addr())
			if err != nil {
				t.Fatal(err)
			}
			errs := make(chan error, 5)
			for i := 0; i < 5; i++ {
				go func() {
					_, err := c.Call(context.Background(), &Request{Service: "s", Method: "m"})
					errs <- err
				}()
			}
			eventually(t, "requests at the server", func() bool { return s.Stats().Requests == 5 })
			if err := c.Close(); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < 5; i++ {
				if err := <-errs; !errors.Is(err, ErrClosed) {
					t.Fatalf("pending call after Close: %v", err)
				}
			}
			if _, err := c.Call(context.Background(), &Request{Service: "s", Method: "m"}); !errors.Is(err, ErrClosed) {
				t.Fatalf("call after Close: %v", err)
			}
			if _, err := c.Call(context.Background(), &Request{Service: "s", Method: "m", Oneway: true}); err == nil {
				t.Fatal("one-way after Close succeeded")
			}
		})
	}
}

func TestServerClose(t *testing.T) {
	for _, p := range protocols {
		t.Run(string(p), func(t *testing.T) {
			before := runtime.NumGoroutine()
			s, err := Serve(p, "127.0.0.1:0", ServerOptions{Delay: time.Hour})
			if err != nil {
				t.Fatal(err)
			}
			c, err := Dial(p, s.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			done := make(chan error, 1)
			go func() {
				_, err := c.Call(context.Background(), &Request{Service: "s", Method: "m"})
				done <- err
			}()
			eventually(t, "request at the server", func() bool { return s.Stats().Requests == 1 })
			closed := make(chan struct{})
			go func() { s.Close(); close(closed) }()
			select {
			case <-closed:
			case <-time.After(5 * time.Second):
				t.Fatal("Close hung on an armed reply timer")
			}
			if err := <-done; err == nil {
				t.Fatal("call succeeded on a closed server")
			}
			if st := s.Stats(); st.Open != 0 {
				t.Errorf("stats %+v", st)
			}
			if _, err := Dial(p, s.Addr()); err == nil {
				t.Error("still listening after Close")
			}
			c.Close()
			eventually(t, "goroutines to end", func() bool { return runtime.NumGoroutine() <= before+1 })
		})
	}
}

// TestMalformed checks that bad bytes close the connection and count as
// nothing.
func TestMalformed(t *testing.T) {
	good := map[Protocol][]byte{
		Bolt:  EncodeRequest(Bolt, 1, &Request{Service: "s", Method: "m", BoltCRC: true, Body: []byte("x")}),
		Dubbo: EncodeRequest(Dubbo, 1, &Request{Service: "s", Method: "m", Body: []byte("x")}),
	}
	corrupt := func(p Protocol, f func(b []byte) []byte) []byte { return f(bytes.Clone(good[p])) }
	cases := []struct {
		name string
		p    Protocol
		wire []byte
	}{
		{"bolt garbage", Bolt, []byte("GET / HTTP/1.1\r\n\r\n")},
		{"bolt bad crc", Bolt, corrupt(Bolt, func(b []byte) []byte { b[len(b)-1] ^= 1; return b })},
		{"bolt bad type", Bolt, corrupt(Bolt, func(b []byte) []byte { b[2] = 7; return b })},
		{"bolt bad cmdcode", Bolt, corrupt(Bolt, func(b []byte) []byte { b[4] = 9; return b })},
		{"bolt bad ver1", Bolt, corrupt(Bolt, func(b []byte) []byte { b[1] = 5; return b })},
		{"bolt header overrun", Bolt, corrupt(Bolt, func(b []byte) []byte {
			b[24+len(SofaRequestClass)+3] = 0xff // first key length
			return finishBolt(b[:len(b)-4], 0, &boltView{proto: 2, ver1: 2, sw: 1})
		})},
		{"bolt response to server", Bolt, EncodeResponse(Bolt, 1, &Response{})},
		{"dubbo bad magic", Dubbo, corrupt(Dubbo, func(b []byte) []byte { b[1] = 0xbc; return b })},
		{"dubbo negative length", Dubbo, corrupt(Dubbo, func(b []byte) []byte { b[12] = 0x80; return b })},
		{"dubbo bad body", Dubbo, AppendDubbo(nil, &DubboFrame{Flags: 0xc2, ID: 3, Body: []byte{0x05, '2', '.', '0'}})},
		{"dubbo bad types", Dubbo, AppendDubbo(nil, &DubboFrame{Flags: 0xc2, ID: 3, Body: hessianStrings(t, "2.0.2", "s", "", "m", "Lx")})},
		{"dubbo response to server", Dubbo, EncodeResponse(Dubbo, 1, &Response{Status: DubboOK, Body: []byte("x")})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := startServer(t, tc.p, ServerOptions{})
			conn, err := net.Dial("tcp", s.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.Write(tc.wire)
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			n, err := conn.Read(make([]byte, 64))
			if n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("read %d, %v; want the connection closed", n, err)
			}
			if st := s.Stats(); st.Requests+st.Oneways+st.Heartbeats != 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

// hessianStrings encodes strings one after another.
func hessianStrings(t *testing.T, ss ...string) []byte {
	t.Helper()
	e := hessian.NewEncoder()
	for _, s := range ss {
		if err := e.Encode(s); err != nil {
			t.Fatal(err)
		}
	}
	return e.Buffer()
}
