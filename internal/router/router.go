// Package router compiles an Envoy v3 RouteConfiguration into a Table that
// picks a Route for each request without allocating.
//
// Compile validates the whole configuration once and reports the first
// problem with its field path; after that a Table is immutable and safe for
// concurrent use. Table.Route finds the virtual host by :authority (exact
// domains in a map, then suffix and prefix wildcards longest first, then "*")
// and the first route in configuration order whose match applies, using a
// radix tree over path prefixes so that big hosts are not scanned linearly.
package router

import (
	"github.com/weftmesh/weft/api"
)

// hostBufSize is the stack buffer used to lower-case :authority. Longer
// hosts (beyond any valid DNS name plus port) still work but allocate.
const hostBufSize = 256

// Table is a compiled RouteConfiguration. It is immutable and safe for
// concurrent use; replace it wholesale (for example behind an atomic
// pointer) when the configuration changes.
type Table struct {
	name         string
	vhosts       []*VirtualHost
	hostHeader   string
	ignorePort   bool
	internalOnly []string

	exact       map[string]*VirtualHost
	suffixes    []wildcardBucket // longest first
	prefixes    []wildcardBucket // longest first
	def         *VirtualHost
	onlyDefault bool
}

// wildcardBucket holds the wildcard domains of one length: for "*.foo.com"
// the key is ".foo.com", for "foo.*" it is "foo.". Grouping by length turns
// the wildcard search into one map lookup per distinct length, as in Envoy.
type wildcardBucket struct {
	n int
	m map[string]*VirtualHost
}

// VirtualHost is a compiled virtual host: its domains and ordered routes.
type VirtualHost struct {
	// Name is the configured virtual host name.
	Name string
	// Domains are the configured domains, lower-cased.
	Domains []string
	// Routes are the compiled routes in configuration order.
	Routes []*Route

	// cs and ci index the prefix, path and path_separated_prefix routes by
	// their path string (ci holds the case-insensitive ones, lower-cased);
	// regex holds the indexes of safe_regex routes, ascending.
	cs, ci  pathIndex
	regex   []int32
	matches []routeMatch // matches[i] is Routes[i]'s matcher
}

// Name returns the RouteConfiguration name.
func (t *Table) Name() string { return t.name }

// VirtualHosts returns the compiled virtual hosts in configuration order.
// The slice must not be modified.
func (t *Table) VirtualHosts() []*VirtualHost { return t.vhosts }

// InternalOnlyHeaders returns the configured internal_only_headers, which the
// connection manager strips from requests of external origin.
func (t *Table) InternalOnlyHeaders() []string { return t.internalOnly }

// Route returns the route for a request, or nil when no virtual host or no
// route of the chosen virtual host matches (Envoy does not fall through to
// another virtual host). It reads :authority (or the configured vhost_header;
// "host" when :authority is absent) and :path from h, plus whatever headers
// the candidate routes match on. It does not allocate for literal matches.
func (t *Table) Route(h api.HeaderMap) *Route {
	path, ok := h.Get(":path")
	if !ok {
		// Only CONNECT-style routes match pathless requests; Weft has none.
		return nil
	}
	host, ok := h.Get(t.hostHeader)
	if !ok && t.hostHeader == ":authority" {
		host, _ = h.Get("host")
	}
	vh := t.VirtualHost(host)
	if vh == nil {
		return nil
	}
	return vh.match(h, path)
}

// VirtualHost returns the virtual host serving authority, or nil. The match
// is case-insensitive. Exact domains are tried first, then suffix wildcards
// ("*.foo.com"), then prefix wildcards ("foo.*"), each longest first, then
// the "*" virtual host. When authority carries a port, domains with that
// port are tried first (exact and suffix wildcards: a prefix wildcard would
// swallow the port); if none matches, the port is ignored, as when Envoy
// strips a port that matches no domain.
func (t *Table) VirtualHost(authority string) *VirtualHost {
	if t.onlyDefault {
		return t.def
	}
	var buf [hostBufSize]byte
	b := appendLower(buf[:0], authority)
	s := stripPort(b)
	if len(s) != len(b) && !t.ignorePort {
		if vh := t.lookupDomain(b, false); vh != nil {
			return vh
		}
	}
	if vh := t.lookupDomain(s, true); vh != nil {
		return vh
	}
	return t.def
}

