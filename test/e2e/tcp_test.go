package e2e

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// tcpServer accepts on loopback and runs handle per connection.
func tcpServer(t *testing.T, handle func(*net.TCPConn)) (port int, accepted *atomic.Int64) {
	t.Helper()
	ln := freeListener(t)
	accepted = &atomic.Int64{}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				handle(c.(*net.TCPConn))
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port, accepted
}

// echoConn echoes until the peer half-closes, then half-closes back.
func echoConn(c *net.TCPConn) {
	_, _ = io.Copy(c, c)
	_ = c.CloseWrite()
}

func tcpProxyListener(name, cluster string, pre ...M) M {
	return listenerOn(name, append(pre, M{"name": "envoy.filters.network.tcp_proxy",
		"typed_config": M{"@type": tcpProxyType, "stat_prefix": name, "cluster": cluster}})...)
}

func dialTCP(t *testing.T, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	_ = c.SetDeadline(time.Now().Add(20 * time.Second))
	return c.(*net.TCPConn)
}

// roundTrip writes msg and reads the same number of bytes back.
func roundTrip(c net.Conn, msg []byte) ([]byte, error) {
	if _, err := c.Write(msg); err != nil {
		return nil, err
	}
	got := make([]byte, len(msg))
	_, err := io.ReadFull(c, got)
	return got, err
}

// TestTCPProxyEcho: bytes round-trip through tcp_proxy, including 4 MB
// streamed while reading, and a client half-close reaches the server
// while the reply still flows back.
func TestTCPProxyEcho(t *testing.T) {
	t.Parallel()
	port, accepted := tcpServer(t, echoConn)
	w := startWeft(t, bootstrap(t, []M{tcpProxyListener("tcp", "echo")}, staticCluster("echo", port)))
	addr := w.Listener("tcp")

	c := dialTCP(t, addr)
	for i := 0; i < 20; i++ {
		msg := []byte(fmt.Sprintf("ping %d\n", i))
		got, err := roundTrip(c, msg)
		if err != nil || !bytes.Equal(got, msg) {
			t.Fatalf("round trip %d: %q %v", i, got, err)
		}
	}

	// 4 MB written while reading concurrently, then half-close: the echo
	// server sees EOF, finishes echoing and closes; we read everything
	// and then EOF.
	big := make([]byte, 4<<20)
	_, _ = newPRNG(3).Read(big)
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(big)
		if err == nil {
			err = c.CloseWrite()
		}
		errc <- err
	}()
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the echo: %v", err)
	}
	if err := <-errc; err != nil {
		t.Fatalf("writing: %v", err)
	}
	if !bytes.Equal(got, big) {
		t.Fatalf("echo of 4 MB: got %d bytes (sha %s), want %d (sha %s)", len(got), sha256Hex(got)[:12], len(big), sha256Hex(big)[:12])
	}

	// Two more short connections; then the cluster counters must agree
	// with the upstream's accept count.
	for i := 0; i < 2; i++ {
		c := dialTCP(t, addr)
		if got, err := roundTrip(c, []byte("x")); err != nil || string(got) != "x" {
			t.Fatalf("short connection %d: %q %v", i, got, err)
		}
		_ = c.Close()
	}
	waitFor(t, 5*time.Second, "the upstream connections to close", func() bool {
		return w.metricValue("weft_cluster_upstream_cx_active", "cluster=echo") == 0
	})
	_, body := w.Admin("/stats/prometheus")
	if v := promValue(body, "weft_cluster_upstream_cx_total", "cluster=echo"); v != float64(accepted.Load()) {
		t.Errorf("weft_cluster_upstream_cx_total = %v, upstream accepted %d", v, accepted.Load())
	}
	if v := promValue(body, "weft_cluster_upstream_cx_tx_bytes_total", "cluster=echo"); v < float64(len(big)) {
		t.Errorf("weft_cluster_upstream_cx_tx_bytes_total = %v, want >= %d", v, len(big))
	}
}

