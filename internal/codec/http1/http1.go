// Package http1 is Weft's HTTP/1.1 message codec: a strict parser for request
// and response heads, body framing (Content-Length, chunked, read-until-close)
// and serializers that regenerate hop-by-hop framing for the other side of the
// proxy.
//
// The package is built for the proxy hot path. A connection owns one Reader
// and one RequestHead or ResponseHead and reuses them for every message; in
// steady state parsing, serializing and copying a body allocate nothing.
// Header values are strings that view the head's own byte buffer (see Header)
// instead of copies, which is what makes the parse allocation-free.
//
// The parser follows RFC 9112 strictly where leniency enables request
// smuggling or response splitting: CRLF line endings only, no obs-fold, no
// whitespace before the colon, one valid Content-Length, "chunked" as the only
// transfer coding and never together with Content-Length, a single valid Host
// in HTTP/1.1 requests.
package http1

import (
	"encoding/binary"
	"errors"
	"math/bits"
)

// Limits bound what a peer may send in a message head.
type Limits struct {
	// MaxHeaderBytes bounds the whole head including the start line and the
	// final empty line; 0 means 60 KiB. Chunked trailers share the bound.
	MaxHeaderBytes int
	// MaxHeaders bounds the number of header fields; 0 means 100.
	MaxHeaders int
}

// Default limits, used for zero fields of Limits.
const (
	DefaultMaxHeaderBytes = 60 << 10
	DefaultMaxHeaders     = 100
)

func (l Limits) norm() Limits {
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if l.MaxHeaders <= 0 {
		l.MaxHeaders = DefaultMaxHeaders
	}
	return l
}

var (
	// ErrHeaderTooLarge reports a head (or chunked trailer section) over
	// Limits; a server answers 431.
	ErrHeaderTooLarge = errors.New("http1: message head too large")
	// ErrMalformed reports a message that breaks HTTP/1.1 syntax or framing
	// rules; a server answers 400. Returned errors wrap it with a detail, so
	// test with errors.Is.
	ErrMalformed = errors.New("http1: malformed message")
)

// malformed is an ErrMalformed with a fixed detail. Being a constant string
// type, returning one never allocates, so a flood of bad requests costs no
// garbage.
type malformed string

func (e malformed) Error() string { return ErrMalformed.Error() + ": " + string(e) }

func (e malformed) Unwrap() error { return ErrMalformed }

// charClass classifies every byte: classToken for RFC 9110 tchar,
// classValue for field-value bytes (VCHAR, obs-text, SP, HTAB), classHost
// for Host bytes (unreserved, sub-delims, ':', '[', ']', '%'). A string
// constant rather than a variable: one load per byte, and immutable.
const charClass = "" +
	"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\x00" +
	"\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00" +
	"\x02\x07\x02\x03\x07\x07\x07\x07\x06\x06\x07\x07\x06\x07\x07\x02" +
	"\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x06\x06\x02\x06\x02\x02" +
	"\x02\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07" +
	"\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x06\x02\x06\x03\x07" +
	"\x03\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07" +
	"\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x02\x03\x02\x07\x00" +
	"\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02" +
	"\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02" +
	"\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02" +
	"\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02" +
	"\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02" +
	"\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02" +
	"\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02" +
	"\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02\x02"

const (
	classToken = 1 << iota
	classValue
	classHost
)

// isToken reports whether c is an RFC 9110 tchar.
func isToken(c byte) bool { return charClass[c]&classToken != 0 }

// isValueChar reports whether c may appear in a field value: VCHAR,
// obs-text, SP or HTAB.
func isValueChar(c byte) bool { return charClass[c]&classValue != 0 }

func isHostChar(c byte) bool { return charClass[c]&classHost != 0 }

// SWAR constants: a byte of ones, a byte of high bits.
const (
	swarLo = 0x0101010101010101
	swarHi = 0x8080808080808080
)

// plainEnd returns the index of the first byte at or after i that is below
// min (at most 0x80) or DEL. It is the inner loop of field values (min 0x20)
// and request-targets (min 0x21) and checks eight bytes per step with exact
// per-byte lane arithmetic (no carries cross lanes), so it finds the
// stopping byte without a byte loop.
func plainEnd(b []byte, i int, min byte) int {
	add := uint64(0x80-min) * swarLo
	const low7 = ^uint64(swarHi)
	for ; i+8 <= len(b); i += 8 {
		x := binary.LittleEndian.Uint64(b[i:])
		ge := (x&low7 + add) | x // lane high bit: byte >= min
		d := x ^ 0x7f*swarLo
		nd := (d&low7 + low7) | d // lane high bit: byte != DEL
		if bad := ^(ge & nd) & swarHi; bad != 0 {
			return i + bits.TrailingZeros64(bad)>>3
		}
	}
	for i < len(b) && b[i] >= min && b[i] != 0x7f {
		i++
	}
	return i
}

func validToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isToken(s[i]) {
			return false
		}
	}
	return true
}

func validValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isValueChar(s[i]) {
			return false
		}
	}
	return true
}

func validHost(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isHostChar(s[i]) {
			return false
		}
	}
	return true
}

// validTarget reports whether s is a non-empty request-target without
// whitespace or control bytes. obs-text (>= 0x80) is tolerated as many
// clients send raw UTF-8 paths; it cannot alter framing.
func validTarget(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == 0x7f {
			return false
		}
	}
	return true
}

// lower folds an ASCII upper-case letter.
func lower(c byte) byte {
	if c-'A' < 26 {
		return c + 'a' - 'A'
	}
	return c
}

// equalFold reports whether a and b are equal under ASCII case folding.
func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if a[i] != b[i] && lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

// isLowerFold reports whether s equals lc (already lower case) ignoring ASCII
// case.
func isLowerFold(s, lc string) bool {
	if len(s) != len(lc) {
		return false
	}
	for i := 0; i < len(s); i++ {
		if lower(s[i]) != lc[i] {
			return false
		}
	}
	return true
}

func isOWS(c byte) bool { return c == ' ' || c == '\t' }

func trimOWS(s string) string {
	for len(s) > 0 && isOWS(s[0]) {
		s = s[1:]
	}
	for len(s) > 0 && isOWS(s[len(s)-1]) {
		s = s[:len(s)-1]
	}
	return s
}

// nextListElem splits the first element off a comma-separated list and
// trims its OWS.
func nextListElem(s string) (elem, rest string) {
	for i := 0; i < len(s); i++ {
		if s[i] == ',' {
			return trimOWS(s[:i]), s[i+1:]
		}
	}
	return trimOWS(s), ""
}

// listHas reports whether the comma-separated list s has an element equal to
// lc (lower case) ignoring case.
func listHas(s, lc string) bool {
	for s != "" {
		var e string
		e, s = nextListElem(s)
		if isLowerFold(e, lc) {
			return true
		}
	}
	return false
}

// parseContentLength parses 1*DIGIT into a non-negative int64.
func parseContentLength(s string) (int64, bool) {
	if s == "" {
		return 0, false
	}
	var n int64
	for i := 0; i < len(s); i++ {
		c := s[i] - '0'
		if c > 9 {
			return 0, false
		}
		if n > (1<<63-1-int64(c))/10 {
			return 0, false
		}
		n = n*10 + int64(c)
	}
	return n, true
}
