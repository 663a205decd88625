package upstream

import (
	"context"
	"errors"
	"net/netip"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
)

// Resolver looks up a host name; *net.Resolver implements it. network is
// "ip", "ip4" or "ip6".
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// runDNS resolves the cluster's host names now and every dns_refresh_rate
// until the cluster stops.
func (c *Cluster) runDNS() {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-c.ctx.Done():
			return
		case <-t.C:
		}
		c.resolveAll()
		t.Reset(c.spec.dnsRefresh)
	}
}

// resolveAll looks every host name up once. A failed lookup keeps that
// name's last good addresses; respect_dns_ttl is not honoured (the
// refresh rate alone decides).
func (c *Cluster) resolveAll() {
	network := "ip"
	switch c.spec.dnsFamily {
	case clusterv3.Cluster_V4_ONLY:
		network = "ip4"
	case clusterv3.Cluster_V6_ONLY:
		network = "ip6"
	}
	results := map[string][]netip.Addr{}
	var failure string
	for _, e := range c.spec.endpoints {
		if _, done := results[e.host]; done {
			continue
		}
		if ip, err := netip.ParseAddr(e.host); err == nil {
			results[e.host] = []netip.Addr{ip}
			continue
		}
		ctx, cancel := context.WithTimeout(c.ctx, dnsLookupTimeout)
		addrs, err := c.res.LookupNetIP(ctx, network, e.host)
		cancel()
		if c.ctx.Err() != nil {
			return
		}
		if err == nil {
			addrs = pickFamily(addrs, c.spec.dnsFamily)
			if len(addrs) == 0 {
				err = errNoAddresses
			}
		}
		if err != nil {
			c.log.Warn("dns resolution failed; keeping last good addresses", "host", e.host, "err", err)
			failure = "dns " + e.host + ": " + err.Error()
			continue
		}
		results[e.host] = addrs
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return
	}
	if c.dnsCache == nil {
		c.dnsCache = map[string][]netip.Addr{}
	}
	for h, addrs := range results {
		c.dnsCache[h] = addrs
	}
	c.lastErr = failure
	c.setMembersLocked(c.resolvedLocked())
}

var errNoAddresses = errors.New("no addresses of the configured family")

// pickFamily applies dns_lookup_family: AUTO prefers IPv6, V4_PREFERRED
// IPv4, ALL keeps both.
func pickFamily(addrs []netip.Addr, fam clusterv3.Cluster_DnsLookupFamily) []netip.Addr {
	var v4, v6 []netip.Addr
	for _, a := range addrs {
		a = a.Unmap()
		if a.Is4() {
			v4 = append(v4, a)
		} else {
			v6 = append(v6, a.WithZone(""))
		}
	}
	switch fam {
	case clusterv3.Cluster_V4_ONLY:
		return v4
	case clusterv3.Cluster_V6_ONLY:
		return v6
	case clusterv3.Cluster_V4_PREFERRED:
		if len(v4) > 0 {
			return v4
		}
		return v6
	case clusterv3.Cluster_ALL:
		return append(v4, v6...)
	default: // AUTO
		if len(v6) > 0 {
			return v6
		}
		return v4
	}
}

// resolvedLocked expands the configured endpoints with the cached
// addresses: every address for STRICT_DNS, the first for LOGICAL_DNS.
// c.mu is held.
func (c *Cluster) resolvedLocked() []endpointSpec {
	var out []endpointSpec
	seen := map[string]bool{}
	for _, e := range c.spec.endpoints {
		addrs := c.dnsCache[e.host]
		if c.spec.discovery == discoveryLogicalDNS && len(addrs) > 1 {
			addrs = addrs[:1]
		}
		for _, a := range addrs {
			r := e
			r.addr = netip.AddrPortFrom(a, e.port).String()
			if seen[r.addr] {
				continue
			}
			seen[r.addr] = true
			if r.hostname == "" && a.String() != e.host {
				r.hostname = e.host
			}
			out = append(out, r)
		}
	}
	return out
}
