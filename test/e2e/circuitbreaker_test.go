package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestCircuitBreakerMaxRequests: with max_requests 1 and the only
// request held by a slow upstream, concurrent requests are shed with 503
// and flag UO; the held one completes.
func TestCircuitBreakerMaxRequests(t *testing.T) {
	t.Parallel()
	g := newGate(t)
	slow := newUpstream(t, "slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.wait(20 * time.Second)
		_, _ = io.WriteString(w, "done")
	}))
	log := filepath.Join(t.TempDir(), "access.log")
	w, base := startHTTPProxy(t, hcmConfig{
		Routes: routeTo("cb"),
		Extra:  fileAccessLog(log, "%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS%\n"),
	}, with(t, staticCluster("cb", slow.Port), `
circuit_breakers:
  thresholds: [{max_requests: 1, max_pending_requests: 1, max_connections: 1, max_retries: 1}]
`))
	hc := client()

	first := make(chan response, 1)
	go func() {
		resp, err := hc.Get(base + "/held")
		if err != nil {
			first <- response{Body: err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		first <- response{Status: resp.StatusCode, Body: string(b)}
	}()
	waitFor(t, 5*time.Second, "the first request to reach the upstream", func() bool { return g.waiting.Load() == 1 })

	var wg sync.WaitGroup
	codes := make([]int, 5)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := hc.Get(fmt.Sprintf("%s/shed/%d", base, i))
			if err != nil {
				t.Errorf("shed request %d: %v", i, err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes[i] = resp.StatusCode
		}()
	}
	wg.Wait()
	for i, c := range codes {
		if c != 503 {
			t.Errorf("request %d while the breaker is full: %d, want 503", i, c)
		}
	}
	if slow.Hits() != 1 {
		t.Errorf("upstream saw %d requests, want only the held one", slow.Hits())
	}
	g.open()
	select {
	case r := <-first:
		if r.Status != 200 || r.Body != "done" {
			t.Errorf("held request: %d %q", r.Status, r.Body)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("held request never completed")
	}
	// Capacity is back.
	if r := get(t, hc, base+"/after"); r.Status != 200 {
		t.Errorf("after the breaker closed: %d", r.Status)
	}

	waitAccessLog(t, log, 5*time.Second, "/held 200")
	b, _ := os.ReadFile(log)
	if n := strings.Count(string(b), " 503 UO\n"); n != 5 {
		t.Errorf("access log has %d '503 UO' lines, want 5:\n%s", n, b)
	}
	if v := w.metricValue("weft_http_downstream_rq_xx_total", "stat_prefix=ingress", "code_class=5xx"); v != 5 {
		t.Errorf("downstream 5xx = %v, want 5", v)
	}
	t.Run("overflow counter", func(t *testing.T) {
		if v := w.metricValue("weft_cluster_upstream_rq_pending_overflow_total", "cluster=cb"); v != 5 {
			t.Errorf("weft_cluster_upstream_rq_pending_overflow_total = %v, want 5", v)
		}
	})
}

// TestCircuitBreakerQueueing: with max_connections 1 and room in the
// pending queue, concurrent requests wait for the one connection and all
// succeed; nothing overflows.
func TestCircuitBreakerQueueing(t *testing.T) {
	t.Parallel()
	g := newGate(t)
	slow := newUpstream(t, "slow", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.wait(20 * time.Second)
		_, _ = io.WriteString(w, "done")
	}))
	w, base := startHTTPProxy(t, hcmConfig{Routes: routeTo("cb")}, with(t, staticCluster("cb", slow.Port), `
circuit_breakers:
  thresholds: [{max_connections: 1, max_pending_requests: 10, max_requests: 10}]
`))
	hc := client()
	var wg sync.WaitGroup
	codes := make([]int, 4)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := hc.Get(fmt.Sprintf("%s/q/%d", base, i))
			if err != nil {
				t.Errorf("request %d: %v", i, err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			codes[i] = resp.StatusCode
		}()
	}
	// One request holds the only connection; the rest queue.
	waitFor(t, 5*time.Second, "the first request to reach the upstream", func() bool { return g.waiting.Load() == 1 })
	waitFor(t, 5*time.Second, "three requests pending on the connection breaker", func() bool {
		return breakerOpen(t, w, "cb", 1) == 3 // max_pending_requests
	})
	g.open()
	wg.Wait()
	for i, c := range codes {
		if c != 200 {
			t.Errorf("queued request %d: %d, want 200", i, c)
		}
	}
	if slow.Conns() != 1 {
		t.Errorf("upstream accepted %d connections, want 1 (max_connections)", slow.Conns())
	}
	t.Run("overflow counter", func(t *testing.T) {
		if v := w.metricValue("weft_cluster_upstream_rq_pending_overflow_total", "cluster=cb"); v != 0 {
			t.Errorf("weft_cluster_upstream_rq_pending_overflow_total = %v with no request shed, want 0", v)
		}
	})
}

// breakerOpen reads how much of circuit-breaker budget i (0 connections,
// 1 pending requests, 2 requests, 3 retries) is in use, from
// /clusters?format=json.
func breakerOpen(t *testing.T, w *Weft, cluster string, i int) int64 {
	t.Helper()
	_, body := w.Admin("/clusters?format=json")
	var cs []struct {
		Name     string `json:"name"`
		Breakers []struct {
			Open int64 `json:"open"`
		} `json:"breakers"`
	}
	if err := json.Unmarshal([]byte(body), &cs); err != nil {
		t.Fatalf("/clusters: %v", err)
	}
	for _, c := range cs {
		if c.Name == cluster && i < len(c.Breakers) {
			return c.Breakers[i].Open
		}
	}
	return -1
}
