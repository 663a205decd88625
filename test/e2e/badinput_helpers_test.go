package e2e

// Helpers for the bad-input and bad-config tests: a config template with a
// file access log that names the client's address, raw-socket clients,
// fake upstreams that misbehave on purpose, a steady keep-alive client that
// proves the innocent are still served, and process probes (goroutines,
// RSS).

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// biLogFormat starts every access log line with the downstream address so a
// test can find the line of its own connection among concurrent ones.
const biLogFormat = `%DOWNSTREAM_REMOTE_ADDRESS% %RESPONSE_CODE% %RESPONSE_FLAGS% %REQ(:PATH)%\n`

// biConfig is a one-listener bootstrap for bad-input tests.
type biConfig struct {
	HeadersTimeout string // request_headers_timeout, e.g. "1s"
	StreamIdle     string // stream_idle_timeout
	Log            string // access log file
	Routes         []biRoute
	Clusters       []biCluster
}

// biRoute is one prefix route.
type biRoute struct {
	Prefix, Cluster, Timeout string
}

// biCluster is one single-endpoint cluster.
type biCluster struct {
	Name string
	Type string // STATIC or STRICT_DNS
	Host string
	Port int
}

const biTemplate = `admin:
  address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
static_resources:
  listeners:
  - name: in
    address: { socket_address: { address: 127.0.0.1, port_value: 0 } }
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: in
          request_headers_timeout: {{.HeadersTimeout}}
          stream_idle_timeout: {{.StreamIdle}}
          max_request_headers_kb: 8
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: {{.Log}}
              log_format: { text_format_source: { inline_string: "` + biLogFormat + `" } }
          route_config:
            name: local
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
{{- range .Routes}}
              - match: { prefix: "{{.Prefix}}" }
                route: { cluster: {{.Cluster}}{{if .Timeout}}, timeout: {{.Timeout}}{{end}} }
{{- end}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: { "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router }
  clusters:
{{- range .Clusters}}
  - name: {{.Name}}
    type: {{.Type}}
    connect_timeout: 1s
    load_assignment:
      cluster_name: {{.Name}}
      endpoints:
      - lb_endpoints:
        - endpoint: { address: { socket_address: { address: {{.Host}}, port_value: {{.Port}} } } }
{{- end}}
`

// startBadInputWeft fills defaults into c (timeouts, a log file), starts
// weft on it and returns weft, the listener address and the log path.
func startBadInputWeft(t *testing.T, c biConfig) (*Weft, string, string) {
	t.Helper()
	if c.HeadersTimeout == "" {
		c.HeadersTimeout = "2s"
	}
	if c.StreamIdle == "" {
		c.StreamIdle = "5s"
	}
	if c.Log == "" {
		c.Log = filepath.Join(t.TempDir(), "access.log")
	}
	for i := range c.Clusters {
		if c.Clusters[i].Type == "" {
			c.Clusters[i].Type = "STATIC"
		}
		if c.Clusters[i].Host == "" {
			c.Clusters[i].Host = "127.0.0.1"
		}
	}
	w := startWeft(t, render(t, biTemplate, c))
	return w, w.Listener("in"), c.Log
}

// biOKUpstream is a real net/http upstream answering 200 "ok" on every path.
func biOKUpstream(t *testing.T) *upstream {
	t.Helper()
	return startUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, "ok")
	}))
}

// biRawUpstream is a TCP server whose every connection is handed to handle;
// it is for upstreams that misbehave below HTTP.
type biRawUpstream struct {
	Port int
	ln   net.Listener
	wg   sync.WaitGroup
	mu   sync.Mutex
	cs   map[net.Conn]bool
}

func biStartRawUpstream(t *testing.T, handle func(net.Conn)) *biRawUpstream {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	u := &biRawUpstream{Port: ln.Addr().(*net.TCPAddr).Port, ln: ln, cs: map[net.Conn]bool{}}
	u.wg.Add(1)
	go func() {
		defer u.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u.mu.Lock()
			u.cs[c] = true
			u.mu.Unlock()
			u.wg.Add(1)
			go func() {
				defer u.wg.Done()
				defer func() {
					u.mu.Lock()
					delete(u.cs, c)
					u.mu.Unlock()
					_ = c.Close()
				}()
				handle(c)
			}()
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		u.mu.Lock()
		for c := range u.cs {
			_ = c.Close()
		}
		u.mu.Unlock()
		u.wg.Wait()
	})
	return u
}

