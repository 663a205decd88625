package upstream

import (
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/internal/tlsctx"
)

// FuzzValidate feeds arbitrary Cluster protos to the config parser: it must
// return an error or a spec, never panic.
func FuzzValidate(f *testing.F) {
	for _, c := range []*clusterv3.Cluster{
		static(f, "a", []ep{{addr: "10.0.0.1:80", weight: 2, meta: map[string]map[string]any{"envoy.lb": {"v": "1"}}}},
			withHTTPCheck("/h", time.Second), withTCPCheck(time.Second), withLB(clusterv3.Cluster_RING_HASH)),
		eds("e", withLB(clusterv3.Cluster_MAGLEV)),
		static(f, "d", addrs("backend.example:80"), func(c *clusterv3.Cluster) {
			c.ClusterDiscoveryType = &clusterv3.Cluster_Type{Type: clusterv3.Cluster_STRICT_DNS}
		}),
	} {
		b, err := proto.Marshal(c)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var c clusterv3.Cluster
		if proto.Unmarshal(b, &c) != nil {
			return
		}
		_ = Validate(&c, tlsctx.Options{})
	})
}
