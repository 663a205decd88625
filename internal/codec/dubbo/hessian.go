package dubbo

import (
	"math"
	"strconv"
	"unicode/utf8"
	"unsafe"
)

// This file is a structural reader for hessian2 (the serialization of
// almost every Dubbo 2.x request): it finds where each value ends without
// building it. The proxy needs only the five leading strings and the
// attachments of a request; the arguments between them are skipped.
//
// dubbo-go-hessian2 cannot do this job on the hot path, for three reasons
// measured or read in v1.13.2: its Decoder reports no byte offsets (so the
// attachments could not be rewritten in place); it builds every argument
// (maps, reflect values, strings) only to throw it away; and it trusts
// length prefixes from the wire, so the 7-byte value `58 49 7f ff ff ff 4e`
// (a list claiming 2^31-1 elements) makes it allocate 32 GiB, a fatal,
// unrecoverable out-of-memory. Here every length is checked against the
// bytes that remain before anything is read, nothing is allocated, and the
// library stays the reference: the tests check this reader against it value
// by value, and Frame.AttachmentValue uses it to build typed values from
// spans this reader has already bounded.

// hessianError is a fixed reason a hessian2 value is malformed. A constant
// string type, so returning one allocates nothing.
type hessianError string

func (e hessianError) Error() string { return string(e) }

const (
	errTruncated   hessianError = "truncated value"
	errBadTag      hessianError = "unexpected tag"
	errBadUTF8     hessianError = "bad utf-8 in string"
	errBadLength   hessianError = "length exceeds the body"
	errTooDeep     hessianError = "values nested too deep"
	errBadClassRef hessianError = "object refers to an undefined class"
	errNotString   hessianError = "not a string"
	errNotInt      hessianError = "not an int"
	errBadChunk    hessianError = "string or binary chunk not followed by another chunk"
)

// scanner walks hessian2 values in b. classes holds the field count of each
// class definition met so far, in order, which is all that is needed to
// skip object instances; it is reused across frames.
type scanner struct {
	b        []byte
	classes  []int32
	maxDepth int
}

func (s *scanner) reset(b []byte, maxDepth int) {
	s.b = b
	s.classes = s.classes[:0]
	s.maxDepth = maxDepth
}

// isStringTag reports whether t starts a string (or a string chunk).
func isStringTag(t byte) bool {
	return t <= 0x1f || (t >= 0x30 && t <= 0x33) || t == 'R' || t == 'S'
}

// readInt reads an int in any of its four encodings at off.
func (s *scanner) readInt(off int) (int32, int, error) {
	b := s.b
	if off >= len(b) {
		return 0, off, errTruncated
	}
	t := b[off]
	switch {
	case t >= 0x80 && t <= 0xbf:
		return int32(t) - 0x90, off + 1, nil
	case t >= 0xc0 && t <= 0xcf:
		if off+2 > len(b) {
			return 0, off, errTruncated
		}
		return (int32(t)-0xc8)<<8 | int32(b[off+1]), off + 2, nil
	case t >= 0xd0 && t <= 0xd7:
		if off+3 > len(b) {
			return 0, off, errTruncated
		}
		return (int32(t)-0xd4)<<16 | int32(b[off+1])<<8 | int32(b[off+2]), off + 3, nil
	case t == 'I':
		if off+5 > len(b) {
			return 0, off, errTruncated
		}
		return int32(uint32(b[off+1])<<24 | uint32(b[off+2])<<16 | uint32(b[off+3])<<8 | uint32(b[off+4])), off + 5, nil
	}
	return 0, off, errNotInt
}

// readCount reads a non-negative int used as a count of values that follow,
// each at least one byte long, and rejects a count the body cannot hold.
func (s *scanner) readCount(off int) (int, int, error) {
	v, end, err := s.readInt(off)
	if err != nil {
		return 0, off, err
	}
	if v < 0 || int(v) > len(s.b)-end {
		return 0, off, errBadLength
	}
	return int(v), end, nil
}

