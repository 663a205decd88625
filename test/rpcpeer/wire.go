package rpcpeer

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
)

// Protocol names a wire protocol.
type Protocol string

// The supported protocols.
const (
	Bolt  Protocol = "bolt"
	Dubbo Protocol = "dubbo"
)

// MaxFrame is the largest frame (header included) either side accepts; a
// frame announcing more is malformed.
const MaxFrame = 64 << 20

var (
	// ErrShortFrame means the bytes hold only part of a frame.
	ErrShortFrame = errors.New("rpcpeer: incomplete frame")
	// ErrMalformed wraps every error about bytes that cannot be a frame.
	ErrMalformed = errors.New("rpcpeer: malformed frame")
	// ErrClosed is returned by calls on a closed Client.
	ErrClosed = errors.New("rpcpeer: client closed")
)

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

func checkProtocol(p Protocol) error {
	if p != Bolt && p != Dubbo {
		return fmt.Errorf("rpcpeer: unknown protocol %q", p)
	}
	return nil
}

// KV is one header entry, in wire order.
type KV struct{ Key, Value string }

// frameNeed returns how many bytes the frame at the start of b has in all
// when that is known (complete true), or else the least number of bytes
// needed to learn more.
func frameNeed(p Protocol, b []byte) (n int, complete bool, err error) {
	if p == Dubbo {
		return dubboNeed(b)
	}
	return boltNeed(b)
}

// frameReader cuts frames out of a stream with one growing buffer.
type frameReader struct {
	r          io.Reader
	p          Protocol
	buf        []byte
	start, end int
}

const (
	readBufSize  = 64 << 10
	keepReadSize = 1 << 20
)

func newFrameReader(p Protocol, r io.Reader) *frameReader {
	return &frameReader{r: r, p: p, buf: make([]byte, readBufSize)}
}

// next returns the next whole frame. It views the reader's buffer and is
// valid only until the next call.
func (fr *frameReader) next() ([]byte, error) {
	for {
		b := fr.buf[fr.start:fr.end]
		need, complete, err := frameNeed(fr.p, b)
		if err != nil {
			return nil, err
		}
		if complete && len(b) >= need {
			fr.start += need
			return b[:need], nil
		}
		if fr.start == fr.end {
			fr.start, fr.end = 0, 0
			if len(fr.buf) > keepReadSize {
				fr.buf = make([]byte, readBufSize)
			}
		}
		if fr.start+need > len(fr.buf) {
			// Compact, then grow if the frame still does not fit.
			fr.end = copy(fr.buf, fr.buf[fr.start:fr.end])
			fr.start = 0
			if need > len(fr.buf) {
				nb := make([]byte, max(need, 2*len(fr.buf)))
				copy(nb, fr.buf[:fr.end])
				fr.buf = nb
			}
		}
		n, err := fr.r.Read(fr.buf[fr.end:])
		fr.end += n
		if err != nil && n == 0 {
			if err == io.EOF && fr.end > fr.start {
				return nil, io.ErrUnexpectedEOF
			}
			return nil, err
		}
	}
}

// batchWriter writes frames to a connection with batching: frames are
// appended to a pending buffer; whoever finds no write in progress becomes
// the flusher and writes until the buffer is empty.
type batchWriter struct {
	conn net.Conn

	mu       sync.Mutex
	cond     sync.Cond // on mu; signalled after each write for waiters
	pending  []byte
	spare    []byte
	flushing bool
	queued   uint64 // bytes ever appended
	written  uint64 // bytes ever written
	waiters  int
	err      error
}

const keepWriteSize = 4 << 20

func (w *batchWriter) init(c net.Conn) {
	w.conn = c
	w.cond.L = &w.mu
}

// write appends the bytes fn appends to the pending buffer (fn runs under
// the writer's lock and must be quick) and makes sure they get written.
// With wait it returns only once they have been written (or failed).
func (w *batchWriter) write(fn func(dst []byte) []byte, wait bool) error {
	w.mu.Lock()
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	n := len(w.pending)
	w.pending = fn(w.pending)
	w.queued += uint64(len(w.pending) - n)
	end := w.queued
	if w.flushing {
		var err error
		if wait {
			w.waiters++
			for w.written < end && w.err == nil {
				w.cond.Wait()
			}
			w.waiters--
			if w.written < end {
				err = w.err
			}
		}
		w.mu.Unlock()
		return err
	}
	w.flushing = true
	for len(w.pending) > 0 && w.err == nil {
		buf := w.pending
		w.pending, w.spare = w.spare[:0], nil
		w.mu.Unlock()
		_, err := w.conn.Write(buf)
		w.mu.Lock()
		if cap(buf) <= keepWriteSize {
			w.spare = buf[:0]
		}
		if err != nil {
			w.err = err
			w.pending = nil
			w.conn.Close() // the reader notices and fails what waits
		} else {
			w.written += uint64(len(buf))
		}
		if w.waiters > 0 {
			w.cond.Broadcast()
		}
	}
	w.flushing = false
	var err error
	if w.written < end {
		err = w.err
	}
	w.mu.Unlock()
	return err
}

// writeBytes queues a copy of b.
func (w *batchWriter) writeBytes(b []byte, wait bool) error {
	return w.write(func(dst []byte) []byte { return append(dst, b...) }, wait)
}

// bufPool holds scratch buffers for encoding frames outside the writer's
// lock.
var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) > 64<<10 {
		return
	}
	*b = (*b)[:0]
	bufPool.Put(b)
}

// ReadResponse reads exactly one frame from r (never more bytes than the
// frame has) and decodes it as a response of protocol p.
func ReadResponse(p Protocol, r io.Reader) (id uint64, resp *Response, err error) {
	if err := checkProtocol(p); err != nil {
		return 0, nil, err
	}
	var buf []byte
	for {
		need, complete, err := frameNeed(p, buf)
		if err != nil {
			return 0, nil, err
		}
		if complete && len(buf) >= need {
			break
		}
		if need > len(buf) {
			n := len(buf)
			buf = append(buf, make([]byte, need-n)...)
			if _, err := io.ReadFull(r, buf[n:]); err != nil {
				if err == io.EOF && n > 0 {
					err = io.ErrUnexpectedEOF
				}
				return 0, nil, err
			}
		}
	}
	id, resp, _, err = DecodeResponse(p, buf)
	return id, resp, err
}

// DecodeResponse decodes the response frame (or heartbeat reply) at the
// start of b; n is its length. It returns ErrShortFrame when b holds only
// part of it, and an error wrapping ErrMalformed when b is not a response.
func DecodeResponse(p Protocol, b []byte) (id uint64, resp *Response, n int, err error) {
	switch p {
	case Bolt:
		var v boltView
		if err := parseBolt(b, &v); err != nil {
			return 0, nil, 0, err
		}
		if v.typ != boltTypeResponse {
			return 0, nil, 0, malformed("bolt frame is not a response (type %d)", v.typ)
		}
		return uint64(v.id), boltResponse(&v), v.n, nil
	case Dubbo:
		var v dubboView
		if err := parseDubbo(b, &v); err != nil {
			return 0, nil, 0, err
		}
		if v.flags&dubboFlagRequest != 0 {
			return 0, nil, 0, malformed("dubbo frame is not a response (flags %#x)", v.flags)
		}
		resp, err := dubboResponse(&v)
		return v.id, resp, v.n, err
	}
	return 0, nil, 0, checkProtocol(p)
}
