package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	// The extensions the demo's sidecars use, as cmd/weft links them.
	_ "github.com/weftmesh/weft/extensions/codecs/bolt"
	_ "github.com/weftmesh/weft/extensions/codecs/dubbo"
	_ "github.com/weftmesh/weft/extensions/filters/network/hcm"
	_ "github.com/weftmesh/weft/extensions/filters/network/rpcproxy"
	_ "github.com/weftmesh/weft/extensions/filters/stream/fault"
)

// freeRun finds n consecutive free loopback ports. It looks below the
// ephemeral port range (Linux: 32768-60999, BSDs and Windows: 49152 and
// up), as the demo's own defaults do: there busy outgoing connections take
// no ports, so a run is free unless something listens in it.
func freeRun(t *testing.T, n int) int {
	t.Helper()
	const lo, hi = 15000, 32000
	for try := 0; try < 200; try++ {
		base := lo + rand.IntN(hi-lo-n)
		ok := true
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

// TestRun runs the demo in process: the Bolt, Dubbo and gRPC callers get
// their answers through the sidecars, the meshed and the plain catalog consumers
// reach both catalog providers through the registry, and cancelling the
// context stops everything, leaving no goroutine and no port behind.
func TestRun(t *testing.T) {
	base, admin := freeRun(t, basePorts), freeRun(t, adminPorts)
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
		base, admin = freeRun(t, basePorts), freeRun(t, adminPorts)
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
	testRunGRPC(t, base, admin, out.String(), get)
	registryAddr := testRunMesh(t, base, out.String(), get)
	testRunControlPlane(t, base, admin, out.String(), client)
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
	addrs := []string{registryAddr}
	for i := 0; i < basePorts; i++ {
		addrs = append(addrs, fmt.Sprintf("127.0.0.1:%d", base+i))
	}
	for i := 0; i < adminPorts; i++ {
		addrs = append(addrs, fmt.Sprintf("127.0.0.1:%d", admin+i))
	}
	for _, a := range addrs {
		if c, err := net.Dial("tcp", a); err == nil {
			c.Close()
			t.Errorf("%s still open after Run returned", a)
		}
	}
	noLeak(t, before)
}

// testRunMesh checks the registry part of a running demo and returns the
// registry's address: /mesh shows both consumers' calls succeeding and
// answered by both providers, the SDK APIs in the banner show the
// publication and the subscription, and the registry lists the meshed
// provider's sidecar and the plain provider.
func testRunMesh(t *testing.T, base int, banner string, get func(string) (int, string)) string {
	t.Helper()
	reg := regexp.MustCompile(`embedded registry at (127\.0\.0\.1:\d+)`).FindStringSubmatch(banner)
	if reg == nil {
		t.Fatalf("banner lacks the registry address:\n%s", banner)
	}
	for _, want := range []string{
		fmt.Sprintf("curl http://127.0.0.1:%d/mesh", base),
		fmt.Sprintf("curl -s http://127.0.0.1:%d/v1/status", base+8),
		fmt.Sprintf("curl -s http://127.0.0.1:%d/v1/status", base+9),
		fmt.Sprintf("sidecar-meshed-consumer :%d (egress)", base+7),
		fmt.Sprintf("sidecar-catalog-meshed :%d (ingress)", base+6),
	} {
		if !strings.Contains(banner, want) {
			t.Errorf("banner lacks %q:\n%s", want, banner)
		}
	}

	var body string
	defer func() {
		if t.Failed() {
			t.Logf("/mesh: %s", body)
		}
	}()
	eventually(t, 10*time.Second, "both consumers reaching both providers on /mesh", func() bool {
		var code int
		code, body = get(fmt.Sprintf("http://127.0.0.1:%d/mesh", base))
		var got struct {
			Meshed consumerStatus `json:"meshed_consumer"`
			Plain  consumerStatus `json:"plain_consumer"`
		}
		if code != 200 || json.Unmarshal([]byte(body), &got) != nil {
			return false
		}
		for _, c := range []consumerStatus{got.Meshed, got.Plain} {
			if c.Failed != 0 {
				t.Fatalf("calls failed: %s", body)
			}
			if c.OK < 20 || c.ServedBy[catalogMeshed] == 0 || c.ServedBy[catalogPlain] == 0 {
				return false
			}
		}
		return true
	})
	for _, want := range []string{`"registry": "` + reg[1] + `"`, `"item #`, "(catalog-meshed, meshed: its sidecar's ingress)",
		fmt.Sprintf(`"127.0.0.1:%d (catalog-meshed, meshed`, base+6), fmt.Sprintf(`"via": "127.0.0.1:%d (sidecar-meshed-consumer egress`, base+7)} {
		if !strings.Contains(body, want) {
			t.Errorf("/mesh lacks %q: %s", want, body)
		}
	}

	code, st := get(fmt.Sprintf("http://127.0.0.1:%d/v1/status", base+8))
	if code != 200 || !strings.Contains(st, `"registered":true`) || !strings.Contains(st, catalogService) {
		t.Errorf("the meshed provider's sidecar status: %d %s", code, st)
	}
	code, st = get(fmt.Sprintf("http://127.0.0.1:%d/v1/status", base+9))
	if code != 200 || !strings.Contains(st, fmt.Sprintf(`"address":"127.0.0.1:%d"`, base+7)) || strings.Count(st, `"service":"`+catalogService) != 3 {
		t.Errorf("the meshed consumer's sidecar status (want its subscription with two providers): %d %s", code, st)
	}
	code, st = get("http://" + reg[1] + "/v1/services/" + catalogService)
	if code != 200 || !strings.Contains(st, fmt.Sprintf(`"address":"127.0.0.1:%d"`, base+6)) || !strings.Contains(st, `"meshed":"true"`) ||
		!strings.Contains(st, `"app":"catalog-plain"`) {
		t.Errorf("the registry's instances: %d %s", code, st)
	}
	return reg[1]
}

// TestRunPortTaken: a port of the mesh already taken is reported, naming
// the sidecar and the port, and the failed start closes what it started
// (the registry among them).
func TestRunPortTaken(t *testing.T) {
	for _, tc := range []struct {
		offset  int
		sidecar string
		what    string
	}{
		{5, "sidecar-dubbo-greeting", "RPC listener"},
		{6, sidecarCatalog, "mesh ingress (bolt)"},
		{7, sidecarConsumer, "mesh egress (bolt)"},
		{8, sidecarCatalog, "mesh agent SDK API"},
		{12, sidecarGRPC, "listener"},
	} {
		t.Run(tc.what, func(t *testing.T) {
			for try := 0; ; try++ {
				base, admin := freeRun(t, basePorts), freeRun(t, adminPorts)
				ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", base+tc.offset))
				if err != nil {
					t.Fatal(err)
				}
				before := runtime.NumGoroutine()
				err = Run(context.Background(), Options{BasePort: base, AdminBase: admin, RPS: 5, Out: io.Discard,
					Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Dir: t.TempDir()})
				_ = ln.Close()
				want := fmt.Sprintf("%s: %s port %d", tc.sidecar, tc.what, base+tc.offset)
				if err != nil && !strings.Contains(err.Error(), want) &&
					strings.Contains(err.Error(), "address already in use") && try < 3 {
					continue // another port of the run was taken meanwhile
				}
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Fatalf("Run with port %d taken: %v (want %q)", base+tc.offset, err, want)
				}
				noLeak(t, before)
				return
			}
		})
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
		{"bolt", boltEcho(echoService, "b"), echoCaller},
		{"dubbo", dubboGreeting("d"), func() rpcProtocol { return &dubboCaller{} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := startTCPServer(dropAfter(5, tc.serve))
			if err != nil {
				t.Fatal(err)
			}
			defer srv.Close()
			c := newCaller("svc", srv.ln.Addr().String(), 100, tc.mk, to(srv.ln.Addr().String()))
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
			if !strings.Contains(s.Last, "served-by") || s.ServedBy[tc.name[:1]] != s.OK {
				t.Errorf("last reply %q, served by %v", s.Last, s.ServedBy)
			}
			t.Logf("%+v", s)
		})
	}
	noLeak(t, before)
}

// TestCallerRoundRobin: a caller with several targets takes them in turn,
// one connection each; a target that goes away is left (its idle
// connection closed) and a dead one skipped, without failed calls; with no
// target left, calls fail.
func TestCallerRoundRobin(t *testing.T) {
	before := runtime.NumGoroutine()
	var srvs []*tcpServer
	for _, name := range []string{"p1", "p2", "p3"} {
		s, err := startTCPServer(boltEcho(catalogService, name))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		srvs = append(srvs, s)
	}
	var mu sync.Mutex
	targets := []string{srvs[0].ln.Addr().String(), srvs[1].ln.Addr().String()}
	set := func(l ...string) { mu.Lock(); targets = l; mu.Unlock() }
	c := newCaller(catalogService, "test", 200, catalogCaller, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return targets
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.run(ctx) }()
	defer func() { cancel(); <-done }()

	eventually(t, 10*time.Second, "calls to p1 and p2", func() bool {
		s := c.stats()
		return s.ServedBy["p1"] >= 20 && s.ServedBy["p2"] >= 20
	})
	if s := c.stats(); s.Failed != 0 || s.Connects != 2 || s.ServedBy["p1"]+s.ServedBy["p2"] != s.OK || s.ServedBy["p3"] != 0 ||
		max(s.ServedBy["p1"], s.ServedBy["p2"])-min(s.ServedBy["p1"], s.ServedBy["p2"]) > 2 {
		t.Fatalf("round robin over p1 and p2: %+v", s)
	}

	// p1 leaves the list, p3 joins: p1's connection closes once idle.
	set(srvs[1].ln.Addr().String(), srvs[2].ln.Addr().String())
	eventually(t, 10*time.Second, "calls to p3", func() bool { return c.stats().ServedBy["p3"] >= 20 })
	eventually(t, 10*time.Second, "p1's connection closed", func() bool {
		srvs[0].mu.Lock()
		defer srvs[0].mu.Unlock()
		return len(srvs[0].conns) == 0
	})
	// p3 dies: calls in flight to it may fail, then p2 takes everything.
	srvs[2].Close()
	time.Sleep(100 * time.Millisecond)
	s0 := c.stats()
	eventually(t, 10*time.Second, "p2 alone", func() bool { return c.stats().ServedBy["p2"] >= s0.ServedBy["p2"]+40 })
	if s := c.stats(); s.Failed != s0.Failed || s.ServedBy["p3"] != s0.ServedBy["p3"] {
		t.Fatalf("calls failed or reached the dead p3: before %+v, after %+v", s0, s)
	}

	// No target: calls fail.
	set()
	eventually(t, 10*time.Second, "failures without a target", func() bool { return c.stats().Failed > s0.Failed+5 })
	if s := c.stats(); !strings.Contains(s.LastError, "no provider known") {
		t.Errorf("last error %q", s.LastError)
	}
	cancel()
	<-done
	for _, s := range srvs {
		s.Close()
	}
	noLeak(t, before)
}

// TestCallerWaitsForTargets: a caller whose targets are unknown at first
// waits without counting failures.
func TestCallerWaitsForTargets(t *testing.T) {
	srv, err := startTCPServer(boltEcho(catalogService, "p"))
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	var mu sync.Mutex
	var targets []string
	c := newCaller(catalogService, "test", 200, catalogCaller, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return targets
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.run(ctx) }()
	defer func() { cancel(); <-done }()
	time.Sleep(100 * time.Millisecond)
	if s := c.stats(); s.OK+s.Failed != 0 {
		t.Fatalf("calls before any target: %+v", s)
	}
	mu.Lock()
	targets = []string{srv.ln.Addr().String()}
	mu.Unlock()
	eventually(t, 10*time.Second, "calls", func() bool { return c.stats().OK >= 10 })
	if s := c.stats(); s.Failed != 0 {
		t.Fatalf("%+v", s)
	}
}

// testRunControlPlane checks the control-plane part of a running demo:
// sidecar-xds, configured only over ADS, splits "backend" between the two
// backend sidecars and sends testers to v2; a Bolt call to the catalog
// service through it reaches a provider the registry knows; an edit of
// routes.yaml reaches it.
func testRunControlPlane(t *testing.T, base, admin int, banner string, client *http.Client) {
	t.Helper()
	m := regexp.MustCompile(`rules in (\S+);`).FindStringSubmatch(banner)
	if m == nil {
		t.Fatalf("banner lacks the rules directory:\n%s", banner)
	}
	rules := m[1]
	call := func(user string) string {
		req, _ := http.NewRequest("GET", fmt.Sprintf("http://127.0.0.1:%d/hello", base+10), nil)
		req.Host = "backend"
		if user != "" {
			req.Header.Set("x-demo-user", user)
		}
		resp, err := client.Do(req)
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return fmt.Sprint(resp.StatusCode, " ", string(b))
	}
	seen := map[string]int{}
	eventually(t, 15*time.Second, "sidecar-xds serving backend from the control plane", func() bool {
		r := call("")
		if strings.Contains(r, "backend-1") {
			seen["v1"]++
		} else if strings.Contains(r, "backend-2") {
			seen["v2"]++
		}
		return seen["v1"]+seen["v2"] >= 50
	})
	if seen["v1"] < seen["v2"] || seen["v1"] == 50 {
		t.Errorf("the 80/20 split: %v", seen)
	}
	for i := 0; i < 5; i++ {
		if r := call("tester"); !strings.Contains(r, "backend-2") {
			t.Fatalf("a tester got %q, want backend-2", r)
		}
	}
	// Bolt through sidecar-xds, to providers that only the registry names.
	bc := newCaller(catalogService+":"+catalogVersion, fmt.Sprintf("127.0.0.1:%d", base+11), 20, catalogCaller, to(fmt.Sprintf("127.0.0.1:%d", base+11)))
	ctx, cancel := context.WithCancel(context.Background())
	go bc.run(ctx)
	eventually(t, 15*time.Second, "Bolt calls through sidecar-xds", func() bool {
		st := bc.stats()
		if st.OK < 5 {
			t.Logf("bolt via sidecar-xds: %+v", st)
		}
		return st.OK >= 5
	})
	cancel()
	// An edit of the rules reaches the sidecar.
	edit := strings.Replace(mustRead(t, filepath.Join(rules, "routes.yaml")), "weight: 80}", "weight: 0}", 1)
	edit = strings.Replace(edit, "weight: 20}", "weight: 100}", 1)
	if err := os.WriteFile(filepath.Join(rules, "routes.yaml"), []byte(edit), 0o644); err != nil {
		t.Fatal(err)
	}
	eventually(t, 15*time.Second, "everyone on v2 after editing routes.yaml", func() bool {
		for i := 0; i < 10; i++ {
			if !strings.Contains(call(""), "backend-2") {
				return false
			}
		}
		return true
	})
	if code, body := httpGetStatus(client, fmt.Sprintf("http://127.0.0.1:%d/config_dump", admin+7)); code != 200 || !strings.Contains(body, "http_egress") {
		t.Errorf("sidecar-xds /config_dump: %d", code)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func httpGetStatus(c *http.Client, url string) (int, string) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// testRunGRPC checks the gRPC part of a running demo: the gRPC caller's
// calls through sidecar-frontend and sidecar-grpc succeed (/rpc), both
// sidecars count them per method with grpc-status 0, and a grpc-go client
// through the frontend sidecar gets the echo with the served-by header
// and trailer (trailers intact through two sidecars), the stream of
// StreamingOutputCall, and SERVING from the health service.
func testRunGRPC(t *testing.T, base, admin int, banner string, get func(string) (int, string)) {
	t.Helper()
	for _, want := range []string{
		fmt.Sprintf("%s :%d", sidecarGRPC, base+12),
		"/" + grpcTestService + "/*",
		fmt.Sprintf(`curl -s http://127.0.0.1:%d/stats/prometheus | grep 'weft_rpc_method_responses_total{.*protocol="grpc"'`, admin),
		fmt.Sprintf("%s :%d)", sidecarGRPC, admin+8),
	} {
		if !strings.Contains(banner, want) {
			t.Errorf("banner lacks %q:\n%s", want, banner)
		}
	}

	// The background caller.
	var body string
	eventually(t, 10*time.Second, "gRPC calls on /rpc", func() bool {
		var code int
		code, body = get(fmt.Sprintf("http://127.0.0.1:%d/rpc", base))
		var got map[string]callerStats
		if code != 200 || json.Unmarshal([]byte(body), &got) != nil {
			return false
		}
		g, ok := got["grpc"]
		if !ok {
			t.Fatalf(`/rpc has no "grpc": %s`, body)
		}
		if g.Failed != 0 || g.LastError != "" {
			t.Fatalf("gRPC calls failed: %s", body)
		}
		return g.OK >= 20 && g.ServedBy[grpcApp] == g.OK
	})
	for _, want := range []string{`"grpc #`, "served-by " + grpcApp + ", header and trailer", `"connects": 1,`} {
		if !strings.Contains(body, want) {
			t.Errorf("/rpc lacks %q: %s", want, body)
		}
	}

	// Both sidecars count the calls per method, all with grpc-status 0.
	for _, sc := range []struct {
		name  string
		admin int
	}{{sidecarFrontend, admin}, {sidecarGRPC, admin + 8}} {
		_, prom := get(fmt.Sprintf("http://127.0.0.1:%d/stats/prometheus", sc.admin))
		ok := 0.0
		for _, m := range promSamples(prom, "weft_rpc_method_responses_total") {
			if m.labels["protocol"] != "grpc" {
				continue
			}
			if m.labels["service"] == grpcTestService && m.labels["method"] == grpcUnaryMethod && m.labels["status"] == "0" &&
				m.labels["stat_prefix"] == sc.name {
				ok += m.value
			} else if m.labels["status"] != "0" {
				t.Errorf("%s: gRPC responses with a status other than 0: %v %v", sc.name, m.labels, m.value)
			}
		}
		if ok == 0 {
			t.Errorf(`%s: no weft_rpc_method_responses_total{protocol="grpc",service=%q,method=%q,status="0"} > 0 in:\n%s`,
				sc.name, grpcTestService, grpcUnaryMethod, grepLines(prom, "weft_rpc_method_"))
		}
	}

	// A client of our own, through the frontend sidecar.
	cc, err := dialGRPC(fmt.Sprintf("127.0.0.1:%d", base))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := testpb.NewTestServiceClient(cc)
	var hdr, trl metadata.MD
	resp, err := client.UnaryCall(ctx, &testpb.SimpleRequest{Payload: &testpb.Payload{Body: []byte("direct")}}, grpc.Header(&hdr), grpc.Trailer(&trl))
	if err != nil {
		t.Fatalf("UnaryCall through %s: %v", sidecarFrontend, err)
	}
	if string(resp.GetPayload().GetBody()) != "direct" || resp.GetServerId() != grpcApp {
		t.Errorf("UnaryCall answered %v", resp)
	}
	if got := hdr.Get(servedBy); len(got) != 1 || got[0] != grpcApp {
		t.Errorf("UnaryCall: served-by header %q (all headers %v)", got, hdr)
	}
	if got := trl.Get(servedBy); len(got) != 1 || got[0] != grpcApp {
		t.Errorf("UnaryCall: served-by trailer %q (all trailers %v)", got, trl)
	}

	stream, err := client.StreamingOutputCall(ctx, &testpb.StreamingOutputCallRequest{ResponseParameters: []*testpb.ResponseParameters{
		{Size: 10}, {Size: 20000}, {Size: 5, IntervalUs: 10_000},
	}})
	if err != nil {
		t.Fatal(err)
	}
	var sizes []int
	for {
		m, err := stream.Recv()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("StreamingOutputCall after %v: %v", sizes, err)
		}
		sizes = append(sizes, len(m.GetPayload().GetBody()))
	}
	if fmt.Sprint(sizes) != "[10 20000 5]" {
		t.Errorf("StreamingOutputCall: message sizes %v, want [10 20000 5]", sizes)
	}
	if got := stream.Trailer().Get(servedBy); len(got) != 1 || got[0] != grpcApp {
		t.Errorf("StreamingOutputCall: served-by trailer %q", got)
	}

	for _, svc := range []string{"", grpcTestService} {
		hr, err := healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{Service: svc})
		if err != nil || hr.GetStatus() != healthpb.HealthCheckResponse_SERVING {
			t.Errorf("health of %q through %s: %v, %v", svc, sidecarFrontend, hr, err)
		}
	}
	// A method the server lacks: UNIMPLEMENTED from the server, through
	// both sidecars.
	if _, err := client.EmptyCall(ctx, &testpb.Empty{}); status.Code(err) != codes.Unimplemented {
		t.Errorf("EmptyCall: %v, want UNIMPLEMENTED", err)
	}
}

type promSample struct {
	labels map[string]string
	value  float64
}

var promLabel = regexp.MustCompile(`(\w+)="((?:[^"\\]|\\.)*)"`)

// promSamples parses the samples of metric name from Prometheus text
// output.
func promSamples(text, name string) []promSample {
	var out []promSample
	for _, line := range strings.Split(text, "\n") {
		if !strings.HasPrefix(line, name+"{") {
			continue
		}
		end := strings.LastIndex(line, "} ")
		if end < 0 {
			continue
		}
		s := promSample{labels: map[string]string{}}
		for _, m := range promLabel.FindAllStringSubmatch(line[len(name)+1:end], -1) {
			s.labels[m[1]] = m[2]
		}
		if _, err := fmt.Sscan(strings.TrimSpace(line[end+2:]), &s.value); err != nil {
			continue
		}
		out = append(out, s)
	}
	return out
}

func grepLines(text, sub string) string {
	var out []string
	for _, line := range strings.Split(text, "\n") {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
