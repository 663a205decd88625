package router

import (
	"regexp"
	"strings"

	"github.com/weftmesh/weft/api"
)

// routeMatch is the compiled RouteMatch of one route.
type routeMatch struct {
	kind    pathKind
	key     string // prefix, path or path_separated_prefix as configured
	ci      bool   // case_sensitive: false (not for regex)
	re      *regexp.Regexp
	grpc    bool
	headers []headerMatcher
	query   []queryMatcher
}

// matches reports whether the route matches; the radix tree gives the same
// answer faster. Tests and fuzzing compare the two.
func (m *routeMatch) matches(h api.HeaderMap, path string) bool {
	end := pathEnd(path)
	switch m.kind {
	case pathRegex:
		if !m.re.MatchString(path[:end]) {
			return false
		}
	default:
		key := m.key
		if m.ci {
			key = lowerASCII(key)
		}
		if !hasPrefixAt(path, 0, key, m.ci) || !m.kind.accepts(path, len(key), end) {
			return false
		}
	}
	return m.condsMatch(h, path)
}

// condsMatch checks everything but the path: gRPC, headers, query.
func (m *routeMatch) condsMatch(h api.HeaderMap, path string) bool {
	if m.grpc && !isGRPC(h) {
		return false
	}
	for i := range m.headers {
		if !m.headers[i].match(h) {
			return false
		}
	}
	for i := range m.query {
		if !m.query[i].match(path) {
			return false
		}
	}
	return true
}

func isGRPC(h api.HeaderMap) bool {
	ct, ok := h.Get("content-type")
	if !ok || !strings.HasPrefix(ct, "application/grpc") {
		return false
	}
	rest := ct[len("application/grpc"):]
	return rest == "" || rest[0] == '+' || rest[0] == ';'
}

// stringKind is the pattern of a StringMatcher.
type stringKind uint8

const (
	strExact stringKind = iota
	strPrefix
	strSuffix
	strContains
	strRegex
)

// stringMatcher is a compiled envoy.type.matcher.v3.StringMatcher. With
// ignoreCase the value is stored lower-case and compared with ASCII
// folding, which allocates nothing (ignore_case has no effect on regex).
type stringMatcher struct {
	kind       stringKind
	value      string
	ignoreCase bool
	re         *regexp.Regexp
}

func (m *stringMatcher) match(s string) bool {
	switch m.kind {
	case strExact:
		if m.ignoreCase {
			return len(s) == len(m.value) && hasPrefixAt(s, 0, m.value, true)
		}
		return s == m.value
	case strPrefix:
		return hasPrefixAt(s, 0, m.value, m.ignoreCase)
	case strSuffix:
		return len(s) >= len(m.value) && hasPrefixAt(s, len(s)-len(m.value), m.value, m.ignoreCase)
	case strContains:
		if !m.ignoreCase {
			return strings.Contains(s, m.value)
		}
		for i := 0; i+len(m.value) <= len(s); i++ {
			if hasPrefixAt(s, i, m.value, true) {
				return true
			}
		}
		return false
	case strRegex:
		return m.re.MatchString(s)
	}
	return false
}

// headerKind is the specifier of a HeaderMatcher.
type headerKind uint8

const (
	hdrString  headerKind = iota // string_match and the deprecated forms
	hdrAny                       // deprecated exact_match: "" (any value)
	hdrRange                     // range_match
	hdrPresent                   // present_match
)

// headerMatcher is a compiled HeaderMatcher. The value is the first value
// of the header (Envoy joins repeated headers with ","; api.HeaderMap gives
// only the first without allocating).
type headerMatcher struct {
	name           string
	kind           headerKind
	str            stringMatcher
	start, end     int64
	present        bool
	invert         bool
	missingAsEmpty bool
}

// match follows Envoy's HeaderUtility::matchHeaders: a missing header only
// matches present_match (true when inverted, false otherwise) unless
// treat_missing_header_as_empty; invert_match flips every other outcome.
func (m *headerMatcher) match(h api.HeaderMap) bool {
	v, ok := h.Get(m.name)
	if !ok && !m.missingAsEmpty {
		return m.kind == hdrPresent && m.present == m.invert
	}
	var r bool
	switch m.kind {
	case hdrString:
		r = m.str.match(v)
	case hdrAny:
		r = true
	case hdrRange:
		n, ok := parseInt64(v)
		r = ok && n >= m.start && n < m.end
	case hdrPresent:
		r = m.present
	}
	return r != m.invert
}

// parseInt64 parses an optionally signed decimal integer without the error
// allocation of strconv on bad input. Like absl::SimpleAtoi it tolerates
// surrounding ASCII whitespace.
func parseInt64(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, false
	}
	neg := false
	switch s[0] {
	case '-':
		neg = true
		s = s[1:]
	case '+':
		s = s[1:]
	}
	if s == "" || len(s) > 19 {
		return 0, false
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	if neg {
		if n > 1<<63 {
			return 0, false
		}
		return -int64(n), true
	}
	if n > 1<<63-1 {
		return 0, false
	}
	return int64(n), true
}

// queryMatcher is a compiled QueryParameterMatcher. Names and values are
// compared as they appear in :path, without percent-decoding.
type queryMatcher struct {
	name    string
	present bool // present_match, or no value matcher at all
	str     stringMatcher
}

func (m *queryMatcher) match(path string) bool {
	v, ok := queryParam(path, m.name)
	if !ok {
		return false
	}
	if m.present {
		return true
	}
	return m.str.match(v)
}

// queryParam returns the first value of the query parameter name in a
// :path value; a key without "=" has the empty value.
func queryParam(path, name string) (string, bool) {
	q := strings.IndexByte(path, '?')
	if q < 0 {
		return "", false
	}
	rest := path[q+1:]
	if f := strings.IndexByte(rest, '#'); f >= 0 {
		rest = rest[:f]
	}
	for rest != "" {
		kv := rest
		if i := strings.IndexByte(rest, '&'); i >= 0 {
			kv, rest = rest[:i], rest[i+1:]
		} else {
			rest = ""
		}
		k, v := kv, ""
		if i := strings.IndexByte(kv, '='); i >= 0 {
			k, v = kv[:i], kv[i+1:]
		}
		if k == name && k != "" {
			return v, true
		}
	}
	return "", false
}
