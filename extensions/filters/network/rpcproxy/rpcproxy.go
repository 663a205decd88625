// Package rpcproxy registers weft.filters.network.rpc_proxy, the RPC proxy
// (internal/rpc) for Bolt, Dubbo and any other registered codec. Its config
// is a TypedStruct (Weft's own schema, documented in docs/rpc.md) whose
// route_config is an Envoy RouteConfiguration and whose rpc_filters are
// Envoy http_filters entries: the same router and stream filters as HTTP.
package rpcproxy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	xdstypev3 "github.com/cncf/xds/go/xds/type/v3"
	accesslogv3 "github.com/envoyproxy/go-control-plane/envoy/config/accesslog/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/accesslog"
	"github.com/weftmesh/weft/internal/codec/http1"
	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/filterchain"
	"github.com/weftmesh/weft/internal/router"
	"github.com/weftmesh/weft/internal/rpc"
	"github.com/weftmesh/weft/internal/stats"
	"github.com/weftmesh/weft/internal/stream"
)

// Name is the filter's registered name.
const Name = "weft.filters.network.rpc_proxy"

// TypeURL is the type_url of its TypedStruct config.
const TypeURL = "type.weftmesh.io/weft.filters.network.rpc_proxy.v1.RpcProxy"

func init() { api.NetworkFilters.Register(Name, []string{TypeURL}, factory{}) }

type factory struct{}

// fileConfig is the JSON shape of the TypedStruct value.
type fileConfig struct {
	StatPrefix  string          `json:"stat_prefix"`
	Protocols   []string        `json:"protocols"`
	RouteConfig json.RawMessage `json:"route_config"`
	RDS         *struct {
		RouteConfigName string `json:"route_config_name"`
	} `json:"rds"`
	RPCFilters            []json.RawMessage `json:"rpc_filters"`
	AccessLog             []json.RawMessage `json:"access_log"`
	MaxConcurrentRequests int               `json:"max_concurrent_requests"`
	IdleTimeout           string            `json:"idle_timeout"`
	WriteTimeout          string            `json:"write_timeout"`
	MaxWriteBacklogBytes  int               `json:"max_write_backlog_bytes"`
	DetectTimeout         string            `json:"detect_timeout"`
	MaxMethodStats        int               `json:"max_method_stats"`
	MaxFrameBytes         int               `json:"max_frame_bytes"`
	MaxHeaderBytes        int               `json:"max_header_bytes"`
	MaxHeaders            int               `json:"max_headers"`
	Upstream              struct {
		MaxRequestsPerConnection int    `json:"max_requests_per_connection"`
		MaxConnectionsPerHost    int    `json:"max_connections_per_host"`
		IdleTimeout              string `json:"idle_timeout"`
		HeartbeatInterval        string `json:"heartbeat_interval"`
		HeartbeatMisses          int    `json:"heartbeat_misses"`
	} `json:"upstream"`
}

type parsed struct {
	cfg      rpc.Config // no runtime dependencies yet
	triple   bool       // "triple" is among the protocols: gRPC over HTTP/2 with RPC routing
	table    *router.Table
	rds      string // route config name when routes come by RDS
	filters  []filterchain.Spec
	logs     []*accesslogv3.AccessLog
	warnings []string
}

// Parse implements api.NetworkFilterFactory.
func (factory) Parse(b []byte, typeURL string) (any, error) {
	errs := &config.Errors{}
	ts := &xdstypev3.TypedStruct{}
	if err := proto.Unmarshal(b, ts); err != nil {
		errs.Add("", "%s: config must be a TypedStruct with type_url %s: %v", Name, TypeURL, err)
		return nil, errs
	}
	js, err := protojson.Marshal(ts.GetValue())
	if err != nil {
		errs.Add("value", "%v", err)
		return nil, errs
	}
	return parseJSON(js)
}

