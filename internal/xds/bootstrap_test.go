package xds_test

import (
	"errors"
	"slices"
	"testing"
	"time"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/internal/xds"
)

// parseBootstrap decodes YAML the way internal/config does.
func parseBootstrap(data []byte) (*bootstrapv3.Bootstrap, error) {
	js, err := yaml.YAMLToJSON(data)
	if err != nil {
		return nil, err
	}
	b := &bootstrapv3.Bootstrap{}
	if err := protojson.Unmarshal(js, b); err != nil {
		return nil, err
	}
	return b, nil
}

const xdsCluster = `
static_resources:
  clusters:
  - name: other
    type: STATIC
    load_assignment: {cluster_name: other, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 10.0.0.1, port_value: 80}}}}]}]}
  - name: xds
    type: STATIC
    connect_timeout: 2s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options:
            connection_keepalive: {interval: 30s, timeout: 5s}
    load_assignment:
      cluster_name: xds
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 18000}}}}]}]
`

const node = `
node: {id: n1, cluster: c}
`

func adsBootstrap(apiType string) string {
	return node + xdsCluster + `
dynamic_resources:
  ads_config:
    api_type: ` + apiType + `
    transport_api_version: V3
    grpc_services: [{envoy_grpc: {cluster_name: xds}}]
  lds_config: {ads: {}, resource_api_version: V3}
  cds_config: {ads: {}, resource_api_version: V3}
`
}

