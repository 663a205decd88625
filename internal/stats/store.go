// Package stats keeps Weft's metrics as plain atomics that the hot path
// bumps, and exports them to Prometheus and the admin /stats page only when
// they are read. Handles are created by name at config time; a request
// never looks a stat up.
package stats

import (
	"fmt"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/weftmesh/weft/api"
)

// Store owns every stat handle of the process. Its methods are safe for
// concurrent use; they take a lock, so call them at config time and keep
// the handles they return.
type Store struct {
	mu         sync.RWMutex
	listeners  map[string]*ListenerStats
	https      map[string]*HTTPStats
	routes     map[routeKey]*RouteStats
	clusters   map[string]*api.ClusterStats
	latency    map[string]*Histogram
	hosts      map[string]map[string]hostEntry // cluster -> address -> host
	ext        map[string]*extFamily
	rpcs       map[string]*RPCStats
	rpcMethods map[rpcMethodKey]*RPCMethodStats
	builtin    map[string]bool // reserved Prometheus family names
}

type routeKey struct{ vhost, route string }

// extFamily is a metric family created by an extension through Counter or
// Gauge.
type extFamily struct {
	name, help string
	kind       kind
	keys       []string
	series     map[string]*extSeries // joined label values -> series
}

type extSeries struct {
	values []string
	c      api.Counter
	g      api.Gauge
}

// NewStore returns an empty store.
func NewStore() *Store {
	s := &Store{
		listeners:  map[string]*ListenerStats{},
		https:      map[string]*HTTPStats{},
		routes:     map[routeKey]*RouteStats{},
		clusters:   map[string]*api.ClusterStats{},
		latency:    map[string]*Histogram{},
		hosts:      map[string]map[string]hostEntry{},
		ext:        map[string]*extFamily{},
		rpcs:       map[string]*RPCStats{},
		rpcMethods: map[rpcMethodKey]*RPCMethodStats{},
		builtin:    map[string]bool{},
	}
	reserve := func(scope string, scalar []string, hist []string) {
		for _, n := range scalar {
			s.builtin[promPrefix+scope+"_"+n] = true
		}
		for _, n := range hist {
			for _, suf := range []string{"", "_bucket", "_sum", "_count"} {
				s.builtin[promPrefix+scope+"_"+n+suf] = true
			}
		}
	}
	reserve(scopeListener, promNames(listenerDefs), histNames(listenerHists))
	reserve(scopeHTTP, promNames(httpDefs), histNames(httpHists))
	reserve(scopeRoute, promNames(routeDefs), histNames(routeHists))
	reserve(scopeCluster, promNames(clusterDefs), []string{clusterHistStat + "_seconds"})
	reserve(scopeHost, promNames(hostDefs), nil)
	reserve(scopeRPC, promNames(rpcDefs), histNames(rpcHists))
	reserve(scopeRPCMethod, append(promNames(rpcMethodDefs), "responses_total"), histNames(rpcMethodHists))
	return s
}

func promNames[T any](defs []def[T]) []string {
	out := make([]string, len(defs))
	for i, d := range defs {
		out[i] = d.prom
	}
	return out
}

func histNames[T any](h []hdef[T]) []string {
	out := make([]string, len(h))
	for i, d := range h {
		out[i] = d.promName()
	}
	return out
}

// getOrCreate returns m[k], storing mk() there first when absent; the
// caller's handles are created under s.mu once, never on the hot path.
func getOrCreate[K comparable, V any](s *Store, m map[K]V, k K, mk func() V) V {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := m[k]
	if !ok {
		v = mk()
		m[k] = v
	}
	return v
}

// Listener returns the stats of the named listener, creating them on first
// use. The same name always yields the same handle, so a listener rebuilt by
// an update keeps counting where the old one stopped.
func (s *Store) Listener(name string) *ListenerStats {
	return getOrCreate(s, s.listeners, clean(name), func() *ListenerStats {
		return &ListenerStats{DownstreamCxLength: NewHistogram()}
	})
}

// HTTP returns the stats of the HTTP connection manager with the given
// stat_prefix, creating them on first use.
func (s *Store) HTTP(statPrefix string) *HTTPStats {
	return getOrCreate(s, s.https, clean(statPrefix), func() *HTTPStats {
		return &HTTPStats{DownstreamRqTime: NewHistogram()}
	})
}

// Route returns the stats of a route in a virtual host, creating them on
// first use.
func (s *Store) Route(vhost, route string) *RouteStats {
	return getOrCreate(s, s.routes, routeKey{clean(vhost), clean(route)}, func() *RouteStats {
		return &RouteStats{Latency: NewHistogram()}
	})
}