// biReadHead reads an HTTP request head from c (up to the blank line), with
// a deadline, and reports whether it got one.
func biReadHead(c net.Conn, d time.Duration) bool {
	_ = c.SetReadDeadline(time.Now().Add(d))
	br := bufio.NewReader(c)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return false
		}
		if line == "\r\n" {
			return true
		}
	}
}

// biReset closes c with an RST instead of a FIN.
func biReset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}

// biDial connects to addr; the conn is closed at cleanup.
func biDial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// biResult is what a raw client saw: the first response (nil if none
// could be parsed), everything after it, and whether the server closed.
type biResult struct {
	Resp    *http.Response
	Body    string
	Extra   string // bytes after the first response: a second response means desync
	Closed  bool   // the server closed (FIN or RST) within the wait
	Elapsed time.Duration
	Err     error
}

// biExchange writes payload on a new connection and reads one response.
// With waitClose it then reads whatever follows until the server closes or
// d passes (a second response there means the connection desynchronised).
func biExchange(t *testing.T, addr, payload string, d time.Duration, waitClose bool) (biResult, net.Conn) {
	t.Helper()
	c := biDial(t, addr)
	start := time.Now()
	if _, err := io.WriteString(c, payload); err != nil {
		return biResult{Err: err, Closed: true}, c
	}
	return biRead(c, start, d, waitClose), c
}

// biRead reads one response from c, then with waitClose everything
// up to the server's close.
func biRead(c net.Conn, start time.Time, d time.Duration, waitClose bool) biResult {
	var r biResult
	_ = c.SetReadDeadline(start.Add(d))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		r.Err = err
		r.Closed = !biIsTimeout(err)
		r.Elapsed = time.Since(start)
		return r
	}
	r.Resp = resp
	b, err := io.ReadAll(resp.Body)
	r.Body = string(b)
	if err != nil {
		r.Err = err
		r.Closed = !biIsTimeout(err)
		r.Elapsed = time.Since(start)
		return r
	}
	r.Elapsed = time.Since(start)
	if !waitClose {
		return r
	}
	var extra bytes.Buffer
	_, err = io.Copy(&extra, br)
	r.Extra = extra.String()
	r.Closed = err == nil || !biIsTimeout(err)
	return r
}

func biIsTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// status is the response status, 0 without a response.
func (r biResult) status() int {
	if r.Resp == nil {
		return 0
	}
	return r.Resp.StatusCode
}

// biLogPrefix is the access-log prefix of the connection c.
func biLogPrefix(c net.Conn) string { return c.LocalAddr().String() + " " }

// biLogFields splits an access log line into address, code, flags, path.
func biLogFields(line string) (code, flags string) {
	f := strings.Fields(line)
	if len(f) < 3 {
		return "", ""
	}
	return f[1], f[2]
}

// biGoroutines reads the goroutine count from weft's pprof endpoint.
func biGoroutines(t *testing.T, w *Weft) int {
	t.Helper()
	code, body := w.Admin("/debug/pprof/goroutine?debug=1")
	if code != 200 {
		t.Fatalf("goroutine profile: %d %s", code, body)
	}
	first, _, _ := strings.Cut(body, "\n")
	n, err := strconv.Atoi(strings.TrimPrefix(first, "goroutine profile: total "))
	if err != nil {
		t.Fatalf("goroutine profile first line %q", first)
	}
	return n
}

// biGoroutineMargin is how far above its baseline weft's goroutine count may
// settle (the admin request itself, pool housekeeping).
const biGoroutineMargin = 5

// biWaitGoroutines polls until weft's goroutine count is back within
// biGoroutineMargin of baseline.
func biWaitGoroutines(t *testing.T, w *Weft, baseline int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	n := 0
	for time.Now().Before(deadline) {
		if n = biGoroutines(t, w); n <= baseline+biGoroutineMargin {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, body := w.Admin("/debug/pprof/goroutine?debug=1")
	if len(body) > 8000 {
		body = body[:8000]
	}
	t.Errorf("goroutine leak: %d goroutines, baseline %d (+%d)\n%s", n, baseline, biGoroutineMargin, body)
}

// biRSSMB is weft's resident set size in MiB.
func biRSSMB(t *testing.T, w *Weft) float64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", w.cmd.Process.Pid))
	if err != nil {
		t.Fatalf("reading weft status: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			if err != nil {
				t.Fatalf("VmRSS line %q", line)
			}
			return float64(kb) / 1024
		}
	}
	t.Fatal("no VmRSS in /proc status")
	return 0
}

