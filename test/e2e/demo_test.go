package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
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

// TestDemo runs `weft demo` as a user would and follows its banner: the
// frontend answers through its sidecar and reaches a backend through the
// backends' sidecars, the Bolt and Dubbo callers reach their providers
// through the RPC proxy, the admin pages show the traffic, and the meshed
// and the plain catalog consumers reach the meshed and the plain provider
// through the embedded registry.
func TestDemo(t *testing.T) {
	var (
		base, admin int
		output      *syncBuffer
		err         error
	)
	for try := 0; ; try++ {
		if base, admin, output, err = startDemo(t); err == nil {
			break
		}
		// Another socket can take one of the seventeen ports between
		// freeRun and the demo's bind: then try other ports.
		if try == 3 || !strings.Contains(err.Error(), "address already in use") {
			t.Fatal(err)
		}
		t.Logf("retrying on other ports: %v", err)
	}
	code, body := httpGet(fmt.Sprintf("http://127.0.0.1:%d/", base))
	if code != 200 || !strings.Contains(body, `"service":"frontend"`) || !strings.Contains(body, `"service":"backend-`) {
		t.Fatalf("frontend through the mesh: %d %s", code, body)
	}
	seen := map[string]bool{}
	for i := 0; i < 10; i++ {
		_, b := httpGet(fmt.Sprintf("http://127.0.0.1:%d/backend/hello", base))
		for _, be := range []string{"backend-1", "backend-2"} {
			if strings.Contains(b, be) {
				seen[be] = true
			}
		}
	}
	if len(seen) != 2 {
		t.Errorf("round robin over the backends' sidecars reached %v", seen)
	}
	waitFor(t, 10*time.Second, "background load in the frontend sidecar's stats", func() bool {
		_, m := httpGet(fmt.Sprintf("http://127.0.0.1:%d/stats/prometheus", admin))
		for _, l := range strings.Split(m, "\n") {
			if strings.HasPrefix(l, `weft_http_downstream_rq_total{stat_prefix="sidecar-frontend"}`) {
				var v float64
				fmt.Sscan(strings.Fields(l)[1], &v)
				return v > 20
			}
		}
		return false
	})
	if code, _ := httpGet(fmt.Sprintf("http://127.0.0.1:%d/", admin)); code != 200 {
		t.Errorf("admin index: %d", code)
	}
	testDemoRPC(t, base, admin, output.String())
	testDemoMesh(t, base, output.String())
}

// startDemo starts `weft demo` on free ports and waits for its banner; all
// it prints goes to output.
func startDemo(t *testing.T) (base, admin int, output *syncBuffer, err error) {
	base = freeRun(t, 13) // HTTP :0..2, RPC egress :3, RPC providers' sidecars :4, :5, mesh ingress :6, egress :7, SDK APIs :8, :9, sidecar-xds :10, :11, sidecar-grpc :12
	admin = freeRun(t, 9) // one admin port per sidecar
	cmd := exec.Command(weftBin, "demo", "--base-port", fmt.Sprint(base), "--admin-port", fmt.Sprint(admin), "--rps", "20", "--dir", t.TempDir())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// exited is closed when the demo has exited, with its error in
	// exitErr: the cleanup must see it even after a failure reported it.
	exited := make(chan struct{})
	var exitErr error
	all := &syncBuffer{}
	ch := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			all.Write([]byte(sc.Text() + "\n"))
			select {
			case ch <- sc.Text():
			default:
			}
		}
		exitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
		}
	})
	deadline := time.After(30 * time.Second)
	for up := false; !up; {
		select {
		case l := <-ch:
			up = strings.Contains(l, "demo mesh is up")
		case <-exited:
			return 0, 0, nil, fmt.Errorf("demo exited: %v\n%s", exitErr, all)
		case <-deadline:
			t.Fatalf("demo did not come up:\n%s", all)
		}
	}
	return base, admin, all, nil
}

// testDemoRPC follows the RPC part of the banner: /rpc on the frontend
// shows the Bolt and Dubbo callers' replies, all successful, and the
// frontend sidecar's stats count the calls through its RPC egress.
func testDemoRPC(t *testing.T, base, admin int, banner string) {
	t.Helper()
	for _, want := range []string{
		fmt.Sprintf("curl http://127.0.0.1:%d/rpc", base),
		fmt.Sprintf("curl http://127.0.0.1:%d/stats | grep rpc", admin),
		fmt.Sprintf(":%d (rpc)", base+3),
	} {
		if !strings.Contains(banner, want) {
			t.Errorf("banner lacks %q:\n%s", want, banner)
		}
	}

	type callerStats struct {
		OK        int    `json:"ok"`
		Failed    int    `json:"failed"`
		Last      string `json:"last"`
		LastError string `json:"last_error"`
	}
	var last string
	waitFor(t, 5*time.Second, "RPC calls through the mesh on /rpc", func() bool {
		code, body := httpGet(fmt.Sprintf("http://127.0.0.1:%d/rpc", base))
		last = body
		var got map[string]callerStats
		if code != 200 || json.Unmarshal([]byte(body), &got) != nil {
			return false
		}
		done := true
		for _, proto := range []string{"bolt", "dubbo"} {
			s, ok := got[proto]
			if !ok {
				return false
			}
			if s.Failed != 0 {
				t.Fatalf("%s calls failed through the mesh: %s", proto, body)
			}
			done = done && s.OK > 0
		}
		if done {
			if !strings.Contains(got["bolt"].Last, "served-by bolt-echo") || !strings.Contains(got["dubbo"].Last, `"hello demo #`) ||
				!strings.Contains(got["dubbo"].Last, "served-by dubbo-greeting") {
				t.Errorf("unexpected last replies: %s", body)
			}
		}
		return done
	})
	t.Logf("/rpc: %s", last)

	// Envoy-style text stats of the frontend sidecar: the egress counts
	// requests, per protocol, service and method too.
	stat := func(body, name string) int {
		for _, l := range strings.Split(body, "\n") {
			if v, ok := strings.CutPrefix(l, name+": "); ok {
				n, err := strconv.Atoi(strings.TrimSpace(v))
				if err != nil {
					return -1
				}
				return n
			}
		}
		return -1
	}
	var stats string
	waitFor(t, 5*time.Second, "RPC requests in the frontend sidecar's /stats", func() bool {
		_, stats = httpGet(fmt.Sprintf("http://127.0.0.1:%d/stats", admin))
		return stat(stats, "rpc.egress.downstream_rq_total") > 0 &&
			stat(stats, "rpc.egress.bolt.com.weftmesh.demo.EchoService.echo.requests") > 0 &&
			stat(stats, "rpc.egress.dubbo.com.weftmesh.demo.GreetingService.greet.requests") > 0
	})
	for _, name := range []string{"rpc.egress.no_route", "rpc.egress.local_reply", "rpc.egress.downstream_cx_protocol_error",
		"rpc.egress.bolt.com.weftmesh.demo.EchoService.echo.errors", "rpc.egress.dubbo.com.weftmesh.demo.GreetingService.greet.errors"} {
		if v := stat(stats, name); v != 0 {
			t.Errorf("%s = %d, want 0", name, v)
		}
	}
}

