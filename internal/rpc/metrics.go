package rpc

import (
	"strings"
	"sync"

	"github.com/weftmesh/weft/internal/router"
	"github.com/weftmesh/weft/internal/stats"
)

// methodStats hands out the per service and method stats. Lookups take a
// read lock and allocate nothing; the number of distinct pairs is bounded
// (label cardinality), later pairs share the "other" entry.
type methodStats struct {
	cfg   *Config
	mu    sync.RWMutex
	m     map[methodKey]*stats.RPCMethodStats
	other map[string]*stats.RPCMethodStats // per protocol
	unr   map[string]*stats.RPCMethodStats // per protocol
}

type methodKey struct{ protocol, service, method string }

// OtherLabel is the service and method label of the pairs past the bound.
const OtherLabel = "other"

// UnroutedLabel is the service and method label of requests no route took.
const UnroutedLabel = "unrouted"

func (ms *methodStats) init(cfg *Config) {
	ms.cfg = cfg
	ms.m = map[methodKey]*stats.RPCMethodStats{}
	ms.other = map[string]*stats.RPCMethodStats{}
	ms.unr = map[string]*stats.RPCMethodStats{}
}

// unrouted returns the shared entry of requests that matched no route.
func (ms *methodStats) unrouted(protocol string) *stats.RPCMethodStats {
	ms.mu.RLock()
	s := ms.unr[protocol]
	ms.mu.RUnlock()
	if s != nil {
		return s
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if s = ms.unr[protocol]; s == nil {
		s = ms.cfg.Store.RPCMethod(ms.cfg.StatPrefix, protocol, UnroutedLabel, UnroutedLabel)
		ms.unr[protocol] = s
	}
	return s
}

func (ms *methodStats) get(protocol, service, method string) *stats.RPCMethodStats {
	k := methodKey{protocol, service, method}
	ms.mu.RLock()
	s := ms.m[k]
	ms.mu.RUnlock()
	if s != nil {
		return s
	}
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if s = ms.m[k]; s != nil {
		return s
	}
	if len(ms.m) >= ms.cfg.MaxMethodStats {
		if s = ms.other[protocol]; s == nil {
			s = ms.cfg.Store.RPCMethod(ms.cfg.StatPrefix, protocol, OtherLabel, OtherLabel)
			ms.other[protocol] = s
		}
		return s
	}
	// The key's strings view the request frame: keep copies.
	k = methodKey{strings.Clone(protocol), strings.Clone(service), strings.Clone(method)}
	s = ms.cfg.Store.RPCMethod(ms.cfg.StatPrefix, k.protocol, k.service, k.method)
	ms.m[k] = s
	return s
}

// routeStats returns the stats of rt (created once per route).
func (p *Proxy) routeStats(rt *router.Route) *stats.RouteStats {
	if v, ok := p.routes.Load(rt); ok {
		return v.(*stats.RouteStats)
	}
	vh := ""
	if rt.VirtualHost != nil {
		vh = rt.VirtualHost.Name
	}
	v, _ := p.routes.LoadOrStore(rt, p.cfg.Store.Route(vh, rt.StatName))
	return v.(*stats.RouteStats)
}

// clusterLatency returns the upstream latency histogram of a cluster.
func (p *Proxy) clusterLatency(name string) *stats.Histogram {
	if v, ok := p.latency.Load(name); ok {
		return v.(*stats.Histogram)
	}
	v, _ := p.latency.LoadOrStore(strings.Clone(name), p.cfg.Store.ClusterLatency(name))
	return v.(*stats.Histogram)
}
