// Package mesh is the sidecar's mesh agent (SPEC R1, R2): the local API
// through which applications publish and subscribe to services, the
// ingress listeners that take meshed traffic for published services, the
// egress listeners applications call, and the registry client that ties
// them to the other sidecars (and to plain Dubbo applications).
package mesh

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"sort"
	"time"

	xdstypev3 "github.com/cncf/xds/go/xds/type/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/config"
)

// ExtensionName is the bootstrap extension that configures the agent.
const ExtensionName = "weft.bootstrap.mesh_agent"

// TypeURL is the type_url of its TypedStruct.
const TypeURL = "type.weftmesh.io/weft.bootstrap.mesh_agent.v1.MeshAgent"

// Config is the agent's configuration (the TypedStruct value).
type Config struct {
	// SDKAddress is where the local SDK API listens (loopback only).
	SDKAddress string `json:"sdk_address"`
	// AdvertiseIP is the address other sidecars dial for this sidecar's
	// ingress listeners.
	AdvertiseIP string `json:"advertise_ip"`
	// Registry names the backend.
	Registry RegistryConfig `json:"registry"`
	// Ingress maps a protocol to the address of the listener taking meshed
	// traffic for this sidecar's published services.
	Ingress map[string]string `json:"ingress"`
	// Egress maps a protocol to the address applications call.
	Egress map[string]string `json:"egress"`
	// DrainGrace is how long a deregistered instance keeps serving so that
	// consumers' sidecars learn it is gone (unpublish, shutdown). Default 2s.
	DrainGrace string `json:"drain_grace"`
	// Metadata is added to every instance this sidecar registers (zone,
	// unit...).
	Metadata map[string]string `json:"metadata"`

	drainGrace time.Duration
}

// RegistryConfig selects and addresses the registry backend.
type RegistryConfig struct {
	// Kind is "embedded", "etcd" or "zookeeper".
	Kind string `json:"kind"`
	// Address is the embedded registry's "host:port".
	Address string `json:"address"`
	// Endpoints are etcd's client URLs.
	Endpoints []string `json:"endpoints"`
	// Servers are ZooKeeper's "host:port" list.
	Servers []string `json:"servers"`
	// Root is the key prefix (etcd, default "/weft/services") or the
	// ZooKeeper root (default "/dubbo").
	Root string `json:"root"`
	// TTL is the session / lease time to live (default 10s).
	TTL string `json:"ttl"`

	ttl time.Duration
}

// ParseConfig reads the agent config from a bootstrap extension's typed
// config (a TypedStruct), with errors naming field paths.
func ParseConfig(raw []byte) (*Config, error) {
	ts := &xdstypev3.TypedStruct{}
	if err := proto.Unmarshal(raw, ts); err != nil {
		return nil, fmt.Errorf("%s: typed_config must be a TypedStruct with type_url %s: %w", ExtensionName, TypeURL, err)
	}
	js, err := protojson.Marshal(ts.GetValue())
	if err != nil {
		return nil, err
	}
	return ParseJSON(js)
}

// ParseJSON reads the agent config from JSON.
func ParseJSON(js []byte) (*Config, error) {
	errs := &config.Errors{}
	c := &Config{}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.DisallowUnknownFields()
	if err := dec.Decode(c); err != nil {
		errs.Add("", "%v", err)
		return nil, errs
	}
	if c.SDKAddress == "" {
		c.SDKAddress = "127.0.0.1:13330"
	}
	if !loopback(c.SDKAddress) {
		errs.Add("sdk_address", "%q: the SDK API listens on a loopback address only", c.SDKAddress)
	}
	if c.AdvertiseIP == "" {
		c.AdvertiseIP = "127.0.0.1"
	}
	if net.ParseIP(c.AdvertiseIP) == nil {
		errs.Add("advertise_ip", "%q is not an IP address", c.AdvertiseIP)
	}
	r := &c.Registry
	switch r.Kind {
	case "", "embedded":
		r.Kind = "embedded"
		if r.Address == "" {
			errs.Add("registry.address", "required for the embedded registry (the address `weft registry` serves on)")
		}
	case "etcd":
		if len(r.Endpoints) == 0 {
			errs.Add("registry.endpoints", "required for etcd")
		}
	case "zookeeper":
		if len(r.Servers) == 0 {
			errs.Add("registry.servers", "required for zookeeper")
		}
	default:
		errs.Add("registry.kind", "unknown registry %q (embedded, etcd, zookeeper)", r.Kind)
	}
	r.ttl = 10 * time.Second
	dur(errs, "registry.ttl", r.TTL, &r.ttl)
	if r.ttl <= 0 {
		errs.Add("registry.ttl", "must be positive")
	}
	c.drainGrace = 2 * time.Second
	dur(errs, "drain_grace", c.DrainGrace, &c.drainGrace)
	if len(c.Ingress) == 0 && len(c.Egress) == 0 {
		errs.Add("", "at least one ingress or egress listener is required")
	}
	for _, side := range []struct {
		name string
		m    map[string]string
	}{{"ingress", c.Ingress}, {"egress", c.Egress}} {
		for _, proto := range sortedKeys(side.m) {
			path := side.name + "." + proto
			if _, ok := api.Codecs.Lookup(proto, ""); !ok {
				errs.Add(path, "unknown protocol %q", proto)
			}
			if _, _, err := net.SplitHostPort(side.m[proto]); err != nil {
				errs.Add(path, "%q: want host:port", side.m[proto])
			}
		}
	}
	if err := errs.Err(); err != nil {
		return nil, err
	}
	return c, nil
}

func dur(errs *config.Errors, path, s string, dst *time.Duration) {
	if s == "" {
		return
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		errs.Add(path, "not a duration: %q", s)
		return
	}
	*dst = d
}

func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
