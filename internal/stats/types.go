package stats

import "github.com/weftmesh/weft/api"

// ListenerStats are the counters of one listener, exported under
// weft_listener_* with label listener. Get them from Store.Listener at
// config time; the accept loop then only touches atomics.
type ListenerStats struct {
	// DownstreamCxTotal counts accepted connections.
	DownstreamCxTotal api.Counter
	// DownstreamCxActive is the number of open connections.
	DownstreamCxActive api.Gauge
	// DownstreamCxDestroy counts closed connections.
	DownstreamCxDestroy api.Counter
	// DownstreamCxOverflow counts connections rejected by the listener's
	// connection limit.
	DownstreamCxOverflow api.Counter
	// DownstreamPreCxTimeout counts connections closed because the
	// listener filters (TLS inspector, protocol sniffing) timed out.
	DownstreamPreCxTimeout api.Counter
	// NoFilterChainMatch counts connections that matched no filter chain.
	NoFilterChainMatch api.Counter
	// ListenerFilterError counts listener filter failures.
	ListenerFilterError api.Counter
	// SSLHandshake counts completed TLS handshakes.
	SSLHandshake api.Counter
	// SSLConnectionError counts failed TLS handshakes.
	SSLConnectionError api.Counter
	// BytesIn counts bytes read from downstream connections.
	BytesIn api.Counter
	// BytesOut counts bytes written to downstream connections.
	BytesOut api.Counter
	// DownstreamCxLength is the lifetime of closed connections.
	DownstreamCxLength *Histogram
}

// HTTPStats are the counters of one HTTP connection manager (any L7
// codec), exported under weft_http_* with label stat_prefix, as Envoy's
// http.<stat_prefix>.* stats.
type HTTPStats struct {
	// DownstreamCxTotal counts connections handled.
	DownstreamCxTotal api.Counter
	// DownstreamCxActive is the number of open connections.
	DownstreamCxActive api.Gauge
	// DownstreamCxHTTP1Total counts HTTP/1 connections.
	DownstreamCxHTTP1Total api.Counter
	// DownstreamCxHTTP2Total counts HTTP/2 connections.
	DownstreamCxHTTP2Total api.Counter
	// DownstreamCxProtocolError counts connections closed on a codec
	// (protocol) error; the request, if any, got a 400.
	DownstreamCxProtocolError api.Counter
	// DownstreamCxIdleTimeout counts connections closed by the idle timeout.
	DownstreamCxIdleTimeout api.Counter
	// DownstreamCxDrainClose counts connections closed because of a drain.
	DownstreamCxDrainClose api.Counter
	// DownstreamCxRxBytes counts bytes received.
	DownstreamCxRxBytes api.Counter
	// DownstreamCxTxBytes counts bytes sent.
	DownstreamCxTxBytes api.Counter

	// DownstreamRq counts requests.
	DownstreamRq api.Counter
	// DownstreamRqActive is the number of requests in flight.
	DownstreamRqActive api.Gauge
	// DownstreamRqHTTP1 counts HTTP/1 requests.
	DownstreamRqHTTP1 api.Counter
	// DownstreamRqHTTP2 counts HTTP/2 requests.
	DownstreamRqHTTP2 api.Counter
	// DownstreamRqCompleted counts requests that got a response.
	DownstreamRqCompleted api.Counter
	// DownstreamRq1xx counts 1xx responses; RecordResponse picks the
	// class counter for a status.
	DownstreamRq1xx api.Counter
	// DownstreamRq2xx counts 2xx responses.
	DownstreamRq2xx api.Counter
	// DownstreamRq3xx counts 3xx responses.
	DownstreamRq3xx api.Counter
	// DownstreamRq4xx counts 4xx responses, including local 400s on
	// protocol errors and 404s for no route.
	DownstreamRq4xx api.Counter
	// DownstreamRq5xx counts 5xx responses.
	DownstreamRq5xx api.Counter
	// DownstreamRqTimeout counts requests ended by the route or global
	// request timeout.
	DownstreamRqTimeout api.Counter
	// DownstreamRqHeaderTimeout counts requests whose headers did not
	// arrive in time.
	DownstreamRqHeaderTimeout api.Counter
	// DownstreamRqIdleTimeout counts streams ended by the stream idle
	// timeout.
	DownstreamRqIdleTimeout api.Counter
	// DownstreamRqTooLarge counts requests rejected as too large (413).
	DownstreamRqTooLarge api.Counter
	// DownstreamRqRxReset counts streams reset by the downstream.
	DownstreamRqRxReset api.Counter
	// DownstreamRqTxReset counts streams reset by the proxy.
	DownstreamRqTxReset api.Counter
	// NoRoute counts requests that matched no route (404).
	NoRoute api.Counter
	// NoCluster counts requests whose route named an unknown cluster.
	NoCluster api.Counter
	// RqRedirect counts redirect responses sent by a route.
	RqRedirect api.Counter
	// RqDirectResponse counts direct responses sent by a route.
	RqDirectResponse api.Counter
	// DownstreamRqTime is the time from the first request byte to the
	// last response byte.
	DownstreamRqTime *Histogram
}

// RecordResponse counts a response status in its class counter.
func (h *HTTPStats) RecordResponse(status int) {
	countClass(status, &h.DownstreamRq1xx, &h.DownstreamRq2xx, &h.DownstreamRq3xx, &h.DownstreamRq4xx, &h.DownstreamRq5xx)
}

// RouteStats are the counters of one route, exported under weft_route_*
// with labels vhost and route.
type RouteStats struct {
	// Requests counts requests that matched the route.
	Requests api.Counter
	// Responses1xx counts 1xx responses; RecordResponse picks the class
	// counter for a status.
	Responses1xx api.Counter
	// Responses2xx counts 2xx responses.
	Responses2xx api.Counter
	// Responses3xx counts 3xx responses.
	Responses3xx api.Counter
	// Responses4xx counts 4xx responses.
	Responses4xx api.Counter
	// Responses5xx counts 5xx responses.
	Responses5xx api.Counter
	// Timeouts counts requests ended by the route timeout.
	Timeouts api.Counter
	// Retries counts retries made for the route.
	Retries api.Counter
	// Latency is the time from routing to the last response byte.
	Latency *Histogram
}

// RecordResponse counts a response status in its class counter.
func (r *RouteStats) RecordResponse(status int) {
	countClass(status, &r.Responses1xx, &r.Responses2xx, &r.Responses3xx, &r.Responses4xx, &r.Responses5xx)
}

// RecordClusterResponse counts an upstream response status in the
// cluster's class counter.
func RecordClusterResponse(s *api.ClusterStats, status int) {
	countClass(status, &s.Responses1xx, &s.Responses2xx, &s.Responses3xx, &s.Responses4xx, &s.Responses5xx)
}

// countClass increments the counter of status' class; statuses outside
// 100..599 count nowhere.
func countClass(status int, c1, c2, c3, c4, c5 *api.Counter) {
	switch status / 100 {
	case 1:
		c1.Inc()
	case 2:
		c2.Inc()
	case 3:
		c3.Inc()
	case 4:
		c4.Inc()
	case 5:
		c5.Inc()
	}
}
