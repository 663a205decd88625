package http1

import (
	"strconv"

	"github.com/weftmesh/weft/api"
)

// ResponseHead is a parsed HTTP/1.x response head. Besides the header fields
// it answers the ":status" pseudo-header in Get and Set. Like RequestHead it
// is reused per connection and its strings view its buffer (see Header).
type ResponseHead struct {
	Header

	// Status is the three-digit status code.
	Status int
	// Reason is the reason phrase as sent, possibly "".
	Reason string
	// Minor is the HTTP/1.x minor version, 0 or 1.
	Minor int
	// ContentLength is the body length, -1 when there is no Content-Length.
	ContentLength int64
	// Chunked reports Transfer-Encoding: chunked.
	Chunked bool
	// Close reports Connection: close, or HTTP/1.0 without keep-alive.
	Close bool
	// Upgrade is the protocol switched to by a 101 response whose
	// Connection lists "upgrade", else "".
	Upgrade string
}

var _ api.HeaderMap = (*ResponseHead)(nil)

// Reset empties h for reuse, keeping its buffers.
func (h *ResponseHead) Reset() {
	h.Header.reset()
	h.Status, h.Minor = 0, 0
	h.Reason, h.Upgrade = "", ""
	h.ContentLength = -1
	h.Chunked, h.Close = false, false
}

func isStatusKey(key string) bool { return isLowerFold(key, ":status") }

// Get returns the first value of key; ":status" included.
func (h *ResponseHead) Get(key string) (string, bool) {
	if key == "" || key[0] != ':' {
		return h.Header.Get(key)
	}
	if isStatusKey(key) {
		return statusCode(h.Status), true
	}
	return "", false
}

// Set replaces every value of key. ":status" takes a three-digit code and
// sets Status (and clears a Reason that belonged to the old code).
func (h *ResponseHead) Set(key, value string) {
	if key == "" || key[0] != ':' {
		h.Header.Set(key, value)
		return
	}
	if !isStatusKey(key) || len(value) != 3 {
		return
	}
	n, ok := parseContentLength(value)
	if !ok || n < 100 {
		return
	}
	if int(n) != h.Status {
		h.Status = int(n)
		h.Reason = ""
	}
}

// Add appends a value for key; for ":status" it is Set.
func (h *ResponseHead) Add(key, value string) {
	if key == "" || key[0] != ':' {
		h.Header.Add(key, value)
		return
	}
	h.Set(key, value)
}

// Del removes every value of key; ":status" cannot be removed.
func (h *ResponseHead) Del(key string) {
	if key == "" || key[0] != ':' {
		h.Header.Del(key)
	}
}

// NoBody reports whether a response to method with this status has no body
// whatever its framing fields say: responses to HEAD, 1xx, 204 and 304, and
// 2xx responses to CONNECT (the connection becomes a tunnel).
func (h *ResponseHead) NoBody(method string) bool {
	switch {
	case method == "HEAD", h.Status < 200, h.Status == 204, h.Status == 304:
		return true
	case method == "CONNECT" && h.Status < 300:
		return true
	}
	return false
}

// parseStatusLine parses the status line at the start of h.raw and returns
// its length with CRLF, 0 while it is incomplete. A missing SP and reason
// after the code ("HTTP/1.1 200\r\n") is tolerated: common servers send it
// and it cannot change framing.
func (h *ResponseHead) parseStatusLine() (int, error) {
	raw := h.raw
	minor, ok, err := matchVersion(raw)
	if !ok || err != nil {
		return 0, err
	}
	for j := 8; j < 12 && j < len(raw); j++ {
		c := raw[j]
		switch {
		case j == 8 && c != ' ':
			return 0, malformed("invalid status line")
		case j == 9 && (c < '1' || c > '9'), j > 9 && (c < '0' || c > '9'):
			return 0, malformed("invalid status code")
		}
	}
	if len(raw) < 13 {
		return 0, nil
	}
	i := 12
	rs := i
	if raw[i] == ' ' {
		i++
		rs = i
		for i < len(raw) && raw[i] != '\r' {
			if !isValueChar(raw[i]) {
				return 0, malformed("control character in reason")
			}
			i++
		}
	}
	if i < len(raw) && raw[i] != '\r' || i+1 < len(raw) && raw[i+1] != '\n' {
		return 0, malformed("invalid status line")
	}
	if i+1 >= len(raw) {
		return 0, nil
	}
	h.Minor = minor
	h.Status = int(raw[9]-'0')*100 + int(raw[10]-'0')*10 + int(raw[11]-'0')
	h.Reason = h.view(rs, i)
	return i + 2, nil
}

// finish applies the response rules that need the whole head.
func (h *ResponseHead) finish(f *framing) error {
	if f.teSeen && h.Minor == 0 {
		return malformed("Transfer-Encoding in HTTP/1.0")
	}
	h.ContentLength = f.contentLength
	h.Chunked = f.chunked
	h.Close = f.close || h.Minor == 0 && !f.keepAlive
	if h.Status == 101 && f.connUpgrade {
		h.Upgrade = f.upgrade
	}
	return nil
}

// CloseDelimited reports whether, sent to a client speaking HTTP/1.<minor>,
// a response with a body has no length framing and so ends when the
// connection closes: neither Content-Length nor chunked (chunked needs
// minor 1). The caller must then close after the body and should pass
// close=true to AppendTo, or set Chunked and use a ChunkedWriter for an
// HTTP/1.1 client. It does not know the request method: a response to HEAD
// has no body whatever it says (see NoBody).
func (h *ResponseHead) CloseDelimited(minor int) bool {
	if h.Status < 200 || h.Status == 204 || h.Status == 304 {
		return false
	}
	if h.Chunked {
		return minor == 0
	}
	return h.ContentLength < 0
}

