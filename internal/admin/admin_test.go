package admin

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/stats"
)

type fixture struct {
	srv    *Server
	base   string
	store  *stats.Store
	level  *slog.LevelVar
	ready  *atomic.Bool
	quit   chan struct{}
	hc     chan bool
	client *http.Client
}

func start(t *testing.T, mod func(*Options)) *fixture {
	t.Helper()
	f := &fixture{
		store:  stats.NewStore(),
		level:  new(slog.LevelVar),
		ready:  new(atomic.Bool),
		quit:   make(chan struct{}, 1),
		hc:     make(chan bool, 4),
		client: &http.Client{Timeout: 10 * time.Second},
	}
	f.ready.Store(true)
	opts := Options{
		Address:       "127.0.0.1:0",
		Stats:         f.store,
		LogLevel:      f.level,
		Logger:        slog.New(slog.NewTextHandler(io.Discard, nil)),
		ConfigDump:    func() ([]byte, error) { return []byte(`{"configs":[]}`), nil },
		Ready:         f.ready.Load,
		OnHealthCheck: func(failed bool) { f.hc <- failed },
		Quit:          func() { f.quit <- struct{}{} },
		Clusters: func() any {
			return []ClusterStatus{{
				Name:            "backend",
				CircuitBreakers: map[string]uint64{"max_connections": 1024},
				Hosts: []HostStatus{
					{Address: "127.0.0.1:8080", Stats: map[string]int64{"rq_total": 5, "cx_active": 1}},
					{Address: "127.0.0.1:8081", HealthFlags: "/failed_active_hc", Weight: 3, Zone: "z1"},
				},
			}}
		},
	}
	if mod != nil {
		mod(&opts)
	}
	f.srv = New(opts)
	if err := f.srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := f.srv.Shutdown(ctx); err != nil {
			t.Errorf("Shutdown: %v", err)
		}
	})
	f.base = "http://" + f.srv.Addr()
	return f
}

// do sends a request and returns the status and body.
func (f *fixture) do(t *testing.T, method, path string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, f.base+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp.Header
}

func TestEndpoints(t *testing.T) {
	f := start(t, nil)
	tests := []struct {
		method, path string
		code         int
		contains     []string
	}{
		{"GET", "/", 200, []string{"<title>Weft admin</title>", `href="stats/prometheus"`, `href="debug/pprof/"`, "quitquitquit"}},
		{"GET", "/ready", 200, []string{"LIVE"}},
		{"HEAD", "/ready", 200, nil},
		{"GET", "/config_dump", 200, []string{`{"configs":[]}`}},
		{"GET", "/clusters", 200, []string{
			"backend::default_priority::max_connections::1024\n",
			"backend::added_via_api::false\n",
			"backend::127.0.0.1:8080::cx_active::1\nbackend::127.0.0.1:8080::rq_total::5\n",
			"backend::127.0.0.1:8080::health_flags::healthy\n",
			"backend::127.0.0.1:8081::health_flags::/failed_active_hc\n",
			"backend::127.0.0.1:8081::weight::3\n",
		}},
		{"GET", "/clusters?format=json", 200, []string{`"name": "backend"`, `"health_flags": "/failed_active_hc"`}},
		{"GET", "/debug/pprof/", 200, []string{"goroutine", "heap"}},
		{"GET", "/debug/pprof/goroutine?debug=1", 200, []string{"goroutine profile"}},
		{"GET", "/debug/pprof/cmdline", 200, nil},
		{"GET", "/nope", 404, nil},
		{"GET", "/healthcheck/fail", 405, nil},
		{"GET", "/quitquitquit", 405, nil},
		{"POST", "/stats", 405, nil},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			code, body, _ := f.do(t, tt.method, tt.path)
			if code != tt.code {
				t.Fatalf("status %d, want %d; body %q", code, tt.code, body)
			}
			for _, s := range tt.contains {
				if !strings.Contains(body, s) {
					t.Errorf("body does not contain %q:\n%s", s, body)
				}
			}
		})
	}
}

