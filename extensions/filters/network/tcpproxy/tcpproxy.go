// Package tcpproxy is the envoy.filters.network.tcp_proxy network filter:
// it connects each downstream connection to a host of a cluster and copies
// bytes both ways until either side closes or the idle timeout fires.
package tcpproxy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	tcpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/tcp_proxy/v3"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/accesslog"
)

// Name is the filter's registered name.
const Name = "envoy.filters.network.tcp_proxy"

// TypeURL is its typed_config type.
const TypeURL = "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy"

// DefaultIdleTimeout matches Envoy's default.
const DefaultIdleTimeout = time.Hour

func init() { api.NetworkFilters.Register(Name, []string{TypeURL}, factory{}) }

type factory struct{}

var _ api.NetworkFilterFactory = factory{}

type weighted struct {
	name   string
	weight uint32
}

type config struct {
	statPrefix  string
	clusters    []weighted
	total       uint64
	idle        time.Duration
	maxAttempts int
	accessLogs  []*tcpv3.TcpProxy
	pb          *tcpv3.TcpProxy
}

// Parse implements api.NetworkFilterFactory.
func (factory) Parse(b []byte, typeURL string) (any, error) {
	pb := &tcpv3.TcpProxy{}
	if err := proto.Unmarshal(b, pb); err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	if err := pb.ValidateAll(); err != nil {
		return nil, err
	}
	c := &config{statPrefix: pb.GetStatPrefix(), idle: DefaultIdleTimeout, maxAttempts: 1, pb: pb}
	switch {
	case pb.GetCluster() != "":
		c.clusters = []weighted{{pb.GetCluster(), 1}}
	case pb.GetWeightedClusters() != nil:
		for _, w := range pb.GetWeightedClusters().GetClusters() {
			c.clusters = append(c.clusters, weighted{w.GetName(), w.GetWeight()})
		}
	default:
		return nil, fmt.Errorf("cluster: a cluster or weighted_clusters is required")
	}
	for _, w := range c.clusters {
		c.total += uint64(w.weight)
	}
	if c.total == 0 {
		return nil, fmt.Errorf("weighted_clusters: total weight must be positive")
	}
	if pb.IdleTimeout != nil {
		c.idle = pb.GetIdleTimeout().AsDuration()
	}
	if n := pb.GetMaxConnectAttempts(); n != nil {
		c.maxAttempts = int(n.GetValue())
	}
	if pb.GetTunnelingConfig() != nil {
		return nil, fmt.Errorf("tunneling_config: not supported")
	}
	for i, al := range pb.GetAccessLog() {
		if _, err := accesslog.Check(al); err != nil {
			return nil, fmt.Errorf("access_log[%d]: %w", i, err)
		}
	}
	return c, nil
}

// Build implements api.NetworkFilterFactory.
func (factory) Build(parsed any, bc api.BuildContext) (api.NetworkFilter, error) {
	c := parsed.(*config)
	p := &proxy{cfg: c, cm: bc.Clusters(), log: bc.Logger()}
	logs, err := accesslog.ForBuildAll(bc, c.pb.GetAccessLog())
	if err != nil {
		return nil, err
	}
	p.logs = logs
	return p, nil
}

type proxy struct {
	cfg  *config
	cm   api.ClusterManager
	log  *slog.Logger
	logs []*accesslog.Logger
}

// Chain implements api.NetworkFilter; tcp_proxy is terminal.
func (p *proxy) Chain(api.ConnHandler) api.ConnHandler { return p }

func (p *proxy) pickCluster() string {
	if len(p.cfg.clusters) == 1 {
		return p.cfg.clusters[0].name
	}
	r := rand.Uint64N(p.cfg.total)
	for _, w := range p.cfg.clusters {
		if r < uint64(w.weight) {
			return w.name
		}
		r -= uint64(w.weight)
	}
	return p.cfg.clusters[0].name
}

