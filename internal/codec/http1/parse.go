package http1

// framing collects the fields that decide how a message is delimited and
// whether the connection persists.
type framing struct {
	contentLength int64 // -1 when absent
	chunked       bool
	teSeen        bool
	close         bool
	keepAlive     bool
	connUpgrade   bool
	expect100     bool
	hosts         int
	upgrade       string
}

// parseFields parses the complete field lines of h.raw from pos. It returns
// the position after the last complete line and whether that was the empty
// line ending the head; a partial line is left for the next call, once more
// bytes arrived. Any LF not preceded by CR, and any CR not followed by LF, is
// an error as soon as it is seen, never a reason to wait.
func parseFields(h *Header, pos, maxHeaders int, f *framing) (int, bool, error) {
	raw := h.raw
	for pos < len(raw) {
		c := raw[pos]
		if c == '\r' {
			if pos+1 >= len(raw) {
				return pos, false, nil
			}
			if raw[pos+1] != '\n' {
				return pos, false, malformed("bare CR")
			}
			return pos + 2, true, f.check()
		}
		if isOWS(c) {
			return pos, false, malformed("obsolete line folding")
		}
		i := pos
		for i < len(raw) && isToken(raw[i]) {
			i++
		}
		if i >= len(raw) {
			return pos, false, nil
		}
		if raw[i] != ':' {
			if i > pos && isOWS(raw[i]) {
				return pos, false, malformed("whitespace before colon")
			}
			return pos, false, malformed("invalid header name")
		}
		if i == pos {
			return pos, false, malformed("empty header name")
		}
		name := h.view(pos, i)
		i++
		for i < len(raw) && isOWS(raw[i]) {
			i++
		}
		vs := i
		for {
			i = plainEnd(raw, i, 0x20)
			if i >= len(raw) || raw[i] != '\t' {
				break
			}
			i++
		}
		if i+1 >= len(raw) {
			return pos, false, nil
		}
		if raw[i] != '\r' {
			return pos, false, malformed("control character in header value")
		}
		if raw[i+1] != '\n' {
			return pos, false, malformed("bare CR")
		}
		ve := i
		for ve > vs && isOWS(raw[ve-1]) {
			ve--
		}
		value := h.view(vs, ve)
		if len(h.fields) >= maxHeaders {
			return pos, false, ErrHeaderTooLarge
		}
		h.fields = append(h.fields, field{name, value})
		if err := f.inspect(name, value); err != nil {
			return pos, false, err
		}
		pos = i + 2
	}
	return pos, false, nil
}

// check applies the rules that need the whole head.
func (f *framing) check() error {
	if f.teSeen {
		if !f.chunked {
			return malformed("empty Transfer-Encoding")
		}
		if f.contentLength >= 0 {
			return malformed("both Transfer-Encoding and Content-Length")
		}
	}
	return nil
}

// inspect records a framing-relevant field. Names are matched by length
// first so an ordinary field costs one switch.
func (f *framing) inspect(name, value string) error {
	switch len(name) {
	case 4:
		if isLowerFold(name, "host") {
			if !validHost(value) {
				return malformed("invalid Host")
			}
			f.hosts++
		}
	case 6:
		if isLowerFold(name, "expect") && isLowerFold(value, "100-continue") {
			f.expect100 = true
		}
	case 7:
		if isLowerFold(name, "upgrade") && f.upgrade == "" {
			f.upgrade = value
		}
	case 10:
		if isLowerFold(name, "connection") {
			for s := value; s != ""; {
				var e string
				e, s = nextListElem(s)
				switch {
				case isLowerFold(e, "close"):
					f.close = true
				case isLowerFold(e, "keep-alive"):
					f.keepAlive = true
				case isLowerFold(e, "upgrade"):
					f.connUpgrade = true
				}
			}
		}
	case 14:
		if isLowerFold(name, "content-length") {
			n, ok := parseContentLength(value)
			if !ok {
				return malformed("invalid Content-Length")
			}
			if f.contentLength >= 0 && f.contentLength != n {
				return malformed("conflicting Content-Length")
			}
			f.contentLength = n
		}
	case 17:
		if isLowerFold(name, "transfer-encoding") {
			f.teSeen = true
			for s := value; s != ""; {
				var e string
				e, s = nextListElem(s)
				if e == "" {
					continue
				}
				// Only chunked is supported: the proxy regenerates framing and
				// would otherwise forward a body still in another coding.
				if !isLowerFold(e, "chunked") {
					return malformed("unsupported Transfer-Encoding")
				}
				if f.chunked {
					return malformed("chunked applied twice")
				}
				f.chunked = true
			}
		}
	}
	return nil
}

// matchVersion checks the bytes of b against "HTTP/1.0" or "HTTP/1.1" as
// far as they go. It returns the minor version once all eight are there.
func matchVersion(b []byte) (minor int, complete bool, err error) {
	const v = "HTTP/1."
	n := min(len(b), len(v))
	if string(b[:n]) != v[:n] {
		return 0, false, malformed("unsupported HTTP version")
	}
	if len(b) < 8 {
		return 0, false, nil
	}
	switch b[7] {
	case '0':
		return 0, true, nil
	case '1':
		return 1, true, nil
	}
	return 0, false, malformed("unsupported HTTP version")
}