// skipUTF8 returns the end of n UTF-16 units of hessian2's UTF-8 starting at
// off, and whether the run holds no surrogate pair to join. Characters
// outside the BMP arrive as two 3-byte surrogate halves, each one unit, as
// Java and dubbo-go-hessian2 write them; 4-byte sequences are rejected, as
// both readers reject them. Continuation bytes are not checked, also like
// both readers.
//
// For well-formed text every reader agrees. For malformed text (a lone or
// garbled surrogate half) dubbo-go-hessian2 differs from Java: it reads n
// minus the units counted so far in bytes, decodes every byte read, reading
// more whenever a character or a high surrogate's partner runs past them,
// and counts a joined pair as two units even where one was left. Weft
// follows it step by step, so that a proxy and the Go peers beside it read
// the same names and the same value boundaries from the same bytes.
func (s *scanner) skipUTF8(off, n int) (end int, plain bool, err error) {
	b := s.b
	if n > len(b)-off {
		return off, false, errBadLength
	}
	// ASCII, the usual names and values, is n bytes.
	i := off
	for i < off+n && b[i] < 0x80 {
		i++
	}
	if i == off+n {
		return i, true, nil
	}
	plain = true
	start, read := off, off // next byte to decode; end of the bytes read
	for count := 0; count < n; {
		read += n - count
		for start < read {
			if read > len(b) {
				return off, false, errTruncated
			}
			c := b[start]
			switch {
			case c < 0x80:
				start++
				count++
				continue
			case c&0xe0 == 0xc0:
				read = max(read, start+2)
				start += 2
				count++
				continue
			case c&0xf0 != 0xe0:
				return off, false, errBadUTF8
			}
			if read = max(read, start+3); read > len(b) {
				return off, false, errTruncated
			}
			if highAt(b, start) {
				if read = max(read, start+6); read > len(b) {
					return off, false, errTruncated
				}
				if lowAt(b, start+3) {
					start += 6
					count += 2
					plain = false
					continue
				}
			}
			start += 3
			count++
		}
	}
	if read > len(b) {
		return off, false, errTruncated
	}
	return read, plain, nil
}

// highAt and lowAt report whether the 3-byte sequence at i is a high or a
// low UTF-16 surrogate half the way dubbo-go-hessian2 decodes one: the value
// is taken by masking (lead&0x0f, then 6 bits of each following byte)
// without checking the bytes' forms. The caller has checked that the bytes
// are there.
func highAt(b []byte, i int) bool {
	v := b[i+1] & 0x3f
	return b[i] == 0xed && v >= 0x20 && v <= 0x2f
}

func lowAt(b []byte, i int) bool {
	return b[i]&0x0f == 0x0d && b[i+1]&0x3f >= 0x30
}

// stringChunk reads the header of one string chunk at off and returns where
// its data starts and ends and whether it is the final chunk.
func (s *scanner) stringChunk(off int) (data, end int, final, plain bool, err error) {
	b := s.b
	if off >= len(b) {
		return 0, off, false, false, errTruncated
	}
	t := b[off]
	var n int
	final = true
	switch {
	case t <= 0x1f:
		n, data = int(t), off+1
	case t >= 0x30 && t <= 0x33:
		if off+2 > len(b) {
			return 0, off, false, false, errTruncated
		}
		n, data = int(t-0x30)<<8|int(b[off+1]), off+2
	case t == 'S' || t == 'R':
		if off+3 > len(b) {
			return 0, off, false, false, errTruncated
		}
		n, data = int(b[off+1])<<8|int(b[off+2]), off+3
		final = t == 'S'
	default:
		return 0, off, false, false, errNotString
	}
	end, plain, err = s.skipUTF8(data, n)
	return data, end, final, plain, err
}

// skipString returns the end of the string (of any form, chunked or not)
// at off.
func (s *scanner) skipString(off int) (int, error) {
	for {
		_, end, final, _, err := s.stringChunk(off)
		if err != nil {
			return off, err
		}
		if final {
			return end, nil
		}
		if end >= len(s.b) {
			return end, errTruncated
		}
		if !isStringTag(s.b[end]) {
			return end, errBadChunk
		}
		off = end
	}
}

// readString reads the string at off. A single-chunk string without
// surrogate pairs, which is every service, method and attachment name seen
// in practice, is returned as a view of s.b: no copy, no allocation. Chunked
// strings and strings with characters outside the BMP are assembled and
// converted to UTF-8, which allocates.
func (s *scanner) readString(off int) (string, int, error) {
	data, end, final, plain, err := s.stringChunk(off)
	if err != nil {
		return "", off, err
	}
	if final && plain {
		return view(s.b[data:end]), end, nil
	}
	var buf []byte
	for {
		buf = appendCESU(buf, s.b[data:end])
		if final {
			return string(buf), end, nil
		}
		if end >= len(s.b) {
			return "", end, errTruncated
		}
		if !isStringTag(s.b[end]) {
			return "", end, errBadChunk
		}
		data, end, final, _, err = s.stringChunk(end)
		if err != nil {
			return "", end, err
		}
	}
}