// ClusterLatency returns the upstream request time histogram of a cluster
// (weft_cluster_upstream_rq_time_seconds), creating it on first use. It
// survives RegisterCluster replacing the cluster's counters and goes away
// with UnregisterCluster.
func (s *Store) ClusterLatency(cluster string) *Histogram {
	return getOrCreate(s, s.latency, clean(cluster), NewHistogram)
}

// RegisterCluster exports the counters of a cluster under its name,
// replacing any counters registered before under that name (a cluster
// rebuilt by CDS registers its new stats).
func (s *Store) RegisterCluster(name string, cs *api.ClusterStats) {
	if cs == nil {
		return
	}
	name = clean(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.clusters[name] = cs
}

// UnregisterCluster stops exporting a cluster, its latency histogram and
// its hosts.
func (s *Store) UnregisterCluster(name string) {
	name = clean(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.clusters, name)
	delete(s.latency, name)
	delete(s.hosts, name)
}

// RegisterHost exports the counters of one upstream host of a cluster;
// active is the host's in-flight request gauge and may be nil. A second
// registration of the same cluster and address replaces the first.
func (s *Store) RegisterHost(cluster, addr string, hs *api.HostStats, active *api.Gauge) {
	if hs == nil {
		return
	}
	cluster, addr = clean(cluster), clean(addr)
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.hosts[cluster]
	if !ok {
		m = map[string]hostEntry{}
		s.hosts[cluster] = m
	}
	m[addr] = hostEntry{stats: hs, active: active}
}

// UnregisterHost stops exporting one upstream host.
func (s *Store) UnregisterHost(cluster, addr string) {
	cluster, addr = clean(cluster), clean(addr)
	s.mu.Lock()
	defer s.mu.Unlock()
	if m, ok := s.hosts[cluster]; ok {
		delete(m, addr)
		if len(m) == 0 {
			delete(s.hosts, cluster)
		}
	}
}

// Counter returns a counter for an extension, creating it on first use:
// name is the full Prometheus name (e.g. "weft_http_fault_aborts_total"),
// labels alternate label names and values ("stat_prefix", "ingress").
// Every call for one name must pass the same help text and label names.
//
// Extension metric names and label names are constants of the extension's
// code, so a malformed name, an odd label list, a clash with a built-in
// family or a label-name mismatch is a build defect and Counter panics.
func (s *Store) Counter(name, help string, labels ...string) *api.Counter {
	return &s.extSeries(name, help, kindCounter, labels).c
}

// Gauge is Counter for a value that goes up and down.
func (s *Store) Gauge(name, help string, labels ...string) *api.Gauge {
	return &s.extSeries(name, help, kindGauge, labels).g
}

var (
	metricNameRE = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)
	labelNameRE  = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)
)

