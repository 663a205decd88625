package main

import (
	"fmt"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/internal/stats"
	"github.com/weftmesh/weft/internal/upstream"
)

// edsName is the benchmark cluster.
const edsName = "outbound|8080||big.ns-0.svc.cluster.local"

// localities is how many zones the endpoints are spread over.
const localities = 10

// edsCluster is an EDS cluster over ADS with the given policy.
func edsCluster(policy clusterv3.Cluster_LbPolicy) *clusterv3.Cluster {
	return &clusterv3.Cluster{
		Name:                 edsName,
		ClusterDiscoveryType: &clusterv3.Cluster_Type{Type: clusterv3.Cluster_EDS},
		EdsClusterConfig: &clusterv3.Cluster_EdsClusterConfig{
			EdsConfig: &corev3.ConfigSource{ConfigSourceSpecifier: &corev3.ConfigSource_Ads{Ads: &corev3.AggregatedConfigSource{}}},
		},
		ConnectTimeout: durationpb.New(time.Second),
		LbPolicy:       policy,
	}
}

// epAddr is the address of endpoint j; indexes past the cluster size are
// the replacements a changed push brings in.
func epAddr(j int) string { return fmt.Sprintf("10.%d.%d.%d", 128+j>>16, j>>8&255, j&255) }

// claOf returns an assignment of n endpoints spread over the localities;
// endpoint j's address is epAddr(ids[j]) (ids nil: j). With meta each
// endpoint carries Istio-style metadata (workload and TLS mode).
func claOf(n int, ids []int, meta bool) *endpointv3.ClusterLoadAssignment {
	cla := &endpointv3.ClusterLoadAssignment{ClusterName: edsName}
	per := (n + localities - 1) / localities
	for z := 0; z < localities; z++ {
		loc := &endpointv3.LocalityLbEndpoints{
			Locality: &corev3.Locality{Region: "region-1", Zone: fmt.Sprintf("zone-%d", z)},
		}
		for j := z * per; j < min(n, (z+1)*per); j++ {
			id := j
			if ids != nil {
				id = ids[j]
			}
			le := &endpointv3.LbEndpoint{
				HostIdentifier: &endpointv3.LbEndpoint_Endpoint{Endpoint: &endpointv3.Endpoint{
					Address: &corev3.Address{Address: &corev3.Address_SocketAddress{SocketAddress: &corev3.SocketAddress{
						Address:       epAddr(id),
						PortSpecifier: &corev3.SocketAddress_PortValue{PortValue: 8080},
					}}},
				}},
				HealthStatus:        corev3.HealthStatus_HEALTHY,
				LoadBalancingWeight: wrapperspb.UInt32(1),
			}
			if meta {
				le.Metadata = &corev3.Metadata{FilterMetadata: map[string]*structpb.Struct{
					"istio": {Fields: map[string]*structpb.Value{
						"workload": structpb.NewStringValue(fmt.Sprintf("big-v1;ns-0;big;v1;cluster-%d", z)),
					}},
					"envoy.transport_socket_match": {Fields: map[string]*structpb.Value{
						"tlsMode": structpb.NewStringValue("istio"),
					}},
				}}
			}
			loc.LbEndpoints = append(loc.LbEndpoints, le)
		}
		cla.Endpoints = append(cla.Endpoints, loc)
	}
	return cla
}

// edsVariants are the assignments of one run: base has endpoints 0..n-1,
// one replaces endpoint 0, tenth replaces every tenth endpoint (10%), each
// with a new address.
type edsVariants struct {
	n                int
	base, one, tenth *endpointv3.ClusterLoadAssignment
	wire             []byte // base, encoded
}

func newEDSVariants(n int, meta bool) (*edsVariants, error) {
	ids := make([]int, n)
	for j := range ids {
		ids[j] = j
	}
	v := &edsVariants{n: n, base: claOf(n, nil, meta)}
	ids[0] = n
	v.one = claOf(n, ids, meta)
	ids[0] = 0
	for j := 5; j < n; j += 10 {
		ids[j] = n + j
	}
	v.tenth = claOf(n, ids, meta)
	var err error
	v.wire, err = proto.MarshalOptions{Deterministic: true}.Marshal(v.base)
	return v, err
}

// decodeCLA decodes and validates an assignment as the xDS client does
// before it calls UpdateEndpoints.
func decodeCLA(b []byte) (*endpointv3.ClusterLoadAssignment, error) {
	cla := &endpointv3.ClusterLoadAssignment{}
	if err := proto.Unmarshal(b, cla); err != nil {
		return nil, err
	}
	return cla, cla.ValidateAll()
}

// newEDSManager returns a manager exporting to a stats store (as weft
// wires it) with one empty EDS cluster.
func newEDSManager(policy clusterv3.Cluster_LbPolicy) (*upstream.Manager, error) {
	m := upstream.NewManager(upstream.Options{Stats: stats.NewStore()})
	if err := m.Update([]*clusterv3.Cluster{edsCluster(policy)}); err != nil {
		m.Close()
		return nil, err
	}
	return m, nil
}

// timedPush runs one UpdateEndpoints and checks the cluster took it.
func timedPush(m *upstream.Manager, cla *endpointv3.ClusterLoadAssignment, n int) (time.Duration, error) {
	t0 := time.Now()
	err := m.UpdateEndpoints(edsName, cla)
	d := time.Since(t0)
	if err != nil {
		return d, err
	}
	if got := len(m.Get(edsName).Hosts()); got != n {
		return d, fmt.Errorf("cluster has %d hosts after the push, want %d", got, n)
	}
	return d, nil
}

// pickLatency times every Pick separately.
func pickLatency(m *upstream.Manager, n int) (dist, error) {
	c, ok := m.Cluster(edsName)
	if !ok {
		return dist{}, fmt.Errorf("cluster %q missing", edsName)
	}
	ns := make([]int64, n)
	for i := range ns {
		t0 := time.Now()
		h := c.Pick(nil)
		ns[i] = int64(time.Since(t0))
		if h == nil {
			return dist{}, fmt.Errorf("pick %d: no host", i)
		}
	}
	return summarize(ns), nil
}

// pickThroughput is the mean time per Pick with no clock read per call.
func pickThroughput(m *upstream.Manager, n int) time.Duration {
	c, _ := m.Cluster(edsName)
	t0 := time.Now()
	for range n {
		_ = c.Pick(nil)
	}
	return time.Since(t0) / time.Duration(n)
}
