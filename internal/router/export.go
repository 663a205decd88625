package router

import (
	"strconv"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"

	"github.com/weftmesh/weft/api"
)

// HeaderMutation is one ordered header edit for CompileHeaderMutations:
// Remove names a header to drop, else Add is appended or set per its
// append_action.
type HeaderMutation struct {
	Remove string
	Add    *corev3.HeaderValueOption
}

// CompileHeaderMutations compiles an ordered list of header edits (the
// shape of the header_mutation filter) with the same semantics as route
// header operations; field is the config path used in errors.
func CompileHeaderMutations(field string, muts []HeaderMutation) (*HeaderOps, error) {
	levels := make([]*headerLevel, 0, len(muts))
	for i, m := range muts {
		var l *headerLevel
		var err error
		p := field + "[" + strconv.Itoa(i) + "]"
		if m.Add != nil {
			l, err = headerLevelOf(p, []*corev3.HeaderValueOption{m.Add}, "append", nil, "")
		} else {
			l, err = headerLevelOf(p, nil, "", []string{m.Remove}, "remove")
		}
		if err != nil {
			return nil, err
		}
		levels = append(levels, l)
	}
	return chain(false, levels...), nil
}

// HeaderMatchers is a compiled list of Envoy HeaderMatchers that must all
// match, for filters that select requests the way routes do.
type HeaderMatchers []*headerMatcher

// CompileHeaderMatchers compiles ms; an empty list matches every request.
func CompileHeaderMatchers(ms []*routev3.HeaderMatcher) (HeaderMatchers, error) {
	out := make(HeaderMatchers, 0, len(ms))
	for i, m := range ms {
		hm, err := headerMatcherOf("headers["+strconv.Itoa(i)+"]", m)
		if err != nil {
			return nil, err
		}
		out = append(out, hm)
	}
	return out, nil
}

// Match reports whether every matcher accepts h.
func (hm HeaderMatchers) Match(h api.HeaderMap) bool {
	for _, m := range hm {
		if !m.match(h) {
			return false
		}
	}
	return true
}
