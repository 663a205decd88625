package xds

import (
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	httpv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/upstreams/http/v3"
	"google.golang.org/protobuf/proto"
)

// FieldError is one problem in the bootstrap, at one field path.
type FieldError struct {
	Path, Msg string
}

func (e FieldError) Error() string { return e.Path + ": " + e.Msg }

// Errors is every problem FromBootstrap found.
type Errors []FieldError

func (e Errors) Error() string {
	parts := make([]string, len(e))
	for i, fe := range e {
		parts[i] = fe.Error()
	}
	return strings.Join(parts, "; ")
}

func (e *Errors) add(path, format string, args ...any) {
	*e = append(*e, FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

const (
	httpProtocolOptionsName = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions"
	rawBufferName           = "envoy.transport_sockets.raw_buffer"
	rawBufferURL            = "type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"
)

// FromBootstrap reads b.dynamic_resources and b.node into a Config; it
// returns (nil, nil) when b has no dynamic_resources. A failure is an
// Errors value naming each field path.
//
// An envoy_grpc cluster_name is looked up among the static clusters: a
// STATIC cluster gives its first endpoint's address (a pipe gives a unix
// socket), a STRICT_DNS or LOGICAL_DNS one its first host name, resolved
// by gRPC. The cluster's connect_timeout and HTTP/2 connection_keepalive
// apply to the xDS connection. A google_grpc target_uri is used as is.
// Only plaintext is supported for now: TLS settings are refused rather
// than ignored. The longest initial_fetch_timeout of lds_config and
// cds_config applies to the whole initial fetch (15s when unset; 0s waits
// forever). The node's user_agent_name defaults to "weft".
func FromBootstrap(b *bootstrapv3.Bootstrap) (*Config, error) {
	dr := b.GetDynamicResources()
	if dr == nil {
		return nil, nil
	}
	var errs Errors
	cfg := &Config{Node: &corev3.Node{}}
	if n := b.GetNode(); n != nil {
		cfg.Node = proto.Clone(n).(*corev3.Node)
	}
	if cfg.Node.GetId() == "" {
		errs.add("node.id", "required when dynamic_resources is set")
	}
	if cfg.Node.UserAgentName == "" {
		cfg.Node.UserAgentName = "weft"
	}
	clusters := b.GetStaticResources().GetClusters()
	if ac := dr.GetAdsConfig(); ac != nil {
		cfg.ADS = sourceFrom("dynamic_resources.ads_config", ac, clusters, &errs)
	}

	// Envoy's initial_fetch_timeout: 15s when unset, 0s waits forever.
	// With two sources the longer wait wins.
	var timeout time.Duration
	configSource := func(path string, cs *corev3.ConfigSource) *Source {
		if cs.GetResourceApiVersion() == corev3.ApiVersion_V2 {
			errs.add(path+".resource_api_version", "only V3 is supported")
		}
		d := DefaultInitialFetchTimeout
		if t := cs.GetInitialFetchTimeout(); t != nil {
			d = t.AsDuration()
		}
		switch {
		case d <= 0:
			timeout = -1
		case timeout >= 0:
			timeout = max(timeout, d)
		}
		switch spec := cs.GetConfigSourceSpecifier().(type) {
		case *corev3.ConfigSource_Ads:
			if dr.GetAdsConfig() == nil {
				errs.add(path+".ads", "dynamic_resources.ads_config is not set")
			}
			return cfg.ADS
		case *corev3.ConfigSource_ApiConfigSource:
			return sourceFrom(path+".api_config_source", spec.ApiConfigSource, clusters, &errs)
		case *corev3.ConfigSource_Path:
			errs.add(path+".path", "file-based config sources are not supported")
		case *corev3.ConfigSource_PathConfigSource:
			errs.add(path+".path_config_source", "file-based config sources are not supported")
		case *corev3.ConfigSource_Self:
			errs.add(path+".self", "not supported: name the management server with ads or api_config_source")
		default:
			errs.add(path, "ads or api_config_source is required")
		}
		return nil
	}
	if cs := dr.GetLdsConfig(); cs != nil {
		cfg.LDS = configSource("dynamic_resources.lds_config", cs)
	}
	if cs := dr.GetCdsConfig(); cs != nil {
		cfg.CDS = configSource("dynamic_resources.cds_config", cs)
	}
	if dr.GetLdsResourcesLocator() != "" {
		errs.add("dynamic_resources.lds_resources_locator", "xDS-TP resource locators are not supported")
	}
	if dr.GetCdsResourcesLocator() != "" {
		errs.add("dynamic_resources.cds_resources_locator", "xDS-TP resource locators are not supported")
	}
	if len(errs) > 0 {
		return nil, errs
	}
	cfg.InitialFetchTimeout = timeout
	return cfg, nil
}

// sourceFrom reads one gRPC ApiConfigSource.
func sourceFrom(path string, ac *corev3.ApiConfigSource, clusters []*clusterv3.Cluster, errs *Errors) *Source {
	src := &Source{}
	switch ac.GetApiType() {
	case corev3.ApiConfigSource_GRPC:
	case corev3.ApiConfigSource_DELTA_GRPC:
		src.Delta = true
	default:
		errs.add(path+".api_type", "%s is not supported: use GRPC or DELTA_GRPC", ac.GetApiType())
	}
	if ac.GetTransportApiVersion() == corev3.ApiVersion_V2 {
		errs.add(path+".transport_api_version", "only V3 is supported")
	}
	if len(ac.GetClusterNames()) > 0 {
		errs.add(path+".cluster_names", "not used with gRPC: name the cluster in grpc_services[0].envoy_grpc.cluster_name")
	}
	switch n := len(ac.GetGrpcServices()); {
	case n == 0:
		errs.add(path+".grpc_services", "one gRPC service is required")
		return nil
	case n > 1:
		errs.add(path+".grpc_services", "only one gRPC service is supported, not %d", n)
	}
	gs := ac.GetGrpcServices()[0]
	gp := path + ".grpc_services[0]"
	for i, h := range gs.GetInitialMetadata() {
		v := h.GetValue()
		if v == "" {
			v = string(h.GetRawValue())
		}
		if h.GetKey() == "" {
			errs.add(fmt.Sprintf("%s.initial_metadata[%d].key", gp, i), "required")
			continue
		}
		src.Metadata = append(src.Metadata, strings.ToLower(h.GetKey()), v)
	}
	switch t := gs.GetTargetSpecifier().(type) {
	case *corev3.GrpcService_EnvoyGrpc_:
		eg := t.EnvoyGrpc
		ep := gp + ".envoy_grpc"
		if eg.GetClusterName() == "" {
			errs.add(ep+".cluster_name", "required")
			return nil
		}
		src.Authority = eg.GetAuthority()
		if src.Authority == "" {
			src.Authority = eg.GetClusterName()
		}
		if m := eg.GetMaxReceiveMessageLength(); m != nil && m.GetValue() > 0 {
			src.MaxRecvMsgSize = int(min(m.GetValue(), 1<<30))
		}
		resolveCluster(ep+".cluster_name", eg.GetClusterName(), clusters, src, errs)
	case *corev3.GrpcService_GoogleGrpc_:
		gg := t.GoogleGrpc
		gp += ".google_grpc"
		if gg.GetTargetUri() == "" {
			errs.add(gp+".target_uri", "required")
		}
		src.Target = gg.GetTargetUri()
		if cc := gg.GetChannelCredentials(); cc != nil && cc.GetLocalCredentials() == nil {
			errs.add(gp+".channel_credentials", "TLS to the management server is not supported yet")
		}
		if len(gg.GetChannelCredentialsPlugin()) > 0 {
			errs.add(gp+".channel_credentials_plugin", "not supported")
		}
		if len(gg.GetCallCredentials()) > 0 {
			errs.add(gp+".call_credentials", "not supported")
		}
		if len(gg.GetCallCredentialsPlugin()) > 0 {
			errs.add(gp+".call_credentials_plugin", "not supported")
		}
	default:
		errs.add(gp, "envoy_grpc or google_grpc is required")
	}
	return src
}

// resolveCluster turns a static cluster into a gRPC target. Errors are
// reported at the referring field and name the cluster's own path.
func resolveCluster(path, name string, clusters []*clusterv3.Cluster, src *Source, errs *Errors) {
	idx := -1
	for i, c := range clusters {
		if c.GetName() == name {
			idx = i
			break
		}
	}
	if idx < 0 {
		errs.add(path, "unknown cluster %q", name)
		return
	}
	cl := clusters[idx]
	where := fmt.Sprintf("cluster %q (static_resources.clusters[%d])", name, idx)
	typ := clusterv3.Cluster_STATIC
	switch t := cl.GetClusterDiscoveryType().(type) {
	case *clusterv3.Cluster_Type:
		typ = t.Type
	case *clusterv3.Cluster_ClusterType:
		errs.add(path, "%s has a custom cluster_type; use STATIC, STRICT_DNS or LOGICAL_DNS", where)
		return
	}
	if typ != clusterv3.Cluster_STATIC && typ != clusterv3.Cluster_STRICT_DNS && typ != clusterv3.Cluster_LOGICAL_DNS {
		errs.add(path, "%s is %s; use STATIC, STRICT_DNS or LOGICAL_DNS", where, typ)
		return
	}
	if ts := cl.GetTransportSocket(); ts != nil && ts.GetName() != rawBufferName &&
		ts.GetTypedConfig().GetTypeUrl() != rawBufferURL {
		errs.add(path, "%s has a transport_socket: TLS to the management server is not supported yet", where)
		return
	}
	var addr *corev3.Address
	for _, le := range cl.GetLoadAssignment().GetEndpoints() {
		for _, lb := range le.GetLbEndpoints() {
			if a := lb.GetEndpoint().GetAddress(); a != nil {
				addr = a
				break
			}
		}
		if addr != nil {
			break
		}
	}
	if addr == nil {
		errs.add(path, "%s has no endpoint address", where)
		return
	}
	switch {
	case addr.GetPipe() != nil:
		if addr.GetPipe().GetPath() == "" {
			errs.add(path, "%s: the pipe has no path", where)
			return
		}
		src.Target = "unix://" + addr.GetPipe().GetPath()
		if !strings.HasPrefix(addr.GetPipe().GetPath(), "/") {
			src.Target = "unix:" + addr.GetPipe().GetPath()
		}
	case addr.GetSocketAddress() != nil:
		sa := addr.GetSocketAddress()
		switch {
		case sa.GetAddress() == "":
			errs.add(path, "%s: the endpoint address is empty", where)
			return
		case sa.GetProtocol() != corev3.SocketAddress_TCP:
			errs.add(path, "%s: the endpoint protocol must be TCP", where)
			return
		case sa.GetPortValue() == 0 || sa.GetPortValue() > 65535:
			errs.add(path, "%s: the endpoint needs a port_value in 1-65535", where)
			return
		}
		hp := net.JoinHostPort(sa.GetAddress(), strconv.FormatUint(uint64(sa.GetPortValue()), 10))
		if typ == clusterv3.Cluster_STATIC {
			if net.ParseIP(sa.GetAddress()) == nil {
				errs.add(path, "%s is STATIC but its endpoint %q is not an IP address", where, sa.GetAddress())
				return
			}
			src.Target = hp
		} else {
			src.Target = "dns:///" + hp
		}
	default:
		errs.add(path, "%s: the endpoint must be a socket_address or a pipe", where)
		return
	}
	if t := cl.GetConnectTimeout(); t != nil && t.AsDuration() > 0 {
		src.ConnectTimeout = t.AsDuration()
	}
	if ka := http2Keepalive(cl); ka != nil {
		if d := ka.GetInterval().AsDuration(); d > 0 {
			src.Keepalive.Time = d
		}
		if d := ka.GetTimeout().AsDuration(); d > 0 {
			src.Keepalive.Timeout = d
		}
	}
}

// http2Keepalive finds the HTTP/2 connection_keepalive of a cluster, in
// typed_extension_protocol_options or the deprecated field.
func http2Keepalive(cl *clusterv3.Cluster) *corev3.KeepaliveSettings {
	if a := cl.GetTypedExtensionProtocolOptions()[httpProtocolOptionsName]; a != nil {
		o := &httpv3.HttpProtocolOptions{}
		if a.UnmarshalTo(o) == nil {
			for _, h2 := range []*corev3.Http2ProtocolOptions{
				o.GetExplicitHttpConfig().GetHttp2ProtocolOptions(),
				o.GetUseDownstreamProtocolConfig().GetHttp2ProtocolOptions(),
				o.GetAutoConfig().GetHttp2ProtocolOptions(),
			} {
				if ka := h2.GetConnectionKeepalive(); ka != nil {
					return ka
				}
			}
		}
	}
	return cl.GetHttp2ProtocolOptions().GetConnectionKeepalive() //nolint:staticcheck // still honoured by Envoy
}