func TestFromBootstrap(t *testing.T) {
	t.Run("no dynamic_resources", func(t *testing.T) {
		b, err := parseBootstrap([]byte(node + xdsCluster))
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := xds.FromBootstrap(b)
		if cfg != nil || err != nil {
			t.Fatalf("got %v, %v; want nil, nil", cfg, err)
		}
	})

	ok := []struct {
		name  string
		yaml  string
		check func(t *testing.T, c *xds.Config)
	}{
		{"ads over a static cluster", adsBootstrap("GRPC"), func(t *testing.T, c *xds.Config) {
			if c.ADS == nil || c.LDS != c.ADS || c.CDS != c.ADS {
				t.Fatalf("sources ADS=%v LDS=%v CDS=%v, want LDS and CDS on ADS", c.ADS, c.LDS, c.CDS)
			}
			s := c.ADS
			if s.Target != "127.0.0.1:18000" || s.Delta || s.Authority != "xds" || s.ConnectTimeout != 2*time.Second ||
				s.Keepalive.Time != 30*time.Second || s.Keepalive.Timeout != 5*time.Second {
				t.Errorf("source = %+v", s)
			}
			if c.Node.GetId() != "n1" || c.Node.GetUserAgentName() != "weft" {
				t.Errorf("node = %v", c.Node)
			}
			if c.InitialFetchTimeout != 15*time.Second {
				t.Errorf("InitialFetchTimeout = %v", c.InitialFetchTimeout)
			}
		}},
		{"delta", adsBootstrap("DELTA_GRPC"), func(t *testing.T, c *xds.Config) {
			if !c.ADS.Delta {
				t.Error("not delta")
			}
		}},
		{"per-type sources", node + xdsCluster + `
dynamic_resources:
  lds_config:
    initial_fetch_timeout: 30s
    api_config_source: {api_type: GRPC, grpc_services: [{envoy_grpc: {cluster_name: xds, authority: xds.mesh}}]}
  cds_config:
    api_config_source:
      api_type: DELTA_GRPC
      grpc_services:
      - google_grpc: {target_uri: "dns:///cp.example:443", stat_prefix: cp}
        initial_metadata: [{key: Authorization, value: "Bearer t"}]
`, func(t *testing.T, c *xds.Config) {
			if c.ADS != nil || c.LDS == nil || c.CDS == nil || c.LDS == c.CDS {
				t.Fatalf("sources ADS=%v LDS=%v CDS=%v", c.ADS, c.LDS, c.CDS)
			}
			if c.LDS.Target != "127.0.0.1:18000" || c.LDS.Delta || c.LDS.Authority != "xds.mesh" {
				t.Errorf("LDS = %+v", c.LDS)
			}
			if c.CDS.Target != "dns:///cp.example:443" || !c.CDS.Delta ||
				!slices.Equal(c.CDS.Metadata, []string{"authorization", "Bearer t"}) {
				t.Errorf("CDS = %+v", c.CDS)
			}
			if c.InitialFetchTimeout != 30*time.Second {
				t.Errorf("InitialFetchTimeout = %v, want the longer 30s", c.InitialFetchTimeout)
			}
		}},
		{"dns cluster and no timeout", node + `
static_resources:
  clusters:
  - name: xds
    type: LOGICAL_DNS
    load_assignment: {cluster_name: xds, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: cp.example, port_value: 18000}}}}]}]}
dynamic_resources:
  ads_config: {api_type: GRPC, grpc_services: [{envoy_grpc: {cluster_name: xds}}]}
  cds_config: {ads: {}, initial_fetch_timeout: 0s}
`, func(t *testing.T, c *xds.Config) {
			if c.ADS.Target != "dns:///cp.example:18000" || c.CDS != c.ADS || c.LDS != nil {
				t.Errorf("ADS = %+v, CDS = %v, LDS = %v", c.ADS, c.CDS, c.LDS)
			}
			if c.InitialFetchTimeout >= 0 {
				t.Errorf("InitialFetchTimeout = %v, want negative (wait forever)", c.InitialFetchTimeout)
			}
		}},
		{"unix socket", node + `
static_resources:
  clusters:
  - name: xds
    load_assignment: {cluster_name: xds, endpoints: [{lb_endpoints: [{endpoint: {address: {pipe: {path: /run/xds.sock}}}}]}]}
dynamic_resources:
  ads_config: {api_type: GRPC, grpc_services: [{envoy_grpc: {cluster_name: xds}}]}
`, func(t *testing.T, c *xds.Config) {
			if c.ADS.Target != "unix:///run/xds.sock" || c.LDS != nil || c.CDS != nil {
				t.Errorf("config = %+v", c)
			}
		}},
	}
	for _, tc := range ok {
		t.Run(tc.name, func(t *testing.T) {
			b, err := parseBootstrap([]byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := xds.FromBootstrap(b)
			if err != nil {
				t.Fatal(err)
			}
			tc.check(t, cfg)
		})
	}

	const (
		ads  = "dynamic_resources.ads_config"
		svc0 = ads + ".grpc_services[0]"
	)
	bad := []struct {
		name string
		yaml string
		want []string
	}{
		{"no node id", xdsCluster + `
dynamic_resources: {ads_config: {api_type: GRPC, grpc_services: [{envoy_grpc: {cluster_name: xds}}]}}`,
			[]string{"node.id: required when dynamic_resources is set"}},
		{"unknown cluster", node + `
dynamic_resources: {ads_config: {api_type: GRPC, grpc_services: [{envoy_grpc: {cluster_name: x}}]}}`,
			[]string{svc0 + `.envoy_grpc.cluster_name: unknown cluster "x"`}},
		{"rest", node + xdsCluster + `
dynamic_resources: {ads_config: {api_type: REST, cluster_names: [xds], grpc_services: [{envoy_grpc: {cluster_name: xds}}]}}`,
			[]string{ads + ".api_type: REST is not supported: use GRPC or DELTA_GRPC",
				ads + ".cluster_names: not used with gRPC: name the cluster in grpc_services[0].envoy_grpc.cluster_name"}},
		{"aggregated api type and v2", node + xdsCluster + `
dynamic_resources: {ads_config: {api_type: AGGREGATED_GRPC, transport_api_version: V2, grpc_services: [{envoy_grpc: {cluster_name: xds}}]}}`,
			[]string{ads + ".api_type: AGGREGATED_GRPC is not supported: use GRPC or DELTA_GRPC",
				ads + ".transport_api_version: only V3 is supported"}},
		{"no grpc service", node + `
dynamic_resources: {ads_config: {api_type: GRPC}}`,
			[]string{ads + ".grpc_services: one gRPC service is required"}},
		{"two grpc services", node + xdsCluster + `
dynamic_resources: {ads_config: {api_type: GRPC, grpc_services: [{envoy_grpc: {cluster_name: xds}}, {envoy_grpc: {cluster_name: xds}}]}}`,
			[]string{ads + ".grpc_services: only one gRPC service is supported, not 2"}},
		{"ads without ads_config", node + `
dynamic_resources: {lds_config: {ads: {}}, cds_config: {path_config_source: {path: /etc/cds.yaml}}}`,
			[]string{"dynamic_resources.lds_config.ads: dynamic_resources.ads_config is not set",
				"dynamic_resources.cds_config.path_config_source: file-based config sources are not supported"}},
		{"path, self and missing specifier", node + `
dynamic_resources: {lds_config: {path: /etc/lds.yaml}, cds_config: {self: {}}}`,
			[]string{"dynamic_resources.lds_config.path: file-based config sources are not supported",
				"dynamic_resources.cds_config.self: not supported: name the management server with ads or api_config_source"}},
		{"empty config source", node + `
dynamic_resources: {lds_config: {initial_fetch_timeout: 1s}}`,
			[]string{"dynamic_resources.lds_config: ads or api_config_source is required"}},
		{"bad per-type source", node + `
dynamic_resources: {cds_config: {api_config_source: {api_type: REST, grpc_services: [{envoy_grpc: {cluster_name: nope}}]}}}`,
			[]string{"dynamic_resources.cds_config.api_config_source.api_type: REST is not supported: use GRPC or DELTA_GRPC",
				`dynamic_resources.cds_config.api_config_source.grpc_services[0].envoy_grpc.cluster_name: unknown cluster "nope"`}},
		{"eds cluster", node + `
static_resources: {clusters: [{name: xds, type: EDS}]}
dynamic_resources: {ads_config: {api_type: GRPC, grpc_services: [{envoy_grpc: {cluster_name: xds}}]}}`,
			[]string{svc0 + `.envoy_grpc.cluster_name: cluster "xds" (static_resources.clusters[0]) is EDS; use STATIC, STRICT_DNS or LOGICAL_DNS`}},
		{"no endpoint", node + `
static_resources: {clusters: [{name: a}, {name: xds, type: STATIC}]}
dynamic_resources: {ads_config: {api_type: GRPC, grpc_services: [{envoy_grpc: {cluster_name: xds}}]}}`,
			[]string{svc0 + `.envoy_grpc.cluster_name: cluster "xds" (static_resources.clusters[1]) has no endpoint address`}},
		{"static hostname", node + `
static_resources:
  clusters:
  - name: xds
    load_assignment: {cluster_name: xds, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: cp.example, port_value: 1}}}}]}]}
dynamic_resources: {ads_config: {api_type: GRPC, grpc_services: [{envoy_grpc: {cluster_name: xds}}]}}`,
			[]string{svc0 + `.envoy_grpc.cluster_name: cluster "xds" (static_resources.clusters[0]) is STATIC but its endpoint "cp.example" is not an IP address`}},
		{"tls cluster", node + `
static_resources:
  clusters:
  - name: xds
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config: {"@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext}
    load_assignment: {cluster_name: xds, endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 1}}}}]}]}
dynamic_resources: {ads_config: {api_type: GRPC, grpc_services: [{envoy_grpc: {cluster_name: xds}}]}}`,
			[]string{svc0 + `.envoy_grpc.cluster_name: cluster "xds" (static_resources.clusters[0]) has a transport_socket: TLS to the management server is not supported yet`}},
		{"google grpc with tls", node + `
dynamic_resources:
  ads_config:
    api_type: GRPC
    grpc_services: [{google_grpc: {stat_prefix: x, channel_credentials: {ssl_credentials: {}}}}]`,
			[]string{svc0 + ".google_grpc.target_uri: required",
				svc0 + ".google_grpc.channel_credentials: TLS to the management server is not supported yet"}},
		{"resource locators", node + `
dynamic_resources: {lds_resources_locator: "xdstp://a/b", cds_resources_locator: "xdstp://a/c"}`,
			[]string{"dynamic_resources.lds_resources_locator: xDS-TP resource locators are not supported",
				"dynamic_resources.cds_resources_locator: xDS-TP resource locators are not supported"}},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			b, err := parseBootstrap([]byte(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			cfg, err := xds.FromBootstrap(b)
			if cfg != nil {
				t.Errorf("config = %+v, want nil", cfg)
			}
			var errs xds.Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error %v is not an xds.Errors", err)
			}
			var got []string
			for _, fe := range errs {
				got = append(got, fe.Error())
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("errors:\n got %q\nwant %q", got, tc.want)
			}
		})
	}
}
