package stream

import (
	"net"
	"time"
)

// idleConn is the connection as the proxy reads and writes it. While a
// body streams, each Read and Write first pushes the deadline out by idle
// (never past limit), so stream_idle_timeout bounds inactivity rather than
// the whole transfer; outside bodies idle is zero and it costs nothing. It
// also remembers the first error of each direction, which is how a failed
// copy is blamed on the right side (slow client vs broken upstream).
type idleConn struct {
	net.Conn
	r, w     direction // kept apart: a body may stream in while a response streams out
	readErr  error
	writeErr error
	rx, tx   int64 // bytes read and written, for connection stats
}

// direction is the deadline policy of one direction.
type direction struct {
	on    bool
	idle  time.Duration // <= 0: no idle bound, only limit
	limit time.Time     // zero: none
}

func (d *direction) deadline() time.Time {
	if d.idle <= 0 {
		return d.limit
	}
	t := time.Now().Add(d.idle)
	if !d.limit.IsZero() && d.limit.Before(t) {
		return d.limit
	}
	return t
}

// Read implements io.Reader.
func (c *idleConn) Read(p []byte) (int, error) {
	if c.r.on {
		_ = c.Conn.SetReadDeadline(c.r.deadline())
	}
	n, err := c.Conn.Read(p)
	c.rx += int64(n)
	if err != nil && c.readErr == nil {
		c.readErr = err
	}
	return n, err
}

// Write implements io.Writer.
func (c *idleConn) Write(p []byte) (int, error) {
	if c.w.on {
		_ = c.Conn.SetWriteDeadline(c.w.deadline())
	}
	n, err := c.Conn.Write(p)
	c.tx += int64(n)
	if err != nil && c.writeErr == nil {
		c.writeErr = err
	}
	return n, err
}

// streaming turns the per-operation deadline on for both directions: idle
// past the last operation (<= 0: none), never past limit (zero: none).
func (c *idleConn) streaming(idle time.Duration, limit time.Time) {
	c.r = direction{true, idle, limit}
	c.w = c.r
}

// stop turns it off; deadlines are then the caller's business.
func (c *idleConn) stop() { c.r.on, c.w.on = false, false }

// readStreaming and readStop are streaming and stop for reads alone, and
// writeStreaming and writeStop for writes alone: for a body read on one
// goroutine while a response is written on another.
func (c *idleConn) readStreaming(idle time.Duration, limit time.Time) {
	c.r = direction{true, idle, limit}
}
func (c *idleConn) readStop() { c.r.on = false }
func (c *idleConn) writeStreaming(idle time.Duration, limit time.Time) {
	c.w = direction{true, idle, limit}
}
func (c *idleConn) writeStop() { c.w.on = false }

// clearErrs forgets the recorded errors before a new exchange.
func (c *idleConn) clearErrs() { c.readErr, c.writeErr = nil, nil }
