package e2e

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func adminPost(t *testing.T, w *Weft, path string) (int, string) {
	t.Helper()
	body, code := curlCode(t, "-X", "POST", "http://"+w.AdminAddr+path)
	return code, body
}

// TestAdmin exercises the admin endpoints against a weft that has served
// traffic.
func TestAdmin(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "a", nil)
	w, base := startHTTPProxy(t, hcmConfig{Routes: routeTo("a")}, staticCluster("a", up.Port))
	hc := client()
	for i := 0; i < 3; i++ {
		if r := get(t, hc, base+"/x"); r.Status != 200 {
			t.Fatalf("status %d", r.Status)
		}
	}
	if r := get(t, hc, base+"/x", "x-envoy-fault-abort-request: 500"); r.Status != 200 {
		t.Fatalf("status %d", r.Status)
	}
	hostLabel := "host=" + up.Addr

	t.Run("ready", func(t *testing.T) {
		code, body := w.Admin("/ready")
		if code != 200 || strings.TrimSpace(body) != "LIVE" {
			t.Errorf("/ready: %d %q", code, body)
		}
	})

	t.Run("prometheus", func(t *testing.T) {
		code, body := w.Admin("/stats/prometheus")
		if code != 200 {
			t.Fatalf("/stats/prometheus: %d", code)
		}
		for _, c := range []struct {
			name   string
			labels []string
			want   float64
		}{
			{"weft_http_downstream_rq_total", []string{"stat_prefix=ingress"}, 4},
			{"weft_http_downstream_rq_xx_total", []string{"stat_prefix=ingress", "code_class=2xx"}, 4},
			{"weft_http_downstream_rq_http1_total", []string{"stat_prefix=ingress"}, 4},
			{"weft_cluster_upstream_rq_total", []string{"cluster=a"}, 4},
			{"weft_cluster_upstream_rq_xx_total", []string{"cluster=a", "code_class=2xx"}, 4},
			{"weft_cluster_upstream_cx_total", []string{"cluster=a"}, 1},
			{"weft_cluster_membership_total", []string{"cluster=a"}, 1},
			{"weft_host_rq_total", []string{"cluster=a", hostLabel}, 4},
			{"weft_listener_downstream_cx_total", []string{"listener=http"}, 1},
		} {
			if got := promValue(body, c.name, c.labels...); got != c.want {
				t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
			}
		}
		if !strings.Contains(body, "# TYPE weft_http_downstream_rq_time_seconds histogram") {
			t.Errorf("no downstream latency histogram")
		}
		if v := promValue(body, "weft_http_downstream_rq_time_seconds_count", "stat_prefix=ingress"); v != 4 {
			t.Errorf("weft_http_downstream_rq_time_seconds_count = %v, want 4", v)
		}
		if v := promValue(body, "weft_cluster_upstream_rq_time_seconds_count", "cluster=a"); v != 4 {
			t.Errorf("weft_cluster_upstream_rq_time_seconds_count = %v, want 4", v)
		}
	})

	// Stats a connection manager exports that must move after four
	// requests on one keep-alive connection.
	t.Run("http connection stats", func(t *testing.T) {
		_, body := w.Admin("/stats/prometheus")
		var zero []string
		for name, want := range map[string]float64{
			"weft_http_downstream_cx_total":           1,
			"weft_http_downstream_cx_http1_total":     1,
			"weft_http_downstream_rq_completed_total": 4,
			"weft_http_downstream_cx_rx_bytes_total":  1,
			"weft_http_downstream_cx_tx_bytes_total":  1,
		} {
			if got := promValue(body, name, "stat_prefix=ingress"); got < want {
				zero = append(zero, fmt.Sprintf("%s = %v (want >= %v)", name, got, want))
			}
		}
		if len(zero) > 0 {
			t.Errorf("HTTP connection manager stats not maintained:\n  %s", strings.Join(zero, "\n  "))
		}
	})

	t.Run("stats text", func(t *testing.T) {
		code, body := w.Admin("/stats")
		if code != 200 {
			t.Fatalf("/stats: %d", code)
		}
		for _, want := range []string{"cluster.a.upstream_rq_total: 4", "http.ingress.downstream_rq_total: 4", "cluster.a.upstream_rq_2xx: 4"} {
			if !strings.Contains(body, want+"\n") {
				t.Errorf("/stats lacks %q", want)
			}
		}
	})

	t.Run("config_dump", func(t *testing.T) {
		code, body := w.Admin("/config_dump")
		if code != 200 {
			t.Fatalf("/config_dump: %d", code)
		}
		var d struct {
			StaticResources struct {
				Listeners []struct {
					Name string `json:"name"`
				} `json:"listeners"`
				Clusters []struct {
					Name string `json:"name"`
				} `json:"clusters"`
			} `json:"static_resources"`
		}
		if err := json.Unmarshal([]byte(body), &d); err != nil {
			t.Fatalf("not JSON: %v\n%.300s", err, body)
		}
		if len(d.StaticResources.Listeners) != 1 || d.StaticResources.Listeners[0].Name != "http" {
			t.Errorf("config_dump listeners: %+v", d.StaticResources.Listeners)
		}
		if len(d.StaticResources.Clusters) != 1 || d.StaticResources.Clusters[0].Name != "a" {
			t.Errorf("config_dump clusters: %+v", d.StaticResources.Clusters)
		}
	})

	t.Run("clusters", func(t *testing.T) {
		_, text := w.Admin("/clusters")
		for _, want := range []string{
			"a::" + up.Addr + "::rq_total::4",
			"a::" + up.Addr + "::health_flags::healthy",
			"a::default_priority::max_requests::1024",
		} {
			if !strings.Contains(text, want+"\n") {
				t.Errorf("/clusters lacks %q:\n%s", want, text)
			}
		}
		h := hostHealth(t, w, "a")
		if healthy, ok := h[up.Addr]; !ok || !healthy {
			t.Errorf("/clusters?format=json hosts %v, want %s healthy", h, up.Addr)
		}
	})

	t.Run("listeners", func(t *testing.T) {
		_, text := w.Admin("/listeners")
		if strings.TrimSpace(text) != "http::"+w.Listener("http") {
			t.Errorf("/listeners: %q", text)
		}
	})

	t.Run("pprof", func(t *testing.T) {
		code, body := w.Admin("/debug/pprof/")
		if code != 200 || !strings.Contains(body, "goroutine") {
			t.Errorf("/debug/pprof/: %d %.200q", code, body)
		}
		code, body = w.Admin("/debug/pprof/goroutine?debug=1")
		if code != 200 || !strings.Contains(body, "goroutine profile") {
			t.Errorf("/debug/pprof/goroutine: %d %.200q", code, body)
		}
	})

	t.Run("unknown path", func(t *testing.T) {
		if code, _ := w.Admin("/no/such/page"); code != 404 {
			t.Errorf("unknown admin path: %d, want 404", code)
		}
	})
}