func TestReadyAndHealthCheck(t *testing.T) {
	f := start(t, nil)
	f.ready.Store(false)
	if code, body, _ := f.do(t, "GET", "/ready"); code != 503 || body != "INITIALIZING\n" {
		t.Errorf("not ready: %d %q", code, body)
	}
	f.ready.Store(true)
	if code, _, _ := f.do(t, "POST", "/healthcheck/fail"); code != 200 {
		t.Fatalf("healthcheck/fail: %d", code)
	}
	if got := <-f.hc; !got {
		t.Error("OnHealthCheck(false) after fail")
	}
	if !f.srv.HealthCheckFailed() {
		t.Error("HealthCheckFailed = false")
	}
	if code, body, _ := f.do(t, "GET", "/ready"); code != 503 || body != "DRAINING\n" {
		t.Errorf("after fail: %d %q", code, body)
	}
	if _, body, _ := f.do(t, "GET", "/"); !strings.Contains(body, "DRAINING") {
		t.Error("index does not show DRAINING")
	}
	f.do(t, "POST", "/healthcheck/ok")
	if got := <-f.hc; got {
		t.Error("OnHealthCheck(true) after ok")
	}
	if code, body, _ := f.do(t, "GET", "/ready"); code != 200 || body != "LIVE\n" {
		t.Errorf("after ok: %d %q", code, body)
	}
}

func TestLogging(t *testing.T) {
	f := start(t, nil)
	if code, body, _ := f.do(t, "GET", "/logging"); code != 200 || !strings.Contains(body, "active level: info") {
		t.Errorf("GET /logging: %d %q", code, body)
	}
	if code, body, _ := f.do(t, "POST", "/logging?level=debug"); code != 200 || !strings.Contains(body, "active level: debug") {
		t.Errorf("POST debug: %d %q", code, body)
	}
	if f.level.Level() != slog.LevelDebug {
		t.Errorf("level = %v, want DEBUG", f.level.Level())
	}
	if code, body, _ := f.do(t, "GET", "/logging"); code != 200 || !strings.Contains(body, "active level: debug") {
		t.Errorf("GET after change: %d %q", code, body)
	}
	code, body, _ := f.do(t, "POST", "/logging?level=verbose")
	if code != 400 || !strings.Contains(body, `"verbose"`) || !strings.Contains(body, "trace, debug, info, warning, warn, error, critical, off") {
		t.Errorf("bad level: %d %q", code, body)
	}
	if code, _, _ := f.do(t, "GET", "/logging?level=error"); code != 405 {
		t.Errorf("GET with level: %d, want 405", code)
	}
	if f.level.Level() != slog.LevelDebug {
		t.Errorf("level changed by a rejected request: %v", f.level.Level())
	}
	// The index page's form posts the level in the body.
	resp, err := f.client.PostForm(f.base+"/logging", url.Values{"level": {"WARNING"}})
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 || f.level.Level() != slog.LevelWarn {
		t.Errorf("form POST: %d, level %v", resp.StatusCode, f.level.Level())
	}
}

func TestCrossOriginPostRejected(t *testing.T) {
	f := start(t, nil)
	req, _ := http.NewRequest("POST", f.base+"/healthcheck/fail", nil)
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	req.Header.Set("Origin", "http://evil.invalid")
	resp, err := f.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || f.srv.HealthCheckFailed() {
		t.Errorf("cross-origin POST: %d, failed=%v", resp.StatusCode, f.srv.HealthCheckFailed())
	}
}

func TestQuit(t *testing.T) {
	f := start(t, nil)
	if code, _, _ := f.do(t, "POST", "/quitquitquit"); code != 200 {
		t.Fatalf("quitquitquit: %d", code)
	}
	select {
	case <-f.quit:
	case <-time.After(5 * time.Second):
		t.Fatal("Quit not called")
	}
}

func TestProvidersMissingOrFailing(t *testing.T) {
	f := start(t, func(o *Options) {
		o.ConfigDump = func() ([]byte, error) { return nil, errors.New("boom") }
		o.Clusters = func() any { return map[string]int{"weird": 1} }
		o.Quit = nil
		o.Stats = nil
		o.LogLevel = nil
	})
	tests := []struct {
		path string
		code int
		want string
	}{
		{"/config_dump", 500, "boom"},
		{"/clusters", 500, "format=json"},
		{"/clusters?format=json", 200, `"weird": 1`},
		{"/stats", 200, ""},
		{"/logging", 200, "active level: info"},
	}
	for _, tt := range tests {
		code, body, _ := f.do(t, "GET", tt.path)
		if code != tt.code || !strings.Contains(body, tt.want) {
			t.Errorf("%s: %d %q", tt.path, code, body)
		}
	}
	if code, _, _ := f.do(t, "POST", "/quitquitquit"); code != 404 {
		t.Errorf("quit without Quit: %d", code)
	}
	g := start(t, func(o *Options) { o.ConfigDump, o.Clusters = nil, nil })
	for _, p := range []string{"/config_dump", "/clusters"} {
		if code, _, _ := g.do(t, "GET", p); code != 404 {
			t.Errorf("%s without provider: %d", p, code)
		}
	}
}