// AppendTo appends h serialized for a downstream client speaking
// HTTP/1.<minor>. The status line always says HTTP/1.1 (RFC 9110 6.2); an
// empty Reason is replaced by the standard phrase. Header fields follow in
// order except hop-by-hop ones (as for RequestHead.AppendTo), then framing
// regenerated from the struct fields:
//
//   - 1xx: none, but a 101 with Upgrade gets "Connection: Upgrade" and
//     "Upgrade: x";
//   - 204: no Content-Length or Transfer-Encoding;
//   - 304: Content-Length if known, never Transfer-Encoding;
//   - otherwise "Transfer-Encoding: chunked" when Chunked and minor is 1,
//     else "Content-Length: n" when ContentLength >= 0;
//   - "Connection: close" when close is true, else "Connection: keep-alive"
//     for minor 0 unless the body is close-delimited (see CloseDelimited).
//
// Appending to a reused buffer does not allocate.
func (h *ResponseHead) AppendTo(dst []byte, minor int, close bool) []byte {
	dst = append(dst, "HTTP/1.1 "...)
	if h.Status >= 100 && h.Status <= 999 {
		dst = append(dst, byte('0'+h.Status/100), byte('0'+h.Status/10%10), byte('0'+h.Status%10))
	} else {
		dst = strconv.AppendInt(dst, int64(h.Status), 10)
	}
	dst = append(dst, ' ')
	if h.Reason != "" {
		dst = append(dst, h.Reason...)
	} else {
		dst = append(dst, StatusText(h.Status)...)
	}
	dst = append(dst, "\r\n"...)
	_, connOpts := h.scanHeaders()
	dst = h.appendFields(dst, connOpts)
	switch {
	case h.Status < 200:
		if h.Status == 101 && h.Upgrade != "" {
			dst = append(dst, "Connection: Upgrade\r\nUpgrade: "...)
			dst = append(dst, h.Upgrade...)
			dst = append(dst, "\r\n"...)
		}
		return append(dst, "\r\n"...)
	case h.Status == 204:
	case h.Chunked && minor >= 1 && h.Status != 304:
		dst = append(dst, "Transfer-Encoding: chunked\r\n"...)
	case h.ContentLength >= 0 && !h.Chunked:
		dst = append(dst, "Content-Length: "...)
		dst = strconv.AppendInt(dst, h.ContentLength, 10)
		dst = append(dst, "\r\n"...)
	}
	if close {
		dst = append(dst, "Connection: close\r\n"...)
	} else if minor == 0 && !h.CloseDelimited(0) {
		dst = append(dst, "Connection: keep-alive\r\n"...)
	}
	return append(dst, "\r\n"...)
}

// statusCode returns code in decimal, from constants for common codes.
func statusCode(code int) string {
	switch code {
	case 100:
		return "100"
	case 101:
		return "101"
	case 200:
		return "200"
	case 201:
		return "201"
	case 204:
		return "204"
	case 206:
		return "206"
	case 301:
		return "301"
	case 302:
		return "302"
	case 304:
		return "304"
	case 307:
		return "307"
	case 308:
		return "308"
	case 400:
		return "400"
	case 401:
		return "401"
	case 403:
		return "403"
	case 404:
		return "404"
	case 429:
		return "429"
	case 500:
		return "500"
	case 502:
		return "502"
	case 503:
		return "503"
	case 504:
		return "504"
	}
	return strconv.Itoa(code)
}

// StatusText returns the standard reason phrase of code, "" if unknown.
func StatusText(code int) string {
	switch code {
	case 100:
		return "Continue"
	case 101:
		return "Switching Protocols"
	case 102:
		return "Processing"
	case 103:
		return "Early Hints"
	case 200:
		return "OK"
	case 201:
		return "Created"
	case 202:
		return "Accepted"
	case 203:
		return "Non-Authoritative Information"
	case 204:
		return "No Content"
	case 205:
		return "Reset Content"
	case 206:
		return "Partial Content"
	case 300:
		return "Multiple Choices"
	case 301:
		return "Moved Permanently"
	case 302:
		return "Found"
	case 303:
		return "See Other"
	case 304:
		return "Not Modified"
	case 307:
		return "Temporary Redirect"
	case 308:
		return "Permanent Redirect"
	case 400:
		return "Bad Request"
	case 401:
		return "Unauthorized"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 405:
		return "Method Not Allowed"
	case 406:
		return "Not Acceptable"
	case 408:
		return "Request Timeout"
	case 409:
		return "Conflict"
	case 410:
		return "Gone"
	case 411:
		return "Length Required"
	case 412:
		return "Precondition Failed"
	case 413:
		return "Content Too Large"
	case 414:
		return "URI Too Long"
	case 415:
		return "Unsupported Media Type"
	case 416:
		return "Range Not Satisfiable"
	case 417:
		return "Expectation Failed"
	case 421:
		return "Misdirected Request"
	case 422:
		return "Unprocessable Content"
	case 425:
		return "Too Early"
	case 426:
		return "Upgrade Required"
	case 428:
		return "Precondition Required"
	case 429:
		return "Too Many Requests"
	case 431:
		return "Request Header Fields Too Large"
	case 500:
		return "Internal Server Error"
	case 501:
		return "Not Implemented"
	case 502:
		return "Bad Gateway"
	case 503:
		return "Service Unavailable"
	case 504:
		return "Gateway Timeout"
	case 505:
		return "HTTP Version Not Supported"
	}
	return ""
}
