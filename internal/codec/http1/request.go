package http1

import (
	"strconv"

	"github.com/weftmesh/weft/api"
)

// RequestHead is a parsed HTTP/1.x request head. Besides the header fields it
// answers the pseudo-headers in Get, Set, Add and Del: ":method", ":path"
// (the request-target), ":authority" (the Host field) and ":scheme"
// (always "http"; Set ignores it). Range leaves pseudo-headers out.
//
// For an absolute-form target ("GET http://h/p HTTP/1.1") the Host field is
// set to the target's authority, which RFC 9112 3.2.2 says takes precedence,
// and a target with userinfo is rejected.
//
// A connection reuses one RequestHead for all its requests; the string
// fields and header values view its buffer and are valid until the next
// Reset (see Header). Method is the exception when it is one of the nine
// standard methods: it is then a constant and valid forever.
type RequestHead struct {
	Header

	// Method is the request method, case-sensitive.
	Method string
	// Target is the request-target as sent.
	Target string
	// Minor is the HTTP/1.x minor version, 0 or 1.
	Minor int
	// ContentLength is the body length, -1 when there is no Content-Length.
	ContentLength int64
	// Chunked reports Transfer-Encoding: chunked.
	Chunked bool
	// Close reports Connection: close, or HTTP/1.0 without keep-alive.
	Close bool
	// Upgrade is the Upgrade field (e.g. "websocket") when Connection lists
	// "upgrade" in an HTTP/1.1 request, else "".
	Upgrade string
	// Expect100 reports Expect: 100-continue in an HTTP/1.1 request.
	Expect100 bool
}

var _ api.HeaderMap = (*RequestHead)(nil)

// Reset empties h for reuse, keeping its buffers.
func (h *RequestHead) Reset() {
	h.Header.reset()
	h.Method, h.Target, h.Upgrade = "", "", ""
	h.Minor = 0
	h.ContentLength = -1
	h.Chunked, h.Close, h.Expect100 = false, false, false
}

// Host returns the Host field, "" if there is none.
func (h *RequestHead) Host() string {
	v, _ := h.Header.Get("Host")
	return v
}

// pseudo identifies a pseudo-header key of a request.
func reqPseudo(key string) int {
	switch len(key) {
	case 5:
		if isLowerFold(key, ":path") {
			return 1
		}
	case 7:
		if isLowerFold(key, ":method") {
			return 2
		}
		if isLowerFold(key, ":scheme") {
			return 3
		}
	case 10:
		if isLowerFold(key, ":authority") {
			return 4
		}
	}
	return 0
}

// Get returns the first value of key; pseudo-headers included.
func (h *RequestHead) Get(key string) (string, bool) {
	if key == "" || key[0] != ':' {
		return h.Header.Get(key)
	}
	switch reqPseudo(key) {
	case 1:
		return h.Target, true
	case 2:
		return h.Method, true
	case 3:
		return "http", true
	case 4:
		return h.Header.Get("Host")
	}
	return "", false
}

// Set replaces every value of key. ":method" and ":path" change Method and
// Target, ":authority" sets Host. Values that would make the head invalid
// (bad characters, or a target form the method does not allow, RFC 9112
// 3.2) are ignored, so a filter cannot break the serialized request.
func (h *RequestHead) Set(key, value string) {
	if key == "" || key[0] != ':' {
		h.Header.Set(key, value)
		return
	}
	switch reqPseudo(key) {
	case 1:
		if validTarget(value) && targetForm(h.Method, value) {
			h.Target = value
		}
	case 2:
		if validToken(value) && (h.Target == "" || targetForm(value, h.Target)) {
			h.Method = value
		}
	case 4:
		if validHost(value) {
			h.Header.Set("Host", value)
		}
	}
}

// Add appends a value for key; for pseudo-headers, which have one value, it
// is Set.
func (h *RequestHead) Add(key, value string) {
	if key == "" || key[0] != ':' {
		h.Header.Add(key, value)
		return
	}
	h.Set(key, value)
}