// clusterShaped is a provider type from another package with the same
// JSON shape as ClusterStatus.
type clusterShaped struct {
	Statuses []struct {
		Name  string `json:"name"`
		Hosts []struct {
			Address string `json:"address"`
		} `json:"host_statuses"`
	} `json:"cluster_statuses"`
}

func TestClustersForeignShape(t *testing.T) {
	var v clusterShaped
	if err := json.Unmarshal([]byte(`{"cluster_statuses":[{"name":"c","host_statuses":[{"address":"127.0.0.1:1"}]}]}`), &v); err != nil {
		t.Fatal(err)
	}
	f := start(t, func(o *Options) { o.Clusters = func() any { return v } })
	_, body, _ := f.do(t, "GET", "/clusters")
	if want := "c::added_via_api::false\nc::127.0.0.1:1::health_flags::healthy\nc::127.0.0.1:1::weight::1\nc::127.0.0.1:1::zone::\n"; body != want {
		t.Errorf("got %q, want %q", body, want)
	}
}

func populate(s *stats.Store) {
	h := s.HTTP("ingress_http")
	h.DownstreamRq.Add(3)
	h.RecordResponse(200)
	h.RecordResponse(200)
	h.RecordResponse(503)
	h.DownstreamRqTime.Observe(3 * time.Millisecond)
	s.Listener("ingress").DownstreamCxTotal.Add(2)
	s.Route("default", "all").Requests.Inc()
	cs := &api.ClusterStats{}
	cs.UpstreamRequests.Add(4)
	s.RegisterCluster("backend", cs)
	s.ClusterLatency("backend").Observe(2 * time.Millisecond)
	s.RegisterHost("backend", "127.0.0.1:8080", &api.HostStats{}, nil)
	s.Counter("weft_http_fault_aborts_total", "Requests aborted by the fault filter.", "stat_prefix", "ingress_http").Inc()
}

func TestPrometheus(t *testing.T) {
	f := start(t, nil)
	populate(f.store)
	code, body, hdr := f.do(t, "GET", "/stats/prometheus")
	if code != 200 {
		t.Fatalf("status %d", code)
	}
	if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("Content-Type %q", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse exposition: %v", err)
	}
	type want struct {
		family string
		labels map[string]string
		typ    dto.MetricType
		value  float64
	}
	for _, w := range []want{
		{"weft_http_downstream_rq_total", map[string]string{"stat_prefix": "ingress_http"}, dto.MetricType_COUNTER, 3},
		{"weft_http_downstream_rq_xx_total", map[string]string{"stat_prefix": "ingress_http", "code_class": "2xx"}, dto.MetricType_COUNTER, 2},
		{"weft_http_downstream_rq_xx_total", map[string]string{"stat_prefix": "ingress_http", "code_class": "5xx"}, dto.MetricType_COUNTER, 1},
		{"weft_listener_downstream_cx_total", map[string]string{"listener": "ingress"}, dto.MetricType_COUNTER, 2},
		{"weft_listener_downstream_cx_active", map[string]string{"listener": "ingress"}, dto.MetricType_GAUGE, 0},
		{"weft_route_rq_total", map[string]string{"vhost": "default", "route": "all"}, dto.MetricType_COUNTER, 1},
		{"weft_cluster_upstream_rq_total", map[string]string{"cluster": "backend"}, dto.MetricType_COUNTER, 4},
		{"weft_host_rq_total", map[string]string{"cluster": "backend", "host": "127.0.0.1:8080"}, dto.MetricType_COUNTER, 0},
		{"weft_http_fault_aborts_total", map[string]string{"stat_prefix": "ingress_http"}, dto.MetricType_COUNTER, 1},
	} {
		mf := fams[w.family]
		if mf == nil {
			t.Errorf("family %s missing", w.family)
			continue
		}
		if mf.GetType() != w.typ {
			t.Errorf("%s: type %v, want %v", w.family, mf.GetType(), w.typ)
		}
		m := findMetric(mf, w.labels)
		if m == nil {
			t.Errorf("%s%v missing", w.family, w.labels)
			continue
		}
		v := m.GetCounter().GetValue()
		if w.typ == dto.MetricType_GAUGE {
			v = m.GetGauge().GetValue()
		}
		if v != w.value {
			t.Errorf("%s%v = %v, want %v", w.family, w.labels, v, w.value)
		}
	}
	for _, name := range []string{"weft_http_downstream_rq_time_seconds", "weft_cluster_upstream_rq_time_seconds"} {
		mf := fams[name]
		if mf == nil || mf.GetType() != dto.MetricType_HISTOGRAM {
			t.Errorf("%s: %v", name, mf)
			continue
		}
		if h := mf.GetMetric()[0].GetHistogram(); h.GetSampleCount() != 1 || len(h.GetBucket()) != len(stats.BucketBounds())+1 /* +Inf */ {
			t.Errorf("%s: count %d, %d buckets", name, h.GetSampleCount(), len(h.GetBucket()))
		}
	}
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		if fams[name] == nil {
			t.Errorf("runtime family %s missing", name)
		}
	}
	// /stats?format=prometheus is the same exposition.
	if code, body, _ := f.do(t, "GET", "/stats?format=prometheus"); code != 200 || !strings.Contains(body, "weft_http_downstream_rq_total") {
		t.Errorf("/stats?format=prometheus: %d", code)
	}
}

