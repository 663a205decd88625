package http1

import (
	"io"
	"strconv"
)

// Body kinds.
const (
	bodyDone uint8 = iota
	bodyLength
	bodyEOF
	bodyChunked
)

// Chunked decoder states.
const (
	csSize    uint8 = iota // expecting a chunk-size line
	csData                 // inside chunk data, n bytes left
	csDataEnd              // expecting the CRLF after chunk data
	csTrailer              // inside the trailer section
)

// Chunk-size line states.
const (
	lsHex uint8 = iota // size digits
	lsBWS              // whitespace before an extension
	lsExt              // inside extensions
	lsCR               // CR seen, LF expected
)

// Trailer section states.
const (
	tsLineStart uint8 = iota
	tsName
	tsValue
	tsCR
)

const (
	// maxChunkLine bounds a chunk-size line with its extensions, against
	// extension floods.
	maxChunkLine = 4096
	// maxChunkSize is the largest chunk size accepted.
	maxChunkSize = 1 << 62
)

// BodyReader reads one message body from a Reader. Read returns the body
// bytes (chunked framing decoded) and io.EOF at its end, leaving the Reader
// at the next message. Chunked decoding is strict: hexadecimal sizes up to
// 2^62, chunk extensions checked for control bytes and ignored, CRLF after
// every line and every chunk's data, and trailer fields validated like
// header fields, bounded by the Limits of the head, and discarded. Bad
// framing is ErrMalformed, a connection ending early io.ErrUnexpectedEOF.
type BodyReader struct {
	r      *Reader
	kind   uint8
	cs     uint8 // chunked state
	ts     uint8 // trailer state
	ls     uint8 // chunk-size line state
	n      int64 // bytes left in the body (length) or the chunk (chunked)
	size   int64 // chunk size being parsed
	line   int   // bytes of the chunk-size line so far
	tbytes int   // trailer bytes seen
	tcount int   // trailer fields seen
	err    error // sticky result once the body ended or failed
	os, o  int   // CopyTo: pending output is r.buf[os:o]
	hdr    [20]byte
}

// Done reports whether the whole body has been read, so the Reader is at
// the next message.
func (b *BodyReader) Done() bool { return b.kind == bodyDone && (b.err == nil || b.err == io.EOF) }

// Read reads body bytes into p.
func (b *BodyReader) Read(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if len(p) == 0 {
		return 0, nil
	}
	n, err := b.read(p)
	if err != nil {
		b.err = err
	}
	return n, err
}

func (b *BodyReader) read(p []byte) (int, error) {
	switch b.kind {
	case bodyLength, bodyEOF:
		if b.kind == bodyLength && int64(len(p)) > b.n {
			p = p[:b.n]
		}
		n, err := b.readData(p)
		if err == io.EOF {
			if b.kind == bodyLength {
				return n, io.ErrUnexpectedEOF
			}
			b.kind = bodyDone
			return n, io.EOF
		}
		if b.kind == bodyLength {
			if b.n -= int64(n); b.n == 0 {
				b.kind = bodyDone
			}
		}
		return n, err
	case bodyChunked:
		for {
			switch b.cs {
			case csSize, csDataEnd, csTrailer:
				if err := b.framing(); err != nil {
					return 0, err
				}
				if b.kind == bodyDone {
					return 0, io.EOF
				}
			case csData:
				if int64(len(p)) > b.n {
					p = p[:b.n]
				}
				n, err := b.readData(p)
				if err == io.EOF {
					err = io.ErrUnexpectedEOF
				}
				if b.n -= int64(n); b.n == 0 {
					b.cs = csDataEnd
				}
				return n, err
			}
		}
	}
	return 0, io.EOF
}

// readData reads from the buffer, or straight from the source when the
// buffer is empty and p is large.
func (b *BodyReader) readData(p []byte) (int, error) {
	r := b.r
	if r.direct(p) {
		return r.readSrc(p)
	}
	if r.r == r.w {
		if err := r.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, r.buf[r.r:r.w])
	r.r += n
	return n, nil
}

// framing consumes chunked framing until chunk data is next or the body
// ends (kind becomes bodyDone), reading from the source as needed.
func (b *BodyReader) framing() error {
	for b.cs != csData && b.kind != bodyDone {
		ok, err := b.step()
		if err != nil {
			return err
		}
		if !ok {
			if err := b.more(); err != nil {
				return err
			}
		}
	}
	return nil
}