// biSteadyClient is a well-behaved keep-alive client: one connection, one
// GET every few milliseconds, every answer must be a 200 on the same
// connection.
type biSteadyClient struct {
	ok   atomic.Int64
	stop chan struct{}
	done chan struct{}
	err  error
}

// biStartSteady starts a steady client of addr requesting path.
func biStartSteady(t *testing.T, addr, path string) *biSteadyClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	s := &biSteadyClient{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		defer c.Close()
		br := bufio.NewReader(c)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		req := "GET " + path + " HTTP/1.1\r\nHost: steady\r\n\r\n"
		for {
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.WriteString(c, req); err != nil {
				s.err = fmt.Errorf("steady client write after %d OKs: %w", s.ok.Load(), err)
				return
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				s.err = fmt.Errorf("steady client read after %d OKs: %w", s.ok.Load(), err)
				return
			}
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err != nil || resp.StatusCode != 200 || resp.Close {
				s.err = fmt.Errorf("steady client after %d OKs: status %d close=%v err=%v", s.ok.Load(), resp.StatusCode, resp.Close, err)
				return
			}
			s.ok.Add(1)
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(func() { s.Stop() })
	waitFor(t, 5*time.Second, "steady client's first 200", func() bool { return s.ok.Load() > 0 || s.failed() })
	return s
}

func (s *biSteadyClient) failed() bool {
	select {
	case <-s.done:
		return s.err != nil
	default:
		return false
	}
}

// Stop ends the client and returns how many 200s it got and its first
// failure.
func (s *biSteadyClient) Stop() (int64, error) {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
	return s.ok.Load(), s.err
}

// check stops the client and fails t unless it got at least min 200s and
// no failure.
func (s *biSteadyClient) check(t *testing.T, min int64) {
	t.Helper()
	n, err := s.Stop()
	if err != nil {
		t.Errorf("well-behaved client harmed: %v", err)
	}
	if n < min {
		t.Errorf("well-behaved client got only %d 200s, want >= %d", n, min)
	}
}

// biAlive fails t if weft exited.
func biAlive(t *testing.T, w *Weft) {
	t.Helper()
	select {
	case <-w.exited:
		t.Fatalf("weft exited: %v", w.exitErr)
	default:
	}
	if code, _ := w.Admin("/ready"); code != 200 {
		t.Fatalf("weft /ready: %d", code)
	}
}

// biLogWant is what one client's access log line must say.
type biLogWant struct {
	name   string   // the case, for messages
	prefix string   // logLineFor(the client's conn)
	code   string   // response code; "" for any
	flags  []string // the flags must contain one of these
}

// biCheckAccessLog waits (once, for all) until every wanted client has a
// line, then checks each line.
func biCheckAccessLog(t *testing.T, path string, wants []biLogWant) {
	t.Helper()
	lines := map[string]string{}
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := os.ReadFile(path)
		for _, line := range strings.Split(string(b), "\n") {
			for _, lw := range wants {
				if strings.HasPrefix(line, lw.prefix) {
					lines[lw.prefix] = line
				}
			}
		}
		if len(lines) == len(wants) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, lw := range wants {
		line, ok := lines[lw.prefix]
		if !ok {
			t.Errorf("%s: no access log line for %s", lw.name, lw.prefix)
			continue
		}
		code, flags := biLogFields(line)
		if lw.code != "" && code != lw.code || !biHasFlag(flags, lw.flags) {
			t.Errorf("%s: access log %q, want code %s with one of flags %v", lw.name, line, lw.code, lw.flags)
		}
	}
}

// biHasFlag reports whether the comma-separated flags hold one of want.
func biHasFlag(flags string, want []string) bool {
	for _, f := range strings.Split(flags, ",") {
		for _, w := range want {
			if f == w {
				return true
			}
		}
	}
	return false
}

// biLogLine polls the access log for the line of one client without
// failing the test; "" if none came within d.
func biLogLine(path, prefix string, d time.Duration) string {
	deadline := time.Now().Add(d)
	for {
		b, _ := os.ReadFile(path)
		for _, line := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(line, prefix) {
				return line
			}
		}
		if time.Now().After(deadline) {
			return ""
		}
		time.Sleep(50 * time.Millisecond)
	}
}
