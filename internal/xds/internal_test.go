package xds

import (
	"slices"
	"strings"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"
)

// TestOutboxKeepsWhatWasReplaced: a newer entry for a type replaces the
// older one without losing its ACK, NACK or initial versions.
func TestOutboxKeepsWhatWasReplaced(t *testing.T) {
	o := newOutbox()
	nack := nackStatus("bad")
	o.put(&pending{typeURL: "a", nonce: "1", errDetail: nack, initial: map[string]string{"x": "1"}})
	o.put(&pending{typeURL: "b", nonce: "2"})
	o.put(&pending{typeURL: "a", names: []string{"n"}}) // subscription change, no nonce
	got := o.take()
	if len(got) != 2 || got[0].typeURL != "a" || got[1].typeURL != "b" {
		t.Fatalf("took %v, want a then b", got)
	}
	a := got[0]
	if a.nonce != "1" || a.errDetail != nack || a.initial["x"] != "1" || !slices.Equal(a.names, []string{"n"}) {
		t.Errorf("merged entry = %+v", a)
	}
	o.put(&pending{typeURL: "a", nonce: "3", errDetail: nack})
	o.put(&pending{typeURL: "a", nonce: "3"}) // same response, later subscription
	if got := o.take(); got[0].errDetail != nack {
		t.Error("NACK lost when replaced by a request for the same nonce")
	}
	o.put(&pending{typeURL: "a", nonce: "3", errDetail: nack})
	o.put(&pending{typeURL: "a", nonce: "4"}) // a newer response was ACKed
	if got := o.take(); got[0].errDetail != nil || got[0].nonce != "4" {
		t.Errorf("entry = %+v, want the ACK of 4", got[0])
	}
	if got := o.take(); len(got) != 0 {
		t.Errorf("second take = %v", got)
	}
}

// TestConvRequest: what each pending entry becomes on the wire.
func TestConvRequest(t *testing.T) {
	t.Run("sotw", func(t *testing.T) {
		cv := &conv{started: map[string]bool{}, sent: map[string][]string{}}
		if r := cv.request(&pending{typeURL: resource.EndpointType}); r != nil {
			t.Fatalf("empty first EDS request %v: it would subscribe to everything", r)
		}
		r := cv.request(&pending{typeURL: resource.ListenerType, wildcard: true, version: "v1", nonce: "n"}).(*discoveryv3.DiscoveryRequest)
		if r.ResourceNames != nil || r.VersionInfo != "v1" || r.ResponseNonce != "n" {
			t.Errorf("wildcard request = %v", r)
		}
		r = cv.request(&pending{typeURL: resource.EndpointType, names: []string{"a"}}).(*discoveryv3.DiscoveryRequest)
		if !slices.Equal(r.ResourceNames, []string{"a"}) {
			t.Errorf("EDS request = %v", r)
		}
		if r := cv.request(&pending{typeURL: resource.EndpointType}); r == nil {
			t.Error("unsubscribing from every name sent nothing")
		}
	})
	t.Run("delta", func(t *testing.T) {
		cv := &conv{delta: true, started: map[string]bool{}, sent: map[string][]string{}}
		if r := cv.request(&pending{typeURL: resource.EndpointType}); r != nil {
			t.Fatalf("empty first EDS request %v: it would be a legacy wildcard", r)
		}
		r := cv.request(&pending{typeURL: resource.ClusterType, wildcard: true, initial: map[string]string{"c": "1"}}).(*discoveryv3.DeltaDiscoveryRequest)
		if !slices.Equal(r.ResourceNamesSubscribe, []string{"*"}) || r.InitialResourceVersions["c"] != "1" {
			t.Errorf("wildcard request = %v", r)
		}
		if r := cv.request(&pending{typeURL: resource.ClusterType, wildcard: true}); r != nil {
			t.Errorf("wildcard request with nothing to say = %v", r)
		}
		cv.request(&pending{typeURL: resource.EndpointType, names: []string{"a", "b"}})
		r = cv.request(&pending{typeURL: resource.EndpointType, names: []string{"b", "c"}, nonce: "7"}).(*discoveryv3.DeltaDiscoveryRequest)
		if !slices.Equal(r.ResourceNamesSubscribe, []string{"c"}) || !slices.Equal(r.ResourceNamesUnsubscribe, []string{"a"}) || r.ResponseNonce != "7" {
			t.Errorf("diff request = %v", r)
		}
		if r := cv.request(&pending{typeURL: resource.EndpointType, names: []string{"b", "c"}}); r != nil {
			t.Errorf("unchanged subscription sent %v", r)
		}
	})
}

func TestBackoffDelay(t *testing.T) {
	base, maxDelay := 100*time.Millisecond, time.Second
	for attempt := range 12 {
		step := min(base<<attempt, maxDelay)
		for range 50 {
			d := backoffDelay(base, maxDelay, attempt)
			if d < step/2 || d > step {
				t.Fatalf("attempt %d: %v outside [%v, %v]", attempt, d, step/2, step)
			}
		}
	}
}

