package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestTCPProxyDeadUpstreamClosesClient: when tcp_proxy cannot reach its
// upstream the client connection is closed (not left hanging), and a
// SIGTERM afterwards still stops weft promptly.
func TestTCPProxyDeadUpstreamClosesClient(t *testing.T) {
	t.Parallel()
	cfg := fmt.Sprintf(`
admin: { address: { socket_address: { address: 127.0.0.1, port_value: 0 } } }
static_resources:
  listeners:
  - name: tcp
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          cluster: dead
  clusters:
  - name: dead
    type: STATIC
    connect_timeout: 0.5s
    load_assignment:
      cluster_name: dead
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: %d } } } }] }]
`, deadPort(t))
	w := startWeft(t, cfg, "--drain-timeout", "3s")
	c, err := net.Dial("tcp", w.Listener("tcp"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("client read: %v, want EOF once the upstream connect failed", err)
	}
	start := time.Now()
	w.Signal(syscall.SIGTERM)
	if !w.Wait(2 * time.Second) {
		t.Fatalf("weft still running %v after SIGTERM (a connection was leaked)", time.Since(start))
	}
}

// TestRetryStreamedBodyNotReplayed: a body too large to hold for a retry
// streams upstream once; a retriable 503 then goes to the client as is
// instead of a retry that would send the head without the body.
func TestRetryStreamedBodyNotReplayed(t *testing.T) {
	t.Parallel()
	var hits atomic.Int64
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		n, _ := io.Copy(io.Discard, r.Body)
		w.Header().Set("x-got", fmt.Sprint(n))
		w.WriteHeader(503)
	}))
	cfg := simpleHTTPConfig(up.Port, "", "")
	w := startWeft(t, cfg)
	body := bytes.Repeat([]byte("x"), 200<<10) // over the 64 KiB retry buffer
	start := time.Now()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Post("http://"+w.Listener("http")+"/retry/upload", "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("x-got") != fmt.Sprint(len(body)) {
		t.Fatalf("status %d x-got %q after %v; want the upstream's 503 for the whole body", resp.StatusCode, resp.Header.Get("x-got"), time.Since(start))
	}
	if n := hits.Load(); n != 1 {
		t.Fatalf("upstream hit %d times; a streamed body must not be retried", n)
	}
	// A small body is held and retried.
	hits.Store(0)
	resp, err = (&http.Client{Timeout: 10 * time.Second}).Post("http://"+w.Listener("http")+"/retry/small", "text/plain", strings.NewReader("hello"))
	if err != nil {
		t.Fatal(err)
	}
	_ = resp.Body.Close()
	if n := hits.Load(); n != 2 || resp.Header.Get("x-got") != "5" {
		t.Fatalf("small body: upstream hit %d times (want 2: 1 + 1 retry), last saw %q bytes", n, resp.Header.Get("x-got"))
	}
}

// TestShutdownReadyAndAccessLogFlush: while draining, /ready says
// DRAINING; access log lines written just before exit are on disk after.
func TestShutdownReadyAndAccessLogFlush(t *testing.T) {
	t.Parallel()
	slow := make(chan struct{})
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-slow
		}
		_, _ = io.WriteString(w, "ok")
	}))
	dir := t.TempDir()
	logPath := filepath.Join(dir, "access.log")
	accessLog := fmt.Sprintf(`access_log:
          - name: file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: %s
              log_format: { text_format_source: { inline_string: "%%REQ(:PATH)%% %%RESPONSE_CODE%%\n" } }`, logPath)
	cfg := simpleHTTPConfig(up.Port, accessLog, "")
	w := startWeft(t, cfg, "--drain-timeout", "5s")
	addr := w.Listener("http")
	if code, _ := httpGet("http://" + addr + "/fast-before-exit"); code != 200 {
		t.Fatalf("fast request: %d", code)
	}
	done := make(chan int, 1)
	go func() { code, _ := httpGet("http://" + addr + "/slow"); done <- code }()
	waitFor(t, 5*time.Second, "the slow request to reach the upstream", func() bool {
		return w.metricValue("weft_http_downstream_rq_active", "stat_prefix=http") == 1
	})
	w.Signal(syscall.SIGTERM)
	waitFor(t, 3*time.Second, "/ready to say DRAINING", func() bool {
		code, body := w.Admin("/ready")
		return code == 503 && strings.Contains(body, "DRAINING")
	})
	close(slow)
	if code := <-done; code != 200 {
		t.Fatalf("in-flight request during drain: %d", code)
	}
	if !w.Wait(5 * time.Second) {
		t.Fatal("weft did not exit")
	}
	b, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"/fast-before-exit 200", "/slow 200"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("access log after exit lacks %q:\n%s", want, b)
		}
	}
}

// simpleHTTPConfig is a one-listener, one-cluster bootstrap; hcmExtra and
// routeExtra are YAML fragments for the connection manager and the route.
func simpleHTTPConfig(port int, hcmExtra, routeExtra string) string {
	return fmt.Sprintf(`
admin: { address: { socket_address: { address: 127.0.0.1, port_value: 0 } } }
static_resources:
  listeners:
  - name: http
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: http
          %s
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: { prefix: "/retry" }
                route: { cluster: up, retry_policy: { retry_on: 5xx, num_retries: 1 } %s }
              - match: { prefix: "/" }
                route: { cluster: up %s }
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
  clusters:
  - name: up
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: up
      endpoints: [{ lb_endpoints: [{ endpoint: { address: { socket_address: { address: 127.0.0.1, port_value: %d } } } }] }]
`, hcmExtra, routeExtra, routeExtra, port)
}

