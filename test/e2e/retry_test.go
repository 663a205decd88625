package e2e

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// deadPort returns a loopback port nothing listens on.
func deadPort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := ln.Addr().(*net.TCPAddr).Port
	_ = ln.Close()
	return p
}

// TestRetry5xx: the upstream answers 503 to the first attempt of each
// request and 200 to the second; with retry_on 5xx the client sees only
// the 200, and the POST body arrives intact on both attempts.
func TestRetry5xx(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	attempts := map[string]int{}
	var sums []string
	up := newUpstream(t, "a", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h := sha256.Sum256(b)
		mu.Lock()
		id := r.Header.Get("X-Test-Id")
		attempts[id]++
		n := attempts[id]
		sums = append(sums, hex.EncodeToString(h[:]))
		mu.Unlock()
		if n == 1 || id == "always" {
			w.WriteHeader(503)
			_, _ = io.WriteString(w, "try again")
			return
		}
		_, _ = io.WriteString(w, "ok")
	}))
	w, base := startHTTPProxy(t, hcmConfig{Routes: `
- match: {prefix: "/"}
  route: {cluster: a, retry_policy: {retry_on: "5xx", num_retries: 2}}
`}, staticCluster("a", up.Port))
	hc := client()

	r := get(t, hc, base+"/get", "X-Test-Id: get")
	if r.Status != 200 || r.Body != "ok" {
		t.Errorf("GET: %d %q, want 200 ok", r.Status, r.Body)
	}
	body := bytes.Repeat([]byte("0123456789abcdef"), 1000)
	req, _ := http.NewRequest("POST", base+"/post", bytes.NewReader(body))
	req.Header.Set("X-Test-Id", "post")
	r = do(t, hc, req)
	if r.Status != 200 || r.Body != "ok" {
		t.Errorf("POST: %d %q, want 200 ok", r.Status, r.Body)
	}
	// Retries exhausted: the last 503 is passed through.
	r = get(t, hc, base+"/always", "X-Test-Id: always")
	if r.Status != 503 || r.Body != "try again" {
		t.Errorf("always-503: %d %q, want the upstream's 503", r.Status, r.Body)
	}

	mu.Lock()
	defer mu.Unlock()
	if attempts["get"] != 2 || attempts["post"] != 2 || attempts["always"] != 3 {
		t.Errorf("upstream attempts %v, want get:2 post:2 always:3", attempts)
	}
	want := sha256Hex(body)
	n := 0
	for _, s := range sums {
		if s == want {
			n++
		}
	}
	if n != 2 {
		t.Errorf("the POST body arrived intact %d times, want 2", n)
	}
	if v := w.metricValue("weft_cluster_upstream_rq_retry_total", "cluster=a"); v != 4 {
		t.Errorf("weft_cluster_upstream_rq_retry_total = %v, want 4 (get 1, post 1, always 2)", v)
	}
}

// TestRetryConnectFailure: one of two hosts is down; with connect-failure
// retries every request succeeds on the live host.
func TestRetryConnectFailure(t *testing.T) {
	t.Parallel()
	live := newUpstream(t, "live", nil)
	dead := deadPort(t)
	w, base := startHTTPProxy(t, hcmConfig{Routes: `
- match: {prefix: "/"}
  route: {cluster: a, retry_policy: {retry_on: "connect-failure", num_retries: 3}}
`}, with(t, staticCluster("a", dead, live.Port), `connect_timeout: 0.5s`))
	hc := client()
	for i := 0; i < 40; i++ {
		req, _ := http.NewRequest("GET", base+"/x", nil)
		req.Close = true // a new downstream connection each time
		r := do(t, hc, req)
		if r.Status != 200 || r.Header.Get("X-Upstream") != "live" {
			t.Fatalf("request %d: %d from %q: %s", i, r.Status, r.Header.Get("X-Upstream"), r.Body)
		}
	}
	if live.Hits() != 40 {
		t.Errorf("live host served %d, want 40", live.Hits())
	}
	_, body := w.Admin("/stats/prometheus")
	if v := promValue(body, "weft_cluster_upstream_cx_connect_fail_total", "cluster=a"); v < 1 {
		t.Errorf("weft_cluster_upstream_cx_connect_fail_total = %v, want >= 1 (the dead host was never tried?)", v)
	}
	if v := promValue(body, "weft_cluster_upstream_rq_retry_total", "cluster=a"); v < 1 {
		t.Errorf("weft_cluster_upstream_rq_retry_total = %v, want >= 1", v)
	}

	// Without a retry policy, some requests fail with 503 UF.
	w2, base2 := startHTTPProxy(t, hcmConfig{Routes: routeTo("a")}, staticCluster("a", dead))
	r := get(t, hc, base2+"/x")
	if r.Status != 503 {
		t.Errorf("dead host without retries: status %d, want 503", r.Status)
	}
	_ = w2
}

// TestRetryPerTryTimeout: the first attempt hangs; per_try_timeout cuts it
// and the retry answers quickly.
func TestRetryPerTryTimeout(t *testing.T) {
	t.Parallel()
	var n atomic.Int64
	up := newUpstream(t, "a", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			return
		}
		_, _ = io.WriteString(w, "fast")
	}))
	_, base := startHTTPProxy(t, hcmConfig{Routes: `
- match: {prefix: "/retry"}
  route: {cluster: a, timeout: 3s, retry_policy: {retry_on: "5xx", num_retries: 1, per_try_timeout: 0.2s}}
- match: {prefix: "/noretry"}
  route: {cluster: a, timeout: 0.3s}
`}, staticCluster("a", up.Port))
	hc := client()

	start := time.Now()
	r := get(t, hc, base+"/retry")
	el := time.Since(start)
	if r.Status != 200 || r.Body != "fast" {
		t.Fatalf("status %d %q, want 200 fast", r.Status, r.Body)
	}
	if el < 200*time.Millisecond || el > 1500*time.Millisecond {
		t.Errorf("took %v, want a little over the 200ms per-try timeout", el)
	}
	if n.Load() != 2 {
		t.Errorf("upstream attempts %d, want 2", n.Load())
	}

	// A route timeout without retries answers 504.
	n.Store(0)
	start = time.Now()
	r = get(t, hc, base+"/noretry")
	el = time.Since(start)
	if r.Status != 504 {
		t.Errorf("route timeout: status %d, want 504", r.Status)
	}
	if el < 300*time.Millisecond || el > 2*time.Second {
		t.Errorf("route timeout took %v, want ~300ms", el)
	}
}
