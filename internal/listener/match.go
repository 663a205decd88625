package listener

import (
	"fmt"
	"net"
	"net/netip"
	"syscall"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
)

type syscallConn = syscall.RawConn

// Match is a compiled filter_chain_match for plain TCP connections.
type Match struct {
	DestinationPort uint32
	Prefixes        []netip.Prefix // destination
	SourcePrefixes  []netip.Prefix
	SourcePorts     map[uint32]bool
}

// CompileMatch turns an Envoy FilterChainMatch into a Match. TLS-based
// criteria (server_names, transport_protocol "tls", application_protocols)
// are refused until the TLS inspector exists.
func CompileMatch(m *listenerv3.FilterChainMatch) (Match, error) {
	var out Match
	if m == nil {
		return out, nil
	}
	if len(m.GetServerNames()) > 0 {
		return out, fmt.Errorf("server_names: needs TLS, not supported yet")
	}
	if tp := m.GetTransportProtocol(); tp != "" && tp != "raw_buffer" {
		return out, fmt.Errorf("transport_protocol: %q not supported (only raw_buffer)", tp)
	}
	if len(m.GetApplicationProtocols()) > 0 {
		return out, fmt.Errorf("application_protocols: not supported yet")
	}
	out.DestinationPort = m.GetDestinationPort().GetValue()
	var err error
	if out.Prefixes, err = prefixes(m.GetPrefixRanges()); err != nil {
		return out, fmt.Errorf("prefix_ranges: %w", err)
	}
	src := append(append([]*corev3.CidrRange(nil), m.GetSourcePrefixRanges()...), m.GetDirectSourcePrefixRanges()...)
	if out.SourcePrefixes, err = prefixes(src); err != nil {
		return out, fmt.Errorf("source_prefix_ranges: %w", err)
	}
	if len(m.GetSourcePorts()) > 0 {
		out.SourcePorts = map[uint32]bool{}
		for _, p := range m.GetSourcePorts() {
			out.SourcePorts[p] = true
		}
	}
	return out, nil
}

func prefixes(rs []*corev3.CidrRange) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for i, r := range rs {
		a, err := netip.ParseAddr(r.GetAddressPrefix())
		if err != nil {
			return nil, fmt.Errorf("[%d]: %w", i, err)
		}
		bits := a.BitLen()
		if r.GetPrefixLen() != nil {
			bits = int(r.GetPrefixLen().GetValue())
		}
		p, err := a.Prefix(bits)
		if err != nil {
			return nil, fmt.Errorf("[%d]: %w", i, err)
		}
		out = append(out, p)
	}
	return out, nil
}

func (m *Match) matches(c net.Conn) bool {
	if m.DestinationPort == 0 && len(m.Prefixes) == 0 && len(m.SourcePrefixes) == 0 && m.SourcePorts == nil {
		return true
	}
	la, _ := c.LocalAddr().(*net.TCPAddr)
	ra, _ := c.RemoteAddr().(*net.TCPAddr)
	if la == nil || ra == nil {
		return false
	}
	if m.DestinationPort != 0 && uint32(la.Port) != m.DestinationPort {
		return false
	}
	if len(m.Prefixes) > 0 && !inAny(m.Prefixes, la.AddrPort().Addr()) {
		return false
	}
	if len(m.SourcePrefixes) > 0 && !inAny(m.SourcePrefixes, ra.AddrPort().Addr()) {
		return false
	}
	if m.SourcePorts != nil && !m.SourcePorts[uint32(ra.Port)] {
		return false
	}
	return true
}

func inAny(ps []netip.Prefix, a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
