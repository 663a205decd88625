// Package accesslog formats and writes Envoy-style access logs. A format
// string is compiled once into a list of segments; formatting a line walks
// that list, appending into a caller's (pooled) buffer without allocating.
package accesslog

import (
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/weftmesh/weft/api"
)

// DefaultFormat is Envoy's default access log format.
const DefaultFormat = `[%START_TIME%] "%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%" ` +
	`%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% ` +
	`%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "%REQ(X-FORWARDED-FOR)%" "%REQ(USER-AGENT)%" ` +
	`"%REQ(X-REQUEST-ID)%" "%REQ(:AUTHORITY)%" "%UPSTREAM_HOST%"` + "\n"

// Entry is what the proxy records about one request (or one TCP
// connection) for the access log. The proxy fills it when the stream ends
// and passes a pointer; the logger does not keep it after Log returns.
type Entry struct {
	// Start is when the first request byte was read.
	Start time.Time
	// Duration is the total time from Start to the last response byte.
	Duration time.Duration
	// ResponseDuration is the time from Start to the first upstream
	// response byte; 0 when there was no upstream response.
	ResponseDuration time.Duration
	// Protocol is the downstream protocol: "HTTP/1.1", "HTTP/2", or a
	// codec name ("http1", "http2" and "http3" are shown as Envoy shows
	// them; others, e.g. "bolt", as they are).
	Protocol string
	// ReqHeaders and RespHeaders may be nil.
	ReqHeaders, RespHeaders api.HeaderMap
	// Status is the response status; 0 when none was sent.
	Status int
	// Flags are the response flags, comma-separated (e.g. "UH,UF").
	Flags string
	// BytesReceived and BytesSent count body bytes.
	BytesReceived, BytesSent uint64
	// UpstreamHost is the chosen upstream "ip:port".
	UpstreamHost string
	// UpstreamCluster names the chosen cluster.
	UpstreamCluster string
	// RouteName names the matched route.
	RouteName string
	// Downstream is the downstream peer; DownstreamLocal is the address
	// the connection was accepted on. Either may be nil.
	Downstream, DownstreamLocal net.Addr
	// UpstreamFailure is the upstream transport failure reason.
	UpstreamFailure string
}

// opKind names a command operator.
type opKind uint8

const (
	opLiteral opKind = iota
	opStartTime
	opReq
	opReqWithoutQuery
	opResp
	opProtocol
	opResponseCode
	opResponseFlags
	opBytesReceived
	opBytesSent
	opDuration
	opResponseDuration
	opUpstreamHost
	opUpstreamCluster
	opDownstreamRemote
	opDownstreamRemoteNoPort
	opDownstreamLocal
	opDownstreamLocalNoPort
	opRouteName
	opUpstreamFailure
)

// operator describes how a command is written in a format string.
type operator struct {
	kind    opKind
	args    argMode
	numeric bool // rendered as a JSON number in a typed JSON field
}

type argMode uint8

const (
	argNone     argMode = iota // %NAME%
	argHeader                  // %NAME(X?Y):Z%, args required, length allowed
	argOptional                // %NAME% or %NAME(fmt)%
)

var operators = map[string]operator{
	"START_TIME":                             {opStartTime, argOptional, false},
	"REQ":                                    {opReq, argHeader, false},
	"REQ_WITHOUT_QUERY":                      {opReqWithoutQuery, argHeader, false},
	"RESP":                                   {opResp, argHeader, false},
	"PROTOCOL":                               {opProtocol, argNone, false},
	"RESPONSE_CODE":                          {opResponseCode, argNone, true},
	"RESPONSE_FLAGS":                         {opResponseFlags, argNone, false},
	"BYTES_RECEIVED":                         {opBytesReceived, argNone, true},
	"BYTES_SENT":                             {opBytesSent, argNone, true},
	"DURATION":                               {opDuration, argNone, true},
	"RESPONSE_DURATION":                      {opResponseDuration, argNone, true},
	"UPSTREAM_HOST":                          {opUpstreamHost, argNone, false},
	"UPSTREAM_CLUSTER":                       {opUpstreamCluster, argNone, false},
	"DOWNSTREAM_REMOTE_ADDRESS":              {opDownstreamRemote, argNone, false},
	"DOWNSTREAM_DIRECT_REMOTE_ADDRESS":       {opDownstreamRemote, argNone, false},
	"DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT": {opDownstreamRemoteNoPort, argNone, false},
	"DOWNSTREAM_LOCAL_ADDRESS":               {opDownstreamLocal, argNone, false},
	"DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT":  {opDownstreamLocalNoPort, argNone, false},
	"ROUTE_NAME":                             {opRouteName, argNone, false},
	"UPSTREAM_TRANSPORT_FAILURE_REASON":      {opUpstreamFailure, argNone, false},
}

// segment is a literal or one command operator.
type segment struct {
	op      opKind
	numeric bool
	lit     string      // literal text (opLiteral)
	keys    []string    // header names, lower-case, first present wins
	max     int         // truncate to max bytes; 0 = no limit
	tf      []timePiece // START_TIME layout
}

