package http1

import (
	"bytes"
	"errors"
	"io"
	"sync"
)

// DefaultBufSize is the buffer size NewBufPool uses for a size <= 0.
const DefaultBufSize = 16 << 10

// minBufSize keeps the two-byte framing units of the chunked decoder (CRLF)
// fitting in a buffer.
const minBufSize = 16

// BufPool hands out fixed-size byte buffers. It is a sync.Pool of *[]byte:
// pooling the pointer rather than the slice keeps Get and Put free of
// allocations in steady state. A BufPool is safe for concurrent use; one is
// usually shared by all connections of a listener.
type BufPool struct {
	size int
	pool sync.Pool
}

// NewBufPool returns a pool of size-byte buffers (DefaultBufSize when
// size <= 0, at least 16 bytes). Any size works: heads larger than a buffer
// spill into the head's own storage. A buffer that holds a whole typical
// head (4 KiB or more) keeps parsing to a single copy and CopyTo to one
// Write per fill.
func NewBufPool(size int) *BufPool {
	if size <= 0 {
		size = DefaultBufSize
	}
	size = max(size, minBufSize)
	p := &BufPool{size: size}
	p.pool.New = func() any {
		b := make([]byte, size)
		return &b
	}
	return p
}

// Size returns the length of the pool's buffers.
func (p *BufPool) Size() int { return p.size }

// Get returns a buffer of Size bytes.
func (p *BufPool) Get() *[]byte { return p.pool.Get().(*[]byte) }

// Put returns b to the pool. Buffers of another capacity are dropped.
func (p *BufPool) Put(b *[]byte) {
	if b == nil || cap(*b) != p.size {
		return
	}
	*b = (*b)[:p.size]
	p.pool.Put(b)
}

// errBufferFull is an internal invariant failure: every caller of fill
// leaves room in the buffer.
var errBufferFull = errors.New("http1: buffer full")

// errInvalidRead reports a source returning an impossible count.
var errInvalidRead = errors.New("http1: source returned invalid count")

// Reader is a buffered reader over a connection that parses message heads
// and bodies. Its buffer comes from a BufPool on the first read and goes back
// with Release, so idle keep-alive connections hold no buffer. A Reader is
// owned by one goroutine.
type Reader struct {
	src  io.Reader
	pool *BufPool
	bp   *[]byte
	buf  []byte
	r, w int   // buf[r:w] is buffered, unread data
	err  error // deferred source error, returned once buf[r:w] is drained
	lim  Limits
	body BodyReader
}

// NewReader returns a Reader over src taking buffers from pool. A nil pool
// makes the Reader allocate one DefaultBufSize buffer of its own, which
// Release then keeps.
func NewReader(src io.Reader, pool *BufPool) *Reader {
	r := &Reader{src: src, pool: pool, lim: Limits{}.norm()}
	r.body.r = r
	return r
}

// Reset makes r read from src, discarding buffered data and giving the
// buffer back to the pool, so a pooled Reader holds no buffer.
func (r *Reader) Reset(src io.Reader) {
	r.src = src
	r.r, r.w = 0, 0
	r.err = nil
	r.lim = Limits{}.norm()
	r.body = BodyReader{r: r}
	r.Release()
}

// Buffered returns the number of bytes read from the source and not yet
// consumed.
func (r *Reader) Buffered() int { return r.w - r.r }

// Release gives the buffer back to the pool if nothing is buffered. Call it
// when a connection goes idle; the next read takes a buffer again.
func (r *Reader) Release() {
	if r.buf == nil || r.r != r.w {
		return
	}
	r.r, r.w = 0, 0
	if r.pool == nil {
		return
	}
	r.pool.Put(r.bp)
	r.bp, r.buf = nil, nil
}

func (r *Reader) acquire() {
	if r.pool == nil {
		r.buf = make([]byte, DefaultBufSize)
		return
	}
	r.bp = r.pool.Get()
	r.buf = *r.bp
}

// Fill reads once from the source when nothing is buffered, so that a
// caller can wait for the next message under its own deadline: a timeout
// then leaves nothing half-read and the Reader can be released. It returns
// nil at once when bytes are already buffered.
func (r *Reader) Fill() error {
	if r.Buffered() > 0 {
		return nil
	}
	r.r, r.w = 0, 0
	return r.readMore()
}

// readMore reads once from the source into buf[w:], which must have room.
// It returns nil after reading at least one byte; a source error that came
// with data is kept for the next call.
func (r *Reader) readMore() error {
	if r.buf == nil {
		r.acquire()
	}
	n, err := r.readSrc(r.buf[r.w:])
	r.w += n
	return err
}

// readSrc reads once from the source into p (a deferred error first). It
// returns n > 0 with a nil error, keeping an error that came with data for
// the next call, or 0 and an error.
func (r *Reader) readSrc(p []byte) (int, error) {
	if r.err != nil {
		err := r.err
		r.err = nil
		return 0, err
	}
	for range 100 {
		n, err := r.src.Read(p)
		if n < 0 || n > len(p) {
			return 0, errInvalidRead
		}
		if n > 0 {
			r.err = err
			return n, nil
		}
		if err != nil {
			return 0, err
		}
	}
	return 0, io.ErrNoProgress
}

// direct reports whether a read into p should bypass the buffer: nothing is
// buffered and p is at least a buffer long, so the copy through the buffer
// would buy nothing.
func (r *Reader) direct(p []byte) bool {
	if r.r != r.w {
		return false
	}
	size := DefaultBufSize
	if r.pool != nil {
		size = r.pool.size
	}
	return len(p) >= size
}

