package xds

import (
	"fmt"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"
)

// typeOrder is the order in which types are requested on a new stream and
// listed by Status: Envoy's ADS order, so that a server which answers in
// request order sends clusters and their endpoints before the listeners and
// routes that use them.
var typeOrder = [...]string{
	resource.ClusterType,
	resource.EndpointType,
	resource.ListenerType,
	resource.RouteType,
	resource.SecretType,
}

// wrappedResourceURL is the type of an SotW resource the server wrapped to
// carry a TTL or to send a heartbeat.
const wrappedResourceURL = "type.googleapis.com/envoy.service.discovery.v3.Resource"

// kind describes one of the five resource types the client handles.
type kind struct {
	url   string
	label string // used in errors: `cluster "x": ...`
	// wildcard types (LDS, CDS) fetch everything the server has; the others
	// fetch the names Applier.Wants returns.
	wildcard bool
	newMsg   func() proto.Message
	name     func(proto.Message) string
}

// kindOf returns the description of a type URL and false for a type the
// client does not handle.
func kindOf(url string) (kind, bool) {
	switch url {
	case resource.ListenerType:
		return kind{url, "listener", true,
			func() proto.Message { return &listenerv3.Listener{} },
			func(m proto.Message) string { return m.(*listenerv3.Listener).GetName() }}, true
	case resource.ClusterType:
		return kind{url, "cluster", true,
			func() proto.Message { return &clusterv3.Cluster{} },
			func(m proto.Message) string { return m.(*clusterv3.Cluster).GetName() }}, true
	case resource.RouteType:
		return kind{url, "route configuration", false,
			func() proto.Message { return &routev3.RouteConfiguration{} },
			func(m proto.Message) string { return m.(*routev3.RouteConfiguration).GetName() }}, true
	case resource.EndpointType:
		return kind{url, "cluster load assignment", false,
			func() proto.Message { return &endpointv3.ClusterLoadAssignment{} },
			func(m proto.Message) string { return m.(*endpointv3.ClusterLoadAssignment).GetClusterName() }}, true
	case resource.SecretType:
		return kind{url, "secret", false,
			func() proto.Message { return &tlsv3.Secret{} },
			func(m proto.Message) string { return m.(*tlsv3.Secret).GetName() }}, true
	}
	return kind{}, false
}

// validator is implemented by every generated Envoy message
// (protoc-gen-validate).
type validator interface{ ValidateAll() error }

// decode unmarshals one resource, checks its type and validates it. i is
// its position in the response, for resources without a usable name.
func (k kind) decode(i int, a *anypb.Any) (proto.Message, string, error) {
	if a.GetTypeUrl() != k.url {
		return nil, "", fmt.Errorf("resource %d: type %q in a response for %s", i, a.GetTypeUrl(), k.url)
	}
	m := k.newMsg()
	if err := proto.Unmarshal(a.GetValue(), m); err != nil {
		return nil, "", fmt.Errorf("resource %d: %s: %w", i, k.label, err)
	}
	name := k.name(m)
	if name == "" {
		return nil, "", fmt.Errorf("resource %d: %s has no name", i, k.label)
	}
	return m, name, nil
}

// validate runs the protoc-gen-validate rules; Envoy rejects a resource
// that breaks them, and so must we before the proxy sees it.
func (k kind) validate(name string, m proto.Message) error {
	if v, ok := m.(validator); ok {
		if err := v.ValidateAll(); err != nil {
			return fmt.Errorf("%s %q: %w", k.label, name, err)
		}
	}
	return nil
}

// update is one decoded, validated response of one type.
type update struct {
	version   string // SotW version_info or delta system_version_info
	delta     bool
	resources map[string]proto.Message
	versions  map[string]string // delta: per-resource versions
	removed   []string          // delta: removed_resources
}

