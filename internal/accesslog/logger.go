package accesslog

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// Buffering limits of a Logger.
const (
	// flushInterval bounds how long a line waits in memory.
	flushInterval = time.Second
	// flushSize wakes the flusher early once this much is pending.
	flushSize = 64 << 10
	// maxPending bounds memory when the disk stalls; lines beyond it are
	// dropped and counted rather than blocking the request path.
	maxPending = 4 << 20
	// maxPooledLine keeps oversized line buffers out of the pool.
	maxPooledLine = 16 << 10
)

// Logger writes formatted access log lines to a file or stdout. Log
// formats into a pooled buffer and copies the line into a pending buffer
// under a short mutex; a background goroutine writes the pending bytes at
// least every second, when 64 KiB have accumulated, and on Close. A
// request therefore never waits on the disk, and if the disk stalls the
// logger drops lines (see Dropped) instead of growing without bound.
type Logger struct {
	format *Format
	filter func(*Entry) bool
	path   string

	pool sync.Pool // *[]byte line buffers

	mu      sync.Mutex
	pending []byte
	closed  bool

	wmu  sync.Mutex // guards out, own and werr
	out  io.Writer
	own  *os.File // closed by Close and Reopen; nil for stdout/stderr
	werr error

	dropped atomic.Uint64
	kick    chan struct{}
	flushRq chan chan struct{}
	done    chan struct{}
	stopped chan struct{}
	once    sync.Once
}

// Open returns a logger that writes lines formatted with f to path.
// "/dev/stdout" and "/dev/stderr" write to the process' streams; any
// other path is opened for appending and created if missing.
func Open(path string, f *Format) (*Logger, error) {
	if f == nil {
		return nil, errors.New("accesslog: nil format")
	}
	out, own, err := openPath(path)
	if err != nil {
		return nil, err
	}
	return newLogger(path, f, out, own), nil
}

// New returns a logger that writes lines formatted with f to w; Close
// does not close w. It is meant for tests and for embedding.
func New(w io.Writer, f *Format) *Logger {
	return newLogger("", f, w, nil)
}

func openPath(path string) (io.Writer, *os.File, error) {
	switch path {
	case "/dev/stdout":
		return os.Stdout, nil, nil
	case "/dev/stderr":
		return os.Stderr, nil, nil
	case "":
		return nil, nil, errors.New("accesslog: empty path")
	}
	file, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, nil, fmt.Errorf("accesslog: %w", err)
	}
	return file, file, nil
}

func newLogger(path string, f *Format, out io.Writer, own *os.File) *Logger {
	l := &Logger{
		format:  f,
		path:    path,
		out:     out,
		own:     own,
		kick:    make(chan struct{}, 1),
		flushRq: make(chan chan struct{}),
		done:    make(chan struct{}),
		stopped: make(chan struct{}),
	}
	l.pool.New = func() any {
		b := make([]byte, 0, 512)
		return &b
	}
	go l.run()
	return l
}

// Log formats e and queues the line. It does not keep e. It allocates
// nothing in the steady state and never waits for the disk.
func (l *Logger) Log(e *Entry) {
	if l.filter != nil && !l.filter(e) {
		return
	}
	bp := l.pool.Get().(*[]byte)
	line := l.format.Append((*bp)[:0], e)
	l.mu.Lock()
	full := false
	switch {
	case l.closed:
	case len(l.pending)+len(line) > maxPending:
		l.dropped.Add(1)
	default:
		l.pending = append(l.pending, line...)
		full = len(l.pending) >= flushSize
	}
	l.mu.Unlock()
	if cap(line) <= maxPooledLine {
		*bp = line
		l.pool.Put(bp)
	}
	if full {
		select {
		case l.kick <- struct{}{}:
		default:
		}
	}
}

// Dropped returns how many lines were dropped because the pending buffer
// was full (the disk did not keep up).
func (l *Logger) Dropped() uint64 { return l.dropped.Load() }

// Path returns the path the logger was opened with ("" for New).
func (l *Logger) Path() string { return l.path }

// Flush writes every pending line now and waits until they are written.
// After Close it returns at once.
func (l *Logger) Flush() {
	ack := make(chan struct{})
	select {
	case l.flushRq <- ack:
		<-ack
	case <-l.stopped:
	}
}

// Reopen closes and reopens the log file, for log rotation; it is a no-op
// for stdout, stderr and writers given to New.
func (l *Logger) Reopen() error {
	l.Flush()
	l.wmu.Lock()
	defer l.wmu.Unlock()
	if l.own == nil {
		return nil
	}
	out, own, err := openPath(l.path)
	if err != nil {
		return err
	}
	old := l.own
	l.out, l.own = out, own
	if err := old.Close(); err != nil {
		return fmt.Errorf("accesslog: close %s: %w", l.path, err)
	}
	return nil
}

// Close flushes pending lines, stops the flusher and closes the file. It
// returns the first write error the logger met. Lines logged after Close
// are discarded.
func (l *Logger) Close() error {
	l.once.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		close(l.done)
		<-l.stopped
		l.wmu.Lock()
		defer l.wmu.Unlock()
		if l.own != nil {
			if err := l.own.Close(); err != nil && l.werr == nil {
				l.werr = fmt.Errorf("accesslog: close %s: %w", l.path, err)
			}
			l.own = nil
		}
	})
	l.wmu.Lock()
	defer l.wmu.Unlock()
	return l.werr
}

// run is the flusher goroutine; it owns spare.
func (l *Logger) run() {
	defer close(l.stopped)
	t := time.NewTicker(flushInterval)
	defer t.Stop()
	var spare []byte
	for {
		select {
		case <-l.kick:
		case <-t.C:
		case ack := <-l.flushRq:
			spare = l.flush(spare)
			close(ack)
			continue
		case <-l.done:
			l.flush(spare)
			return
		}
		spare = l.flush(spare)
	}
}

// flush swaps the pending buffer with spare, writes it and returns it
// emptied for the next swap.
func (l *Logger) flush(spare []byte) []byte {
	l.mu.Lock()
	buf := l.pending
	l.pending = spare[:0]
	l.mu.Unlock()
	if len(buf) > 0 {
		l.wmu.Lock()
		if _, err := l.out.Write(buf); err != nil && l.werr == nil {
			l.werr = fmt.Errorf("accesslog: write %s: %w", l.path, err)
		}
		l.wmu.Unlock()
	}
	if cap(buf) > 2*maxPending { // never after steady state: append overshoots maxPending by at most 25%
		return nil
	}
	return buf[:0]
}
