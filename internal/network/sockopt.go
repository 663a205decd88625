package network

import (
	"errors"
	"net"
	"os"
	"syscall"
	"time"
)

// tcpUserTimeout is TCP_USER_TIMEOUT (linux/tcp.h); the syscall package
// does not name it.
const tcpUserTimeout = 0x12

// SetUserTimeout makes the kernel abort c when bytes it sent stay
// unacknowledged for d (TCP_USER_TIMEOUT). A write deadline cannot see a
// peer that stopped taking data once everything fits in the socket's send
// buffer: nothing blocks, so nothing times out, and a peer whose own
// receive buffer is full can even leave both directions stalled (its
// window updates are dropped with our data). The kernel then fails the
// next read with ETIMEDOUT (see IsPeerTimeout). d <= 0 leaves the socket
// alone; conns without a raw socket are skipped.
func SetUserTimeout(c net.Conn, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	ms := int(d / time.Millisecond)
	if ms < 1 {
		ms = 1
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpUserTimeout, ms)
	}); err != nil {
		return err
	}
	return serr
}

// IsDeadline reports whether err is an expired deadline set on the conn,
// as opposed to a timeout the kernel reported for the peer.
func IsDeadline(err error) bool { return errors.Is(err, os.ErrDeadlineExceeded) }

// IsPeerTimeout reports whether the kernel gave up on the peer: sent
// bytes unacknowledged past TCP_USER_TIMEOUT or retransmissions exhausted.
func IsPeerTimeout(err error) bool { return errors.Is(err, syscall.ETIMEDOUT) }