// ServeConn implements api.ConnHandler.
func (p *proxy) ServeConn(ctx context.Context, down net.Conn) {
	defer down.Close() // every path, failures included: the handler owns the connection
	start := time.Now()
	e := accesslog.Entry{Start: start, Protocol: "tcp", Downstream: down.RemoteAddr(), DownstreamLocal: down.LocalAddr()}
	defer func() {
		e.Duration = time.Since(start)
		for _, l := range p.logs {
			l.Log(&e)
		}
	}()
	name := p.pickCluster()
	e.UpstreamCluster = name
	cl, ok := p.cm.Cluster(name)
	if !ok {
		e.Flags = api.FlagNoClusterFound
		return
	}
	if !cl.TryAcquire(api.ResConnections) {
		// Here a full connection budget sheds the connection (nothing
		// waits), so it counts as an overflow.
		cl.Stats().Overflow.Inc()
		e.Flags = api.FlagUpstreamOverflow
		return
	}
	defer cl.Release(api.ResConnections)
	var up net.Conn
	var err error
	for attempt := 0; attempt < p.cfg.maxAttempts; attempt++ {
		h := cl.Pick(nil)
		if h == nil {
			cl.Stats().NoHealthyHost.Inc()
			e.Flags = api.FlagNoHealthyUpstream
			return
		}
		e.UpstreamHost = h.Address()
		// Dial counts the connection (or the failure) in the host and
		// cluster stats itself.
		if up, err = h.Dial(ctx); err == nil {
			break
		}
		e.UpstreamFailure = err.Error()
	}
	if up == nil {
		e.Flags = api.FlagUpstreamConnectFailure
		return
	}
	st := cl.Stats()
	if dn, ok := down.(api.DrainNotifier); ok {
		// A raw TCP stream has no request boundary: it keeps flowing
		// through a drain until the drain timeout closes it.
		dn.OnDrain(nil)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	var sent int64
	var last atomic.Int64
	last.Store(time.Now().UnixNano())
	go func() {
		defer wg.Done()
		sent = pipe(up, down, p.cfg.idle, &last)
	}()
	recv := pipe(down, up, p.cfg.idle, &last)
	// The upstream may only have half-closed: the other direction runs
	// until the downstream closes too (or an error closes both).
	wg.Wait()
	_ = down.Close()
	_ = up.Close()
	st.BytesSent.Add(uint64(sent))
	st.BytesReceived.Add(uint64(recv))
	e.BytesReceived, e.BytesSent = uint64(sent), uint64(recv)
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 16<<10); return &b }}

// pipe copies src to dst and half closes dst when src ends so the other
// direction can finish. The idle timeout counts from the last byte in
// either direction (last), like Envoy's.
func pipe(dst, src net.Conn, idle time.Duration, last *atomic.Int64) int64 {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := *bp
	var n int64
	for {
		if idle > 0 {
			_ = src.SetReadDeadline(time.Now().Add(idle))
		}
		r, err := src.Read(buf)
		if err != nil && r == 0 && idle > 0 && isTimeout(err) {
			if time.Since(time.Unix(0, last.Load())) < idle {
				continue // the other direction is active
			}
		}
		if r > 0 {
			last.Store(time.Now().UnixNano())
			if idle > 0 {
				_ = dst.SetWriteDeadline(time.Now().Add(idle))
			}
			w, werr := dst.Write(buf[:r])
			n += int64(w)
			if werr != nil {
				_ = src.Close()
				return n
			}
		}
		if err != nil {
			if err == io.EOF {
				if cw, ok := dst.(interface{ CloseWrite() error }); ok {
					_ = cw.CloseWrite()
					return n
				}
			}
			_ = dst.Close()
			return n
		}
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// ClusterRefs lists the clusters this proxy connects to.
func (c *config) ClusterRefs() []string {
	out := make([]string, 0, len(c.clusters))
	for _, w := range c.clusters {
		out = append(out, w.name)
	}
	return out
}
