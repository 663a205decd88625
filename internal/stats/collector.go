package stats

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/weftmesh/weft/api"
)

// Prometheus naming: every family is weft_<scope>_<stat>.
const (
	promPrefix    = "weft_"
	scopeListener = "listener"
	scopeHTTP     = "http"
	scopeRoute    = "route"
	scopeCluster  = "cluster"
	scopeHost     = "host"
	labelClass    = "code_class"
)

// Collector returns a prometheus.Collector that reads the store's atomics
// at scrape time. Families: weft_listener_* {listener}, weft_http_*
// {stat_prefix}, weft_route_* {vhost, route}, weft_cluster_* {cluster},
// weft_host_* {cluster, host}, plus extension families. Response classes
// are one family with a code_class label ("2xx"); histograms are in
// seconds. The collector is unchecked (it describes nothing up front)
// because extension families appear at run time.
func (s *Store) Collector() prometheus.Collector {
	return &collector{
		s:        s,
		listener: newFamilyDescs(scopeListener, []string{"listener"}, listenerDefs, listenerHists),
		http:     newFamilyDescs(scopeHTTP, []string{"stat_prefix"}, httpDefs, httpHists),
		route:    newFamilyDescs(scopeRoute, []string{"vhost", "route"}, routeDefs, routeHists),
		cluster:  newFamilyDescs(scopeCluster, []string{"cluster"}, clusterDefs, nil),
		host:     newFamilyDescs(scopeHost, []string{"cluster", "host"}, hostDefs, nil),
		rpc:      newRPCCollector(),
		clusterLatency: prometheus.NewDesc(promPrefix+scopeCluster+"_"+clusterHistStat+"_seconds",
			"Upstream request time.", []string{"cluster"}, nil),
	}
}

// familyDescs holds the descriptors of one scope, index-aligned with its
// def and hdef tables.
type familyDescs[T any] struct {
	defs   []def[T]
	scalar []*prometheus.Desc
	hdefs  []hdef[T]
	hist   []*prometheus.Desc
}

func newFamilyDescs[T any](scope string, labels []string, defs []def[T], hdefs []hdef[T]) familyDescs[T] {
	fd := familyDescs[T]{defs: defs, hdefs: hdefs}
	byName := map[string]*prometheus.Desc{}
	for _, d := range defs {
		name := promPrefix + scope + "_" + d.prom
		desc, ok := byName[name]
		if !ok {
			l := labels
			if d.class != "" {
				l = append(append([]string(nil), labels...), labelClass)
			}
			desc = prometheus.NewDesc(name, d.help, l, nil)
			byName[name] = desc
		}
		fd.scalar = append(fd.scalar, desc)
	}
	for _, h := range hdefs {
		fd.hist = append(fd.hist, prometheus.NewDesc(promPrefix+scope+"_"+h.promName(), h.help, labels, nil))
	}
	return fd
}

// emit sends the metrics of one stats struct.
func (fd *familyDescs[T]) emit(ch chan<- prometheus.Metric, t *T, labels ...string) {
	for i, d := range fd.defs {
		vt := prometheus.CounterValue
		if d.kind == kindGauge {
			vt = prometheus.GaugeValue
		}
		lv := labels
		if d.class != "" {
			lv = append(append([]string(nil), labels...), d.class)
		}
		ch <- prometheus.MustNewConstMetric(fd.scalar[i], vt, float64(d.get(t)), lv...)
	}
	for i, h := range fd.hdefs {
		if hist := h.get(t); hist != nil {
			ch <- constHistogram(fd.hist[i], hist, labels...)
		}
	}
}

// bucketSeconds are the bucket bounds in seconds.
var bucketSeconds = func() [numBuckets]float64 {
	var out [numBuckets]float64
	for i, b := range bucketBounds {
		out[i] = b.Seconds()
	}
	return out
}()

func constHistogram(desc *prometheus.Desc, h *Histogram, labels ...string) prometheus.Metric {
	counts, total := h.snapshot()
	buckets := make(map[float64]uint64, numBuckets)
	var cum uint64
	for i := range numBuckets {
		cum += counts[i]
		buckets[bucketSeconds[i]] = cum
	}
	return prometheus.MustNewConstHistogram(desc, total, h.Sum().Seconds(), buckets, labels...)
}

type collector struct {
	s              *Store
	listener       familyDescs[ListenerStats]
	http           familyDescs[HTTPStats]
	route          familyDescs[RouteStats]
	cluster        familyDescs[api.ClusterStats]
	host           familyDescs[hostEntry]
	clusterLatency *prometheus.Desc
	rpc            rpcCollector
}

// Describe sends nothing: the collector is unchecked.
func (c *collector) Describe(chan<- *prometheus.Desc) {}

// Collect reads every stat.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	sn := c.s.snapshot()
	for _, l := range sn.listeners {
		c.listener.emit(ch, l.s, l.name)
	}
	for _, h := range sn.https {
		c.http.emit(ch, h.s, h.name)
	}
	for _, r := range sn.routes {
		c.route.emit(ch, r.s, r.vhost, r.route)
	}
	for _, cl := range sn.clusters {
		c.cluster.emit(ch, cl.s, cl.name)
	}
	for _, l := range sn.latency {
		ch <- constHistogram(c.clusterLatency, l.h, l.name)
	}
	c.rpc.collect(c.s, ch)
	for _, h := range sn.hosts {
		c.host.emit(ch, &h.e, h.cluster, h.addr)
	}
	for _, f := range sn.ext {
		vt := prometheus.CounterValue
		if f.kind == kindGauge {
			vt = prometheus.GaugeValue
		}
		desc := prometheus.NewDesc(f.name, f.help, f.keys, nil)
		for _, se := range f.series {
			ch <- prometheus.MustNewConstMetric(desc, vt, float64(extValue(f.extFamily, se)), se.values...)
		}
	}
}
