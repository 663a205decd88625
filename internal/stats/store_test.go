package stats

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/weftmesh/weft/api"
)

func TestHandlesAreShared(t *testing.T) {
	s := NewStore()
	if s.Listener("a") != s.Listener("a") || s.Listener("a") == s.Listener("b") {
		t.Error("Listener handles not keyed by name")
	}
	if s.HTTP("p") != s.HTTP("p") {
		t.Error("HTTP handles not shared")
	}
	if s.Route("v", "r") != s.Route("v", "r") || s.Route("v", "r") == s.Route("v", "r2") {
		t.Error("Route handles not keyed by vhost and route")
	}
	if s.ClusterLatency("c") != s.ClusterLatency("c") {
		t.Error("ClusterLatency handles not shared")
	}
	if s.Counter("weft_x_total", "x", "k", "v") != s.Counter("weft_x_total", "x", "k", "v") {
		t.Error("Counter handles not shared")
	}
	if s.Counter("weft_x_total", "x", "k", "v") == s.Counter("weft_x_total", "x", "k", "w") {
		t.Error("Counter series not keyed by label values")
	}
	if s.Listener("a").DownstreamCxLength == nil || s.HTTP("p").DownstreamRqTime == nil || s.Route("v", "r").Latency == nil {
		t.Error("histograms not created")
	}
}

func TestCounterPanics(t *testing.T) {
	tests := []struct {
		name string
		fn   func(s *Store)
	}{
		{"bad name", func(s *Store) { s.Counter("weft-x", "h") }},
		{"odd labels", func(s *Store) { s.Counter("weft_x_total", "h", "k") }},
		{"bad label", func(s *Store) { s.Counter("weft_x_total", "h", "1k", "v") }},
		{"reserved label", func(s *Store) { s.Counter("weft_x_total", "h", "__name__", "v") }},
		{"builtin clash", func(s *Store) { s.Counter("weft_http_downstream_rq_total", "h") }},
		{"builtin hist clash", func(s *Store) { s.Counter("weft_cluster_upstream_rq_time_seconds_bucket", "h") }},
		{"label mismatch", func(s *Store) {
			s.Counter("weft_x_total", "h", "a", "1")
			s.Counter("weft_x_total", "h", "b", "1")
		}},
		{"kind mismatch", func(s *Store) {
			s.Counter("weft_x", "h")
			s.Gauge("weft_x", "h")
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			defer func() {
				if recover() == nil {
					t.Error("no panic")
				}
			}()
			tt.fn(NewStore())
		})
	}
}

// gather registers the store's collector in a fresh registry and returns
// the families by name.
func gather(t *testing.T, s *Store) map[string]*dto.MetricFamily {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(s.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("Gather: %v", err)
	}
	out := map[string]*dto.MetricFamily{}
	for _, mf := range mfs {
		out[mf.GetName()] = mf
	}
	return out
}