// fill compacts the buffer and reads more data.
func (r *Reader) fill() error {
	if r.buf == nil {
		r.acquire()
	}
	if r.r > 0 {
		r.w = copy(r.buf, r.buf[r.r:r.w])
		r.r = 0
	}
	if r.w == len(r.buf) {
		return errBufferFull
	}
	return r.readMore()
}

// ReadRequestHead parses the next request head into h (after resetting it).
// Empty lines before the request line are skipped (RFC 9112 2.2). At a clean
// end of the connection before a request starts it returns io.EOF. Other
// errors: ErrHeaderTooLarge, ErrMalformed (wrapped with a detail),
// io.ErrUnexpectedEOF when the connection ends inside the head, or the
// source's own error (such as a deadline's os.ErrDeadlineExceeded) as is.
// After an error the connection must not be read further.
func (r *Reader) ReadRequestHead(h *RequestHead, lim Limits) error {
	h.Reset()
	lim = lim.norm()
	r.lim = lim
	if err := r.skipEmptyLines(lim.MaxHeaderBytes); err != nil {
		return err
	}
	f := framing{contentLength: -1}
	pos := 0
	return r.readHead(&h.Header, lim.MaxHeaderBytes, func() (bool, error) {
		if pos == 0 {
			n, err := h.parseRequestLine()
			if n == 0 || err != nil {
				return false, err
			}
			pos = n
		}
		next, done, err := parseFields(&h.Header, pos, lim.MaxHeaders, &f)
		pos = next
		if !done || err != nil {
			return false, err
		}
		return true, h.finish(&f)
	}, &pos)
}

// ReadResponseHead parses the next response head into h (after resetting
// it), 1xx heads included: the caller loops past 100 Continue. Errors are as
// for ReadRequestHead; io.EOF means the peer closed before sending a byte.
func (r *Reader) ReadResponseHead(h *ResponseHead, lim Limits) error {
	h.Reset()
	lim = lim.norm()
	r.lim = lim
	if r.r == r.w {
		if err := r.fill(); err != nil {
			return err
		}
	}
	f := framing{contentLength: -1}
	pos := 0
	return r.readHead(&h.Header, lim.MaxHeaderBytes, func() (bool, error) {
		if pos == 0 {
			n, err := h.parseStatusLine()
			if n == 0 || err != nil {
				return false, err
			}
			pos = n
		}
		next, done, err := parseFields(&h.Header, pos, lim.MaxHeaders, &f)
		pos = next
		if !done || err != nil {
			return false, err
		}
		return true, h.finish(&f)
	}, &pos)
}

// skipEmptyLines consumes CRLF pairs before a request line. It returns
// io.EOF if the connection ends before anything else arrives.
func (r *Reader) skipEmptyLines(maxBytes int) error {
	skipped := 0
	for {
		if r.w-r.r < 2 {
			if err := r.fill(); err != nil {
				if err == io.EOF && r.r == r.w {
					return io.EOF
				}
				if err == io.EOF {
					return io.ErrUnexpectedEOF
				}
				return err
			}
			continue
		}
		if r.buf[r.r] != '\r' && r.buf[r.r] != '\n' {
			return nil
		}
		if r.buf[r.r] != '\r' || r.buf[r.r+1] != '\n' {
			return malformed("bare CR or LF before request line")
		}
		r.r += 2
		if skipped += 2; skipped > maxBytes {
			return ErrHeaderTooLarge
		}
	}
}

// firstHeadCopy is how much of the buffer readHead copies before a first
// parse: most heads fit, and it bounds the bytes copied past a head when the
// buffer holds pipelined requests or a body.
const firstHeadCopy = 1024

// readHead copies the next head from the buffer into h.raw and parses it
// there in a single pass: parse consumes the complete lines of h.raw from
// *pos and reports whether the head ended. Bytes copied past the end of the
// head go back to the buffer. A head that arrives in pieces is parsed again
// only from its first incomplete line and only once a new LF has arrived, so
// a peer dripping bytes costs linear time. The head is bounded by max, not
// by the buffer size.
func (r *Reader) readHead(h *Header, maxBytes int, parse func() (bool, error), pos *int) error {
	scanned := 0 // h.raw[:scanned] holds no LF past *pos
	limit := firstHeadCopy
	for {
		if len(h.raw) >= maxBytes {
			return ErrHeaderTooLarge
		}
		if r.r == r.w {
			if err := r.fill(); err != nil {
				if err == io.EOF {
					return io.ErrUnexpectedEOF
				}
				return err
			}
		}
		k := min(r.w-r.r, maxBytes-len(h.raw), limit)
		limit = min(2*limit, maxBytes)
		h.raw = append(h.raw, r.buf[r.r:r.r+k]...)
		r.r += k
		if scanned > 0 && bytes.IndexByte(h.raw[scanned:], '\n') < 0 {
			scanned = len(h.raw)
			continue
		}
		done, err := parse()
		if err != nil {
			return err
		}
		if done {
			r.r -= len(h.raw) - *pos
			h.raw = h.raw[:*pos]
			return nil
		}
		scanned = max(len(h.raw), 1)
	}
}

// Body returns a reader for the message body that follows the head just
// read: chunked when chunked is true, else length bytes when length >= 0,
// else up to the end of the connection when untilEOF is true (a response
// without framing), else no body. The Reader keeps one BodyReader, so Body
// does not allocate; the returned reader is valid until the next Body call.
// Chunked trailers are bounded by the Limits of the last head read.
func (r *Reader) Body(length int64, chunked bool, untilEOF bool) *BodyReader {
	b := &r.body
	*b = BodyReader{r: r}
	switch {
	case chunked:
		b.kind = bodyChunked
	case length > 0:
		b.kind, b.n = bodyLength, length
	case length < 0 && untilEOF:
		b.kind = bodyEOF
	default:
		b.kind = bodyDone
	}
	return b
}
