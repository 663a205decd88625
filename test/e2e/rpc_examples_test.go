package e2e

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/weftmesh/weft/test/rpcpeer"
)

// exampleAdmin is the admin address both RPC examples configure.
const exampleAdmin = "127.0.0.1:9901"

// rpcExample is one file of examples/rpc and the fixed addresses it uses.
type rpcExample struct {
	file       string
	proto      rpcpeer.Protocol
	sidecar    string // the listener clients call
	provider   string // the one endpoint of the example's cluster
	statPrefix string
	service    string
	method     string
}

var rpcExamples = []rpcExample{
	{file: "bolt.yaml", proto: rpcpeer.Bolt, sidecar: "127.0.0.1:12200", provider: "127.0.0.1:12201",
		statPrefix: "bolt_egress", service: "com.example.EchoService", method: "echo"},
	{file: "dubbo.yaml", proto: rpcpeer.Dubbo, sidecar: "127.0.0.1:20880", provider: "127.0.0.1:20881",
		statPrefix: "dubbo_egress", service: "org.apache.dubbo.demo.GreetingService", method: "greet"},
}

// TestRPCExamples runs examples/rpc/bolt.yaml and examples/rpc/dubbo.yaml
// unchanged, in front of an independent provider (test/rpcpeer) on the
// example's provider port, and calls through the example's sidecar port.
// The ports are fixed by the examples (and 9901 is shared by both), so
// neither this test nor its subtests run in parallel; every other e2e test
// binds only :0 ports, from the ephemeral range.
func TestRPCExamples(t *testing.T) {
	for _, ex := range rpcExamples {
		t.Run(string(ex.proto), func(t *testing.T) {
			testRPCExample(t, ex)
		})
	}
}

func testRPCExample(t *testing.T, ex rpcExample) {
	path := filepath.Join("..", "..", "examples", "rpc", ex.file)
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading the example: %v", err)
	}
	cfg := string(raw)
	// The test relies on the example's fixed addresses: say so plainly if
	// the example moved them.
	for _, addr := range []string{exampleAdmin, ex.sidecar, ex.provider} {
		host, port, _ := net.SplitHostPort(addr)
		if !strings.Contains(cfg, "address: "+host) || !strings.Contains(cfg, "port_value: "+port) {
			t.Fatalf("%s no longer configures %s; update rpcExamples in this test", path, addr)
		}
	}
	requirePortsFree(t, exampleAdmin, ex.sidecar, ex.provider)

	prov, err := rpcpeer.Serve(ex.proto, ex.provider, rpcpeer.ServerOptions{Name: "example-provider"})
	if err != nil {
		t.Fatalf("starting the provider on the example's port %s: %v", ex.provider, err)
	}
	t.Cleanup(func() { _ = prov.Close() })

	w := startWeft(t, cfg)
	if w.AdminAddr != exampleAdmin {
		t.Errorf("admin bound %s, the example says %s", w.AdminAddr, exampleAdmin)
	}
	if code, body := httpGet("http://" + exampleAdmin + "/ready"); code != 200 {
		t.Fatalf("GET %s/ready: %d %q", exampleAdmin, code, body)
	}

	c := rpcDial(t, ex.proto, ex.sidecar)
	call := func(body string, headers map[string]string) *rpcpeer.Response {
		t.Helper()
		r := rpcCall(t, c, &rpcpeer.Request{Service: ex.service, Method: ex.method, Version: "1.0",
			Body: []byte(body), Headers: headers})
		if r.Status != okStatus(ex.proto) || string(r.Body) != body {
			t.Fatalf("call %q: status %d body %q, want status %d and the body echoed", body, r.Status, r.Body, okStatus(ex.proto))
		}
		if r.Headers["x-served-by"] != "example-provider" {
			t.Errorf("call %q: x-served-by %q, want example-provider (headers %v)", body, r.Headers["x-served-by"], r.Headers)
		}
		return r
	}

	const calls = 3
	call("hello from the example", nil)
	r := call("with headers", map[string]string{"x-trace-id": "example-trace-1", "x-user": "alice"})
	if r.Headers["x-trace-id"] != "example-trace-1" || r.Headers["x-user"] != "alice" {
		t.Errorf("request headers did not come back: %v", r.Headers)
	}
	if h := prov.LastRequestHeaders(); h["x-trace-id"] != "example-trace-1" || h["x-user"] != "alice" {
		t.Errorf("the provider saw headers %v", h)
	}
	call("third "+string(ex.proto)+" call", map[string]string{"x-trace-id": "example-trace-2"})
	if got := prov.Stats().Requests; got != calls {
		t.Errorf("the provider served %d requests, want %d", got, calls)
	}

	labels := []string{"stat_prefix=" + ex.statPrefix, "protocol=" + string(ex.proto), "service=" + ex.service, "method=" + ex.method}
	waitFor(t, 5*time.Second, fmt.Sprintf("weft_rpc_method_requests_total%v = %d", labels, calls), func() bool {
		_, body := httpGet("http://" + exampleAdmin + "/stats/prometheus")
		return promValue(body, "weft_rpc_method_requests_total", labels...) == calls
	})

	// The example's stdout access logger: one line per call naming the
	// method, the protocol, the service and the provider.
	waitFor(t, 5*time.Second, "stdout access log lines for the calls", func() bool {
		return len(rpcAccessLines(w.Output(), ex)) >= calls
	})
	lines := rpcAccessLines(w.Output(), ex)
	if len(lines) != calls {
		t.Errorf("%d access log lines for %s, want %d:\n%s", len(lines), ex.service, calls, strings.Join(lines, "\n"))
	}
	for _, l := range lines {
		if !strings.Contains(l, `" 200 `) || !strings.Contains(l, `"`+ex.provider+`"`) {
			t.Errorf("access log line without status 200 or upstream host %s: %s", ex.provider, l)
		}
	}
}

// rpcAccessLines returns the access log lines of calls to ex.service and
// ex.method in weft's output. The examples use Envoy's default format,
// where an RPC call reads `"- METHOD PROTOCOL" ... "SERVICE" "UPSTREAM"`.
func rpcAccessLines(out string, ex rpcExample) []string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, " "+ex.method+" "+string(ex.proto)+`" `) && strings.Contains(l, `"`+ex.service+`"`) {
			lines = append(lines, l)
		}
	}
	return lines
}

// requirePortsFree fails, naming the port, when one of the fixed addresses
// an example needs is already taken on this machine.
func requirePortsFree(t *testing.T, addrs ...string) {
	t.Helper()
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			t.Fatalf("the example needs %s but it is taken on this machine (%v); stop whatever listens there", a, err)
		}
		_ = ln.Close()
	}
}