// TestAdminLogging: POST /logging?level= changes the process log level,
// which the data plane's own log lines obey; a bad level is a 400.
func TestAdminLogging(t *testing.T) {
	t.Parallel()
	var healthy atomic.Bool
	healthy.Store(true)
	var checks atomic.Int64
	a := hcUpstream(t, "a", &healthy, &checks)
	w, _ := startHTTPProxy(t, hcmConfig{Routes: routeTo("a")}, with(t, staticCluster("a", a.Port), `
health_checks: [{timeout: 1s, interval: 0.05s, unhealthy_threshold: 1, healthy_threshold: 1, http_health_check: {path: /healthz}}]
`))

	if code, body := adminPost(t, w, "/logging?level=nonsense"); code != 400 || !strings.Contains(body, "unknown log level") {
		t.Errorf("bad level: %d %q, want 400", code, body)
	}
	if code, _ := w.Admin("/logging?level=debug"); code != 405 {
		t.Errorf("GET /logging?level=: %d, want 405", code)
	}
	if code, body := adminPost(t, w, "/logging?level=error"); code != 200 || !strings.Contains(body, "active level: error") {
		t.Fatalf("set error: %d %q", code, body)
	}
	if _, body := w.Admin("/logging"); !strings.Contains(body, "active level: error") {
		t.Errorf("GET /logging after setting error: %q", body)
	}

	// At error level the INFO "host health changed" line is suppressed.
	const line = "upstream host health changed"
	before := strings.Count(w.Output(), line)
	healthy.Store(false)
	waitFor(t, 3*time.Second, "a to turn unhealthy", func() bool { return !hostHealth(t, w, "a")[a.Addr] })
	if n := strings.Count(w.Output(), line); n != before {
		t.Errorf("an INFO line was logged at level error:\n%s", w.Output())
	}
	if code, _ := adminPost(t, w, "/logging?level=info"); code != 200 {
		t.Fatalf("set info: %d", code)
	}
	healthy.Store(true)
	waitFor(t, 3*time.Second, "the INFO health line at level info", func() bool {
		return strings.Count(w.Output(), line) > before
	})
}

// TestAdminLogFormat: with --log-level warn, weft prints no INFO lines —
// its admin component included — and every line has the same format.
func TestAdminLogFormat(t *testing.T) {
	t.Parallel()
	up := newUpstream(t, "a", nil)
	w := startWeft(t, bootstrap(t, []M{httpListener(t, "http", hcmConfig{Routes: routeTo("a")})}, staticCluster("a", up.Port)),
		"--log-level", "warn")
	if r := get(t, client(), "http://"+w.Listener("http")+"/"); r.Status != 200 {
		t.Fatalf("status %d", r.Status)
	}
	if out := w.Output(); strings.Contains(out, "INFO") {
		t.Errorf("INFO lines printed at --log-level warn:\n%s", out)
	}
}
