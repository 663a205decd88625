// Package network holds connection helpers shared by every protocol: the
// readiness wait that lets idle connections hold no buffer.
package network

import (
	"errors"
	"net"
	"syscall"
	"time"
)

// WaitReadable blocks until c has bytes to read (or EOF/error), without
// reading them and without holding a buffer. This is what keeps an idle
// keep-alive connection at a few KiB: the goroutine parks in the poller
// with its read buffer already back in the pool. It honours c's read
// deadline. Conns without a raw socket (TLS, pipes) return at once.
func WaitReadable(c net.Conn) error {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	var b [1]byte
	var perr error
	err = rc.Read(func(fd uintptr) bool {
		_, _, e := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		if e == syscall.EAGAIN || e == syscall.EINTR {
			return false
		}
		if e != nil {
			perr = e
		}
		return true
	})
	if err != nil {
		return err
	}
	return perr
}

// IsTimeout reports whether err is a deadline expiry.
func IsTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// Deadline returns now+d, or the zero time (no deadline) when d <= 0.
func Deadline(now time.Time, d time.Duration) time.Time {
	if d <= 0 {
		return time.Time{}
	}
	return now.Add(d)
}