// Del removes every value of key. Of the pseudo-headers only ":authority"
// can be removed (it removes Host).
func (h *RequestHead) Del(key string) {
	if key == "" || key[0] != ':' {
		h.Header.Del(key)
		return
	}
	if reqPseudo(key) == 4 {
		h.Header.Del("Host")
	}
}

// parseRequestLine parses the request line at the start of h.raw and
// returns its length with CRLF, 0 while it is incomplete.
func (h *RequestHead) parseRequestLine() (int, error) {
	raw := h.raw
	i := 0
	for i < len(raw) && isToken(raw[i]) {
		i++
	}
	if i >= len(raw) {
		return 0, nil
	}
	if i == 0 || raw[i] != ' ' {
		return 0, malformed("invalid method")
	}
	ms := i
	i++
	ts := i
	i = plainEnd(raw, i, 0x21)
	if i >= len(raw) {
		return 0, nil
	}
	if i == ts || raw[i] != ' ' {
		return 0, malformed("invalid request-target")
	}
	te := i
	i++
	minor, ok, err := matchVersion(raw[i:])
	if !ok || err != nil {
		return 0, err
	}
	i += 8
	if i < len(raw) && raw[i] != '\r' || i+1 < len(raw) && raw[i+1] != '\n' {
		return 0, malformed("invalid request line")
	}
	if i+1 >= len(raw) {
		return 0, nil
	}
	h.Method = internMethod(raw[:ms])
	if h.Method == "" {
		h.Method = h.view(0, ms)
	}
	h.Target = h.view(ts, te)
	if !targetForm(h.Method, h.Target) {
		return 0, malformed("invalid request-target form")
	}
	h.Minor = minor
	return i + 2, nil
}

// finish applies the request rules that need the whole head.
func (h *RequestHead) finish(f *framing) error {
	minor := h.Minor
	if f.hosts > 1 {
		return malformed("duplicate Host")
	}
	if f.hosts == 0 && minor == 1 {
		return malformed("missing Host")
	}
	if f.teSeen && minor == 0 {
		return malformed("Transfer-Encoding in HTTP/1.0")
	}
	if h.Method != "CONNECT" {
		if a, abs := absAuthority(h.Target); abs {
			// The target's authority wins over Host (RFC 9112 3.2.2); making
			// Host agree keeps routing on :authority and the upstream's view
			// of the request the same.
			if !validHost(a) {
				return malformed("invalid authority in request-target")
			}
			if host, ok := h.Header.Get("Host"); !ok || !equalFold(host, a) {
				h.Header.Set("Host", a)
			}
		}
	}
	h.ContentLength = f.contentLength
	h.Chunked = f.chunked
	h.Close = f.close || minor == 0 && !f.keepAlive
	if minor == 1 {
		if f.connUpgrade {
			h.Upgrade = f.upgrade
		}
		h.Expect100 = f.expect100
	}
	return nil
}

// targetForm checks the request-target form against the method
// (RFC 9112 3.2): authority-form only for CONNECT, asterisk-form only for
// OPTIONS, otherwise origin-form or absolute-form.
func targetForm(method, target string) bool {
	if method == "CONNECT" {
		return target[0] != '/' && target != "*" && validHost(target)
	}
	switch target[0] {
	case '/':
		return true
	case '*':
		return target == "*" && method == "OPTIONS"
	}
	return schemeLen(target) > 0
}

// schemeLen returns the length of an absolute-form target's "scheme://"
// prefix, 0 if there is none.
func schemeLen(t string) int {
	for i := 0; i < len(t); i++ {
		c := t[i]
		switch {
		case c-'a' < 26 || c-'A' < 26:
		case i > 0 && (c-'0' < 10 || c == '+' || c == '-' || c == '.'):
		case i > 0 && c == ':':
			if len(t) >= i+3 && t[i+1] == '/' && t[i+2] == '/' {
				return i + 3
			}
			return 0
		default:
			return 0
		}
	}
	return 0
}