func parseJSON(js []byte) (*parsed, error) {
	errs := &config.Errors{}
	var fc fileConfig
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fc); err != nil {
		errs.Add("", "%v", err)
		return nil, errs
	}
	p := &parsed{}
	c := &p.cfg
	c.StatPrefix = fc.StatPrefix
	if c.StatPrefix == "" {
		errs.Add("stat_prefix", "required")
	}
	if len(fc.Protocols) == 0 {
		errs.Add("protocols", "name at least one protocol (%s, %s)", strings.Join(api.Codecs.Names(), ", "), Triple)
	}
	limits := api.CodecLimits{MaxFrameBytes: fc.MaxFrameBytes, MaxHeaderBytes: fc.MaxHeaderBytes, MaxHeaders: fc.MaxHeaders}
	for _, n := range []struct {
		name string
		v    int
	}{{"max_frame_bytes", fc.MaxFrameBytes}, {"max_header_bytes", fc.MaxHeaderBytes}, {"max_headers", fc.MaxHeaders},
		{"max_concurrent_requests", fc.MaxConcurrentRequests}, {"max_write_backlog_bytes", fc.MaxWriteBacklogBytes},
		{"max_method_stats", fc.MaxMethodStats}, {"upstream.max_requests_per_connection", fc.Upstream.MaxRequestsPerConnection},
		{"upstream.max_connections_per_host", fc.Upstream.MaxConnectionsPerHost}, {"upstream.heartbeat_misses", fc.Upstream.HeartbeatMisses}} {
		if n.v < 0 {
			errs.Add(n.name, "must not be negative")
		}
	}
	if fc.MaxHeaderBytes > 0x7fff {
		errs.Add("max_header_bytes", "at most 32767 (Bolt's wire limit)")
	}
	seen := map[string]bool{}
	for i, name := range fc.Protocols {
		mk, ok := api.Codecs.Lookup(name, "")
		switch {
		case name == Triple && !seen[name]:
			seen[name] = true
			p.triple = true
		case !ok:
			errs.Add(fmt.Sprintf("protocols[%d]", i), "unknown protocol %q (known: %s, %s)", name, strings.Join(api.Codecs.Names(), ", "), Triple)
		case seen[name]:
			errs.Add(fmt.Sprintf("protocols[%d]", i), "%q listed twice", name)
		default:
			seen[name] = true
			c.Codecs = append(c.Codecs, mk(limits))
		}
	}
	dur := func(path, s string, dst *time.Duration) {
		if s == "" {
			return
		}
		d, err := time.ParseDuration(s)
		if err != nil || d < 0 {
			errs.Add(path, "not a duration: %q", s)
			return
		}
		if d == 0 {
			d = -1 // 0 disables
		}
		*dst = d
	}
	dur("idle_timeout", fc.IdleTimeout, &c.IdleTimeout)
	dur("write_timeout", fc.WriteTimeout, &c.WriteTimeout)
	dur("detect_timeout", fc.DetectTimeout, &c.DetectTimeout)
	dur("upstream.idle_timeout", fc.Upstream.IdleTimeout, &c.Pool.IdleTimeout)
	dur("upstream.heartbeat_interval", fc.Upstream.HeartbeatInterval, &c.Pool.HeartbeatInterval)
	c.MaxConcurrentRequests = fc.MaxConcurrentRequests
	c.MaxWriteBacklog = fc.MaxWriteBacklogBytes
	c.MaxMethodStats = fc.MaxMethodStats
	c.Pool.MaxRequestsPerConn = fc.Upstream.MaxRequestsPerConnection
	c.Pool.MaxConnsPerHost = fc.Upstream.MaxConnectionsPerHost
	c.Pool.HeartbeatMisses = fc.Upstream.HeartbeatMisses

	switch {
	case fc.RDS != nil && len(fc.RouteConfig) > 0:
		errs.Add("rds", "route_config and rds exclude each other")
	case fc.RDS != nil:
		if fc.RDS.RouteConfigName == "" {
			errs.Add("rds.route_config_name", "required")
		}
		p.rds = fc.RDS.RouteConfigName
	case len(fc.RouteConfig) == 0:
		errs.Add("route_config", "required (or rds)")
	default:
		rc := &routev3.RouteConfiguration{}
		if err := protojson.Unmarshal(fc.RouteConfig, rc); err != nil {
			errs.Add("route_config", "%v", err)
		} else if err := rc.ValidateAll(); err != nil {
			errs.AddErr("route_config", err)
		} else if t, err := router.Compile(rc); err != nil {
			errs.AddErr("route_config", err)
		} else {
			p.table = t
		}
	}
	var hf []*hcmv3.HttpFilter
	for i, raw := range fc.RPCFilters {
		f := &hcmv3.HttpFilter{}
		if err := protojson.Unmarshal(raw, f); err != nil {
			errs.Add(fmt.Sprintf("rpc_filters[%d]", i), "%v", err)
			continue
		}
		if err := f.ValidateAll(); err != nil {
			errs.AddErr(fmt.Sprintf("rpc_filters[%d]", i), err)
			continue
		}
		hf = append(hf, f)
	}
	p.filters, p.warnings = filterchain.Parse(hf, false, errs, "rpc_filters")
	for i, raw := range fc.AccessLog {
		al := &accesslogv3.AccessLog{}
		path := fmt.Sprintf("access_log[%d]", i)
		if err := protojson.Unmarshal(raw, al); err != nil {
			errs.Add(path, "%v", err)
			continue
		}
		if _, err := accesslog.Check(al); err != nil {
			errs.AddErr(path, err)
			continue
		}
		p.logs = append(p.logs, al)
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return p, nil
}