// more reads more data, compacting the buffer.
func (b *BodyReader) more() error {
	err := b.r.fill()
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

// step consumes buffered framing (a chunk-size line, the CRLF after data,
// or the trailer section) and reports true when a unit ended, false when it
// needs more data. A two-byte CRLF is never consumed by halves, and a line
// that arrived whole is consumed in one step: that is what lets CopyTo
// rewrite framing over the consumed bytes.
func (b *BodyReader) step() (bool, error) {
	r := b.r
	switch b.cs {
	case csSize:
		ok, err := b.sizeLine()
		if !ok || err != nil {
			return false, err
		}
		if b.n == 0 {
			b.cs, b.ts = csTrailer, tsLineStart
		} else {
			b.cs = csData
		}
	case csDataEnd:
		if r.w-r.r < 2 {
			return false, nil
		}
		if r.buf[r.r] != '\r' || r.buf[r.r+1] != '\n' {
			return false, malformed("missing CRLF after chunk data")
		}
		r.r += 2
		b.cs = csSize
	case csTrailer:
		done, err := b.trailer()
		if !done || err != nil {
			return false, err
		}
		b.kind = bodyDone
	}
	return true, nil
}

// sizeLine consumes buffered bytes of a chunk-size line (RFC 9112 7.1),
// 1*HEXDIG [ BWS ";" chunk-ext ] CRLF, and reports whether the line ended;
// the size is then in b.n. Parsing byte by byte lets a line span buffer
// fills whatever the buffer size. Extensions are checked for control bytes
// and ignored.
func (b *BodyReader) sizeLine() (bool, error) {
	r := b.r
	for r.r < r.w {
		c := r.buf[r.r]
		r.r++
		if b.line++; b.line > maxChunkLine {
			return false, malformed("chunk-size line too long")
		}
		switch b.ls {
		case lsHex:
			if d := unhex(c); d >= 0 {
				if b.size > maxChunkSize>>4 {
					return false, malformed("chunk size overflow")
				}
				b.size = b.size<<4 | int64(d)
				continue
			}
			if b.line == 1 {
				return false, malformed("invalid chunk size")
			}
			if b.size > maxChunkSize {
				return false, malformed("chunk size overflow")
			}
			switch {
			case c == '\r':
				b.ls = lsCR
			case isOWS(c):
				b.ls = lsBWS
			case c == ';':
				b.ls = lsExt
			default:
				return false, malformed("invalid chunk size")
			}
		case lsBWS:
			switch {
			case c == ';':
				b.ls = lsExt
			case !isOWS(c):
				return false, malformed("invalid chunk size")
			}
		case lsExt:
			if c == '\r' {
				b.ls = lsCR
			} else if !isValueChar(c) {
				return false, malformed("control character in chunk extension")
			}
		case lsCR:
			if c != '\n' {
				return false, malformed("bare CR in chunk-size line")
			}
			b.n, b.size = b.size, 0
			b.ls, b.line = lsHex, 0
			return true, nil
		}
	}
	return false, nil
}

func unhex(c byte) int {
	switch {
	case c-'0' < 10:
		return int(c - '0')
	case c-'a' < 6:
		return int(c-'a') + 10
	case c-'A' < 6:
		return int(c-'A') + 10
	}
	return -1
}

// trailer consumes buffered trailer-section bytes and reports whether the
// final empty line was consumed. Trailer fields are validated and dropped.
func (b *BodyReader) trailer() (bool, error) {
	r := b.r
	for r.r < r.w {
		c := r.buf[r.r]
		switch b.ts {
		case tsLineStart:
			if c == '\r' {
				if r.w-r.r < 2 {
					return false, nil
				}
				if r.buf[r.r+1] != '\n' {
					return false, malformed("bare CR in trailer")
				}
				r.r += 2
				return true, nil
			}
			if !isToken(c) {
				return false, malformed("invalid trailer field")
			}
			b.ts = tsName
		case tsName:
			if c == ':' {
				b.ts = tsValue
			} else if !isToken(c) {
				return false, malformed("invalid trailer field name")
			}
		case tsValue:
			if c == '\r' {
				b.ts = tsCR
			} else if !isValueChar(c) {
				return false, malformed("control character in trailer")
			}
		case tsCR:
			if c != '\n' {
				return false, malformed("bare CR in trailer")
			}
			b.ts = tsLineStart
			if b.tcount++; b.tcount > r.lim.MaxHeaders {
				return false, ErrHeaderTooLarge
			}
		}
		r.r++
		if b.tbytes++; b.tbytes > r.lim.MaxHeaderBytes {
			return false, ErrHeaderTooLarge
		}
	}
	return false, nil
}

// WriteTo writes the decoded body to w; it is CopyTo(w, false) and lets
// io.Copy use the Reader's buffer.
func (b *BodyReader) WriteTo(w io.Writer) (int64, error) { return b.CopyTo(w, false) }

// CopyTo copies the rest of the body to w and returns the number of body
// bytes copied (framing excluded). A chunked body is written chunked when
// chunkedOut is true (the same chunk sizes, canonical "size CRLF data CRLF",
// extensions and trailers dropped, ending "0 CRLF CRLF"), else decoded; for
// other bodies chunkedOut is ignored and the bytes are copied as they are
// (wrap w in a ChunkedWriter to chunk them). CopyTo writes straight from the
// Reader's buffer, rewriting chunk framing in place, so it needs no copy
// buffer and makes one Write per buffer fill. At the end of the body it
// returns a nil error.
func (b *BodyReader) CopyTo(w io.Writer, chunkedOut bool) (int64, error) {
	if b.err != nil {
		if b.err == io.EOF {
			return 0, nil
		}
		return 0, b.err
	}
	var n int64
	var err error
	switch b.kind {
	case bodyLength, bodyEOF:
		n, err = b.copyRaw(w)
	case bodyChunked:
		n, err = b.copyChunked(w, chunkedOut)
	}
	if err != nil {
		b.err = err
	} else {
		b.err = io.EOF
	}
	return n, err
}

func (b *BodyReader) copyRaw(w io.Writer) (int64, error) {
	r := b.r
	var total int64
	for b.kind != bodyDone {
		if r.r == r.w {
			if err := r.fill(); err != nil {
				if err != io.EOF {
					return total, err
				}
				if b.kind == bodyLength {
					return total, io.ErrUnexpectedEOF
				}
				b.kind = bodyDone
				break
			}
		}
		k := r.w - r.r
		if b.kind == bodyLength && int64(k) > b.n {
			k = int(b.n)
		}
		m, err := w.Write(r.buf[r.r : r.r+k])
		m = min(max(m, 0), k)
		r.r += m
		total += int64(m)
		if b.kind == bodyLength {
			if b.n -= int64(m); b.n == 0 {
				b.kind = bodyDone
			}
		}
		if err != nil {
			return total, err
		}
		if m < k {
			return total, io.ErrShortWrite
		}
	}
	return total, nil
}

// copyChunked transcodes a chunked body in place: every framing unit is
// consumed whole before its canonical form (never longer) is written over
// the consumed bytes, so the output r.buf[os:o] never overtakes the input
// at r.r and goes out in one Write per buffer fill.
func (b *BodyReader) copyChunked(w io.Writer, chunkedOut bool) (int64, error) {
	r := b.r
	var total int64
	b.os, b.o = r.r, r.r
	for {
		if b.cs == csData {
			if r.r == r.w {
				if err := b.refill(w); err != nil {
					return total, err
				}
				continue
			}
			k := r.w - r.r
			if int64(k) > b.n {
				k = int(b.n)
			}
			if b.o != r.r {
				copy(r.buf[b.o:], r.buf[r.r:r.r+k])
			}
			b.o += k
			r.r += k
			total += int64(k)
			if b.n -= int64(k); b.n == 0 {
				b.cs = csDataEnd
			}
			continue
		}
		cs := b.cs
		ok, err := b.step()
		if err != nil {
			return total, err
		}
		if !ok {
			if err := b.refill(w); err != nil {
				return total, err
			}
			continue
		}
		if chunkedOut {
			switch {
			case cs == csSize && b.cs == csData:
				err = b.emit(w, strconv.AppendInt(b.hdr[:0], b.n, 16), true)
			case cs == csSize:
				err = b.emit(w, append(b.hdr[:0], "0\r\n"...), false)
			case cs == csDataEnd || b.kind == bodyDone:
				err = b.emit(w, append(b.hdr[:0], "\r\n"...), false)
			}
			if err != nil {
				return total, err
			}
		}
		if b.kind == bodyDone {
			return total, b.flush(w)
		}
	}
}

// emit adds p (plus CRLF if crlf) to the pending output, in place when it
// fits behind the read position, else after flushing with its own Write.
func (b *BodyReader) emit(w io.Writer, p []byte, crlf bool) error {
	if crlf {
		p = append(p, "\r\n"...)
	}
	r := b.r
	if b.o+len(p) <= r.r {
		b.o += copy(r.buf[b.o:], p)
		return nil
	}
	if err := b.flush(w); err != nil {
		return err
	}
	return write(w, p)
}

// flush writes the pending output.
func (b *BodyReader) flush(w io.Writer) error {
	p := b.r.buf[b.os:b.o]
	b.os = b.o
	if len(p) == 0 {
		return nil
	}
	return write(w, p)
}

// refill flushes the pending output and reads more input.
func (b *BodyReader) refill(w io.Writer) error {
	if err := b.flush(w); err != nil {
		return err
	}
	if err := b.more(); err != nil {
		return err
	}
	b.os, b.o = b.r.r, b.r.r
	return nil
}

func write(w io.Writer, p []byte) error {
	n, err := w.Write(p)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	return err
}
