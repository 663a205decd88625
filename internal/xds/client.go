// Package xds is Weft's xDS v3 client: it fetches listeners, clusters,
// routes, endpoints and secrets from a management server over ADS or
// per-type streams, in the state-of-the-world or the delta protocol, hands
// each update to an Applier and ACKs or NACKs it.
//
// RDS, EDS and SDS resources travel on the ADS stream when the bootstrap
// has an ads_config; without one, routes come from the LDS source,
// endpoints and secrets from the CDS source (secrets from the LDS source
// when CDS is static). The config_source inside a listener or cluster is
// not consulted.
package xds

import (
	"context"
	"log/slog"
	"sync"
	"time"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/protobuf/proto"
)

// Defaults of Config and Source.
const (
	DefaultInitialFetchTimeout = 15 * time.Second
	DefaultBackoffBase         = 500 * time.Millisecond
	DefaultBackoffMax          = 30 * time.Second
	// DefaultKeepaliveTime and DefaultKeepaliveTimeout are gRPC's own xDS
	// client's: every gRPC server's default ping policy (at most one ping
	// per 5 minutes) accepts them, while a dead peer is still noticed.
	DefaultKeepaliveTime    = 5 * time.Minute
	DefaultKeepaliveTimeout = 20 * time.Second
	DefaultConnectTimeout   = 5 * time.Second
	// DefaultMaxRecvMsgSize is larger than gRPC's 4 MiB because a CDS or
	// EDS response of a big mesh easily exceeds that, and Envoy has no
	// limit by default.
	DefaultMaxRecvMsgSize = 64 << 20
)

// Applier applies one update of one resource type.
//
// all is the complete current set of that type after the update (name ->
// resource); changed and removed list what this update changed. The map
// and the messages are shared with the client: read them, never modify
// them. Returning an error NACKs the update (the error text goes into
// error_detail) and the Applier must have kept its previous state for that
// type.
//
// The client calls Apply and Wants from one goroutine, never
// concurrently, and never while holding a lock Status needs. They must not
// call Close, which waits for that goroutine.
type Applier interface {
	Apply(typeURL string, all map[string]proto.Message, changed, removed []string) error
	// Wants lists the resource names of typeURL (RDS route configs, EDS
	// cluster load assignments, SDS secrets) that the applied config
	// currently refers to, static resources included. The client asks at
	// Start and after every successful Apply, and subscribes to exactly
	// these names.
	Wants(typeURL string) []string
}

// Config is what the client needs to reach the management server.
type Config struct {
	// Node identifies the proxy to the server.
	Node *corev3.Node
	// ADS is the aggregated stream; nil when there is no ads_config.
	ADS *Source
	// LDS and CDS are the sources of listeners and clusters; nil when that
	// type is not dynamic. Set one to the ADS pointer to fetch it over the
	// ADS stream.
	LDS, CDS *Source
	// InitialFetchTimeout bounds the wait for the first configuration and
	// for clusters to warm. 0 means DefaultInitialFetchTimeout; a negative
	// value waits forever, like Envoy's initial_fetch_timeout of 0s.
	InitialFetchTimeout time.Duration
	// Backoff paces reconnects and repeated NACKs of the same version: the
	// n-th retry waits between half and all of min(Base*2^n, Max).
	// Defaults DefaultBackoffBase and DefaultBackoffMax.
	Backoff struct{ Base, Max time.Duration }
	// Logger defaults to slog.Default().
	Logger *slog.Logger
}

// Source is one management server.
type Source struct {
	// Target is a gRPC target: host:port, dns:///host:port or unix:///path.
	Target string
	// Delta selects the incremental protocol (api_type DELTA_GRPC).
	Delta bool
	// Authority overrides the :authority header; Envoy sends the cluster
	// name there.
	Authority string
	// Metadata is sent as headers on every stream (key, value, key,
	// value...), from the grpc_service's initial_metadata.
	Metadata []string
	// Keepalive pings a silent connection so that a dead peer is noticed
	// (FromBootstrap takes it from the cluster's HTTP/2
	// connection_keepalive). Zero fields take DefaultKeepaliveTime and
	// DefaultKeepaliveTimeout. A server closes a connection that pings more
	// often than it permits (grpc-go: keepalive.EnforcementPolicy.MinTime).
	Keepalive keepalive.ClientParameters
	// ConnectTimeout bounds a TCP and HTTP/2 handshake; a listener that
	// accepts and never answers is given up after it. Default
	// DefaultConnectTimeout.
	ConnectTimeout time.Duration
	// MaxRecvMsgSize bounds one response; default DefaultMaxRecvMsgSize.
	MaxRecvMsgSize int
	// DialOptions are appended to the client's own (plaintext credentials,
	// keepalive, back-off, message size).
	DialOptions []grpc.DialOption
}

func (s *Source) dialOptions(b struct{ Base, Max time.Duration }) []grpc.DialOption {
	ka := s.Keepalive
	if ka.Time <= 0 {
		ka.Time = DefaultKeepaliveTime
	}
	if ka.Timeout <= 0 {
		ka.Timeout = DefaultKeepaliveTimeout
	}
	ct := s.ConnectTimeout
	if ct <= 0 {
		ct = DefaultConnectTimeout
	}
	maxMsg := s.MaxRecvMsgSize
	if maxMsg <= 0 {
		maxMsg = DefaultMaxRecvMsgSize
	}
	bc := backoff.DefaultConfig
	bc.BaseDelay, bc.MaxDelay = b.Base, b.Max
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithKeepaliveParams(ka),
		// gRPC's own reconnect back-off (up to 2 minutes by default) would
		// otherwise delay the first stream after a server comes back.
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: bc, MinConnectTimeout: ct}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxMsg)),
		grpc.WithUserAgent("weft"),
	}
	if s.Authority != "" {
		opts = append(opts, grpc.WithAuthority(s.Authority))
	}
	return append(opts, s.DialOptions...)
}