// lookupDomain searches exact, suffix and (withPrefix) prefix domains for
// host, which is already lower-case. Map lookups keyed by string(b) do not
// allocate.
func (t *Table) lookupDomain(b []byte, withPrefix bool) *VirtualHost {
	if vh, ok := t.exact[string(b)]; ok {
		return vh
	}
	for _, w := range t.suffixes {
		// A wildcard must stand for at least one character.
		if w.n >= len(b) {
			continue
		}
		if vh, ok := w.m[string(b[len(b)-w.n:])]; ok {
			return vh
		}
	}
	if !withPrefix {
		return nil
	}
	for _, w := range t.prefixes {
		if w.n >= len(b) {
			continue
		}
		if vh, ok := w.m[string(b[:w.n])]; ok {
			return vh
		}
	}
	return nil
}

// Route returns the first route of v that matches the request, or nil.
func (v *VirtualHost) Route(h api.HeaderMap) *Route {
	path, ok := h.Get(":path")
	if !ok {
		return nil
	}
	return v.match(h, path)
}

// match finds the lowest-indexed route matching path and h. Each index
// (the two radix trees and the regex list) yields candidates in ascending
// route order, and a candidate is only examined when it would beat the best
// match so far, which keeps Envoy's first-match-wins semantics while
// touching only routes whose path string can match.
func (v *VirtualHost) match(h api.HeaderMap, path string) *Route {
	best := int32(len(v.Routes))
	end := pathEnd(path)
	best = v.walk(&v.cs, h, path, end, best)
	best = v.walk(&v.ci, h, path, end, best)
	for _, i := range v.regex {
		if i >= best {
			break
		}
		m := &v.matches[i]
		if m.re.MatchString(path[:end]) && m.condsMatch(h, path) {
			best = i
			break
		}
	}
	if int(best) == len(v.Routes) {
		return nil
	}
	return v.Routes[best]
}

// walk descends a radix tree along path and returns the smallest route
// index below best whose path string and remaining conditions match.
// Subtrees whose smallest index cannot beat best are not entered.
func (v *VirtualHost) walk(x *pathIndex, h api.HeaderMap, path string, end int, best int32) int32 {
	if len(x.nodes) == 0 {
		return best
	}
	n := &x.nodes[0]
	pos := 0
	for n.min < best {
		for _, e := range x.entries[n.entOff : n.entOff+n.entN] {
			if e.idx >= best {
				break
			}
			if !e.kind.accepts(path, pos, end) {
				continue
			}
			if !e.conds || v.matches[e.idx].condsMatch(h, path) {
				best = e.idx
				break
			}
		}
		if pos >= len(path) {
			break
		}
		b := path[pos]
		if x.fold {
			b = lowerByte(b)
		}
		k := x.child(n, b)
		if k < 0 {
			break
		}
		n = &x.nodes[k]
		if !hasPrefixAt(path, pos, x.labels[n.labelOff:n.labelOff+n.labelN], x.fold) {
			break
		}
		pos += int(n.labelN)
	}
	return best
}

// pathEnd returns the length of the path part of a :path value, before any
// query string or fragment.
func pathEnd(path string) int {
	for i := 0; i < len(path); i++ {
		if path[i] == '?' || path[i] == '#' {
			return i
		}
	}
	return len(path)
}

// stripPort removes a trailing ":port" from a host, leaving IPv6 literals
// like "[::1]" intact. The port must be all digits.
func stripPort(b []byte) []byte {
	i := len(b) - 1
	for i >= 0 && b[i] >= '0' && b[i] <= '9' {
		i--
	}
	if i < 0 || i == len(b)-1 || b[i] != ':' {
		return b
	}
	return b[:i]
}

func lowerByte(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + ('a' - 'A')
	}
	return c
}

func appendLower(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		dst = append(dst, lowerByte(s[i]))
	}
	return dst
}

func lowerASCII(s string) string {
	for i := 0; i < len(s); i++ {
		if 'A' <= s[i] && s[i] <= 'Z' {
			return string(appendLower(make([]byte, 0, len(s)), s))
		}
	}
	return s
}

// hasPrefixAt reports whether s[pos:] starts with p; with fold, s is
// compared lower-cased against p, which is already lower-case.
func hasPrefixAt(s string, pos int, p string, fold bool) bool {
	if len(s)-pos < len(p) {
		return false
	}
	if !fold {
		return s[pos:pos+len(p)] == p
	}
	for i := 0; i < len(p); i++ {
		if lowerByte(s[pos+i]) != p[i] {
			return false
		}
	}
	return true
}
