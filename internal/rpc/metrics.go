package rpc

import (
	"strings"

	"github.com/weftmesh/weft/internal/router"
	"github.com/weftmesh/weft/internal/stats"
)

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
