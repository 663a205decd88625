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
	on       bool
	idle     time.Duration // <= 0: no idle bound, only limit
	limit    time.Time     // zero: none
	readErr  error
	writeErr error
	rx, tx   int64 // bytes read and written, for connection stats
}

func (c *idleConn) deadline() time.Time {
	if c.idle <= 0 {
		return c.limit
	}
	d := time.Now().Add(c.idle)
	if !c.limit.IsZero() && c.limit.Before(d) {
		return c.limit
	}
	return d
}

// Read implements io.Reader.
func (c *idleConn) Read(p []byte) (int, error) {
	if c.on {
		_ = c.Conn.SetReadDeadline(c.deadline())
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
	if c.on {
		_ = c.Conn.SetWriteDeadline(c.deadline())
	}
	n, err := c.Conn.Write(p)
	c.tx += int64(n)
	if err != nil && c.writeErr == nil {
		c.writeErr = err
	}
	return n, err
}

// streaming turns the per-operation deadline on: idle past the last
// operation (<= 0: none), never past limit (zero: none).
func (c *idleConn) streaming(idle time.Duration, limit time.Time) {
	c.on, c.idle, c.limit = true, idle, limit
}

// stop turns it off; deadlines are then the caller's business.
func (c *idleConn) stop() { c.on = false }

// clearErrs forgets the recorded errors before a new exchange.
func (c *idleConn) clearErrs() { c.readErr, c.writeErr = nil, nil }
