package http1

import (
	"errors"
	"io"
	"net"
	"strconv"
)

// ChunkedWriter writes data as HTTP/1.1 chunks: each Write becomes one
// chunk and Close writes the last chunk and the empty trailer section. It
// has no buffer of its own; a chunk goes out as one vectored write (writev)
// when the destination is a net.Conn, else as three Writes, so wrap w in a
// buffered writer if it is neither. Reset makes it reusable, so a
// connection keeps one.
type ChunkedWriter struct {
	w      io.Writer
	closed bool
	hdr    [18]byte
	tail   [2]byte
	vec    [3][]byte
	bufs   net.Buffers
}

// NewChunkedWriter returns a ChunkedWriter writing to w.
func NewChunkedWriter(w io.Writer) *ChunkedWriter {
	return &ChunkedWriter{w: w}
}

// Reset makes c write a new chunked body to w.
func (c *ChunkedWriter) Reset(w io.Writer) {
	c.w = w
	c.closed = false
	clear(c.vec[:])
	c.bufs = nil
}

// Write writes p as one chunk. An empty p writes nothing, since a zero-size
// chunk would end the body.
func (c *ChunkedWriter) Write(p []byte) (int, error) {
	if c.closed {
		return 0, errChunkedClosed
	}
	if len(p) == 0 {
		return 0, nil
	}
	hdr := strconv.AppendInt(c.hdr[:0], int64(len(p)), 16)
	hdr = append(hdr, "\r\n"...)
	c.tail = [2]byte{'\r', '\n'}
	c.vec[0], c.vec[1], c.vec[2] = hdr, p, c.tail[:]
	c.bufs = c.vec[:]
	_, err := c.bufs.WriteTo(c.w)
	// Drop the reference to p: the caller may reuse it.
	c.vec[1], c.bufs = nil, nil
	if err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close writes the last chunk ("0\r\n\r\n"). It does not close the
// underlying writer; further Writes fail.
func (c *ChunkedWriter) Close() error {
	if c.closed {
		return nil
	}
	c.closed = true
	return write(c.w, append(c.hdr[:0], "0\r\n\r\n"...))
}

var errChunkedClosed = errors.New("http1: chunked write after Close")
