// Package hcm registers envoy.filters.network.http_connection_manager: it
// parses the Envoy config, builds the stream filters and the route table,
// and hands connections to the L7 proxy in internal/stream.
package hcm

import (
	"fmt"
	"strings"
	"time"

	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/accesslog"
	"github.com/weftmesh/weft/internal/codec/http1"
	"github.com/weftmesh/weft/internal/config"
	"github.com/weftmesh/weft/internal/filterchain"
	"github.com/weftmesh/weft/internal/router"
	"github.com/weftmesh/weft/internal/stats"
	"github.com/weftmesh/weft/internal/stream"
)

// Name is the filter's registered name.
const Name = "envoy.filters.network.http_connection_manager"

// TypeURL is its typed_config type.
const TypeURL = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"

// RouterName and RouterTypeURL identify the terminal router filter, which
// is the L7 proxy itself rather than a registered stream filter.
const (
	RouterName    = filterchain.RouterName
	RouterTypeURL = filterchain.RouterTypeURL
)

func init() { api.NetworkFilters.Register(Name, []string{TypeURL}, factory{}) }

type factory struct{}

var _ api.NetworkFilterFactory = factory{}

// parsed is the validated, typed form of one HttpConnectionManager.
type parsed struct {
	pb       *hcmv3.HttpConnectionManager
	table    *router.Table
	rds      string // route config name when routes come by RDS
	filters  []filterchain.Spec
	warnings []string
	cfg      stream.Config // timeouts, limits and flags; no runtime deps yet
}

