package network

import (
	"net"
	"testing"
	"time"
)

func pair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close(); _ = server.Close() })
	return client, server
}

func TestWaitReadable(t *testing.T) {
	c, s := pair(t)
	done := make(chan error, 1)
	go func() { done <- WaitReadable(s) }()
	select {
	case err := <-done:
		t.Fatalf("returned before any byte: %v", err)
	case <-time.After(50 * time.Millisecond):
	}
	if _, err := c.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("not woken by data")
	}
	// The byte is still there: the wait does not consume it.
	b := make([]byte, 1)
	if n, err := s.Read(b); n != 1 || b[0] != 'x' || err != nil {
		t.Fatalf("read after wait: %d %q %v", n, b, err)
	}
}

func TestWaitReadableDeadlineAndEOF(t *testing.T) {
	c, s := pair(t)
	_ = s.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if err := WaitReadable(s); !IsTimeout(err) {
		t.Fatalf("err = %v, want a timeout", err)
	}
	_ = s.SetReadDeadline(time.Time{})
	_ = c.Close()
	if err := WaitReadable(s); err != nil {
		t.Fatalf("EOF should wake the wait without error, got %v", err)
	}
}

func TestDeadline(t *testing.T) {
	now := time.Unix(100, 0)
	if !Deadline(now, 0).IsZero() || !Deadline(now, -1).IsZero() {
		t.Fatal("non-positive durations mean no deadline")
	}
	if got := Deadline(now, time.Second); !got.Equal(now.Add(time.Second)) {
		t.Fatalf("Deadline = %v", got)
	}
}
