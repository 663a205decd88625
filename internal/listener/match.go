package listener

import (
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"syscall"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
)

type syscallConn = syscall.RawConn

// Match is a compiled filter_chain_match.
type Match struct {
	DestinationPort uint32
	Prefixes        []netip.Prefix // destination
	// ServerNames are SNI names, lower-case; "*.example.com" matches any
	// name ending in ".example.com", the longest such suffix winning.
	ServerNames []string
	// TransportProtocol is "", "tls" or "raw_buffer".
	TransportProtocol string
	// AppProtocols match when the client offers any of them by ALPN.
	AppProtocols   []string
	SourcePrefixes []netip.Prefix
	SourcePorts    map[uint32]bool
}

// NeedsInspector reports whether the match uses what only the TLS
// inspector learns (Envoy then inserts the inspector by itself).
func (m *Match) NeedsInspector() bool {
	return len(m.ServerNames) > 0 || m.TransportProtocol == "tls" || len(m.AppProtocols) > 0
}

// CompileMatch turns an Envoy FilterChainMatch into a Match.
func CompileMatch(m *listenerv3.FilterChainMatch) (Match, error) {
	var out Match
	if m == nil {
		return out, nil
	}
	for i, n := range m.GetServerNames() {
		n = strings.ToLower(n)
		if n == "" || strings.Contains(n[1:], "*") || (n[0] == '*' && !strings.HasPrefix(n, "*.")) {
			return out, fmt.Errorf("server_names[%d]: %q: a name or a leading \"*.\" wildcard", i, n)
		}
		out.ServerNames = append(out.ServerNames, n)
	}
	switch tp := m.GetTransportProtocol(); tp {
	case "", "raw_buffer", "tls":
		out.TransportProtocol = tp
	default:
		return out, fmt.Errorf("transport_protocol: %q not supported (tls or raw_buffer)", tp)
	}
	for i, p := range m.GetApplicationProtocols() {
		if p == "" {
			return out, fmt.Errorf("application_protocols[%d]: empty", i)
		}
	}
	out.AppProtocols = m.GetApplicationProtocols()
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

// Inspected is what the TLS inspector learned of a connection; the zero
// value is a connection nobody inspected (transport raw_buffer).
type Inspected struct {
	TLS bool
	Hello
}

// Select picks the filter chain for a connection the way Envoy does: not
// the first that matches but the most specific, criterion by criterion in
// Envoy's order (destination port, destination IP, server name, transport
// protocol, application protocols, source IP, source port). At each step
// only the chains with the most specific match stay; a chain that leaves
// the criterion empty matches as a wildcard. It returns nil when no chain
// matches.
func Select(chains []Chain, local, remote net.Addr, in Inspected) *Chain {
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
		func(m *Match) int { return nameLevel(m.ServerNames, in.ServerName) },
		func(m *Match) int {
			tp := "raw_buffer"
			if in.TLS {
				tp = "tls"
			}
			return portLevel(m.TransportProtocol == "", m.TransportProtocol == tp)
		},
		func(m *Match) int { return portLevel(len(m.AppProtocols) == 0, anyOf(m.AppProtocols, in.ALPN)) },
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

// nameLevel scores a server_names criterion: -1 excluded, 0 wildcard
// (no names), one more than the suffix length for a "*." name, and above
// every suffix for an exact name.
func nameLevel(names []string, sni string) int {
	if len(names) == 0 {
		return 0
	}
	best := -1
	for _, n := range names {
		switch {
		case n == sni && sni != "":
			return 1 << 20
		case n[0] == '*' && len(sni) > len(n)-1 && strings.HasSuffix(sni, n[1:]) && len(n) > best:
			best = len(n)
		}
	}
	return best
}

func anyOf(want, have []string) bool {
	for _, w := range want {
		for _, h := range have {
			if w == h {
				return true
			}
		}
	}
	return false
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
	return m.DestinationPort == 0 && len(m.Prefixes) == 0 && len(m.SourcePrefixes) == 0 && m.SourcePorts == nil &&
		len(m.ServerNames) == 0 && m.TransportProtocol == "" && len(m.AppProtocols) == 0
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
	sorted := func(in []string) []string {
		out := append([]string(nil), in...)
		sort.Strings(out)
		return out
	}
	return fmt.Sprint(m.DestinationPort, ps(m.Prefixes), sorted(m.ServerNames), m.TransportProtocol, sorted(m.AppProtocols), ps(m.SourcePrefixes), ports)
}