// testDemoMesh follows the registry part of the banner: /mesh on the
// frontend shows the meshed consumer (through its sidecar) and the plain
// consumer (direct, following the registry) calling without failures and
// answered by both the meshed and the plain provider; the SDK APIs the
// banner names show the publication and the subscription; the registry
// lists both providers.
func testDemoMesh(t *testing.T, base int, banner string) {
	t.Helper()
	reg := regexp.MustCompile(`embedded registry at (127\.0\.0\.1:\d+)`).FindStringSubmatch(banner)
	if reg == nil {
		t.Fatalf("banner lacks the registry address:\n%s", banner)
	}
	for _, want := range []string{
		fmt.Sprintf("curl http://127.0.0.1:%d/mesh", base),
		fmt.Sprintf("curl -s http://127.0.0.1:%d/v1/status", base+8),
		fmt.Sprintf("curl -s http://127.0.0.1:%d/v1/status", base+9),
		"meshed->meshed, meshed->plain, plain->meshed, plain->plain",
	} {
		if !strings.Contains(banner, want) {
			t.Errorf("banner lacks %q:\n%s", want, banner)
		}
	}

	type consumer struct {
		OK        int            `json:"ok"`
		Failed    int            `json:"failed"`
		LastError string         `json:"last_error"`
		ServedBy  map[string]int `json:"served_by"`
		Providers []string       `json:"providers"`
	}
	var last string
	waitFor(t, 5*time.Second, "both consumers answered by both providers on /mesh", func() bool {
		code, body := httpGet(fmt.Sprintf("http://127.0.0.1:%d/mesh", base))
		last = body
		var got struct {
			Registry string   `json:"registry"`
			Meshed   consumer `json:"meshed_consumer"`
			Plain    consumer `json:"plain_consumer"`
		}
		if code != 200 || json.Unmarshal([]byte(body), &got) != nil {
			return false
		}
		if got.Registry != reg[1] {
			t.Fatalf("/mesh names registry %q, the banner %q", got.Registry, reg[1])
		}
		done := true
		for name, c := range map[string]consumer{"meshed": got.Meshed, "plain": got.Plain} {
			if c.Failed != 0 {
				t.Fatalf("the %s consumer's calls failed: %s", name, body)
			}
			done = done && c.OK > 0 && c.ServedBy["catalog-meshed"] > 0 && c.ServedBy["catalog-plain"] > 0
		}
		return done
	})
	t.Logf("/mesh: %s", last)

	code, body := httpGet(fmt.Sprintf("http://127.0.0.1:%d/v1/status", base+8))
	if code != 200 || !strings.Contains(body, `"registered":true`) || !strings.Contains(body, fmt.Sprintf(`"address":"127.0.0.1:%d"`, base+6)) {
		t.Errorf("the meshed provider's sidecar publishes its ingress :%d: %d %s", base+6, code, body)
	}
	code, body = httpGet(fmt.Sprintf("http://127.0.0.1:%d/v1/status", base+9))
	if code != 200 || !strings.Contains(body, fmt.Sprintf(`"address":"127.0.0.1:%d"`, base+7)) || !strings.Contains(body, `"known":true`) {
		t.Errorf("the meshed consumer's sidecar subscribes with its egress :%d: %d %s", base+7, code, body)
	}
	code, body = httpGet("http://" + reg[1] + "/v1/services/com.weftmesh.demo.CatalogService")
	var svc struct {
		Instances []struct {
			Address  string            `json:"address"`
			Metadata map[string]string `json:"metadata"`
		} `json:"instances"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &svc) != nil || len(svc.Instances) != 2 {
		t.Fatalf("the registry's catalog providers: %d %s", code, body)
	}
	apps := map[string]string{}
	for _, in := range svc.Instances {
		apps[in.Metadata["app"]] = in.Address + " meshed=" + in.Metadata["meshed"]
	}
	if apps["catalog-meshed"] != fmt.Sprintf("127.0.0.1:%d meshed=true", base+6) || !strings.HasSuffix(apps["catalog-plain"], " meshed=") {
		t.Errorf("the registry's catalog providers: %v", apps)
	}
}