// find returns the metric of a family whose labels include want.
func find(mf *dto.MetricFamily, want map[string]string) *dto.Metric {
	if mf == nil {
		return nil
	}
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

func TestCollector(t *testing.T) {
	s := NewStore()
	l := s.Listener("ingress_8080")
	l.DownstreamCxTotal.Add(3)
	l.DownstreamCxActive.Set(2)
	h := s.HTTP("ingress_http")
	h.DownstreamRq.Inc()
	h.RecordResponse(503)
	h.RecordResponse(200)
	h.RecordResponse(204)
	h.DownstreamRqTime.Observe(2 * time.Millisecond)
	r := s.Route("default", "catch_all")
	r.Requests.Inc()
	r.RecordResponse(404)
	cs := &api.ClusterStats{}
	cs.UpstreamRequests.Add(7)
	RecordClusterResponse(cs, 200)
	cs.MembershipTotal.Set(3)
	s.RegisterCluster("backend", cs)
	s.ClusterLatency("backend").Observe(1500 * time.Microsecond)
	hs := &api.HostStats{}
	hs.Requests.Add(4)
	var active api.Gauge
	active.Set(1)
	s.RegisterHost("backend", "127.0.0.1:9000", hs, &active)
	s.Counter("weft_http_fault_aborts_total", "Fault aborts.", "stat_prefix", "ingress_http").Add(2)
	s.Gauge("weft_test_gauge", "A gauge.").Set(-4)

	fams := gather(t, s)
	tests := []struct {
		family string
		labels map[string]string
		typ    dto.MetricType
		value  float64
	}{
		{"weft_listener_downstream_cx_total", map[string]string{"listener": "ingress_8080"}, dto.MetricType_COUNTER, 3},
		{"weft_listener_downstream_cx_active", map[string]string{"listener": "ingress_8080"}, dto.MetricType_GAUGE, 2},
		{"weft_listener_downstream_cx_destroy_total", map[string]string{"listener": "ingress_8080"}, dto.MetricType_COUNTER, 0},
		{"weft_http_downstream_rq_total", map[string]string{"stat_prefix": "ingress_http"}, dto.MetricType_COUNTER, 1},
		{"weft_http_downstream_rq_xx_total", map[string]string{"stat_prefix": "ingress_http", "code_class": "2xx"}, dto.MetricType_COUNTER, 2},
		{"weft_http_downstream_rq_xx_total", map[string]string{"stat_prefix": "ingress_http", "code_class": "5xx"}, dto.MetricType_COUNTER, 1},
		{"weft_route_rq_total", map[string]string{"vhost": "default", "route": "catch_all"}, dto.MetricType_COUNTER, 1},
		{"weft_route_rq_xx_total", map[string]string{"vhost": "default", "route": "catch_all", "code_class": "4xx"}, dto.MetricType_COUNTER, 1},
		{"weft_cluster_upstream_rq_total", map[string]string{"cluster": "backend"}, dto.MetricType_COUNTER, 7},
		{"weft_cluster_upstream_rq_xx_total", map[string]string{"cluster": "backend", "code_class": "2xx"}, dto.MetricType_COUNTER, 1},
		{"weft_cluster_membership_total", map[string]string{"cluster": "backend"}, dto.MetricType_GAUGE, 3},
		{"weft_host_rq_total", map[string]string{"cluster": "backend", "host": "127.0.0.1:9000"}, dto.MetricType_COUNTER, 4},
		{"weft_host_rq_active", map[string]string{"cluster": "backend", "host": "127.0.0.1:9000"}, dto.MetricType_GAUGE, 1},
		{"weft_http_fault_aborts_total", map[string]string{"stat_prefix": "ingress_http"}, dto.MetricType_COUNTER, 2},
		{"weft_test_gauge", nil, dto.MetricType_GAUGE, -4},
	}
	for _, tt := range tests {
		mf := fams[tt.family]
		if mf == nil {
			t.Errorf("family %s missing", tt.family)
			continue
		}
		if mf.GetType() != tt.typ {
			t.Errorf("%s type = %v, want %v", tt.family, mf.GetType(), tt.typ)
		}
		m := find(mf, tt.labels)
		if m == nil {
			t.Errorf("%s%v missing", tt.family, tt.labels)
			continue
		}
		var v float64
		if tt.typ == dto.MetricType_COUNTER {
			v = m.GetCounter().GetValue()
		} else {
			v = m.GetGauge().GetValue()
		}
		if v != tt.value {
			t.Errorf("%s%v = %v, want %v", tt.family, tt.labels, v, tt.value)
		}
	}

	hm := find(fams["weft_http_downstream_rq_time_seconds"], map[string]string{"stat_prefix": "ingress_http"})
	if hm == nil || hm.GetHistogram().GetSampleCount() != 1 || hm.GetHistogram().GetSampleSum() != 0.002 {
		t.Fatalf("http histogram = %v", hm)
	}
	for _, b := range hm.GetHistogram().GetBucket() {
		want := uint64(0)
		if b.GetUpperBound() >= 0.005 {
			want = 1
		}
		if b.GetCumulativeCount() != want {
			t.Errorf("bucket le=%v count %d, want %d", b.GetUpperBound(), b.GetCumulativeCount(), want)
		}
	}
	if find(fams["weft_cluster_upstream_rq_time_seconds"], map[string]string{"cluster": "backend"}) == nil {
		t.Error("cluster latency histogram missing")
	}

	s.UnregisterHost("backend", "127.0.0.1:9000")
	s.UnregisterCluster("backend")
	fams = gather(t, s)
	for _, name := range []string{"weft_host_rq_total", "weft_cluster_upstream_rq_total", "weft_cluster_upstream_rq_time_seconds"} {
		if fams[name] != nil {
			t.Errorf("%s still exported after unregister", name)
		}
	}
}

func TestInvalidUTF8Names(t *testing.T) {
	s := NewStore()
	s.Listener("bad\xffname").DownstreamCxTotal.Inc()
	m := find(gather(t, s)["weft_listener_downstream_cx_total"], nil)
	if m == nil || !strings.Contains(m.GetLabel()[0].GetValue(), "\uFFFD") {
		t.Fatalf("metric = %v", m)
	}
}

func TestSamples(t *testing.T) {
	s := NewStore()
	s.HTTP("ingress").RecordResponse(201)
	cs := &api.ClusterStats{}
	cs.UpstreamRequests.Inc()
	s.RegisterCluster("c1", cs)
	s.RegisterHost("c1", "127.0.0.1:1", &api.HostStats{}, nil)
	s.ClusterLatency("c1").Observe(time.Millisecond)
	s.Route("vh", "r").Requests.Add(5)
	s.Counter("weft_ext_total", "Ext.", "a", "x", "b", "y").Inc()
	got := map[string]Sample{}
	var names []string
	for _, sm := range s.Samples() {
		got[sm.Name] = sm
		names = append(names, sm.Name)
	}
	for i := 1; i < len(names); i++ {
		if names[i-1] > names[i] {
			t.Fatalf("samples not sorted: %q before %q", names[i-1], names[i])
		}
	}
	tests := []struct {
		name  string
		value int64
		hist  bool
	}{
		{"http.ingress.downstream_rq_2xx", 1, false},
		{"http.ingress.downstream_rq_5xx", 0, false},
		{"http.ingress.downstream_rq_time", 0, true},
		{"cluster.c1.upstream_rq_total", 1, false},
		{"cluster.c1.upstream_rq_time", 0, true},
		{"cluster.c1.host.127.0.0.1:1.rq_active", 0, false},
		{"vhost.vh.route.r.rq_total", 5, false},
		{`weft_ext_total{a="x",b="y"}`, 1, false},
	}
	for _, tt := range tests {
		sm, ok := got[tt.name]
		if !ok {
			t.Errorf("sample %q missing", tt.name)
			continue
		}
		if (sm.Histogram != nil) != tt.hist || (!tt.hist && sm.Value != tt.value) {
			t.Errorf("sample %q = %+v", tt.name, sm)
		}
	}
}

func TestStoreConcurrent(t *testing.T) {
	s := NewStore()
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.Collector())
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 200 {
				name := string(rune('a' + (g+i)%5))
				s.Listener(name).DownstreamCxTotal.Inc()
				s.HTTP(name).DownstreamRqTime.Observe(time.Millisecond)
				s.RegisterHost("c", name, &api.HostStats{}, nil)
				s.Counter("weft_c_total", "c", "n", name).Inc()
				if i%10 == 0 {
					s.UnregisterCluster("c")
				}
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			if _, err := reg.Gather(); err != nil {
				t.Error(err)
				return
			}
			_ = s.Samples()
		}
	})
	wg.Wait()
}