// TestRequestTimeout: request_timeout bounds how long the request itself
// may take to arrive; a client that stalls mid-body gets 408, on the
// streaming path and on the buffered (retry) path.
func TestRequestTimeout(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	w := startWeft(t, simpleHTTPConfig(up.Port, "request_timeout: 1s", ""))
	for _, path := range []string{"/stream", "/retry"} {
		c, err := net.Dial("tcp", w.Listener("http"))
		if err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n0123456789", path)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(c)
		_ = c.Close()
		took := time.Since(start)
		if !strings.HasPrefix(string(b), "HTTP/1.1 408") || took < 900*time.Millisecond || took > 3*time.Second {
			t.Errorf("%s: got %q after %v, want 408 after ~1s", path, firstLine(b), took)
		}
	}
}

// TestRouteIdleTimeout: a route's idle_timeout overrides the connection
// manager's stream_idle_timeout, both ways.
func TestRouteIdleTimeout(t *testing.T) {
	t.Parallel()
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("content-length", "10")
		_, _ = io.WriteString(w, "01234")
		w.(http.Flusher).Flush()
		time.Sleep(1500 * time.Millisecond) // a pause longer than 1s
		_, _ = io.WriteString(w, "56789")
	}))
	// The connection manager allows 1s of silence; the route disables it.
	w := startWeft(t, simpleHTTPConfig(up.Port, "stream_idle_timeout: 1s", ", idle_timeout: 0s"))
	if code, body := httpGet("http://" + w.Listener("http") + "/slow"); code != 200 || body != "0123456789" {
		t.Errorf("idle_timeout 0s on the route: %d %q, want the whole body", code, body)
	}
	// The connection manager allows 10s; the route only 0.5s.
	w2 := startWeft(t, simpleHTTPConfig(up.Port, "stream_idle_timeout: 10s", ", idle_timeout: 0.5s"))
	start := time.Now()
	code, body := httpGet("http://" + w2.Listener("http") + "/slow")
	if body == "0123456789" || time.Since(start) > 1400*time.Millisecond {
		t.Errorf("idle_timeout 0.5s on the route: %d %q after %v, want the transfer cut after ~0.5s", code, body, time.Since(start))
	}
}

func firstLine(b []byte) string {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return string(b[:i])
	}
	return string(b)
}

// TestNoFilterChainMatch: a connection no filter chain matches is closed
// and counted.
func TestNoFilterChainMatch(t *testing.T) {
	t.Parallel()
	cfg := `
admin: { address: { socket_address: { address: 127.0.0.1, port_value: 0 } } }
static_resources:
  listeners:
  - name: picky
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filter_chain_match: { source_prefix_ranges: [{ address_prefix: 10.1.2.3, prefix_len: 32 }] }
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: tcp
          cluster: none
  clusters:
  - { name: none, type: STATIC, connect_timeout: 1s }
`
	w := startWeft(t, cfg)
	c, err := net.Dial("tcp", w.Listener("picky"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read: %v, want EOF: no chain matches 127.0.0.1", err)
	}
	waitFor(t, 3*time.Second, "no_filter_chain_match to count it", func() bool {
		return w.metricValue("weft_listener_no_filter_chain_match_total", "listener=picky") == 1
	})
}

// TestRetryReleasesConnection: the connection that carried a retried 5xx
// is released, so with max_connections 1 the retry (and later requests)
// still get a connection.
func TestRetryReleasesConnection(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	up := startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1)%2 == 1 {
			w.WriteHeader(503)
			_, _ = io.WriteString(w, "try again")
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	cfg := strings.Replace(simpleHTTPConfig(up.Port, "", ", timeout: 2s"),
		"    connect_timeout: 1s\n", "    connect_timeout: 1s\n    circuit_breakers: { thresholds: [{ max_connections: 1 }] }\n", 1)
	w := startWeft(t, cfg)
	for i := 0; i < 3; i++ {
		start := time.Now()
		code, body := httpGet("http://" + w.Listener("http") + "/retry/x")
		if code != 200 || body != "ok" || time.Since(start) > time.Second {
			t.Fatalf("request %d: %d %q after %v; want 200 from the retry at once", i, code, body, time.Since(start))
		}
	}
}

// TestDuplicateFilterChainMatchRefused: two chains with the same matching
// rules make the choice arbitrary, so the config is refused with the path.
func TestDuplicateFilterChainMatchRefused(t *testing.T) {
	t.Parallel()
	cfg := `
static_resources:
  listeners:
  - name: l
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filter_chain_match: { destination_port: 80 }
      filters: [{ name: envoy.filters.network.tcp_proxy, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: a, cluster: c } }]
    - filter_chain_match: { destination_port: 80 }
      filters: [{ name: envoy.filters.network.tcp_proxy, typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: b, cluster: c } }]
  clusters:
  - { name: c, type: STATIC, connect_timeout: 1s }
`
	path := filepath.Join(t.TempDir(), "dup.yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(weftBin, "validate", "-c", path).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "static_resources.listeners[0].filter_chains[1].filter_chain_match: same matching rules as filter_chains[0]") {
		t.Fatalf("validate: err %v, output:\n%s", err, out)
	}
}
