package stream

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"time"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/codec/http1"
	"github.com/weftmesh/weft/internal/router"
	"github.com/weftmesh/weft/internal/stats"
	"github.com/weftmesh/weft/internal/upstream/pool"
)

// newPool makes a host's HTTP/1 pool on first use.
// The cluster's own settings (idle timeout, max requests per connection,
// circuit breakers) apply when the cluster offers them.
func (c *Config) newPool(h api.Host) api.ConnPool {
	pc := pool.Config{IdleTimeout: c.UpstreamIdleTimeout}
	if cl, ok := c.Clusters.Cluster(h.Cluster()); ok {
		if pcfg, ok := cl.(interface{ PoolConfig() pool.Config }); ok {
			pc = pcfg.PoolConfig()
		} else {
			pc.Limits = cl
		}
	}
	pc.TrustIdle = trustIdle
	return pool.New(h, pc)
}

// trustIdle lets a connection idle for less than this skip the pool's
// liveness peek; forward retries once on a fresh connection when such a
// connection turns out closed.
const trustIdle = 250 * time.Millisecond

// clusterLatency returns the upstream request time histogram of a
// cluster, cached like routeStats.
func (c *Config) clusterLatency(name string) *stats.Histogram {
	if v, ok := c.latencyMap.Load(name); ok {
		return v.(*stats.Histogram)
	}
	v, _ := c.latencyMap.LoadOrStore(name, c.Store.ClusterLatency(name))
	return v.(*stats.Histogram)
}

// routeStats returns the stats handle of rt, created on its first request
// (a lock-free sync.Map hit afterwards).
func (c *Config) routeStats(rt *router.Route) *stats.RouteStats {
	if v, ok := c.routeStatsMap.Load(rt); ok {
		return v.(*stats.RouteStats)
	}
	st := c.Store.Route(rt.VirtualHost.Name, rt.StatName)
	v, _ := c.routeStatsMap.LoadOrStore(rt, st)
	return v.(*stats.RouteStats)
}

func (sc *serverConn) dialContext(deadline time.Time) (context.Context, context.CancelFunc) {
	if deadline.IsZero() {
		return context.WithCancel(sc.ctx)
	}
	return context.WithDeadline(sc.ctx, deadline)
}

// upConnOf returns the reader-carrying wrapper stored on a pooled conn.
func upConnOf(pc *pool.Conn, bp *http1.BufPool) *upConn {
	if uc, ok := pc.State.(*upConn); ok {
		return uc
	}
	uc := &upConn{pc: pc}
	uc.ic.Conn = pc.Conn
	uc.br = http1.NewReader(&uc.ic, bp)
	pc.State = uc
	return uc
}

// putUp returns a connection whose response was read to the end.
func (sc *serverConn) putUp(uc *upConn) {
	sc.cur.Store(nil)
	uc.br.Release()
	uc.pc.Release(true) // deadlines stay: the next holder sets its own
}

// dropUp closes a connection whose state is unknown.
func (sc *serverConn) dropUp(uc *upConn) {
	if uc == nil {
		return
	}
	sc.cur.Store(nil)
	uc.br.Release()
	uc.pc.Release(false)
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	b[6] = (b[6] & 0x0f) | 0x40
	b[8] = (b[8] & 0x3f) | 0x80
	var out [36]byte
	hex.Encode(out[0:8], b[0:4])
	out[8] = '-'
	hex.Encode(out[9:13], b[4:6])
	out[13] = '-'
	hex.Encode(out[14:18], b[6:8])
	out[18] = '-'
	hex.Encode(out[19:23], b[8:10])
	out[23] = '-'
	hex.Encode(out[24:], b[10:])
	return string(out[:])
}