// Parse implements api.NetworkFilterFactory.
func (factory) Parse(b []byte, typeURL string) (any, error) {
	pb := &hcmv3.HttpConnectionManager{}
	if err := proto.Unmarshal(b, pb); err != nil {
		return nil, fmt.Errorf("%s: %w", Name, err)
	}
	errs := &config.Errors{}
	if err := pb.ValidateAll(); err != nil {
		errs.AddErr("", err)
		return nil, errs
	}
	p := &parsed{pb: pb}
	switch pb.GetCodecType() {
	case hcmv3.HttpConnectionManager_AUTO:
		p.cfg.Codec = stream.CodecAuto
	case hcmv3.HttpConnectionManager_HTTP1:
		p.cfg.Codec = stream.CodecHTTP1
	case hcmv3.HttpConnectionManager_HTTP2:
		p.cfg.Codec = stream.CodecHTTP2
	default:
		errs.Add("codec_type", "%s not supported (AUTO, HTTP1 and HTTP2 are)", pb.GetCodecType())
	}
	if h2 := pb.GetHttp2ProtocolOptions(); h2 != nil {
		o := &p.cfg.H2
		if v := h2.GetMaxConcurrentStreams(); v != nil {
			o.MaxConcurrentStreams = v.GetValue()
		}
		if v := h2.GetInitialStreamWindowSize(); v != nil {
			o.StreamWindow = int32(v.GetValue())
		}
		if v := h2.GetInitialConnectionWindowSize(); v != nil {
			o.ConnWindow = int32(v.GetValue())
		}
		if ka := h2.GetConnectionKeepalive(); ka != nil {
			o.KeepaliveInterval = ka.GetInterval().AsDuration()
			o.KeepaliveTimeout = ka.GetTimeout().AsDuration()
		}
		if h2.GetAllowConnect() {
			errs.Add("http2_protocol_options.allow_connect", "CONNECT over HTTP/2 is not supported")
		}
		if len(h2.GetCustomSettingsParameters()) > 0 {
			errs.Add("http2_protocol_options.custom_settings_parameters", "not supported")
		}
	}
	if pb.GetHttp3ProtocolOptions() != nil {
		errs.Add("http3_protocol_options", "HTTP/3 is not supported")
	}
	switch rs := pb.GetRouteSpecifier().(type) {
	case *hcmv3.HttpConnectionManager_RouteConfig:
		t, err := router.Compile(rs.RouteConfig)
		if err != nil {
			errs.AddErr("route_config", err)
		}
		p.table = t
	case *hcmv3.HttpConnectionManager_Rds:
		// The route config comes from the same xDS source as the
		// listener (ADS or the LDS server): config_source is not read.
		p.rds = rs.Rds.GetRouteConfigName()
	default:
		errs.Add("route_specifier", "route_config is required")
	}
	p.parseFilters(errs)
	c := &p.cfg
	c.StatPrefix = pb.GetStatPrefix()
	c.Limits = http1.Limits{MaxHeaderBytes: 60 << 10, MaxHeaders: 100}
	if kb := pb.GetMaxRequestHeadersKb(); kb != nil {
		c.Limits.MaxHeaderBytes = int(kb.GetValue()) << 10
	}
	cho := pb.GetCommonHttpProtocolOptions()
	if n := cho.GetMaxHeadersCount(); n != nil {
		c.Limits.MaxHeaders = int(n.GetValue())
	}
	if d := cho.GetIdleTimeout(); d != nil {
		c.IdleTimeout = durOrNone(d.AsDuration())
	}
	if n := cho.GetMaxRequestsPerConnection(); n != nil {
		c.MaxRequestsPerConn = int(n.GetValue())
	}
	if d := pb.GetRequestHeadersTimeout(); d != nil {
		c.RequestHeadersTimeout = durOrNone(d.AsDuration())
	}
	if d := pb.GetStreamIdleTimeout(); d != nil {
		c.StreamIdleTimeout = durOrNone(d.AsDuration())
	}
	if d := pb.GetRequestTimeout(); d != nil {
		c.RequestTimeout = d.AsDuration()
	}
	c.UseRemoteAddress = pb.GetUseRemoteAddress().GetValue()
	c.GenerateID = pb.GenerateRequestId == nil || pb.GetGenerateRequestId().GetValue()
	c.ServerName = pb.GetServerName()
	c.Upgrades = map[string]bool{}
	for i, u := range pb.GetUpgradeConfigs() {
		if len(u.GetFilters()) > 0 {
			errs.Add(fmt.Sprintf("upgrade_configs[%d].filters", i), "per-upgrade filter chains are not supported")
		}
		if u.Enabled == nil || u.GetEnabled().GetValue() {
			c.Upgrades[strings.ToLower(u.GetUpgradeType())] = true
		}
	}
	for i, al := range pb.GetAccessLog() {
		if _, err := accesslog.Check(al); err != nil {
			errs.AddErr(fmt.Sprintf("access_log[%d]", i), err)
		}
	}
	if pb.GetTracing() != nil {
		p.warnings = append(p.warnings, "tracing: not implemented yet, ignored")
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return p, nil
}

// durOrNone maps Envoy's "0 disables" to our negative "none" so that a
// zero left by an unset field can still mean "use the default".
func durOrNone(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

func (p *parsed) parseFilters(errs *config.Errors) {
	specs, warns := filterchain.Parse(p.pb.GetHttpFilters(), true, errs, "http_filters")
	p.filters = specs
	p.warnings = append(p.warnings, warns...)
}

// Build implements api.NetworkFilterFactory.
func (factory) Build(pa any, bc api.BuildContext) (api.NetworkFilter, error) {
	p := pa.(*parsed)
	for _, w := range p.warnings {
		bc.Logger().Warn(w, "listener", bc.Listener())
	}
	c := p.cfg // copy: every Build gets its own runtime config
	routes, err := filterchain.Routes(bc, p.table, p.rds)
	if err != nil {
		return nil, err
	}
	c.Routes = routes
	c.Clusters = bc.Clusters()
	c.Log = bc.Logger()
	var store *stats.Store
	if !bc.Service(&store) {
		store = stats.NewStore()
	}
	c.Store = store
	c.Stats = store.HTTP(c.StatPrefix)
	var bp *http1.BufPool
	if bc.Service(&bp) {
		c.BufPool = bp
	}
	fs, err := filterchain.Build(p.filters, bc)
	if err != nil {
		return nil, fmt.Errorf("http filters: %w", err)
	}
	c.Filters = fs
	logs, err := accesslog.ForBuildAll(bc, p.pb.GetAccessLog())
	if err != nil {
		return nil, err
	}
	c.AccessLogs = logs
	h := stream.New(c)
	return api.NetworkFilter(terminal{h}), nil
}

type terminal struct{ h api.ConnHandler }

// Chain implements api.NetworkFilter; the connection manager is terminal.
func (t terminal) Chain(api.ConnHandler) api.ConnHandler { return t.h }

// ALPN lists the protocols a TLS filter chain offers for this connection
// manager when its DownstreamTlsContext names none.
func (p *parsed) ALPN() []string {
	switch p.cfg.Codec {
	case stream.CodecHTTP1:
		return []string{"http/1.1"}
	case stream.CodecHTTP2:
		return []string{"h2"}
	}
	return []string{"h2", "http/1.1"}
}

// Warnings lists what Parse accepted with a warning.
func (p *parsed) Warnings() []string { return p.warnings }

// RouteNames lists the route configs it takes by RDS.
func (p *parsed) RouteNames() []string { return filterchain.RDSNames(p.rds) }

// ClusterRefs lists the clusters the route table names, so a static config
// that routes to a missing cluster is refused at load time.
func (p *parsed) ClusterRefs() []string { return filterchain.ClusterRefs(p.table) }
