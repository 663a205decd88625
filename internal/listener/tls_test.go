package listener

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/tlsctx/tlstest"
)

type tlsCounts struct {
	counts
	ok, bad atomic.Int64
}

func (c *tlsCounts) Handshake()      { c.ok.Add(1) }
func (c *tlsCounts) HandshakeError() { c.bad.Add(1) }

// say answers every connection with its chain's word and closes; it checks
// the conn still offers what handlers rely on.
func say(t *testing.T, word string) api.ConnHandler {
	return api.ConnHandlerFunc(func(ctx context.Context, c net.Conn) {
		defer c.Close()
		if _, ok := c.(api.DrainNotifier); !ok {
			t.Errorf("%s: conn is not a DrainNotifier", word)
		}
		if _, ok := c.(interface{ CloseWrite() error }); !ok {
			t.Errorf("%s: conn has no CloseWrite", word)
		}
		_, _ = io.WriteString(c, word)
		_ = c.(interface{ CloseWrite() error }).CloseWrite()
		_, _ = io.Copy(io.Discard, c)
	})
}

func TestTLSChainsBySNI(t *testing.T) {
	ca := tlstest.NewCA("test ca")
	a, b := ca.Leaf("a.example.com"), ca.Leaf("*.b.example.com")
	srv := func(l tlstest.Leaf) *tls.Config { return &tls.Config{Certificates: []tls.Certificate{l.TLS()}} }
	mtls := srv(ca.Leaf("m.example.com"))
	mtls.ClientAuth, mtls.ClientCAs = tls.RequireAndVerifyClientCert, ca.Pool()
	st := &tlsCounts{counts: newCounts()}
	l, err := Listen(Config{
		Name: "t", Address: "127.0.0.1:0", Stats: st, InspectTimeout: 300 * time.Millisecond,
		Chains: []Chain{
			{Key: "a", Match: Match{ServerNames: []string{"a.example.com"}}, TLS: srv(a), Handler: say(t, "a")},
			{Key: "b", Match: Match{ServerNames: []string{"*.b.example.com"}}, TLS: srv(b), Handler: say(t, "b")},
			{Key: "m", Match: Match{ServerNames: []string{"m.example.com"}}, TLS: mtls, Handler: say(t, "m")},
			{Key: "raw", Match: Match{TransportProtocol: "raw_buffer"}, Handler: say(t, "raw")},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	go l.Serve()
	t.Cleanup(l.Close)
	addr := l.Addr().String()
	read := func(c net.Conn) (string, error) {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(c)
		return string(b), err
	}
	dialTLS := func(sni string, certs ...tls.Certificate) (string, error) {
		c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr,
			&tls.Config{ServerName: sni, RootCAs: ca.Pool(), Certificates: certs})
		if err != nil {
			return "", err
		}
		defer c.Close()
		return read(c)
	}
	for sni, want := range map[string]string{"a.example.com": "a", "x.b.example.com": "b"} {
		if got, err := dialTLS(sni); err != nil || got != want {
			t.Errorf("SNI %s: got %q, %v; want %q", sni, got, err, want)
		}
	}
	// Plain TCP on the same port: the raw_buffer chain.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	_, _ = c.Write([]byte("hi"))
	if got, err := read(c); err != nil || got != "raw" {
		t.Errorf("plaintext: got %q, %v", got, err)
	}
	c.Close()
	// No chain for an unknown name: closed, counted as no match.
	if _, err := dialTLS("c.example.com"); err == nil {
		t.Error("unknown SNI was served")
	}
	wait(t, st.nomatch, "no chain match")
	// mTLS: without a client certificate the handshake fails and is
	// counted; with one it works.
	before := st.bad.Load()
	if got, err := dialTLS("m.example.com"); err == nil && got == "m" {
		t.Error("mTLS chain served a client without a certificate")
	}
	if got, err := dialTLS("m.example.com", ca.Leaf("client").TLS()); err != nil || got != "m" {
		t.Errorf("mTLS with a client cert: got %q, %v", got, err)
	}
	waitFor(t, func() bool { return st.bad.Load() == before+1 }, "handshake error counted")
	// A silent client is closed at the inspector timeout; garbage that
	// starts like TLS is closed at once. Neither harms the others.
	silent, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	garbage, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer garbage.Close()
	_, _ = garbage.Write([]byte{0x16, 0x03, 0x01, 0x00, 0x05, 0x02, 0, 0, 1, 0})
	for _, c := range []net.Conn{silent, garbage} {
		// EOF, or a reset when the client's bytes were left unread.
		if got, err := read(c); got != "" || isTimeout(err) {
			t.Errorf("bad client: read %q, %v; want it closed", got, err)
		}
	}
	if got, err := dialTLS("a.example.com"); err != nil || got != "a" {
		t.Errorf("after bad clients: got %q, %v", got, err)
	}
	if n := st.ok.Load(); n != 4 {
		t.Errorf("handshakes counted %d, want 4", n)
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestUpdateTurnsOnTLS: an update that brings SNI chains starts the
// inspector for new connections (an LDS update in place).
func TestUpdateTurnsOnTLS(t *testing.T) {
	ca := tlstest.NewCA("ca")
	l, err := Listen(Config{Name: "t", Address: "127.0.0.1:0", Chains: []Chain{{Key: "raw", Handler: say(t, "raw")}}})
	if err != nil {
		t.Fatal(err)
	}
	go l.Serve()
	t.Cleanup(l.Close)
	l.UpdateConfig(Config{InspectTimeout: time.Second, Chains: []Chain{
		{Key: "a", Match: Match{ServerNames: []string{"a.example.com"}}, Handler: say(t, "a"),
			TLS: &tls.Config{Certificates: []tls.Certificate{ca.Leaf("a.example.com").TLS()}}},
		{Key: "raw", Match: Match{TransportProtocol: "raw_buffer"}, Handler: say(t, "raw")},
	}})
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", l.Addr().String(),
		&tls.Config{ServerName: "a.example.com", RootCAs: ca.Pool()})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if b, err := io.ReadAll(c); err != nil || string(b) != "a" {
		t.Fatalf("after the update: %q %v", b, err)
	}
}
