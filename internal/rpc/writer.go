package rpc

import (
	"errors"
	"net"
	"runtime"
	"sync"
	"time"

	"github.com/weftmesh/weft/api"
)

// errBacklog means a peer does not read fast enough: more than the
// configured bytes are waiting to be written to it.
var errBacklog = errors.New("rpc: write backlog over limit (peer not reading)")

// keepWriteBuf is the largest buffer a writer keeps between bursts.
const keepWriteBuf = 64 << 10

// batchWriter serializes the frames of many goroutines onto one connection
// and coalesces them. Whoever appends while no write is in progress becomes
// the flusher and writes until the backlog is empty, so the frames appended
// during a write syscall leave together in the next one: under load one
// write carries many responses, which is most of the RPC proxy's CPU
// saving over one write per request. There is no writer goroutine, so an
// idle connection costs nothing here. Written by hand because no library
// gives a lock-held encode-into-backlog with a bounded size.
type batchWriter struct {
	nc      net.Conn
	timeout time.Duration // per write syscall; 0: none
	max     int           // backlog limit in bytes
	// refuse makes a full backlog refuse the frame (errBacklog) and keep
	// the connection, rather than fail it: upstream connections are shared
	// by many clients, and a burst from one must not reset the others.
	refuse  bool
	onErr   func(error)  // called once, outside the lock, on the first failure
	onBytes *api.Counter // bytes written, may be nil

	mu       sync.Mutex
	buf      []byte // frames waiting for the flusher
	spare    []byte
	flushing bool
	err      error
}

// write encodes f with c onto the backlog and flushes unless another
// goroutine is already flushing. It returns the connection's error, or
// errBacklog when the peer is too far behind.
func (w *batchWriter) write(c api.Codec, f api.Frame) error {
	w.mu.Lock()
	if w.err != nil {
		err := w.err
		w.mu.Unlock()
		return err
	}
	if len(w.buf) > w.max {
		w.mu.Unlock()
		if !w.refuse {
			w.fail(errBacklog)
		}
		return errBacklog
	}
	var err error
	if w.buf, err = c.Encode(w.buf, f); err != nil {
		w.mu.Unlock()
		return err
	}
	if w.flushing {
		w.mu.Unlock()
		return nil
	}
	w.flushing = true
	// Let the goroutines that are ready to run append first: the reader
	// that decoded a burst of frames has just woken one per frame, and on
	// few cores none of them runs during our write syscall, so without
	// this yield every frame would cost its own write.
	w.mu.Unlock()
	runtime.Gosched()
	w.mu.Lock()
	for len(w.buf) > 0 && w.err == nil {
		b := w.buf
		w.buf = w.spare[:0]
		w.mu.Unlock()
		if w.timeout > 0 {
			_ = w.nc.SetWriteDeadline(time.Now().Add(w.timeout))
		}
		n, werr := w.nc.Write(b)
		if w.onBytes != nil {
			w.onBytes.Add(uint64(n))
		}
		w.mu.Lock()
		if cap(b) > keepWriteBuf {
			b = nil
		}
		w.spare = b[:0]
		if werr != nil {
			w.mu.Unlock()
			w.fail(werr)
			w.mu.Lock()
		}
	}
	w.flushing = false
	err = w.err
	w.mu.Unlock()
	return err
}

// fail records the first error and reports it.
func (w *batchWriter) fail(err error) {
	w.mu.Lock()
	first := w.err == nil
	if first {
		w.err = err
		w.buf = nil
	}
	w.mu.Unlock()
	if first && w.onErr != nil {
		w.onErr(err)
	}
}

// backlog returns the bytes waiting to be written.
func (w *batchWriter) backlog() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.buf)
}
