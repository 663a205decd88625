package config

import (
	"fmt"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
)

// Validate runs the generated field rules of the Envoy schema over b, then
// Weft's own whole-file checks (unique names and addresses, what Weft does
// not support). Deeper checks of typed extension configs happen when they
// are parsed by their factories (see app.Check).
func Validate(b *bootstrapv3.Bootstrap) error {
	errs := &Errors{}
	if err := b.ValidateAll(); err != nil {
		errs.AddErr("", err)
	}
	sr := b.GetStaticResources()
	names := map[string]int{}
	addrs := map[string]int{}
	for i, l := range sr.GetListeners() {
		p := fmt.Sprintf("static_resources.listeners[%d]", i)
		if l.GetName() == "" {
			errs.Add(p+".name", "must be set")
		} else if j, dup := names[l.GetName()]; dup {
			errs.Add(p+".name", "duplicate listener name %q (also listeners[%d])", l.GetName(), j)
		} else {
			names[l.GetName()] = i
		}
		sa := l.GetAddress().GetSocketAddress()
		if sa == nil {
			errs.Add(p+".address", "only socket_address is supported")
			continue
		}
		if sa.GetProtocol() != corev3.SocketAddress_TCP {
			errs.Add(p+".address.socket_address.protocol", "only TCP is supported")
		}
		if _, ok := sa.GetPortSpecifier().(*corev3.SocketAddress_NamedPort); ok {
			errs.Add(p+".address.socket_address.named_port", "not supported; use port_value")
		}
		key := fmt.Sprintf("%s:%d", sa.GetAddress(), sa.GetPortValue())
		if sa.GetPortValue() != 0 {
			if j, dup := addrs[key]; dup {
				errs.Add(p+".address", "address %s already used by listeners[%d]", key, j)
			}
			addrs[key] = i
		}
		if len(l.GetFilterChains()) == 0 && l.GetDefaultFilterChain() == nil {
			errs.Add(p+".filter_chains", "at least one filter chain is required")
		}
	}
	cnames := map[string]int{}
	for i, c := range sr.GetClusters() {
		p := fmt.Sprintf("static_resources.clusters[%d].name", i)
		if j, dup := cnames[c.GetName()]; dup {
			errs.Add(p, "duplicate cluster name %q (also clusters[%d])", c.GetName(), j)
		}
		cnames[c.GetName()] = i
	}
	if sa := b.GetAdmin().GetAddress(); b.GetAdmin() != nil && sa != nil && sa.GetSocketAddress() == nil {
		errs.Add("admin.address", "only socket_address is supported")
	}
	return errs.Err()
}

// AdminAddress returns the admin listen address from the bootstrap, or def
// when none is configured.
func AdminAddress(b *bootstrapv3.Bootstrap, def string) string {
	sa := b.GetAdmin().GetAddress().GetSocketAddress()
	if sa == nil {
		return def
	}
	return JoinHostPort(sa.GetAddress(), sa.GetPortValue())
}

// JoinHostPort formats an address for net.Listen.
func JoinHostPort(host string, port uint32) string {
	if host == "" {
		host = "127.0.0.1"
	}
	for _, c := range host {
		if c == ':' {
			return fmt.Sprintf("[%s]:%d", host, port)
		}
	}
	return fmt.Sprintf("%s:%d", host, port)
}
