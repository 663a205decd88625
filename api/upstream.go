package api

import (
	"context"
	"net"
)

// ClusterManager owns every upstream cluster. Lookups are lock-free reads
// of an atomic snapshot.
type ClusterManager interface {
	// Cluster returns the named cluster.
	Cluster(name string) (Cluster, bool)
}

// LBContext carries what a load balancer may hash on.
type LBContext interface {
	// HashKey returns the consistent-hash key of the request and whether
	// one was computed.
	HashKey() (uint64, bool)
	// Headers are the request headers, for subset and header matching.
	Headers() HeaderMap
}

// Resource names a circuit-breaker budget.
type Resource int

const (
	ResConnections Resource = iota
	ResPendingRequests
	ResRequests
	ResRetries
)

// Cluster is a named group of hosts with a load balancer and limits.
type Cluster interface {
	Name() string
	// Pick chooses a host (healthy first) with the cluster's LB policy.
	// ctx may be nil. It returns nil when no host is available.
	Pick(ctx LBContext) Host
	// TryAcquire takes one unit of a circuit-breaker budget; false means
	// the breaker is open. Release gives it back.
	TryAcquire(r Resource) bool
	Release(r Resource)
	// Stats are the cluster's counters.
	Stats() *ClusterStats
}

// Host is one upstream endpoint.
type Host interface {
	// Address is "ip:port".
	Address() string
	// Cluster names the owning cluster.
	Cluster() string
	// Healthy reports the health-check verdict.
	Healthy() bool
	// Metadata returns the endpoint filter metadata value at
	// "namespace.key" (e.g. "envoy.lb.version"), "" if none.
	Metadata(key string) string
	// Dial connects to the host with the cluster's connect timeout and
	// transport socket.
	Dial(ctx context.Context) (net.Conn, error)
	// Pool returns the host's connection pool for protocol, creating it
	// with mk on first use. Pools die with the host.
	Pool(protocol string, mk func(Host) ConnPool) ConnPool
	// Stats are the host's counters.
	Stats() *HostStats
	// ActiveRequests is the number of requests in flight to the host (for
	// least-request LB); callers bump it around each request.
	ActiveRequests() *Gauge
}

// ConnPool is a per-host, per-protocol pool of upstream connections.
type ConnPool interface {
	// Drain stops handing out connections and closes them when idle.
	Drain()
	// Close closes every connection now.
	Close()
}