func findMetric(mf *dto.MetricFamily, want map[string]string) *dto.Metric {
next:
	for _, m := range mf.GetMetric() {
		got := map[string]string{}
		for _, lp := range m.GetLabel() {
			got[lp.GetName()] = lp.GetValue()
		}
		for k, v := range want {
			if got[k] != v {
				continue next
			}
		}
		return m
	}
	return nil
}

func TestStatsText(t *testing.T) {
	f := start(t, nil)
	populate(f.store)
	tests := []struct {
		path     string
		code     int
		contains []string
		excludes []string
	}{
		{"/stats", 200, []string{
			"http.ingress_http.downstream_rq_total: 3\n",
			"http.ingress_http.downstream_rq_2xx: 2\n",
			"http.ingress_http.downstream_rq_4xx: 0\n",
			"listener.ingress.downstream_cx_total: 2\n",
			"cluster.backend.upstream_rq_total: 4\n",
			"vhost.default.route.all.rq_total: 1\n",
			"http.ingress_http.downstream_rq_time: P0(1) P25(",
			"listener.ingress.downstream_cx_length: No recorded values\n",
			`weft_http_fault_aborts_total{stat_prefix="ingress_http"}: 1`,
		}, nil},
		{"/stats?usedonly", 200, []string{"http.ingress_http.downstream_rq_2xx: 2\n"},
			[]string{"downstream_rq_4xx", "No recorded values"}},
		{"/stats?filter=%5Ecluster%5C.", 200, []string{"cluster.backend.upstream_rq_total: 4\n"}, []string{"http.", "listener."}},
		{"/stats?filter=%28", 400, []string{"invalid filter"}, nil},
		{"/stats?format=xml", 400, nil, nil},
	}
	for _, tt := range tests {
		code, body, _ := f.do(t, "GET", tt.path)
		if code != tt.code {
			t.Errorf("%s: status %d, want %d", tt.path, code, tt.code)
			continue
		}
		for _, s := range tt.contains {
			if !strings.Contains(body, s) {
				t.Errorf("%s: missing %q in\n%s", tt.path, s, body)
			}
		}
		for _, s := range tt.excludes {
			if strings.Contains(body, s) {
				t.Errorf("%s: unexpected %q", tt.path, s)
			}
		}
	}

	_, body, _ := f.do(t, "GET", "/stats?format=json&filter=downstream_rq_(total|time)$")
	var out struct {
		Stats []json.RawMessage `json:"stats"`
	}
	if err := json.Unmarshal([]byte(body), &out); err != nil {
		t.Fatalf("json: %v\n%s", err, body)
	}
	if len(out.Stats) != 2 || !strings.Contains(string(out.Stats[0]), `"value": 3`) ||
		!strings.Contains(string(out.Stats[1]), `"name": "http.ingress_http.downstream_rq_time"`) {
		t.Errorf("json stats = %s", body)
	}
}

func TestStartAndShutdown(t *testing.T) {
	s := New(Options{Address: "127.0.0.1:0", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if s.Addr() != "" {
		t.Error("Addr before Start")
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Errorf("Shutdown before Start: %v", err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err == nil {
		t.Error("second Start succeeded")
	}
	addr := s.Addr()
	if !strings.HasPrefix(addr, "127.0.0.1:") || strings.HasSuffix(addr, ":0") {
		t.Errorf("Addr = %q", addr)
	}
	busy := New(Options{Address: addr, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := busy.Start(); err == nil || !strings.Contains(err.Error(), "admin: listen") {
		t.Errorf("Start on a busy port: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	c := &http.Client{Timeout: 2 * time.Second}
	if resp, err := c.Get("http://" + addr + "/ready"); err == nil {
		resp.Body.Close()
		t.Error("server still answering after Shutdown")
	}
	if New(Options{}).opts.Address != DefaultAddress {
		t.Error("default address not applied")
	}
}
