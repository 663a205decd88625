package api

import "sync/atomic"

// Counter is a monotonically increasing count, safe for concurrent use;
// a bare atomic so the hot path pays one atomic add.
type Counter struct{ v atomic.Uint64 }

// Inc adds one.
func (c *Counter) Inc() { c.v.Add(1) }

// Add adds n.
func (c *Counter) Add(n uint64) { c.v.Add(n) }

// Value reads the count.
func (c *Counter) Value() uint64 { return c.v.Load() }

// Gauge is a value that goes up and down.
type Gauge struct{ v atomic.Int64 }

// Inc adds one.
func (g *Gauge) Inc() { g.v.Add(1) }

// Dec subtracts one.
func (g *Gauge) Dec() { g.v.Add(-1) }

// Add adds n.
func (g *Gauge) Add(n int64) { g.v.Add(n) }

// Set stores v.
func (g *Gauge) Set(v int64) { g.v.Store(v) }

// Value reads the gauge.
func (g *Gauge) Value() int64 { return g.v.Load() }

// ClusterStats are the counters of one cluster, exported by the metrics
// package under weft_cluster_*.
type ClusterStats struct {
	UpstreamRequests       Counter
	UpstreamConnTotal      Counter
	UpstreamConnActive     Gauge
	UpstreamConnFailure    Counter
	UpstreamRequestTimeout Counter
	UpstreamRetries        Counter
	UpstreamResets         Counter
	Overflow               Counter // circuit breaker rejections
	NoHealthyHost          Counter
	Responses1xx           Counter
	Responses2xx           Counter
	Responses3xx           Counter
	Responses4xx           Counter
	Responses5xx           Counter
	BytesSent              Counter
	BytesReceived          Counter
	MembershipHealthy      Gauge
	MembershipTotal        Gauge
}

// HostStats are the counters of one upstream host.
type HostStats struct {
	Requests        Counter
	ConnTotal       Counter
	ConnActive      Gauge
	ConnFailure     Counter
	Responses5xx    Counter
	HealthCheckFail Counter
}