// Format is a compiled access log format, text or JSON. It is immutable
// and safe for concurrent use.
type Format struct {
	src       string
	segs      []segment  // text format
	json      *jsonValue // JSON format; nil for text
	omitEmpty bool
}

// String returns the source of a text format, or "json_format" for JSON.
func (f *Format) String() string {
	if f.json != nil {
		return "json_format"
	}
	return f.src
}

// IsJSON reports whether f writes JSON lines.
func (f *Format) IsJSON() bool { return f.json != nil }

// Compile parses an Envoy format string (text_format). Unknown operators
// and malformed commands are errors that name the operator and offset.
// "%%" stands for a literal percent sign.
func Compile(format string) (*Format, error) {
	segs, err := parseSegments(format)
	if err != nil {
		return nil, fmt.Errorf("accesslog: %w", err)
	}
	return &Format{src: format, segs: segs}, nil
}

func parseSegments(format string) ([]segment, error) {
	var segs []segment
	var lit strings.Builder
	flush := func() {
		if lit.Len() > 0 {
			segs = append(segs, segment{op: opLiteral, lit: lit.String()})
			lit.Reset()
		}
	}
	for i := 0; i < len(format); {
		c := format[i]
		if c != '%' {
			lit.WriteByte(c)
			i++
			continue
		}
		if i+1 < len(format) && format[i+1] == '%' {
			lit.WriteByte('%')
			i += 2
			continue
		}
		seg, n, err := parseCommand(format[i:])
		if err != nil {
			return nil, fmt.Errorf("format offset %d: %w", i, err)
		}
		flush()
		segs = append(segs, seg)
		i += n
	}
	flush()
	return segs, nil
}

// parseCommand parses "%NAME(args):len%" at the start of s and returns the
// segment and the bytes consumed.
func parseCommand(s string) (segment, int, error) {
	i := 1
	for i < len(s) && (s[i] >= 'A' && s[i] <= 'Z' || s[i] >= '0' && s[i] <= '9' || s[i] == '_') {
		i++
	}
	name := s[1:i]
	if name == "" {
		return segment{}, 0, fmt.Errorf("expected a command operator after %%")
	}
	var args string
	hasArgs := false
	if i < len(s) && s[i] == '(' {
		end := strings.IndexByte(s[i:], ')')
		if end < 0 {
			return segment{}, 0, fmt.Errorf("operator %s: unterminated argument list", name)
		}
		args, hasArgs = s[i+1:i+end], true
		i += end + 1
	}
	maxLen, hasLen := 0, false
	if i < len(s) && s[i] == ':' {
		j := i + 1
		for j < len(s) && s[j] >= '0' && s[j] <= '9' {
			j++
		}
		n, err := strconv.Atoi(s[i+1 : j])
		if err != nil || n <= 0 {
			return segment{}, 0, fmt.Errorf("operator %s: invalid length %q", name, s[i+1:j])
		}
		maxLen, hasLen = n, true
		i = j
	}
	if i >= len(s) || s[i] != '%' {
		return segment{}, 0, fmt.Errorf("operator %s: missing closing %%", name)
	}
	i++
	op, ok := operators[name]
	if !ok {
		return segment{}, 0, fmt.Errorf("unknown operator %s", name)
	}
	seg := segment{op: op.kind, numeric: op.numeric}
	switch op.args {
	case argNone:
		if hasArgs {
			return segment{}, 0, fmt.Errorf("operator %s takes no arguments", name)
		}
	case argHeader:
		if !hasArgs {
			return segment{}, 0, fmt.Errorf("operator %s needs a header name, e.g. %s(X-REQUEST-ID)", name, name)
		}
		alts := strings.Split(args, "?")
		if len(alts) > 2 {
			return segment{}, 0, fmt.Errorf("operator %s: at most one alternative header (X?Y), got %q", name, args)
		}
		for _, h := range alts {
			if h == "" || strings.ContainsAny(h, " \t\r\n%") {
				return segment{}, 0, fmt.Errorf("operator %s: invalid header name %q", name, h)
			}
			seg.keys = append(seg.keys, strings.ToLower(h))
		}
		seg.max = maxLen
	case argOptional:
		layout := defaultTimeLayout
		if hasArgs && args != "" {
			layout = args
		}
		tf, err := compileTime(layout)
		if err != nil {
			return segment{}, 0, fmt.Errorf("operator %s: %w", name, err)
		}
		seg.tf = tf
	}
	if hasLen && op.args != argHeader {
		return segment{}, 0, fmt.Errorf("operator %s takes no length", name)
	}
	return seg, i, nil
}

// escapeMode selects how string values are written.
type escapeMode uint8

const (
	escText escapeMode = iota // control bytes as \xHH, so a value cannot forge a line
	escJSON                   // JSON string contents
)

// Append formats e with f onto dst and returns the extended buffer. For a
// text format it allocates nothing when dst has room (the header lookups
// allocate only if the HeaderMap implementation does).
func (f *Format) Append(dst []byte, e *Entry) []byte {
	if f.json != nil {
		dst = f.json.appendJSON(dst, e, f.omitEmpty)
		return append(dst, '\n')
	}
	for i := range f.segs {
		s := &f.segs[i]
		if s.op == opLiteral {
			dst = append(dst, s.lit...)
			continue
		}
		var ok bool
		dst, ok = s.appendValue(dst, e, escText)
		if !ok && !f.omitEmpty {
			dst = append(dst, '-')
		}
	}
	return dst
}

