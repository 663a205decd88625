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

// PeekMore waits until more than have bytes are readable on rc (or the
// peer closed) and copies what is readable into b without consuming it:
// protocol detection and the TLS inspector look at a connection's first
// bytes this way and leave them for the handler. eof reports that the
// peer closed with n (== have) bytes sent. It honours the conn's read
// deadline.
func PeekMore(rc syscall.RawConn, b []byte, have int) (n int, eof bool, err error) {
	var perr error
	err = rc.Read(func(fd uintptr) bool {
		m, _, e := syscall.Recvfrom(int(fd), b, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case e == syscall.EAGAIN || e == syscall.EINTR:
			return false
		case e != nil:
			perr = e
			return true
		case m == 0:
			eof = true
			return true
		case m <= have:
			return false // nothing new yet: wait for the next bytes
		}
		n = m
		return true
	})
	if err == nil {
		err = perr
	}
	if eof && err == nil {
		n = have
	}
	return n, eof, err
}
