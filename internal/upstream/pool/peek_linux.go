//go:build linux

package pool

import (
	"net"
	"syscall"
	"unsafe"
)

// peeker holds what alive needs, built once per connection so a reuse check
// allocates nothing: the RawConn, the callback and its result.
type peeker struct {
	rc     syscall.RawConn
	fn     func(fd uintptr) bool
	buf    [1]byte
	isLive bool
}

func (c *Conn) initPeek() {
	var nc net.Conn = c.Conn
	if u, ok := nc.(interface{ NetConn() net.Conn }); ok {
		nc = u.NetConn() // e.g. TLS: peek the socket underneath
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return
	}
	c.rc = rc
	c.fn = func(fd uintptr) bool {
		_, _, errno := syscall.Syscall6(syscall.SYS_RECVFROM, fd,
			uintptr(unsafe.Pointer(&c.buf[0])), 1,
			syscall.MSG_PEEK|syscall.MSG_DONTWAIT, 0, 0)
		// EAGAIN: nothing to read, the connection is open and quiet. A
		// zero-byte result is EOF (the server closed); bytes nobody asked
		// for (a stray response, a close notice) or any other errno
		// (reset) make the connection unsafe to send a request on.
		c.isLive = errno == syscall.EAGAIN || errno == syscall.EINTR
		return true // never wait for readiness
	}
}

// alive reports whether the idle connection can carry a request.
func (c *Conn) alive() bool {
	if c.rc == nil {
		return true
	}
	if err := c.rc.Read(c.fn); err != nil {
		return false
	}
	return c.isLive
}
