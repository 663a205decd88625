package listener

import (
	"fmt"
	"net"
	"net/netip"
	"sort"
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

// Select picks the filter chain for a connection the way Envoy does: not
// the first that matches but the most specific, criterion by criterion in
// Envoy's order (destination port, destination IP, source IP, source
// port). At each step only the chains with the most specific match stay;
// a chain that leaves the criterion empty matches as a wildcard. It
// returns nil when no chain matches.
func Select(chains []Chain, local, remote net.Addr) *Chain {
	if len(chains) == 1 && chains[0].Match.empty() {
		return &chains[0] // the common single catch-all chain: no address work
	}
	la, _ := local.(*net.TCPAddr)
	ra, _ := remote.(*net.TCPAddr)
	if la == nil || ra == nil {
		for i := range chains {
			if chains[i].Match.empty() {
				return &chains[i]
			}
		}
		return nil
	}
	dst, src := la.AddrPort().Addr().Unmap(), ra.AddrPort().Addr().Unmap()
	stages := [...]func(m *Match) int{
		func(m *Match) int { return portLevel(m.DestinationPort == 0, m.DestinationPort == uint32(la.Port)) },
		func(m *Match) int { return prefixLevel(m.Prefixes, dst) },
		func(m *Match) int { return prefixLevel(m.SourcePrefixes, src) },
		func(m *Match) int { return portLevel(m.SourcePorts == nil, m.SourcePorts[uint32(ra.Port)]) },
	}
	var buf [16]int
	cands := buf[:0]
	for i := range chains {
		cands = append(cands, i)
	}
	for _, level := range stages {
		best, kept := -1, cands[:0]
		for _, i := range cands {
			switch lv := level(&chains[i].Match); {
			case lv > best:
				best, kept = lv, append(kept[:0], i)
			case lv == best && lv >= 0:
				kept = append(kept, i)
			}
		}
		if best < 0 {
			return nil
		}
		cands = kept
	}
	return &chains[cands[0]]
}

// portLevel scores a port criterion: -1 excluded, 0 wildcard, 1 exact.
func portLevel(wildcard, exact bool) int {
	switch {
	case exact:
		return 1
	case wildcard:
		return 0
	}
	return -1
}

// prefixLevel scores a CIDR criterion: -1 excluded, 0 wildcard, else one
// more than the longest matching prefix length.
func prefixLevel(ps []netip.Prefix, a netip.Addr) int {
	if len(ps) == 0 {
		return 0
	}
	best := -1
	for _, p := range ps {
		if p.Contains(a) && p.Bits()+1 > best {
			best = p.Bits() + 1
		}
	}
	return best
}

func (m *Match) empty() bool {
	return m.DestinationPort == 0 && len(m.Prefixes) == 0 && len(m.SourcePrefixes) == 0 && m.SourcePorts == nil
}

// Key is a canonical form of the match, to refuse two chains with the same
// rules (Envoy refuses them too: which one applies would be arbitrary).
func (m *Match) Key() string {
	ports := make([]int, 0, len(m.SourcePorts))
	for p := range m.SourcePorts {
		ports = append(ports, int(p))
	}
	sort.Ints(ports)
	ps := func(list []netip.Prefix) []string {
		out := make([]string, len(list))
		for i, p := range list {
			out[i] = p.Masked().String()
		}
		sort.Strings(out)
		return out
	}
	return fmt.Sprint(m.DestinationPort, ps(m.Prefixes), ps(m.SourcePrefixes), ports)
}