// absAuthority returns the authority of an absolute-form target and
// whether t is in absolute form.
func absAuthority(t string) (string, bool) {
	n := schemeLen(t)
	if n == 0 {
		return "", false
	}
	a := t[n:]
	for i := 0; i < len(a); i++ {
		if c := a[i]; c == '/' || c == '?' || c == '#' {
			return a[:i], true
		}
	}
	return a, true
}

// targetAuthority returns the authority of an absolute-form target when it
// is a valid Host value, else "".
func targetAuthority(t string) string {
	a, _ := absAuthority(t)
	if !validHost(a) {
		return ""
	}
	return a
}

// internMethod returns a constant for the standard methods, so Method of
// common requests stays valid past Reset and compares by pointer first.
func internMethod(b []byte) string {
	switch string(b) {
	case "GET":
		return "GET"
	case "POST":
		return "POST"
	case "HEAD":
		return "HEAD"
	case "PUT":
		return "PUT"
	case "DELETE":
		return "DELETE"
	case "OPTIONS":
		return "OPTIONS"
	case "PATCH":
		return "PATCH"
	case "CONNECT":
		return "CONNECT"
	case "TRACE":
		return "TRACE"
	}
	return ""
}

// scanHeaders reports whether a Host field is present and whether a
// Connection field names options other than close, keep-alive and upgrade.
func (h *Header) scanHeaders() (hasHost, connOpts bool) {
	for i := range h.fields {
		f := &h.fields[i]
		switch len(f.name) {
		case 4:
			if isLowerFold(f.name, "host") {
				hasHost = true
			}
		case 10:
			if isLowerFold(f.name, "connection") {
				for s := f.value; s != ""; {
					var e string
					e, s = nextListElem(s)
					if e != "" && !isLowerFold(e, "close") && !isLowerFold(e, "keep-alive") && !isLowerFold(e, "upgrade") {
						connOpts = true
					}
				}
			}
		}
	}
	return hasHost, connOpts
}

// AppendTo appends h serialized as an HTTP/1.1 request for an upstream: the
// request line, the header fields in order with their received name case
// except hop-by-hop ones (Connection, Keep-Alive, Proxy-Connection, TE,
// Trailer, Transfer-Encoding, Upgrade, Content-Length, Expect and any field
// the Connection field names, Host excepted), then framing derived from the
// struct fields: "Transfer-Encoding: chunked" when Chunked, else
// "Content-Length: n" when ContentLength >= 0, and "Connection: Upgrade" with
// "Upgrade: x" when Upgrade != "". A request without Host (HTTP/1.0) gets one
// from an absolute-form target, or an empty one as RFC 9112 3.2 requires.
// Appending to a reused buffer does not allocate.
func (h *RequestHead) AppendTo(dst []byte) []byte {
	dst = append(dst, h.Method...)
	dst = append(dst, ' ')
	dst = append(dst, h.Target...)
	dst = append(dst, " HTTP/1.1\r\n"...)
	hasHost, connOpts := h.scanHeaders()
	dst = h.appendFields(dst, connOpts)
	if !hasHost {
		dst = append(dst, "Host: "...)
		dst = append(dst, targetAuthority(h.Target)...)
		dst = append(dst, "\r\n"...)
	}
	if h.Chunked {
		dst = append(dst, "Transfer-Encoding: chunked\r\n"...)
	} else if h.ContentLength >= 0 {
		dst = append(dst, "Content-Length: "...)
		dst = strconv.AppendInt(dst, h.ContentLength, 10)
		dst = append(dst, "\r\n"...)
	}
	if h.Upgrade != "" {
		dst = append(dst, "Connection: Upgrade\r\nUpgrade: "...)
		dst = append(dst, h.Upgrade...)
		dst = append(dst, "\r\n"...)
	}
	return append(dst, "\r\n"...)
}
