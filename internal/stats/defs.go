package stats

import (
	"strings"

	"github.com/weftmesh/weft/api"
)

// kind tells how a value is exported.
type kind uint8

const (
	kindCounter kind = iota
	kindGauge
)

// def describes one scalar stat of a stats struct T: its Envoy-style stat
// name (for /stats), its Prometheus family (for /stats/prometheus) and how
// to read it.
type def[T any] struct {
	stat  string // Envoy-style name, e.g. "downstream_rq_2xx"
	prom  string // family name after the scope prefix, e.g. "downstream_rq_xx_total"
	class string // value of the code_class label, "" when the family has none
	help  string
	kind  kind
	get   func(*T) int64
}

// hdef describes one histogram of a stats struct T.
type hdef[T any] struct {
	stat string // Envoy-style name, e.g. "downstream_rq_time"
	help string
	get  func(*T) *Histogram
}

// promName returns the family name after the scope prefix.
func (h hdef[T]) promName() string { return h.stat + "_seconds" }

// counter describes a counter field; the family gets a _total suffix.
func counter[T any](stat, help string, field func(*T) *api.Counter) def[T] {
	prom := stat
	if !strings.HasSuffix(prom, "_total") {
		prom += "_total"
	}
	return def[T]{stat: stat, prom: prom, help: help, kind: kindCounter,
		get: func(t *T) int64 { return int64(field(t).Value()) }}
}

// gauge describes a gauge field.
func gauge[T any](stat, help string, field func(*T) *api.Gauge) def[T] {
	return def[T]{stat: stat, prom: stat, help: help, kind: kindGauge,
		get: func(t *T) int64 { return field(t).Value() }}
}

// classes describes five response-class counters as one family with a
// code_class label; stats names are prefix+"1xx" .. prefix+"5xx".
func classes[T any](prefix, help string, fields func(*T) [5]*api.Counter) []def[T] {
	out := make([]def[T], 0, 5)
	for i := range 5 {
		class := string(rune('1'+i)) + "xx"
		out = append(out, def[T]{stat: prefix + class, prom: prefix + "xx_total", class: class,
			help: help, kind: kindCounter,
			get: func(t *T) int64 { return int64(fields(t)[i].Value()) }})
	}
	return out
}

