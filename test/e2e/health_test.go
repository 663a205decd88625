package e2e

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// hcUpstream answers /healthz 200 or 503 by its switch, and echoes
// everything else.
func hcUpstream(t *testing.T, name string, healthy *atomic.Bool, checks *atomic.Int64) *testUpstream {
	return newUpstream(t, name, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			checks.Add(1)
			if !healthy.Load() {
				w.WriteHeader(503)
				return
			}
			w.WriteHeader(200)
			return
		}
		echoHandler().ServeHTTP(w, r)
	}))
}

// hostHealth reads /clusters?format=json: address -> healthy.
func hostHealth(t *testing.T, w *Weft, cluster string) map[string]bool {
	t.Helper()
	code, body := w.Admin("/clusters?format=json")
	if code != 200 {
		t.Fatalf("/clusters: %d %s", code, body)
	}
	var cs []struct {
		Name  string `json:"name"`
		Hosts []struct {
			Address string `json:"address"`
			Healthy bool   `json:"healthy"`
		} `json:"host_statuses"`
	}
	if err := json.Unmarshal([]byte(body), &cs); err != nil {
		t.Fatalf("/clusters json: %v\n%s", err, body)
	}
	out := map[string]bool{}
	for _, c := range cs {
		if c.Name == cluster {
			for _, h := range c.Hosts {
				out[h.Address] = h.Healthy
			}
		}
	}
	return out
}

// TestHealthCheck: a host whose /healthz turns 503 leaves the rotation
// within a few 100ms intervals, shows unhealthy on /clusters, and comes
// back when it recovers.
func TestHealthCheck(t *testing.T) {
	t.Parallel()
	var okA, okB, okC atomic.Bool
	okA.Store(true)
	okB.Store(true)
	okC.Store(true)
	var checksA, checksB, checksC atomic.Int64
	a := hcUpstream(t, "a", &okA, &checksA)
	b := hcUpstream(t, "b", &okB, &checksB)
	c := hcUpstream(t, "c", &okC, &checksC)
	w, base := startHTTPProxy(t, hcmConfig{Routes: routeTo("hc")}, with(t, staticCluster("hc", a.Port, b.Port, c.Port), `
health_checks:
- timeout: 1s
  interval: 0.1s
  unhealthy_threshold: 2
  healthy_threshold: 1
  http_health_check: {path: /healthz}
`))
	hc := client()
	waitFor(t, 3*time.Second, "health checks to reach every host", func() bool {
		return checksA.Load() > 0 && checksB.Load() > 0 && checksC.Load() > 0
	})
	spread := func(n int) map[string]int {
		m := map[string]int{}
		for i := 0; i < n; i++ {
			r := get(t, hc, base+"/x")
			if r.Status != 200 {
				t.Fatalf("status %d: %s", r.Status, r.Body)
			}
			m[r.Header.Get("X-Upstream")]++
		}
		return m
	}
	if m := spread(30); m["c"] == 0 {
		t.Fatalf("healthy c got no traffic: %v", m)
	}

	okC.Store(false)
	flipped := time.Now()
	waitFor(t, 3*time.Second, "c to be marked unhealthy on /clusters", func() bool {
		return !hostHealth(t, w, "hc")[c.Addr]
	})
	if d := time.Since(flipped); d > 1500*time.Millisecond {
		t.Errorf("c was marked unhealthy after %v; want a few 100ms intervals", d)
	}
	_, text := w.Admin("/clusters")
	if !strings.Contains(text, "hc::"+c.Addr+"::health_flags::/failed_active_hc") {
		t.Errorf("/clusters text does not flag c as failed_active_hc:\n%s", text)
	}
	if !strings.Contains(text, "hc::"+a.Addr+"::health_flags::healthy") {
		t.Errorf("/clusters text does not show a healthy:\n%s", text)
	}
	if m := spread(30); m["c"] != 0 || m["a"] == 0 || m["b"] == 0 {
		t.Errorf("with c failing its checks, traffic went %v", m)
	}
	if v := w.metricValue("weft_cluster_membership_healthy", "cluster=hc"); v != 2 {
		t.Errorf("weft_cluster_membership_healthy = %v, want 2", v)
	}

	okC.Store(true)
	waitFor(t, 3*time.Second, "c to be healthy again", func() bool {
		return hostHealth(t, w, "hc")[c.Addr]
	})
	if m := spread(30); m["c"] == 0 {
		t.Errorf("recovered c got no traffic: %v", m)
	}
	if v := w.metricValue("weft_cluster_membership_healthy", "cluster=hc"); v != 3 {
		t.Errorf("weft_cluster_membership_healthy = %v, want 3", v)
	}
}

// TestHealthCheckAllDown: with every host failing, requests get 503 with
// no healthy upstream (or panic routing) — but never hang.
func TestHealthCheckAllDown(t *testing.T) {
	t.Parallel()
	var ok atomic.Bool
	var checks atomic.Int64
	a := hcUpstream(t, "a", &ok, &checks)
	w, base := startHTTPProxy(t, hcmConfig{Routes: routeTo("hc")}, with(t, staticCluster("hc", a.Port), `
common_lb_config: {healthy_panic_threshold: {value: 0}}
health_checks:
- timeout: 1s
  interval: 0.1s
  unhealthy_threshold: 1
  healthy_threshold: 1
  http_health_check: {path: /healthz}
`))
	waitFor(t, 3*time.Second, "a to be unhealthy", func() bool { return !hostHealth(t, w, "hc")[a.Addr] })
	r := get(t, client(), base+"/x")
	if r.Status != 503 {
		t.Errorf("all hosts down: status %d, want 503", r.Status)
	}
	if a.Hits() != checks.Load() {
		t.Errorf("a served %d requests besides health checks", a.Hits()-checks.Load())
	}
	ok.Store(true)
	waitFor(t, 3*time.Second, "a to recover", func() bool { return hostHealth(t, w, "hc")[a.Addr] })
	if r := get(t, client(), base+"/x"); r.Status != 200 {
		t.Errorf("after recovery: status %d", r.Status)
	}
}
