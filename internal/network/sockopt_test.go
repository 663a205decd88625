package network

import (
	"net"
	"syscall"
	"testing"
	"time"
)

// TestSetUserTimeout: the option reaches the socket, and a deadline is
// told apart from a kernel timeout.
func TestSetUserTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := SetUserTimeout(c, 1500*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	rc, _ := c.(*net.TCPConn).SyscallConn()
	var got int
	_ = rc.Control(func(fd uintptr) {
		got, err = syscall.GetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpUserTimeout)
	})
	if err != nil || got != 1500 {
		t.Fatalf("TCP_USER_TIMEOUT = %d (%v), want 1500", got, err)
	}
	_ = c.SetReadDeadline(time.Now().Add(time.Millisecond))
	_, rerr := c.Read(make([]byte, 1))
	if !IsDeadline(rerr) || IsPeerTimeout(rerr) {
		t.Fatalf("read past the deadline: %v (deadline %v, peer timeout %v)", rerr, IsDeadline(rerr), IsPeerTimeout(rerr))
	}
	if IsDeadline(&net.OpError{Op: "read", Err: syscall.ETIMEDOUT}) || !IsPeerTimeout(&net.OpError{Op: "read", Err: syscall.ETIMEDOUT}) {
		t.Fatal("ETIMEDOUT must be a peer timeout, not a deadline")
	}
}