// Build implements api.NetworkFilterFactory.
func (factory) Build(pa any, bc api.BuildContext) (api.NetworkFilter, error) {
	p := pa.(*parsed)
	for _, w := range p.warnings {
		bc.Logger().Warn(w, "listener", bc.Listener())
	}
	c := p.cfg
	routes, err := filterchain.Routes(bc, p.table, p.rds)
	if err != nil {
		return nil, err
	}
	c.Routes = routes
	c.Clusters = bc.Clusters()
	c.Log = bc.Logger()
	c.Drain = bc.Drain()
	var store *stats.Store
	if !bc.Service(&store) {
		store = stats.NewStore()
	}
	c.Store = store
	c.Stats = store.RPC(c.StatPrefix)
	fs, err := filterchain.Build(p.filters, bc)
	if err != nil {
		return nil, fmt.Errorf("rpc filters: %w", err)
	}
	c.Filters = fs
	logs, err := accesslog.ForBuildAll(bc, p.logs)
	if err != nil {
		return nil, err
	}
	c.AccessLogs = logs
	f := filter{c: c}
	if p.triple {
		var bp *http1.BufPool
		_ = bc.Service(&bp)
		f.triple = &stream.Config{
			StatPrefix:        c.StatPrefix,
			Routes:            c.Routes,
			Filters:           c.Filters,
			Clusters:          c.Clusters,
			Limits:            http1.Limits{MaxHeaderBytes: 60 << 10, MaxHeaders: 100},
			IdleTimeout:       c.IdleTimeout,
			RPCRouting:        true,
			MaxMethodStats:    c.MaxMethodStats,
			AccessLogs:        logs,
			Store:             store,
			Stats:             store.HTTP(c.StatPrefix),
			BufPool:           bp,
			Log:               c.Log,
			StreamIdleTimeout: c.WriteTimeout,
		}
	}
	return f, nil
}

// Triple names gRPC over HTTP/2 with tri- metadata (Dubbo 3, SOFA) in
// protocols: its requests are routed like Bolt and Dubbo (domain =
// service, path = method, version and group headers).
const Triple = "triple"

type filter struct {
	c      rpc.Config
	triple *stream.Config // nil: no Triple
}

// Chain implements api.NetworkFilter: connections whose first bytes no
// codec claims go to next (an HTTP connection manager sharing the port);
// when the proxy is the last filter, next closes them. With Triple, an
// HTTP/2 connection goes to the Triple side first.
func (f filter) Chain(next api.ConnHandler) api.ConnHandler {
	c := f.c
	if f.triple != nil {
		tc := *f.triple
		tc.HTTP1 = next
		h := stream.New(tc)
		if len(c.Codecs) == 0 {
			return h
		}
		next = h
	}
	if next != api.EndOfChain {
		c.Next = next
	}
	return rpc.New(c)
}

// ALPN is what a TLS chain offers for the proxy: h2 for Triple (Bolt and
// Dubbo clients do not negotiate).
func (p *parsed) ALPN() []string {
	if p.triple {
		return []string{"h2"}
	}
	return nil
}

// Warnings lists what Parse accepted with a warning.
func (p *parsed) Warnings() []string { return p.warnings }

// RouteNames lists the route configs it takes by RDS.
func (p *parsed) RouteNames() []string { return filterchain.RDSNames(p.rds) }

// ClusterRefs lists the clusters the route table names.
func (p *parsed) ClusterRefs() []string { return filterchain.ClusterRefs(p.table) }