func (s *Store) extSeries(name, help string, k kind, labels []string) *extSeries {
	if !metricNameRE.MatchString(name) {
		panic(fmt.Sprintf("stats: invalid metric name %q", name))
	}
	if len(labels)%2 != 0 {
		panic(fmt.Sprintf("stats: metric %q: odd number of label arguments", name))
	}
	keys := make([]string, 0, len(labels)/2)
	values := make([]string, 0, len(labels)/2)
	for i := 0; i < len(labels); i += 2 {
		if !labelNameRE.MatchString(labels[i]) || strings.HasPrefix(labels[i], "__") {
			panic(fmt.Sprintf("stats: metric %q: invalid label name %q", name, labels[i]))
		}
		keys = append(keys, labels[i])
		values = append(values, clean(labels[i+1]))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.builtin[name] {
		panic(fmt.Sprintf("stats: metric %q clashes with a built-in family", name))
	}
	f, ok := s.ext[name]
	if !ok {
		f = &extFamily{name: name, help: help, kind: k, keys: keys, series: map[string]*extSeries{}}
		s.ext[name] = f
	}
	if f.kind != k || f.help != help || strings.Join(f.keys, ",") != strings.Join(keys, ",") {
		panic(fmt.Sprintf("stats: metric %q re-declared with a different kind, help or label names", name))
	}
	id := strings.Join(values, "\xff")
	se, ok := f.series[id]
	if !ok {
		se = &extSeries{values: values}
		f.series[id] = se
	}
	return se
}

// clean makes a name usable as a Prometheus label value (valid UTF-8).
func clean(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }

// Sample is one line of the Envoy-style /stats page.
type Sample struct {
	// Name is the Envoy-style stat name, e.g.
	// "http.ingress.downstream_rq_2xx" or, for extension metrics,
	// the Prometheus name with its labels.
	Name string
	// Value is the counter or gauge value; unused for histograms.
	Value int64
	// Histogram is set for a histogram sample.
	Histogram *Histogram
}

// Samples returns every stat as an Envoy-style sample, sorted by name:
// listener.<name>.*, http.<stat_prefix>.*, vhost.<vhost>.route.<route>.*,
// cluster.<name>.*, cluster.<name>.host.<addr>.* and extension metrics.
func (s *Store) Samples() []Sample {
	snap := s.snapshot()
	var out []Sample
	addScalars := func(prefix string, n int, get func(i int) (string, int64)) {
		for i := range n {
			stat, v := get(i)
			out = append(out, Sample{Name: prefix + stat, Value: v})
		}
	}
	for _, l := range snap.listeners {
		p := "listener." + l.name + "."
		addScalars(p, len(listenerDefs), func(i int) (string, int64) { return listenerDefs[i].stat, listenerDefs[i].get(l.s) })
		for _, h := range listenerHists {
			out = append(out, Sample{Name: p + h.stat, Histogram: h.get(l.s)})
		}
	}
	for _, h := range snap.https {
		p := "http." + h.name + "."
		addScalars(p, len(httpDefs), func(i int) (string, int64) { return httpDefs[i].stat, httpDefs[i].get(h.s) })
		for _, hd := range httpHists {
			out = append(out, Sample{Name: p + hd.stat, Histogram: hd.get(h.s)})
		}
	}
	for _, r := range snap.routes {
		p := "vhost." + r.vhost + ".route." + r.route + "."
		addScalars(p, len(routeDefs), func(i int) (string, int64) { return routeDefs[i].stat, routeDefs[i].get(r.s) })
		for _, hd := range routeHists {
			out = append(out, Sample{Name: p + hd.stat, Histogram: hd.get(r.s)})
		}
	}
	for _, c := range snap.clusters {
		p := "cluster." + c.name + "."
		addScalars(p, len(clusterDefs), func(i int) (string, int64) { return clusterDefs[i].stat, clusterDefs[i].get(c.s) })
	}
	for _, l := range snap.latency {
		out = append(out, Sample{Name: "cluster." + l.name + "." + clusterHistStat, Histogram: l.h})
	}
	for _, h := range snap.hosts {
		p := "cluster." + h.cluster + ".host." + h.addr + "."
		addScalars(p, len(hostDefs), func(i int) (string, int64) { return hostDefs[i].stat, hostDefs[i].get(&h.e) })
	}
	for _, f := range snap.ext {
		for _, se := range f.series {
			out = append(out, Sample{Name: extSampleName(f.extFamily, se), Value: extValue(f.extFamily, se)})
		}
	}
	out = s.rpcSamples(out)
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

func extSampleName(f *extFamily, se *extSeries) string {
	if len(f.keys) == 0 {
		return f.name
	}
	var b strings.Builder
	b.WriteString(f.name)
	b.WriteByte('{')
	for i, k := range f.keys {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%s=%q", k, se.values[i])
	}
	b.WriteByte('}')
	return b.String()
}

func extValue(f *extFamily, se *extSeries) int64 {
	if f.kind == kindGauge {
		return se.g.Value()
	}
	return int64(se.c.Value())
}

// snapshot copies the handle tables under the read lock so exporters work
// without holding it.
type snapshot struct {
	listeners []namedListener
	https     []namedHTTP
	routes    []namedRoute
	clusters  []namedCluster
	latency   []namedHist
	hosts     []namedHost
	ext       []extFamilySnap
}

type namedListener struct {
	name string
	s    *ListenerStats
}
type namedHTTP struct {
	name string
	s    *HTTPStats
}
type namedRoute struct {
	vhost, route string
	s            *RouteStats
}
type namedCluster struct {
	name string
	s    *api.ClusterStats
}
type namedHist struct {
	name string
	h    *Histogram
}
type namedHost struct {
	cluster, addr string
	e             hostEntry
}
type extFamilySnap struct {
	*extFamily
	series []*extSeries
}

func (s *Store) snapshot() snapshot {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var sn snapshot
	for n, v := range s.listeners {
		sn.listeners = append(sn.listeners, namedListener{n, v})
	}
	for n, v := range s.https {
		sn.https = append(sn.https, namedHTTP{n, v})
	}
	for k, v := range s.routes {
		sn.routes = append(sn.routes, namedRoute{k.vhost, k.route, v})
	}
	for n, v := range s.clusters {
		sn.clusters = append(sn.clusters, namedCluster{n, v})
	}
	for n, v := range s.latency {
		sn.latency = append(sn.latency, namedHist{n, v})
	}
	for c, m := range s.hosts {
		for a, e := range m {
			sn.hosts = append(sn.hosts, namedHost{c, a, e})
		}
	}
	for _, f := range s.ext {
		fs := extFamilySnap{extFamily: f}
		for _, se := range f.series {
			fs.series = append(fs.series, se)
		}
		sn.ext = append(sn.ext, fs)
	}
	return sn
}
