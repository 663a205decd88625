// Package registry is the service registry contract (SPEC R3) that the
// sidecar publishes into and subscribes from, and the shared behaviour of
// its backends (embedded, etcd, ZooKeeper in Dubbo's layout).
//
// A backend keeps what its client registered alive for as long as the
// client is open (a session: an etcd lease, a ZooKeeper ephemeral node, an
// embedded-registry session), registers it again after an outage, and never
// reports a service as empty because the registry is unreachable: watchers
// keep the last known list (a registry outage must not empty a cluster).
package registry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strings"
)

// Instance is one provider of a service as the registry holds it.
type Instance struct {
	// Service is the service (interface) name, e.g. "com.foo.EchoService".
	Service string `json:"service"`
	// Address is the "ip:port" consumers dial. In the mesh it is the
	// provider sidecar's ingress, not the application's port.
	Address string `json:"address"`
	// Protocol is "bolt", "dubbo", "http", "grpc" or "triple".
	Protocol string `json:"protocol"`
	// Metadata carries what routing and migration need: "version",
	// "group", "unit", "zone", "tls" ("true" when the instance accepts
	// TLS), "meshed" ("true" behind a sidecar), "weight", "app"...
	Metadata map[string]string `json:"metadata,omitempty"`
}

// Key identifies an instance within its service: protocol and address.
func (i Instance) Key() string { return i.Protocol + "://" + i.Address }

// Validate checks what every backend needs.
func (i Instance) Validate() error {
	switch {
	case i.Service == "" || strings.ContainsAny(i.Service, "/ \t\r\n"):
		return fmt.Errorf("registry: bad service name %q", i.Service)
	case i.Protocol == "" || strings.ContainsAny(i.Protocol, ":/ "):
		return fmt.Errorf("registry: bad protocol %q", i.Protocol)
	}
	host, port, err := net.SplitHostPort(i.Address)
	if err != nil || host == "" || port == "" {
		return fmt.Errorf("registry: bad address %q: want ip:port", i.Address)
	}
	return nil
}

// ErrClosed is returned by a registry after Close.
var ErrClosed = errors.New("registry: closed")

// Registry is one client of a registry backend.
type Registry interface {
	// Register publishes inst (replacing an instance with the same
	// service and key) for as long as the client is open.
	Register(ctx context.Context, inst Instance) error
	// Deregister removes an instance this client registered.
	Deregister(ctx context.Context, inst Instance) error
	// Watch calls fn with the current instances of service (possibly
	// none) once the registry has answered, then after every change,
	// until ctx ends. Calls are serialized. While the registry is
	// unreachable fn is not called: the last list stands.
	Watch(ctx context.Context, service string, fn func([]Instance)) error
	// Close deregisters what this client registered and ends its session.
	Close() error
}

// Sort orders instances by key, so that lists compare and print stably.
func Sort(list []Instance) {
	sort.Slice(list, func(a, b int) bool { return list[a].Key() < list[b].Key() })
}

// Equal reports whether two sorted lists hold the same instances.
func Equal(a, b []Instance) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Service != b[i].Service || a[i].Key() != b[i].Key() || len(a[i].Metadata) != len(b[i].Metadata) {
			return false
		}
		for k, v := range a[i].Metadata {
			if b[i].Metadata[k] != v {
				return false
			}
		}
	}
	return true
}