// TestTCPProxyHalfClose checks both directions of half-close: the server
// answers only after the client's EOF, and the server's EOF reaches the
// client while the client can still send.
func TestTCPProxyHalfClose(t *testing.T) {
	t.Parallel()
	// Server A reads to EOF and then replies with what it counted.
	portA, _ := tcpServer(t, func(c *net.TCPConn) {
		n, _ := io.Copy(io.Discard, c)
		fmt.Fprintf(c, "got %d bytes", n)
		_ = c.CloseWrite()
	})
	// Server B greets, half-closes, then reads the client's data and
	// reports its size on a side channel.
	sizes := make(chan int64, 1)
	portB, _ := tcpServer(t, func(c *net.TCPConn) {
		_, _ = io.WriteString(c, "hello and goodbye")
		_ = c.CloseWrite()
		n, _ := io.Copy(io.Discard, c)
		sizes <- n
	})
	w := startWeft(t, bootstrap(t, []M{tcpProxyListener("a", "a"), tcpProxyListener("b", "b")},
		staticCluster("a", portA), staticCluster("b", portB)))

	t.Run("client closes first", func(t *testing.T) {
		c := dialTCP(t, w.Listener("a"))
		if _, err := c.Write(bytes.Repeat([]byte("x"), 100000)); err != nil {
			t.Fatal(err)
		}
		if err := c.CloseWrite(); err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "got 100000 bytes" {
			t.Errorf("reply after half-close: %q %v", got, err)
		}
	})
	t.Run("server closes first", func(t *testing.T) {
		c := dialTCP(t, w.Listener("b"))
		got, err := io.ReadAll(c) // until the server's EOF
		if err != nil || string(got) != "hello and goodbye" {
			t.Fatalf("greeting: %q %v", got, err)
		}
		// Our direction is still open.
		if _, err := c.Write(bytes.Repeat([]byte("y"), 50000)); err != nil {
			t.Fatalf("writing after the server's half-close: %v", err)
		}
		_ = c.CloseWrite()
		select {
		case n := <-sizes:
			if n != 50000 {
				t.Errorf("server read %d bytes after its half-close, want 50000", n)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("server never saw the client's data/EOF")
		}
	})
}

// TestConnectionLimit: with max_connections 2 the third concurrent
// connection is closed without reaching the upstream; when one closes a
// new one is admitted.
func TestConnectionLimit(t *testing.T) {
	t.Parallel()
	port, accepted := tcpServer(t, echoConn)
	limit := M{"name": "envoy.filters.network.connection_limit",
		"typed_config": M{"@type": connLimitType, "stat_prefix": "cl", "max_connections": 2}}
	w := startWeft(t, bootstrap(t, []M{tcpProxyListener("tcp", "echo", limit)}, staticCluster("echo", port)))
	addr := w.Listener("tcp")

	c1, c2 := dialTCP(t, addr), dialTCP(t, addr)
	for i, c := range []net.Conn{c1, c2} {
		if got, err := roundTrip(c, []byte("hi")); err != nil || string(got) != "hi" {
			t.Fatalf("connection %d: %q %v", i+1, got, err)
		}
	}
	c3 := dialTCP(t, addr)
	_ = c3.SetDeadline(time.Now().Add(3 * time.Second))
	_, _ = c3.Write([]byte("hi"))
	buf := make([]byte, 8)
	n, err := c3.Read(buf)
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("third connection: read %q, %v; want it closed by weft", buf[:n], err)
	}
	if accepted.Load() != 2 {
		t.Errorf("upstream accepted %d connections, want 2", accepted.Load())
	}
	if v := w.metricValue("weft_connection_limit_limited_connections_total", "stat_prefix=cl"); v < 1 {
		t.Errorf("weft_connection_limit_limited_connections_total = %v, want >= 1", v)
	}
	// The first two still work.
	if got, err := roundTrip(c2, []byte("still")); err != nil || string(got) != "still" {
		t.Fatalf("connection 2 after the rejection: %q %v", got, err)
	}

	_ = c1.Close()
	// Admission is released asynchronously once weft sees the close.
	waitFor(t, 5*time.Second, "a slot to free up", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return false
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(time.Second))
		got, err := roundTrip(c, []byte("new"))
		return err == nil && string(got) == "new"
	})
}