// decodeSotw decodes a state-of-the-world response. For a non-wildcard type
// only the wanted names are kept: a server may send more than was asked
// (go-control-plane does, after an empty subscription) and the proxy must
// not act on resources nothing refers to.
func decodeSotw(k kind, resp *discoveryv3.DiscoveryResponse, wanted map[string]bool) (*update, error) {
	u := &update{version: resp.GetVersionInfo(), resources: map[string]proto.Message{}}
	for i, a := range resp.GetResources() {
		if a.GetTypeUrl() == wrappedResourceURL {
			w := &discoveryv3.Resource{}
			if err := proto.Unmarshal(a.GetValue(), w); err != nil {
				return nil, fmt.Errorf("resource %d: %w", i, err)
			}
			if w.GetResource() == nil {
				// A TTL heartbeat: the resource is unchanged.
				continue
			}
			a = w.GetResource()
		}
		m, name, err := k.decode(i, a)
		if err != nil {
			return nil, err
		}
		if _, dup := u.resources[name]; dup {
			return nil, fmt.Errorf("duplicate %s %q", k.label, name)
		}
		if !k.wildcard && !wanted[name] {
			continue
		}
		if err := k.validate(name, m); err != nil {
			return nil, err
		}
		u.resources[name] = m
	}
	return u, nil
}

// decodeDelta decodes an incremental response.
func decodeDelta(k kind, resp *discoveryv3.DeltaDiscoveryResponse, wanted map[string]bool) (*update, error) {
	u := &update{
		version:   resp.GetSystemVersionInfo(),
		delta:     true,
		resources: map[string]proto.Message{},
		versions:  map[string]string{},
	}
	for i, r := range resp.GetResources() {
		if r.GetResource() == nil {
			continue // heartbeat
		}
		m, name, err := k.decode(i, r.GetResource())
		if err != nil {
			return nil, err
		}
		rname := r.GetName()
		if rname == "" {
			rname = r.GetResourceName().GetName()
		}
		if rname != "" && rname != name {
			return nil, fmt.Errorf("resource %d: named %q in the response but %s %q in its body", i, rname, k.label, name)
		}
		if _, dup := u.resources[name]; dup {
			return nil, fmt.Errorf("duplicate %s %q", k.label, name)
		}
		if !k.wildcard && !wanted[name] {
			continue
		}
		if err := k.validate(name, m); err != nil {
			return nil, err
		}
		u.resources[name] = m
		u.versions[name] = r.GetVersion()
	}
	seen := map[string]bool{}
	addRemoved := func(n string) {
		if n == "" || seen[n] {
			return
		}
		seen[n] = true
		u.removed = append(u.removed, n)
	}
	for _, n := range resp.GetRemovedResources() {
		addRemoved(n)
	}
	for _, rn := range resp.GetRemovedResourceNames() {
		addRemoved(rn.GetName())
	}
	for _, n := range u.removed {
		if _, both := u.resources[n]; both {
			return nil, fmt.Errorf("%s %q is both updated and removed", k.label, n)
		}
	}
	return u, nil
}

// merge folds a newer update of the same type into u, for an update held
// while clusters warm: a newer SotW response replaces the older one, a
// newer delta adds to it.
func (u *update) merge(n *update) *update {
	if !n.delta {
		return n
	}
	out := &update{
		version: n.version, delta: true,
		resources: map[string]proto.Message{}, versions: map[string]string{},
	}
	removed := map[string]bool{}
	for _, r := range u.removed {
		removed[r] = true
	}
	for name, m := range u.resources {
		out.resources[name] = m
		out.versions[name] = u.versions[name]
	}
	for _, r := range n.removed {
		delete(out.resources, r)
		delete(out.versions, r)
		removed[r] = true
	}
	for name, m := range n.resources {
		out.resources[name] = m
		out.versions[name] = n.versions[name]
		delete(removed, name)
	}
	for r := range removed {
		out.removed = append(out.removed, r)
	}
	return out
}
