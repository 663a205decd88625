package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	// The extensions the demo's sidecars use, as cmd/weft links them.
	_ "github.com/weftmesh/weft/extensions/codecs/bolt"
	_ "github.com/weftmesh/weft/extensions/codecs/dubbo"
	_ "github.com/weftmesh/weft/extensions/filters/network/hcm"
	_ "github.com/weftmesh/weft/extensions/filters/network/rpcproxy"
	_ "github.com/weftmesh/weft/extensions/filters/stream/fault"
)

// freeRun finds n consecutive free loopback ports.
func freeRun(t *testing.T, n int) int {
	t.Helper()
	for try := 0; try < 50; try++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		base := ln.Addr().(*net.TCPAddr).Port
		_ = ln.Close()
		ok := base+n < 65535
		for i := 0; i < n && ok; i++ {
			l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+i))
			if err != nil {
				ok = false
				continue
			}
			_ = l.Close()
		}
		if ok {
			return base
		}
	}
	t.Fatal("no run of free ports")
	return 0
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// noLeak fails t when the goroutines started since before do not end.
func noLeak(t *testing.T, before int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines left over (had %d):\n%s", runtime.NumGoroutine()-before, before, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRunRPC runs the demo in process: the Bolt and Dubbo callers get
// their answers through the sidecars, and cancelling the context stops
// everything, leaving no goroutine behind.
func TestRunRPC(t *testing.T) {
	base, admin := freeRun(t, 6), freeRun(t, 5)
	tr := &http.Transport{}
	client := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	get := func(url string) (int, string) {
		resp, err := client.Get(url)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	before := runtime.NumGoroutine()

	var (
		ctx    context.Context
		cancel context.CancelFunc
		out    *syncBuffer
		done   chan error
	)
	// Another socket may take one of the ports between freeRun and the
	// bind; then try other ports.
	for try := 0; ; try++ {
		ctx, cancel = context.WithCancel(context.Background())
		out, done = &syncBuffer{}, make(chan error, 1)
		go func() {
			done <- Run(ctx, Options{BasePort: base, AdminBase: admin, RPS: 50, Out: out,
				Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Dir: t.TempDir()})
		}()
		var err error
		eventually(t, 10*time.Second, "the banner", func() bool {
			select {
			case err = <-done:
				return true
			default:
				return strings.Contains(out.String(), "Ctrl-C to stop")
			}
		})
		if err == nil {
			break
		}
		cancel()
		if try == 3 || !strings.Contains(err.Error(), "address already in use") {
			t.Fatal(err)
		}
		base, admin = freeRun(t, 6), freeRun(t, 5)
	}
	defer cancel()
	if want := fmt.Sprintf("curl http://127.0.0.1:%d/rpc", base); !strings.Contains(out.String(), want) {
		t.Errorf("banner lacks %q:\n%s", want, out)
	}

	var body string
	eventually(t, 10*time.Second, "RPC calls on /rpc", func() bool {
		var code int
		code, body = get(fmt.Sprintf("http://127.0.0.1:%d/rpc", base))
		var got map[string]callerStats
		if code != 200 || json.Unmarshal([]byte(body), &got) != nil {
			return false
		}
		for _, p := range []string{"bolt", "dubbo"} {
			if got[p].Failed != 0 {
				t.Fatalf("%s calls failed: %s", p, body)
			}
			if got[p].OK < 20 {
				return false
			}
		}
		return true
	})
	for _, want := range []string{`"hello demo #`, "served-by dubbo-greeting", `"ping #`, "served-by bolt-echo", `"connects": 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("/rpc lacks %q: %s", want, body)
		}
	}
	// The providers' sidecars saw the calls too.
	for i, svc := range []string{"bolt.com.weftmesh.demo.EchoService.echo", "dubbo.com.weftmesh.demo.GreetingService.greet"} {
		_, st := get(fmt.Sprintf("http://127.0.0.1:%d/stats?filter=^rpc\\.ingress\\.%s\\.requests$", admin+3+i, svc))
		if !strings.HasPrefix(st, "rpc.ingress."+svc+".requests: ") || strings.HasSuffix(strings.TrimSpace(st), ": 0") {
			t.Errorf("sidecar admin :%d: %q", admin+3+i, st)
		}
	}
	tr.CloseIdleConnections()

	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	t.Logf("shutdown took %v", time.Since(start))
	for _, p := range []int{base, base + 3, base + 4, base + 5, admin, admin + 3, admin + 4} {
		if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", p)); err == nil {
			c.Close()
			t.Errorf("port %d still open after Run returned", p)
		}
	}
	noLeak(t, before)
}

// TestRunPortTaken: a failed start closes what it started.
func TestRunPortTaken(t *testing.T) {
	for try := 0; ; try++ {
		base, admin := freeRun(t, 6), freeRun(t, 5)
		ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+5))
		if err != nil {
			t.Fatal(err)
		}
		before := runtime.NumGoroutine()
		err = Run(context.Background(), Options{BasePort: base, AdminBase: admin, RPS: 5, Out: io.Discard,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Dir: t.TempDir()})
		_ = ln.Close()
		if err != nil && !strings.Contains(err.Error(), "sidecar-dubbo-greeting") &&
			strings.Contains(err.Error(), "address already in use") && try < 3 {
			continue // another port of the run was taken meanwhile
		}
		if err == nil || !strings.Contains(err.Error(), "sidecar-dubbo-greeting") {
			t.Fatalf("Run with port %d taken: %v", base+5, err)
		}
		noLeak(t, before)
		return
	}
}

// dropAfter serves like serve but closes each connection after n frames'
// worth of reads, to make callers reconnect.
func dropAfter(n int, serve func(net.Conn)) func(net.Conn) {
	return func(c net.Conn) {
		serve(&countingConn{Conn: c, left: n})
	}
}

type countingConn struct {
	net.Conn
	left int
}

func (c *countingConn) Read(b []byte) (int, error) {
	if c.left <= 0 {
		_ = c.Conn.Close()
		return 0, io.EOF
	}
	c.left--
	return c.Conn.Read(b)
}

// TestCallerReconnects: a caller whose connection drops dials again and
// keeps calling; calls cut off count as failures, answered ones as ok.
func TestCallerReconnects(t *testing.T) {
	before := runtime.NumGoroutine()
	for _, tc := range []struct {
		name  string
		serve func(net.Conn)
		mk    func() rpcProtocol
	}{
		{"bolt", boltEcho("b"), func() rpcProtocol { return &boltCaller{} }},
		{"dubbo", dubboGreeting("d"), func() rpcProtocol { return &dubboCaller{} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := startTCPServer(dropAfter(5, tc.serve))
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			c := newCaller("svc", srv.ln.Addr().String(), 100, tc.mk)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { defer close(done); c.run(ctx) }()
			eventually(t, 10*time.Second, "reconnects", func() bool {
				s := c.stats()
				return s.Connects >= 3 && s.OK >= 8
			})
			cancel()
			<-done
			s := c.stats()
			if !strings.Contains(s.Last, "served-by") {
				t.Errorf("last reply %q", s.Last)
			}
			t.Logf("%+v", s)
		})
	}
	noLeak(t, before)
}