// Client fetches configuration from the management server. Its methods are
// safe for concurrent use.
type Client struct {
	cfg     Config
	applier Applier
	log     *slog.Logger

	types   map[string]*typeState
	streams []*stream
	events  chan event
	initCh  chan struct{}

	startOnce sync.Once
	closeOnce sync.Once
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup // the core goroutine
	streamWG  sync.WaitGroup // stream goroutines, started by the core

	// Owned by the core goroutine.
	core coreState

	mu     sync.Mutex
	status map[string]TypeStatus
}

// New returns a client for cfg that applies updates through a. Nothing
// happens until Start.
func New(cfg *Config, a Applier) *Client {
	c := &Client{
		cfg:     *cfg,
		applier: a,
		types:   map[string]*typeState{},
		events:  make(chan event),
		initCh:  make(chan struct{}),
		status:  map[string]TypeStatus{},
	}
	if c.cfg.InitialFetchTimeout == 0 {
		c.cfg.InitialFetchTimeout = DefaultInitialFetchTimeout
	}
	if c.cfg.Backoff.Base <= 0 {
		c.cfg.Backoff.Base = DefaultBackoffBase
	}
	if c.cfg.Backoff.Max <= 0 {
		c.cfg.Backoff.Max = DefaultBackoffMax
	}
	c.cfg.Backoff.Max = max(c.cfg.Backoff.Max, c.cfg.Backoff.Base)
	c.log = c.cfg.Logger
	if c.log == nil {
		c.log = slog.Default()
	}
	if c.cfg.Node == nil {
		c.cfg.Node = &corev3.Node{}
	} else {
		// Streams marshal it concurrently; the caller's copy may change.
		c.cfg.Node = proto.Clone(c.cfg.Node).(*corev3.Node)
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	c.buildStreams()
	for _, t := range typeOrder {
		if ts := c.types[t]; ts != nil {
			c.publish(ts)
		}
	}
	return c
}

// buildStreams decides which stream carries which type.
func (c *Client) buildStreams() {
	perType := func(src *Source, t, label string) {
		s := &stream{c: c, src: src, types: []string{t}, label: label, out: newOutbox()}
		c.streams = append(c.streams, s)
		c.types[t] = newTypeState(t, s)
	}
	var ads *stream
	if c.cfg.ADS != nil {
		ads = &stream{c: c, src: c.cfg.ADS, ads: true, label: "ads", out: newOutbox()}
		c.streams = append(c.streams, ads)
	}
	for _, t := range typeOrder {
		switch {
		case ads != nil && (t == resource.ClusterType && c.cfg.CDS == c.cfg.ADS ||
			t == resource.ListenerType && c.cfg.LDS == c.cfg.ADS ||
			t == resource.RouteType || t == resource.EndpointType || t == resource.SecretType):
			ads.types = append(ads.types, t)
			c.types[t] = newTypeState(t, ads)
		case t == resource.ClusterType && c.cfg.CDS != nil:
			perType(c.cfg.CDS, t, "cds")
		case t == resource.ListenerType && c.cfg.LDS != nil:
			perType(c.cfg.LDS, t, "lds")
		case t == resource.EndpointType && c.cfg.CDS != nil:
			perType(c.cfg.CDS, t, "eds")
		case t == resource.RouteType && c.cfg.LDS != nil:
			perType(c.cfg.LDS, t, "rds")
		case t == resource.SecretType && (c.cfg.CDS != nil || c.cfg.LDS != nil):
			src := c.cfg.CDS
			if src == nil {
				src = c.cfg.LDS
			}
			perType(src, t, "sds")
		}
	}
}

// Start connects and keeps the client running in the background until ctx
// ends or Close is called. It returns at once; a second call does nothing.
func (c *Client) Start(ctx context.Context) {
	c.startOnce.Do(func() {
		if c.ctx.Err() != nil {
			return // closed before start
		}
		// Dial here rather than in New so that a client that is never
		// started holds nothing. NewClient does not connect yet.
		conns := map[*Source]*grpc.ClientConn{}
		for _, s := range c.streams {
			cc, ok := conns[s.src]
			if !ok {
				var err error
				cc, err = grpc.NewClient(s.src.Target, s.src.dialOptions(c.cfg.Backoff)...)
				if err != nil {
					c.log.Error("xds: cannot use the management server", "server", s.src.Target, "error", err)
				}
				conns[s.src] = cc
			}
			s.cc = cc
		}
		stop := context.AfterFunc(ctx, c.cancel)
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			defer stop()
			c.loop()
			c.streamWG.Wait()
			for _, cc := range conns {
				if cc != nil {
					cc.Close()
				}
			}
		}()
	})
}

// Close stops the client and waits for its goroutines. The applied
// configuration is left as it is.
func (c *Client) Close() {
	c.closeOnce.Do(func() {
		c.cancel()
		c.startOnce.Do(func() {}) // a later Start does nothing
		c.wg.Wait()
	})
}

// Initialized is closed once the first LDS and CDS updates, and the RDS,
// EDS and SDS resources they want, have been applied, or once
// InitialFetchTimeout has passed (like Envoy's init manager). It stays
// open if the client is closed before either.
func (c *Client) Initialized() <-chan struct{} { return c.initCh }

// post hands an event to the core goroutine; false when ctx ended first.
func (c *Client) post(ctx context.Context, ev event) bool {
	select {
	case c.events <- ev:
		return true
	case <-ctx.Done():
		return false
	}
}