func concat[T any](parts ...[]def[T]) []def[T] {
	var out []def[T]
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// listenerDefs are the scalar stats of ListenerStats.
var listenerDefs = []def[ListenerStats]{
	counter("downstream_cx_total", "Connections accepted.", func(s *ListenerStats) *api.Counter { return &s.DownstreamCxTotal }),
	gauge("downstream_cx_active", "Open connections.", func(s *ListenerStats) *api.Gauge { return &s.DownstreamCxActive }),
	counter("downstream_cx_destroy", "Connections closed.", func(s *ListenerStats) *api.Counter { return &s.DownstreamCxDestroy }),
	counter("downstream_cx_overflow", "Connections rejected by the listener connection limit.", func(s *ListenerStats) *api.Counter { return &s.DownstreamCxOverflow }),
	counter("downstream_pre_cx_timeout", "Connections closed because listener filters timed out.", func(s *ListenerStats) *api.Counter { return &s.DownstreamPreCxTimeout }),
	counter("no_filter_chain_match", "Connections that matched no filter chain.", func(s *ListenerStats) *api.Counter { return &s.NoFilterChainMatch }),
	counter("downstream_listener_filter_error", "Listener filter failures.", func(s *ListenerStats) *api.Counter { return &s.ListenerFilterError }),
	counter("ssl_handshake", "Completed TLS handshakes.", func(s *ListenerStats) *api.Counter { return &s.SSLHandshake }),
	counter("ssl_connection_error", "Failed TLS handshakes.", func(s *ListenerStats) *api.Counter { return &s.SSLConnectionError }),
	counter("downstream_cx_rx_bytes_total", "Bytes read from downstream connections.", func(s *ListenerStats) *api.Counter { return &s.BytesIn }),
	counter("downstream_cx_tx_bytes_total", "Bytes written to downstream connections.", func(s *ListenerStats) *api.Counter { return &s.BytesOut }),
}

var listenerHists = []hdef[ListenerStats]{
	{"downstream_cx_length", "Lifetime of closed downstream connections.", func(s *ListenerStats) *Histogram { return s.DownstreamCxLength }},
}

// httpDefs are the scalar stats of HTTPStats.
var httpDefs = concat(
	[]def[HTTPStats]{
		counter("downstream_cx_total", "Connections handled.", func(s *HTTPStats) *api.Counter { return &s.DownstreamCxTotal }),
		gauge("downstream_cx_active", "Open connections.", func(s *HTTPStats) *api.Gauge { return &s.DownstreamCxActive }),
		counter("downstream_cx_http1_total", "HTTP/1 connections.", func(s *HTTPStats) *api.Counter { return &s.DownstreamCxHTTP1Total }),
		counter("downstream_cx_http2_total", "HTTP/2 connections.", func(s *HTTPStats) *api.Counter { return &s.DownstreamCxHTTP2Total }),
		counter("downstream_cx_protocol_error", "Connections closed on a protocol error.", func(s *HTTPStats) *api.Counter { return &s.DownstreamCxProtocolError }),
		counter("downstream_cx_idle_timeout", "Connections closed by the idle timeout.", func(s *HTTPStats) *api.Counter { return &s.DownstreamCxIdleTimeout }),
		counter("downstream_cx_drain_close", "Connections closed by a drain.", func(s *HTTPStats) *api.Counter { return &s.DownstreamCxDrainClose }),
		counter("downstream_cx_rx_bytes_total", "Bytes received.", func(s *HTTPStats) *api.Counter { return &s.DownstreamCxRxBytes }),
		counter("downstream_cx_tx_bytes_total", "Bytes sent.", func(s *HTTPStats) *api.Counter { return &s.DownstreamCxTxBytes }),
		counter("downstream_rq_total", "Requests.", func(s *HTTPStats) *api.Counter { return &s.DownstreamRq }),
		gauge("downstream_rq_active", "Requests in flight.", func(s *HTTPStats) *api.Gauge { return &s.DownstreamRqActive }),
		counter("downstream_rq_http1_total", "HTTP/1 requests.", func(s *HTTPStats) *api.Counter { return &s.DownstreamRqHTTP1 }),
		counter("downstream_rq_http2_total", "HTTP/2 requests.", func(s *HTTPStats) *api.Counter { return &s.DownstreamRqHTTP2 }),
		counter("downstream_rq_completed", "Requests that got a response.", func(s *HTTPStats) *api.Counter { return &s.DownstreamRqCompleted }),
		counter("downstream_rq_timeout", "Requests ended by the request timeout.", func(s *HTTPStats) *api.Counter { return &s.DownstreamRqTimeout }),
		counter("downstream_rq_header_timeout", "Requests whose headers did not arrive in time.", func(s *HTTPStats) *api.Counter { return &s.DownstreamRqHeaderTimeout }),
		counter("downstream_rq_idle_timeout", "Streams ended by the stream idle timeout.", func(s *HTTPStats) *api.Counter { return &s.DownstreamRqIdleTimeout }),
		counter("downstream_rq_too_large", "Requests rejected as too large.", func(s *HTTPStats) *api.Counter { return &s.DownstreamRqTooLarge }),
		counter("downstream_rq_rx_reset", "Streams reset by the downstream.", func(s *HTTPStats) *api.Counter { return &s.DownstreamRqRxReset }),
		counter("downstream_rq_tx_reset", "Streams reset by the proxy.", func(s *HTTPStats) *api.Counter { return &s.DownstreamRqTxReset }),
		counter("no_route", "Requests that matched no route.", func(s *HTTPStats) *api.Counter { return &s.NoRoute }),
		counter("no_cluster", "Requests whose route named an unknown cluster.", func(s *HTTPStats) *api.Counter { return &s.NoCluster }),
		counter("rq_redirect", "Redirects sent by a route.", func(s *HTTPStats) *api.Counter { return &s.RqRedirect }),
		counter("rq_direct_response", "Direct responses sent by a route.", func(s *HTTPStats) *api.Counter { return &s.RqDirectResponse }),
	},
	classes("downstream_rq_", "Downstream responses by status class.", func(s *HTTPStats) [5]*api.Counter {
		return [5]*api.Counter{&s.DownstreamRq1xx, &s.DownstreamRq2xx, &s.DownstreamRq3xx, &s.DownstreamRq4xx, &s.DownstreamRq5xx}
	}),
)

var httpHists = []hdef[HTTPStats]{
	{"downstream_rq_time", "Time from the first request byte to the last response byte.", func(s *HTTPStats) *Histogram { return s.DownstreamRqTime }},
}

// routeDefs are the scalar stats of RouteStats.
var routeDefs = concat(
	[]def[RouteStats]{
		counter("rq_total", "Requests that matched the route.", func(s *RouteStats) *api.Counter { return &s.Requests }),
		counter("rq_timeout", "Requests ended by the route timeout.", func(s *RouteStats) *api.Counter { return &s.Timeouts }),
		counter("rq_retry", "Retries made for the route.", func(s *RouteStats) *api.Counter { return &s.Retries }),
	},
	classes("rq_", "Route responses by status class.", func(s *RouteStats) [5]*api.Counter {
		return [5]*api.Counter{&s.Responses1xx, &s.Responses2xx, &s.Responses3xx, &s.Responses4xx, &s.Responses5xx}
	}),
)

var routeHists = []hdef[RouteStats]{
	{"rq_time", "Time from routing to the last response byte.", func(s *RouteStats) *Histogram { return s.Latency }},
}

// clusterDefs are the scalar stats of api.ClusterStats.
var clusterDefs = concat(
	[]def[api.ClusterStats]{
		counter("upstream_rq_total", "Upstream requests.", func(s *api.ClusterStats) *api.Counter { return &s.UpstreamRequests }),
		counter("upstream_cx_total", "Upstream connections opened.", func(s *api.ClusterStats) *api.Counter { return &s.UpstreamConnTotal }),
		gauge("upstream_cx_active", "Open upstream connections.", func(s *api.ClusterStats) *api.Gauge { return &s.UpstreamConnActive }),
		counter("upstream_cx_connect_fail", "Failed upstream connection attempts.", func(s *api.ClusterStats) *api.Counter { return &s.UpstreamConnFailure }),
		counter("upstream_rq_timeout", "Upstream requests that timed out.", func(s *api.ClusterStats) *api.Counter { return &s.UpstreamRequestTimeout }),
		counter("upstream_rq_retry", "Upstream request retries.", func(s *api.ClusterStats) *api.Counter { return &s.UpstreamRetries }),
		counter("upstream_rq_rx_reset", "Upstream streams reset.", func(s *api.ClusterStats) *api.Counter { return &s.UpstreamResets }),
		counter("upstream_rq_pending_overflow", "Requests rejected by a circuit breaker.", func(s *api.ClusterStats) *api.Counter { return &s.Overflow }),
		counter("upstream_cx_none_healthy", "Requests that found no healthy host.", func(s *api.ClusterStats) *api.Counter { return &s.NoHealthyHost }),
		counter("upstream_cx_tx_bytes_total", "Bytes sent upstream.", func(s *api.ClusterStats) *api.Counter { return &s.BytesSent }),
		counter("upstream_cx_rx_bytes_total", "Bytes received from upstream.", func(s *api.ClusterStats) *api.Counter { return &s.BytesReceived }),
		gauge("membership_healthy", "Healthy hosts.", func(s *api.ClusterStats) *api.Gauge { return &s.MembershipHealthy }),
		gauge("membership_total", "Hosts.", func(s *api.ClusterStats) *api.Gauge { return &s.MembershipTotal }),
	},
	classes("upstream_rq_", "Upstream responses by status class.", func(s *api.ClusterStats) [5]*api.Counter {
		return [5]*api.Counter{&s.Responses1xx, &s.Responses2xx, &s.Responses3xx, &s.Responses4xx, &s.Responses5xx}
	}),
)

// clusterHistStat names the per-cluster upstream latency histogram.
const clusterHistStat = "upstream_rq_time"

// hostEntry is a registered host: its counters and its in-flight gauge.
type hostEntry struct {
	stats  *api.HostStats
	active *api.Gauge
}

// hostDefs are the scalar stats of a registered host.
var hostDefs = []def[hostEntry]{
	counter("rq_total", "Requests sent to the host.", func(h *hostEntry) *api.Counter { return &h.stats.Requests }),
	counter("cx_total", "Connections opened to the host.", func(h *hostEntry) *api.Counter { return &h.stats.ConnTotal }),
	gauge("cx_active", "Open connections to the host.", func(h *hostEntry) *api.Gauge { return &h.stats.ConnActive }),
	counter("cx_connect_fail", "Failed connection attempts to the host.", func(h *hostEntry) *api.Counter { return &h.stats.ConnFailure }),
	counter("rq_error", "5xx responses from the host.", func(h *hostEntry) *api.Counter { return &h.stats.Responses5xx }),
	counter("health_check_fail", "Failed health checks of the host.", func(h *hostEntry) *api.Counter { return &h.stats.HealthCheckFail }),
	{stat: "rq_active", prom: "rq_active", help: "Requests in flight to the host.", kind: kindGauge,
		get: func(h *hostEntry) int64 {
			if h.active == nil {
				return 0
			}
			return h.active.Value()
		}},
}