func anyOf(t *testing.T, m proto.Message) *anypb.Any {
	t.Helper()
	a, err := anypb.New(m)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestDecodeSotw(t *testing.T) {
	k, _ := kindOf(resource.ClusterType)
	good := &clusterv3.Cluster{Name: "a", ConnectTimeout: durationpb.New(time.Second)}
	wrapped := anyOf(t, &discoveryv3.Resource{Name: "b", Resource: anyOf(t, &clusterv3.Cluster{Name: "b"})})
	heartbeat := anyOf(t, &discoveryv3.Resource{Name: "c"})
	u, err := decodeSotw(k, &discoveryv3.DiscoveryResponse{VersionInfo: "v", Nonce: "n",
		Resources: []*anypb.Any{anyOf(t, good), wrapped, heartbeat}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(u.resources) != 2 || u.resources["a"] == nil || u.resources["b"] == nil || u.version != "v" {
		t.Errorf("update = %+v", u)
	}

	bad := []struct {
		name string
		res  []*anypb.Any
		want string
	}{
		{"duplicate", []*anypb.Any{anyOf(t, good), anyOf(t, good)}, `duplicate cluster "a"`},
		{"wrong type", []*anypb.Any{anyOf(t, &listenerv3.Listener{Name: "l"})}, "resource 0: type"},
		{"no name", []*anypb.Any{anyOf(t, &clusterv3.Cluster{})}, "resource 0: cluster has no name"},
		{"invalid", []*anypb.Any{anyOf(t, &clusterv3.Cluster{Name: "x", ConnectTimeout: durationpb.New(-time.Second)})}, `cluster "x": invalid Cluster.ConnectTimeout`},
		{"garbage", []*anypb.Any{{TypeUrl: resource.ClusterType, Value: []byte{0xff, 0xff}}}, "resource 0: cluster:"},
	}
	for _, tc := range bad {
		_, err := decodeSotw(k, &discoveryv3.DiscoveryResponse{Resources: tc.res}, nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}

	// Non-wildcard types keep only the wanted names.
	ek, _ := kindOf(resource.EndpointType)
	u, err = decodeSotw(ek, &discoveryv3.DiscoveryResponse{Resources: []*anypb.Any{
		anyOf(t, &endpointv3.ClusterLoadAssignment{ClusterName: "x"}),
		anyOf(t, &endpointv3.ClusterLoadAssignment{ClusterName: "y"}),
	}}, map[string]bool{"x": true})
	if err != nil || len(u.resources) != 1 || u.resources["x"] == nil {
		t.Errorf("EDS update = %+v, %v; want only x", u, err)
	}
}

func TestDecodeDelta(t *testing.T) {
	k, _ := kindOf(resource.ClusterType)
	c := &clusterv3.Cluster{Name: "a", ConnectTimeout: durationpb.New(time.Second)}
	u, err := decodeDelta(k, &discoveryv3.DeltaDiscoveryResponse{
		SystemVersionInfo: "s", Nonce: "n",
		Resources:            []*discoveryv3.Resource{{Name: "a", Version: "1", Resource: anyOf(t, c)}},
		RemovedResources:     []string{"b"},
		RemovedResourceNames: []*discoveryv3.ResourceName{{Name: "b"}, {Name: "c"}},
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if u.versions["a"] != "1" || !slices.Equal(u.removed, []string{"b", "c"}) || u.version != "s" {
		t.Errorf("update = %+v", u)
	}
	for name, resp := range map[string]*discoveryv3.DeltaDiscoveryResponse{
		"mismatched name":     {Resources: []*discoveryv3.Resource{{Name: "z", Resource: anyOf(t, c)}}},
		"updated and removed": {Resources: []*discoveryv3.Resource{{Name: "a", Resource: anyOf(t, c)}}, RemovedResources: []string{"a"}},
	} {
		if _, err := decodeDelta(k, resp, nil); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestUpdateMerge: a held delta update accumulates newer ones; a SotW one
// is replaced.
func TestUpdateMerge(t *testing.T) {
	a, b := &clusterv3.Cluster{Name: "a"}, &clusterv3.Cluster{Name: "b"}
	old := &update{delta: true, version: "1", resources: map[string]proto.Message{"a": a}, versions: map[string]string{"a": "1"}, removed: []string{"b"}}
	n := &update{delta: true, version: "2", resources: map[string]proto.Message{"b": b}, versions: map[string]string{"b": "2"}, removed: []string{"a"}}
	m := old.merge(n)
	if m.version != "2" || len(m.resources) != 1 || m.resources["b"] != b || !slices.Equal(m.removed, []string{"a"}) {
		t.Errorf("merged = %+v", m)
	}
	s := &update{version: "3"}
	if old.merge(s) != s {
		t.Error("a SotW update did not replace the held one")
	}
}
