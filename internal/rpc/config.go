// Package rpc is the multiplexed RPC proxy (SPEC P5, P6, D4, D8): it reads
// frames of any api.Codec (Bolt, Dubbo) from a downstream connection, runs
// the same stream filters and router as the HTTP proxy on each request's
// headers, and forwards it over a multiplexed upstream pool where many
// requests share one connection under rewritten ids. Heartbeats are
// answered locally and sent on idle upstream connections; every failure on
// the proxy side becomes the protocol's own error response.
package rpc

import (
	"log/slog"
	"time"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/accesslog"
	"github.com/weftmesh/weft/internal/stats"
	"github.com/weftmesh/weft/internal/stream"
)

// Defaults for zero Config and PoolConfig fields.
const (
	DefaultMaxConcurrentRequests = 1024
	DefaultIdleTimeout           = time.Hour
	DefaultWriteTimeout          = 30 * time.Second
	DefaultMaxWriteBacklog       = 32 << 20
	DefaultDetectTimeout         = 5 * time.Second
	DefaultMaxMethodStats        = 10000

	DefaultMaxRequestsPerConn = 128
	DefaultMaxConnsPerHost    = 16
	DefaultUpstreamIdle       = 10 * time.Minute
	DefaultHeartbeatInterval  = 15 * time.Second
	DefaultHeartbeatMisses    = 3
)

// Config is a built RPC proxy: everything its connections need, computed
// once at config time.
type Config struct {
	StatPrefix string
	// Codecs are the protocols the listener speaks; with more than one,
	// or with a Next handler, the first bytes choose (in this order).
	Codecs []api.Codec
	// Next receives connections whose first bytes no codec claims (HTTP
	// on a shared port); nil closes them as a protocol error.
	Next api.ConnHandler

	Routes   stream.RouteSource
	Filters  []api.StreamFilter
	Clusters api.ClusterManager

	// MaxConcurrentRequests bounds the requests in flight on one
	// downstream connection; past it the proxy stops reading from that
	// connection (back-pressure) until responses go out.
	MaxConcurrentRequests int
	// IdleTimeout closes a downstream connection with nothing in flight and
	// nothing read (not even a heartbeat) for this long; <0 disables.
	IdleTimeout time.Duration
	// WriteTimeout bounds each write to a peer; a client that does not read
	// its responses for this long is disconnected.
	WriteTimeout time.Duration
	// MaxWriteBacklog bounds the bytes queued for one peer.
	MaxWriteBacklog int
	// DetectTimeout bounds the wait for the first bytes that choose the
	// protocol.
	DetectTimeout time.Duration
	// MaxMethodStats bounds the distinct (service, method) pairs that get
	// their own metrics; later ones are counted under "other".
	MaxMethodStats int

	Pool PoolConfig

	AccessLogs []*accesslog.Logger
	Stats      *stats.RPCStats
	Store      *stats.Store
	Log        *slog.Logger
	Drain      api.Drainer
}

// PoolConfig shapes the multiplexed upstream pools.
type PoolConfig struct {
	// MaxRequestsPerConn is the number of requests in flight on one
	// upstream connection after which another connection is opened.
	MaxRequestsPerConn int
	// MaxConnsPerHost bounds the connections to one host; when all are at
	// MaxRequestsPerConn the least loaded takes the request anyway.
	MaxConnsPerHost int
	// IdleTimeout closes an upstream connection with nothing in flight for
	// this long; <0 disables.
	IdleTimeout time.Duration
	// HeartbeatInterval is the quiet time after which a heartbeat is sent
	// on an upstream connection; <0 disables heartbeats.
	HeartbeatInterval time.Duration
	// HeartbeatMisses is the number of unanswered heartbeats after which
	// the connection is closed.
	HeartbeatMisses int
	// WriteTimeout and MaxWriteBacklog bound writes upstream.
	WriteTimeout    time.Duration
	MaxWriteBacklog int
}

func (c *Config) defaults() {
	if c.MaxConcurrentRequests <= 0 {
		c.MaxConcurrentRequests = DefaultMaxConcurrentRequests
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultIdleTimeout
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = DefaultWriteTimeout
	}
	if c.MaxWriteBacklog <= 0 {
		c.MaxWriteBacklog = DefaultMaxWriteBacklog
	}
	if c.DetectTimeout <= 0 {
		c.DetectTimeout = DefaultDetectTimeout
	}
	if c.MaxMethodStats <= 0 {
		c.MaxMethodStats = DefaultMaxMethodStats
	}
	if c.Store == nil {
		c.Store = stats.NewStore()
	}
	if c.Stats == nil {
		c.Stats = c.Store.RPC(c.StatPrefix)
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	p := &c.Pool
	if p.MaxRequestsPerConn <= 0 {
		p.MaxRequestsPerConn = DefaultMaxRequestsPerConn
	}
	if p.MaxConnsPerHost <= 0 {
		p.MaxConnsPerHost = DefaultMaxConnsPerHost
	}
	if p.IdleTimeout == 0 {
		p.IdleTimeout = DefaultUpstreamIdle
	}
	if p.HeartbeatInterval == 0 {
		p.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if p.HeartbeatMisses <= 0 {
		p.HeartbeatMisses = DefaultHeartbeatMisses
	}
	if p.WriteTimeout <= 0 {
		p.WriteTimeout = c.WriteTimeout
	}
	if p.MaxWriteBacklog <= 0 {
		// Not the downstream limit: an upstream connection carries the
		// requests of every client.
		p.MaxWriteBacklog = DefaultMaxWriteBacklog
	}
}
