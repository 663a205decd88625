package pool

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/weftmesh/weft/internal/tlsctx/tlstest"
)

// tlsHost dials TLS, as a cluster with an UpstreamTlsContext does.
type tlsHost struct {
	testHost
	cfg *tls.Config
}

func (h *tlsHost) Dial(ctx context.Context) (net.Conn, error) {
	nc, err := h.testHost.Dial(ctx)
	if err != nil {
		return nil, err
	}
	tc := tls.Client(nc, h.cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = nc.Close()
		return nil, err
	}
	return tc, nil
}

// TestTLSConnReuse: an idle pooled TLS connection is reused while the
// server keeps it, and not once the server closed it (close_notify and
// FIN sit under the TLS layer, where the liveness peek looks).
func TestTLSConnReuse(t *testing.T) {
	ca := tlstest.NewCA("ca")
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{ca.Leaf("up").TLS()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	closeAfterOne := make(chan bool, 4)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				r := bufio.NewReader(c)
				for {
					line, err := r.ReadString('\n')
					if err != nil {
						return
					}
					_, _ = c.Write([]byte(line))
					if <-closeAfterOne {
						return // Close sends close_notify, then FIN
					}
				}
			}()
		}
	}()
	h := &tlsHost{testHost: testHost{addr: ln.Addr().String()}, cfg: &tls.Config{ServerName: "up", RootCAs: ca.Pool()}}
	p := New(h, Config{})
	t.Cleanup(p.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	call := func(closeAfter bool) (*Conn, bool) {
		t.Helper()
		c, reused, err := p.Get(ctx)
		if err != nil {
			t.Fatal(err)
		}
		closeAfterOne <- closeAfter
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte("ping\n")); err != nil {
			t.Fatal(err)
		}
		if line, err := bufio.NewReader(c).ReadString('\n'); err != nil || line != "ping\n" {
			t.Fatalf("echo: %q %v", line, err)
		}
		p.Put(c, true)
		return c, reused
	}
	first, _ := call(false)
	second, reused := call(true) // served, then the server closes it
	if !reused || second != first {
		t.Fatal("an open idle TLS connection was not reused")
	}
	// Wait until the server's close reached the socket under TLS.
	deadline := time.Now().Add(5 * time.Second)
	for second.alive() {
		if time.Now().After(deadline) {
			t.Fatal("the closed TLS connection still looks alive")
		}
		time.Sleep(5 * time.Millisecond)
	}
	third, reused := call(false)
	if reused || third == second {
		t.Fatal("a TLS connection the server closed was handed out again")
	}
	if n := h.dials.Load(); n != 2 {
		t.Errorf("dials = %d, want 2", n)
	}
}
