// Package stream is the L7 proxy: it reads requests from a downstream
// connection, runs the stream filters, routes, and forwards each request to
// an upstream host, then streams the response back. HTTP/1.1 is the first
// codec; the RPC codecs reuse the same filters, router and upstream layer.
package stream

import (
	"log"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/accesslog"
	"github.com/weftmesh/weft/internal/codec/http1"
	"github.com/weftmesh/weft/internal/router"
	"github.com/weftmesh/weft/internal/stats"
)

// Defaults applied when the HTTP connection manager config leaves a field
// unset. RequestHeadersTimeout departs from Envoy (which disables it) so a
// slowloris client cannot hold a connection forever by default.
const (
	DefaultRequestHeadersTimeout = 10 * time.Second
	DefaultIdleTimeout           = time.Hour
	DefaultStreamIdleTimeout     = 5 * time.Minute
	DefaultRetryBufferLimit      = 64 << 10
	DefaultServerName            = "weft"
)

// RouteSource gives the current route table; an atomic snapshot so a new
// table (RDS) applies to the next request without a lock.
type RouteSource interface {
	Table() *router.Table
}

// StaticRoutes is a RouteSource whose table can be swapped atomically.
type StaticRoutes struct{ p atomic.Pointer[router.Table] }

// NewStaticRoutes returns a source holding t.
func NewStaticRoutes(t *router.Table) *StaticRoutes {
	s := &StaticRoutes{}
	s.p.Store(t)
	return s
}

// Table returns the current table.
func (s *StaticRoutes) Table() *router.Table { return s.p.Load() }

// Store swaps in a new table.
func (s *StaticRoutes) Store(t *router.Table) { s.p.Store(t) }

// Config is a built HTTP connection manager: everything the per-connection
// loop needs, computed once at config time.
type Config struct {
	StatPrefix string
	Routes     RouteSource
	Filters    []api.StreamFilter
	Clusters   api.ClusterManager
	Limits     http1.Limits

	RequestHeadersTimeout time.Duration
	IdleTimeout           time.Duration // downstream keep-alive idle
	StreamIdleTimeout     time.Duration // no progress on an active stream
	RequestTimeout        time.Duration // whole request, 0 = none
	MaxRequestsPerConn    int
	RetryBufferLimit      int
	UpstreamIdleTimeout   time.Duration

	Upgrades         map[string]bool // allowed Upgrade types (lower case)
	ServerName       string
	UseRemoteAddress bool
	GenerateID       bool

	// Codec is the downstream codec (codec_type): CodecAuto, CodecHTTP1
	// or CodecHTTP2.
	Codec int
	// HTTP1, when set, serves the connections that CodecAuto finds are not
	// HTTP/2, instead of the HTTP/1 codec (the RPC proxy's Triple side hands
	// them to the next filter).
	HTTP1 api.ConnHandler
	// H2 are the downstream HTTP/2 settings.
	H2 H2Options
	// RPCRouting routes HTTP/2 gRPC (Triple) requests as the RPC proxy
	// routes Bolt and Dubbo: the virtual host domain is the service, the
	// path the method, and "version" / "group" headers come from
	// tri-service-version / tri-service-group.
	RPCRouting bool
	// MaxMethodStats bounds the distinct gRPC service/method pairs with
	// their own stats.
	MaxMethodStats int

	AccessLogs []*accesslog.Logger
	Stats      *stats.HTTPStats
	Store      *stats.Store
	BufPool    *http1.BufPool
	Log        *slog.Logger

	routeStatsMap *sync.Map                   // *router.Route -> *stats.RouteStats
	latencyMap    *sync.Map                   // cluster name -> *stats.Histogram
	mkPool        func(api.Host) api.ConnPool // c.newPool, bound once: a method value per request would allocate
	mkH2Pool      func(api.Host) api.ConnPool
	methods       *stats.MethodTable // gRPC per service and method
	errLog        *log.Logger        // the HTTP/2 server's own messages, at debug level
}

func (c *Config) defaults() {
	if c.RequestHeadersTimeout == 0 {
		c.RequestHeadersTimeout = DefaultRequestHeadersTimeout
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.StreamIdleTimeout == 0 {
		c.StreamIdleTimeout = DefaultStreamIdleTimeout
	}
	if c.RetryBufferLimit == 0 {
		c.RetryBufferLimit = DefaultRetryBufferLimit
	}
	if c.ServerName == "" {
		c.ServerName = DefaultServerName
	}
	if c.BufPool == nil {
		c.BufPool = http1.NewBufPool(8 << 10)
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Store == nil {
		c.Store = stats.NewStore()
	}
	if c.Stats == nil {
		c.Stats = c.Store.HTTP(c.StatPrefix)
	}
	h := &c.H2
	if h.MaxConcurrentStreams == 0 {
		h.MaxConcurrentStreams = DefaultH2MaxStreams
	}
	if h.StreamWindow == 0 {
		h.StreamWindow = DefaultH2StreamWindow
	}
	if h.ConnWindow == 0 {
		h.ConnWindow = DefaultH2ConnWindow
	}
	if h.MaxPrematureResets == 0 {
		h.MaxPrematureResets = DefaultMaxPrematureResets
	}
	if c.MaxMethodStats == 0 {
		c.MaxMethodStats = 10000
	}
}

// New returns a ready connection handler for c with defaults filled in.
func New(c Config) *Config {
	c.defaults()
	c.routeStatsMap = &sync.Map{}
	c.latencyMap = &sync.Map{}
	cp := &c
	cp.mkPool = cp.newPool
	cp.mkH2Pool = cp.newH2Pool
	cp.errLog = slog.NewLogLogger(cp.Log.Handler(), slog.LevelDebug)
	cp.methods = &stats.MethodTable{}
	cp.methods.Init(cp.Store, cp.StatPrefix, cp.MaxMethodStats)
	return cp
}
