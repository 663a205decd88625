package controlplane

import (
	"fmt"
	"net"
)

// SidecarBootstrap is the bootstrap of a sidecar that takes all its
// configuration from the xDS server at xdsAddr (this control plane or any
// other) over ADS as node nodeID: the form examples/control-plane/
// sidecar.yaml shows, for programs that start sidecars (the demo, tests).
// adminPort 0 picks a free port; delta selects incremental xDS.
func SidecarBootstrap(nodeID, xdsAddr string, adminPort int, delta bool) (string, error) {
	host, port, err := net.SplitHostPort(xdsAddr)
	if err != nil {
		return "", fmt.Errorf("xDS address %q: %w", xdsAddr, err)
	}
	api := "GRPC"
	if delta {
		api = "DELTA_GRPC"
	}
	return fmt.Sprintf(`# %s: everything comes from the xDS server (ADS).
node: {id: %q, cluster: weft}
admin: {address: {socket_address: {address: 127.0.0.1, port_value: %d}}}
dynamic_resources:
  ads_config: {api_type: %s, transport_api_version: V3, grpc_services: [{envoy_grpc: {cluster_name: xds}}]}
  lds_config: {ads: {}, resource_api_version: V3}
  cds_config: {ads: {}, resource_api_version: V3}
static_resources:
  clusters:
  - name: xds
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {http2_protocol_options: {}}
    load_assignment:
      cluster_name: xds
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: %q, port_value: %s}}}}]}]
`, nodeID, nodeID, adminPort, api, host, port), nil
}