// appendValue appends the value of one command operator; ok is false (and
// nothing is appended) when the value is not available.
func (s *segment) appendValue(dst []byte, e *Entry, mode escapeMode) ([]byte, bool) {
	switch s.op {
	case opStartTime:
		if e.Start.IsZero() {
			return dst, false
		}
		return appendTime(dst, e.Start.UTC(), s.tf, mode), true
	case opReq, opReqWithoutQuery:
		v, ok := lookup(e.ReqHeaders, s.keys)
		if !ok {
			return dst, false
		}
		if s.op == opReqWithoutQuery {
			if q := strings.IndexByte(v, '?'); q >= 0 {
				v = v[:q]
			}
		}
		return appendString(dst, truncate(v, s.max), mode), true
	case opResp:
		v, ok := lookup(e.RespHeaders, s.keys)
		if !ok {
			return dst, false
		}
		return appendString(dst, truncate(v, s.max), mode), true
	case opProtocol:
		return appendOptString(dst, protocolName(e.Protocol), mode)
	case opResponseCode:
		return strconv.AppendInt(dst, int64(e.Status), 10), true
	case opResponseFlags:
		return appendOptString(dst, e.Flags, mode)
	case opBytesReceived:
		return strconv.AppendUint(dst, e.BytesReceived, 10), true
	case opBytesSent:
		return strconv.AppendUint(dst, e.BytesSent, 10), true
	case opDuration:
		return strconv.AppendInt(dst, e.Duration.Milliseconds(), 10), true
	case opResponseDuration:
		if e.ResponseDuration <= 0 {
			return dst, false
		}
		return strconv.AppendInt(dst, e.ResponseDuration.Milliseconds(), 10), true
	case opUpstreamHost:
		return appendOptString(dst, e.UpstreamHost, mode)
	case opUpstreamCluster:
		return appendOptString(dst, e.UpstreamCluster, mode)
	case opDownstreamRemote:
		return appendAddr(dst, e.Downstream, true, mode)
	case opDownstreamRemoteNoPort:
		return appendAddr(dst, e.Downstream, false, mode)
	case opDownstreamLocal:
		return appendAddr(dst, e.DownstreamLocal, true, mode)
	case opDownstreamLocalNoPort:
		return appendAddr(dst, e.DownstreamLocal, false, mode)
	case opRouteName:
		return appendOptString(dst, e.RouteName, mode)
	case opUpstreamFailure:
		return appendOptString(dst, e.UpstreamFailure, mode)
	}
	return dst, false
}

func lookup(h api.HeaderMap, keys []string) (string, bool) {
	if h == nil {
		return "", false
	}
	for _, k := range keys {
		if v, ok := h.Get(k); ok && v != "" {
			return v, true
		}
	}
	return "", false
}

func truncate(s string, max int) string {
	if max > 0 && len(s) > max {
		return s[:max]
	}
	return s
}

func appendOptString(dst []byte, s string, mode escapeMode) ([]byte, bool) {
	if s == "" {
		return dst, false
	}
	return appendString(dst, s, mode), true
}

// protocolName shows codec names the way Envoy shows protocols.
func protocolName(p string) string {
	switch p {
	case "http1":
		return "HTTP/1.1"
	case "http2":
		return "HTTP/2"
	case "http3":
		return "HTTP/3"
	}
	return p
}

// appendAddr appends an address without allocating for TCP and UDP
// addresses (the common case); other kinds fall back to String.
func appendAddr(dst []byte, a net.Addr, withPort bool, mode escapeMode) ([]byte, bool) {
	var ap netip.AddrPort
	switch a := a.(type) {
	case nil:
		return dst, false
	case *net.TCPAddr:
		if a == nil {
			return dst, false
		}
		ap = a.AddrPort()
	case *net.UDPAddr:
		if a == nil {
			return dst, false
		}
		ap = a.AddrPort()
	default:
		s := a.String()
		if !withPort {
			if h, _, err := net.SplitHostPort(s); err == nil {
				s = h
			}
		}
		return appendOptString(dst, s, mode)
	}
	ip := ap.Addr().Unmap()
	if !ip.IsValid() {
		return dst, false
	}
	if !withPort {
		return ip.AppendTo(dst), true
	}
	return netip.AddrPortFrom(ip, ap.Port()).AppendTo(dst), true
}

const hexDigits = "0123456789abcdef"

// appendString appends s escaped for mode.
func appendString(dst []byte, s string, mode escapeMode) []byte {
	if mode == escJSON {
		return appendJSONString(dst, s)
	}
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != 0x7f {
			continue
		}
		dst = append(dst, s[start:i]...)
		dst = append(dst, '\\', 'x', hexDigits[c>>4], hexDigits[c&0xf])
		start = i + 1
	}
	return append(dst, s[start:]...)
}
