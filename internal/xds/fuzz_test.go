package xds_test

import (
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/internal/xds"
)

type nopApplier struct{}

func (nopApplier) Apply(string, map[string]proto.Message, []string, []string) error { return nil }
func (nopApplier) Wants(string) []string                                            { return nil }

// FuzzFromBootstrap feeds YAML or JSON bootstraps to FromBootstrap: it must
// never panic, an accepted config must name a node and reachable sources,
// and a refusal must name field paths.
func FuzzFromBootstrap(f *testing.F) {
	f.Add([]byte(adsBootstrap("GRPC")))
	f.Add([]byte(adsBootstrap("DELTA_GRPC")))
	f.Add([]byte(node + `dynamic_resources: {lds_config: {ads: {}}}`))
	f.Add([]byte(`{"node":{"id":"n"},"dynamic_resources":{"cds_config":{"api_config_source":{"api_type":"GRPC","grpc_services":[{"google_grpc":{"target_uri":"127.0.0.1:1","stat_prefix":"x"}}]}}}}`))
	f.Add([]byte(node + `
static_resources: {clusters: [{name: xds, type: STRICT_DNS, load_assignment: {cluster_name: xds, endpoints: [{lb_endpoints: [{endpoint: {address: {pipe: {path: x}}}}]}]}}]}
dynamic_resources: {ads_config: {api_type: GRPC, grpc_services: [{envoy_grpc: {cluster_name: xds}}]}, cds_config: {ads: {}}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		b, err := parseBootstrap(data)
		if err != nil {
			return
		}
		cfg, err := xds.FromBootstrap(b)
		if err != nil {
			var errs xds.Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error %v is not a non-empty xds.Errors", err)
			}
			for _, fe := range errs {
				if fe.Path == "" {
					t.Fatalf("error without a field path: %v", fe)
				}
			}
			return
		}
		if cfg == nil {
			if b.GetDynamicResources() != nil {
				t.Fatal("nil config for a bootstrap with dynamic_resources")
			}
			return
		}
		if cfg.Node.GetId() == "" {
			t.Fatal("accepted without node.id")
		}
		for _, s := range []*xds.Source{cfg.ADS, cfg.LDS, cfg.CDS} {
			if s != nil && s.Target == "" {
				t.Fatalf("accepted a source without a target: %+v", s)
			}
		}
		// Building a client from any accepted config must be safe too.
		xds.New(cfg, nopApplier{}).Close()
	})
}
