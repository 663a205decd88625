package router

import (
	"errors"
	"fmt"
	"strings"

	"github.com/weftmesh/weft/api"
)

// VarSource supplies the per-request values that header mutations may
// reference. It is an interface so the stream can implement it on a struct
// it already has, without allocating.
type VarSource interface {
	// DownstreamRemoteAddress returns the downstream peer as "ip:port".
	DownstreamRemoteAddress() string
}

// HeaderOps is a compiled chain of header mutations (request_headers_to_add
// / _remove or the response ones) from up to four levels: weighted cluster,
// route, virtual host, route configuration. By default the levels apply in
// that order, so for overwrites the most general level wins, as in Envoy;
// most_specific_header_mutations_wins reverses it.
type HeaderOps struct {
	levels []*headerLevel
}

// headerLevel is the mutations of one configuration level. Envoy applies a
// level as: remove; decide each add against the headers as they are now;
// then overwrite; then append.
type headerLevel struct {
	remove []string
	add    []headerAdd
}

// appendAction mirrors envoy.config.core.v3.HeaderValueOption.HeaderAppendAction.
type appendAction uint8

const (
	appendIfExistsOrAdd appendAction = iota
	addIfAbsent
	overwriteIfExistsOrAdd
	overwriteIfExists
)

type headerAdd struct {
	key       string
	value     []valuePart
	action    appendAction
	keepEmpty bool
}

// varKind is a supported command operator.
type varKind uint8

const (
	varNone varKind = iota
	varRemoteAddr
	varRemoteAddrNoPort
)

// valuePart is a literal or a variable of a header value template.
type valuePart struct {
	lit string
	v   varKind
}

// Empty reports whether the chain does nothing.
func (o *HeaderOps) Empty() bool { return o == nil || len(o.levels) == 0 }

// Apply mutates h. vars may be nil when no value references a variable;
// a variable without a source evaluates to "" and, like any empty value,
// is skipped unless keep_empty_value is set. Literal values do not
// allocate.
func (o *HeaderOps) Apply(h api.HeaderMap, vars VarSource) {
	if o == nil {
		return
	}
	for _, l := range o.levels {
		l.apply(h, vars)
	}
}

func (l *headerLevel) apply(h api.HeaderMap, vars VarSource) {
	for _, k := range l.remove {
		h.Del(k)
	}
	if len(l.add) == 0 {
		return
	}
	// Decisions depend on the headers before this level's additions.
	var small [64]bool
	var ok []bool
	if len(l.add) <= len(small) {
		ok = small[:len(l.add)]
	} else {
		ok = make([]bool, len(l.add))
	}
	for i := range l.add {
		a := &l.add[i]
		switch a.action {
		case addIfAbsent:
			_, present := h.Get(a.key)
			ok[i] = !present
		case overwriteIfExists:
			_, present := h.Get(a.key)
			ok[i] = present
		default:
			ok[i] = true
		}
	}
	for i := range l.add {
		a := &l.add[i]
		if !ok[i] || (a.action != overwriteIfExistsOrAdd && a.action != overwriteIfExists) {
			continue
		}
		if v := a.eval(vars); v != "" || a.keepEmpty {
			h.Set(a.key, v)
		}
	}
	for i := range l.add {
		a := &l.add[i]
		if !ok[i] || (a.action != appendIfExistsOrAdd && a.action != addIfAbsent) {
			continue
		}
		if v := a.eval(vars); v != "" || a.keepEmpty {
			h.Add(a.key, v)
		}
	}
}

func (a *headerAdd) eval(vars VarSource) string {
	if len(a.value) == 1 {
		return a.value[0].eval(vars)
	}
	var b strings.Builder
	for _, p := range a.value {
		b.WriteString(p.eval(vars))
	}
	return b.String()
}

func (p valuePart) eval(vars VarSource) string {
	switch p.v {
	case varNone:
		return p.lit
	case varRemoteAddr:
		if vars == nil {
			return ""
		}
		return vars.DownstreamRemoteAddress()
	case varRemoteAddrNoPort:
		if vars == nil {
			return ""
		}
		return addrWithoutPort(vars.DownstreamRemoteAddress())
	}
	return ""
}

// addrWithoutPort returns the IP of "ip:port" or "[ipv6]:port" (without
// brackets); other forms are returned unchanged.
func addrWithoutPort(a string) string {
	if strings.HasPrefix(a, "[") {
		if i := strings.IndexByte(a, ']'); i > 0 {
			return a[1:i]
		}
		return a
	}
	if i := strings.IndexByte(a, ':'); i >= 0 && strings.LastIndexByte(a, ':') == i {
		return a[:i]
	}
	return a
}

// parseHeaderValue compiles a header value template. "%%" is a literal
// "%"; %DOWNSTREAM_REMOTE_ADDRESS% and
// %DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% are variables; any other
// command operator is an error.
func parseHeaderValue(s string) ([]valuePart, error) {
	if strings.IndexByte(s, '%') < 0 {
		return []valuePart{{lit: s}}, nil
	}
	var parts []valuePart
	var lit strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' {
			lit.WriteByte(s[i])
			continue
		}
		if i+1 < len(s) && s[i+1] == '%' {
			lit.WriteByte('%')
			i++
			continue
		}
		j := strings.IndexByte(s[i+1:], '%')
		if j < 0 {
			return nil, errors.New("unterminated command operator (write %% for a literal %)")
		}
		op := s[i+1 : i+1+j]
		var v varKind
		switch op {
		case "DOWNSTREAM_REMOTE_ADDRESS":
			v = varRemoteAddr
		case "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT":
			v = varRemoteAddrNoPort
		default:
			return nil, fmt.Errorf("unsupported command operator %%%s%% (only %%DOWNSTREAM_REMOTE_ADDRESS%% and %%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%% are supported)", op)
		}
		if lit.Len() > 0 {
			parts = append(parts, valuePart{lit: lit.String()})
			lit.Reset()
		}
		parts = append(parts, valuePart{v: v})
		i += j + 1
	}
	if lit.Len() > 0 || len(parts) == 0 {
		parts = append(parts, valuePart{lit: lit.String()})
	}
	return parts, nil
}

// chain builds a HeaderOps from levels, most specific first, skipping
// empty levels; reverse applies the most specific last. It returns nil
// when nothing is left.
func chain(reverse bool, levels ...*headerLevel) *HeaderOps {
	var ls []*headerLevel
	for _, l := range levels {
		if l != nil {
			ls = append(ls, l)
		}
	}
	if len(ls) == 0 {
		return nil
	}
	if reverse {
		for i, j := 0, len(ls)-1; i < j; i, j = i+1, j-1 {
			ls[i], ls[j] = ls[j], ls[i]
		}
	}
	return &HeaderOps{levels: ls}
}