// view returns b as a string without copying. The string is valid while b
// is not written, which the Frame guarantees until its next Decode.
func view(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

// appendCESU appends the UTF-8 run b (one chunk's data, checked by
// skipUTF8) to dst, joining surrogate pairs into 4-byte UTF-8 as
// dubbo-go-hessian2 does; everything else is copied as is.
func appendCESU(dst, b []byte) []byte {
	for i := 0; i < len(b); {
		c := b[i]
		switch {
		case c < 0x80:
			dst = append(dst, c)
			i++
			continue
		case c&0xf0 == 0xe0 && i+6 <= len(b) && highAt(b, i) && lowAt(b, i+3):
			hi := rune(b[i]&0x0f)<<12 | rune(b[i+1]&0x3f)<<6 | rune(b[i+2]&0x3f)
			lo := rune(b[i+3]&0x0f)<<12 | rune(b[i+4]&0x3f)<<6 | rune(b[i+5]&0x3f)
			dst = utf8.AppendRune(dst, (hi-0xd800)<<10+(lo-0xdc00)+0x10000)
			i += 6
			continue
		}
		n := 2
		if c&0xf0 == 0xe0 {
			n = 3
		}
		n = min(n, len(b)-i)
		dst = append(dst, b[i:i+n]...)
		i += n
	}
	return dst
}

// skipBinary returns the end of the binary value (any form) at off.
func (s *scanner) skipBinary(off int) (int, error) {
	b := s.b
	for {
		if off >= len(b) {
			return off, errTruncated
		}
		t := b[off]
		var n, data int
		final := true
		switch {
		case t >= 0x20 && t <= 0x2f:
			n, data = int(t-0x20), off+1
		case t >= 0x34 && t <= 0x37:
			if off+2 > len(b) {
				return off, errTruncated
			}
			n, data = int(t-0x34)<<8|int(b[off+1]), off+2
		case t == 'A' || t == 'B':
			if off+3 > len(b) {
				return off, errTruncated
			}
			n, data = int(b[off+1])<<8|int(b[off+2]), off+3
			final = t == 'B'
		default:
			return off, errBadChunk
		}
		if n > len(b)-data {
			return off, errTruncated
		}
		off = data + n
		if final {
			return off, nil
		}
	}
}

// skipType skips the type of a typed list or map: a type name or a
// reference to one.
func (s *scanner) skipType(off int) (int, error) {
	if off >= len(s.b) {
		return off, errTruncated
	}
	if isStringTag(s.b[off]) {
		return s.skipString(off)
	}
	_, end, err := s.readInt(off)
	return end, err
}

// fixed returns off+n if the body holds n more bytes.
func (s *scanner) fixed(off, n int) (int, error) {
	if n > len(s.b)-off {
		return off, errTruncated
	}
	return off + n, nil
}

// skip returns the end of the value at off. It recurses into lists, maps
// and objects, at most maxDepth deep. Every value it accepts is at least one
// byte, and every count is checked against the remaining bytes before the
// loop that consumes it, so the work is linear in the body whatever the
// length prefixes claim.
func (s *scanner) skip(off, depth int) (int, error) {
	if depth > s.maxDepth {
		return off, errTooDeep
	}
	b := s.b
	for {
		if off >= len(b) {
			return off, errTruncated
		}
		t := b[off]
		switch {
		case t == 'N' || t == 'T' || t == 'F' || t == 0x5b || t == 0x5c ||
			(t >= 0x80 && t <= 0xbf) || (t >= 0xd8 && t <= 0xef):
			return off + 1, nil
		case t == 0x5d || (t >= 0xc0 && t <= 0xcf) || (t >= 0xf0):
			return s.fixed(off, 2)
		case t == 0x5e || (t >= 0xd0 && t <= 0xd7) || (t >= 0x38 && t <= 0x3f):
			return s.fixed(off, 3)
		case t == 'I' || t == 'K' || t == 'Y' || t == 0x5f:
			return s.fixed(off, 5)
		case t == 'D' || t == 'J' || t == 'L':
			return s.fixed(off, 9)
		case isStringTag(t):
			return s.skipString(off)
		case (t >= 0x20 && t <= 0x2f) || (t >= 0x34 && t <= 0x37) || t == 'A' || t == 'B':
			return s.skipBinary(off)
		case t == 'Q': // reference to an earlier list, map or object
			_, end, err := s.readInt(off + 1)
			return end, err
		case t == 'C': // class definition, then the value that uses it
			end, err := s.skipString(off + 1)
			if err != nil {
				return end, err
			}
			n, end, err := s.readCount(end)
			if err != nil {
				return end, err
			}
			for i := 0; i < n; i++ {
				if end, err = s.skipString(end); err != nil {
					return end, err
				}
			}
			s.classes = append(s.classes, int32(n))
			off = end
			depth++
			if depth > s.maxDepth {
				return off, errTooDeep
			}
			continue
		case t == 'O' || (t >= 0x60 && t <= 0x6f):
			var idx int32
			end := off + 1
			if t == 'O' {
				var err error
				if idx, end, err = s.readInt(end); err != nil {
					return end, err
				}
			} else {
				idx = int32(t - 0x60)
			}
			if idx < 0 || int(idx) >= len(s.classes) {
				return off, errBadClassRef
			}
			return s.skipN(end, int(s.classes[idx]), depth)
		case t == 'H':
			return s.skipUntilEnd(off+1, depth, 2)
		case t == 'M':
			end, err := s.skipType(off + 1)
			if err != nil {
				return end, err
			}
			return s.skipUntilEnd(end, depth, 2)
		case t == 'W':
			return s.skipUntilEnd(off+1, depth, 1)
		case t == 'U':
			end, err := s.skipType(off + 1)
			if err != nil {
				return end, err
			}
			return s.skipUntilEnd(end, depth, 1)
		case t == 'X':
			n, end, err := s.readCount(off + 1)
			if err != nil {
				return end, err
			}
			return s.skipN(end, n, depth)
		case t == 'V':
			end, err := s.skipType(off + 1)
			if err != nil {
				return end, err
			}
			n, end, err := s.readCount(end)
			if err != nil {
				return end, err
			}
			return s.skipN(end, n, depth)
		case t >= 0x70 && t <= 0x77:
			end, err := s.skipType(off + 1)
			if err != nil {
				return end, err
			}
			return s.skipN(end, int(t-0x70), depth)
		case t >= 0x78 && t <= 0x7f:
			return s.skipN(off+1, int(t-0x78), depth)
		}
		return off, errBadTag
	}
}

// skipN skips n values.
func (s *scanner) skipN(off, n, depth int) (int, error) {
	if n > len(s.b)-off {
		return off, errBadLength
	}
	var err error
	for i := 0; i < n; i++ {
		if off, err = s.skip(off, depth+1); err != nil {
			return off, err
		}
	}
	return off, nil
}

// skipUntilEnd skips values in groups of per (2 for map entries) until the
// 'Z' terminator and returns the offset after it.
func (s *scanner) skipUntilEnd(off, depth, per int) (int, error) {
	var err error
	for {
		if off >= len(s.b) {
			return off, errTruncated
		}
		if s.b[off] == 'Z' {
			return off + 1, nil
		}
		for i := 0; i < per; i++ {
			if off, err = s.skip(off, depth+1); err != nil {
				return off, err
			}
		}
	}
}

// valueKind classifies an attachment value by what the proxy may do with it.
type valueKind uint8

const (
	// kindText values read as header strings: strings, null (""), booleans,
	// ints, longs and doubles (in decimal).
	kindText valueKind = iota
	// kindOpaque values (dates, binary) are self-contained: not exposed as
	// headers, but safe to delete or replace.
	kindOpaque
	// kindComplex values (lists, maps, objects, references, class
	// definitions) may define or use reference and class numbering shared
	// with the rest of the body: kept verbatim and never deleted, replaced
	// or reordered.
	kindComplex
)

// scalar reads a scalar attachment value at off and, for kindText, appends
// its text to scratch when it is not a string (returned as a view of s.b).
// ok is false when the value is not a text scalar; end is then unset.
func (s *scanner) scalar(off int, scratch []byte) (text string, end int, scr []byte, ok bool, err error) {
	b := s.b
	t := b[off]
	switch {
	case isStringTag(t):
		text, end, err = s.readString(off)
		return text, end, scratch, true, err
	case t == 'N':
		return "", off + 1, scratch, true, nil
	case t == 'T':
		return "true", off + 1, scratch, true, nil
	case t == 'F':
		return "false", off + 1, scratch, true, nil
	}
	var i int64
	var f float64
	isFloat := false
	switch {
	case (t >= 0x80 && t <= 0xd7) || t == 'I':
		var v int32
		v, end, err = s.readInt(off)
		i = int64(v)
	case t >= 0xd8 && t <= 0xef:
		i, end = int64(t)-0xe0, off+1
	case t >= 0xf0:
		if end, err = s.fixed(off, 2); err == nil {
			i = (int64(t)-0xf8)<<8 | int64(b[off+1])
		}
	case t >= 0x38 && t <= 0x3f:
		if end, err = s.fixed(off, 3); err == nil {
			i = (int64(t)-0x3c)<<16 | int64(b[off+1])<<8 | int64(b[off+2])
		}
	case t == 'Y':
		if end, err = s.fixed(off, 5); err == nil {
			i = int64(int32(be32(b[off+1:])))
		}
	case t == 'L':
		if end, err = s.fixed(off, 9); err == nil {
			i = int64(be64(b[off+1:]))
		}
	case t == 0x5b || t == 0x5c:
		isFloat, f, end = true, float64(t-0x5b), off+1
	case t == 0x5d:
		if end, err = s.fixed(off, 2); err == nil {
			isFloat, f = true, float64(int8(b[off+1]))
		}
	case t == 0x5e:
		if end, err = s.fixed(off, 3); err == nil {
			isFloat, f = true, float64(int16(uint16(b[off+1])<<8|uint16(b[off+2])))
		}
	case t == 0x5f:
		if end, err = s.fixed(off, 5); err == nil {
			isFloat, f = true, float64(int32(be32(b[off+1:])))/1000
		}
	case t == 'D':
		if end, err = s.fixed(off, 9); err == nil {
			isFloat, f = true, math.Float64frombits(be64(b[off+1:]))
		}
	default:
		return "", off, scratch, false, nil
	}
	if err != nil {
		return "", end, scratch, true, err
	}
	start := len(scratch)
	if isFloat {
		scratch = strconv.AppendFloat(scratch, f, 'g', -1, 64)
	} else {
		scratch = strconv.AppendInt(scratch, i, 10)
	}
	return view(scratch[start:]), end, scratch, true, nil
}

func be32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func be64(b []byte) uint64 {
	return uint64(be32(b))<<32 | uint64(be32(b[4:]))
}

// kindOf classifies the value starting with tag t (not a text scalar).
func kindOf(t byte) valueKind {
	switch {
	case t == 'J' || t == 'K' || (t >= 0x20 && t <= 0x2f) || (t >= 0x34 && t <= 0x37) || t == 'A' || t == 'B':
		return kindOpaque
	}
	return kindComplex
}

// stringChunkChars is the chunk size, in UTF-16 units, that
// dubbo-go-hessian2 v1.13.2 uses; appendString splits at the same places so
// its output is byte-for-byte the library's.
const stringChunkChars = 4096

// appendString appends s as a hessian2 string, exactly as
// dubbo-go-hessian2's Encoder does: characters outside the BMP as two
// 3-byte surrogate halves, invalid UTF-8 as U+FFFD, chunks of 4096 units
// (a surrogate pair may take a chunk to 4097). Each chunk is counted, then
// written straight into dst, so nothing is allocated unless dst must grow.
func appendString(dst []byte, s string) []byte {
	if s == "" {
		return append(dst, 0x00)
	}
	for len(s) > 0 {
		chars, n := 0, 0
		for chars < stringChunkChars && n < len(s) {
			r, size := utf8.DecodeRuneInString(s[n:])
			n += size
			chars++
			if r >= 0x10000 {
				chars++
			}
		}
		chunk, rest := s[:n], s[n:]
		switch {
		case len(rest) > 0 && chars >= stringChunkChars:
			dst = append(dst, 'R', byte(chars>>8), byte(chars))
		case chars <= 0x1f:
			dst = append(dst, byte(chars))
		case chars <= 0x3ff:
			dst = append(dst, byte(0x30+chars>>8), byte(chars))
		default:
			dst = append(dst, 'S', byte(chars>>8), byte(chars))
		}
		for _, r := range chunk {
			switch {
			case r < utf8.RuneSelf:
				dst = append(dst, byte(r))
			case r >= 0x10000:
				r -= 0x10000
				dst = appendUCS2(dst, 0xd800+r>>10)
				dst = appendUCS2(dst, 0xdc00+r&0x3ff)
			default:
				dst = utf8.AppendRune(dst, r)
			}
		}
		s = rest
	}
	return dst
}

// appendUCS2 appends the 3-byte form of a surrogate half.
func appendUCS2(dst []byte, r rune) []byte {
	return append(dst, byte(0xe0|(r>>12)&0x0f), byte(0x80|(r>>6)&0x3f), byte(0x80|r&0x3f))
}
