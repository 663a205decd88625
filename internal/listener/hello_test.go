package listener

import (
	"crypto/tls"
	"errors"
	"net"
	"reflect"
	"testing"
	"time"
)

// clientHello returns the first bytes a crypto/tls client sends with the
// given SNI and ALPN: a real ClientHello.
func clientHello(t testing.TB, sni string, alpn []string) []byte {
	t.Helper()
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	go func() {
		c := tls.Client(a, &tls.Config{ServerName: sni, NextProtos: alpn, InsecureSkipVerify: true})
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		_ = c.Handshake() // fails when b closes
	}()
	_ = b.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, maxHello)
	have := 0
	for {
		n, err := b.Read(buf[have:])
		if err != nil {
			t.Fatal(err)
		}
		have += n
		if _, err := ParseHello(buf[:have]); !errors.Is(err, errNeedMore) {
			return buf[:have]
		}
	}
}

func TestParseHello(t *testing.T) {
	full := clientHello(t, "A.Example.com", []string{"h2", "http/1.1"})
	h, err := ParseHello(full)
	if err != nil {
		t.Fatal(err)
	}
	if h.ServerName != "a.example.com" || !reflect.DeepEqual(h.ALPN, []string{"h2", "http/1.1"}) {
		t.Fatalf("got %+v", h)
	}
	bare := clientHello(t, "", nil) // crypto/tls sends no SNI without a name
	if h, err := ParseHello(bare); err != nil || h.ServerName != "" || h.ALPN != nil {
		t.Fatalf("bare hello: %+v %v", h, err)
	}
	for n := 0; n < len(full); n++ {
		if _, err := ParseHello(full[:n]); !errors.Is(err, errNeedMore) {
			t.Fatalf("prefix of %d bytes: %v, want need more", n, err)
		}
	}
	corrupt := func(f func(b []byte)) []byte {
		b := append([]byte(nil), full...)
		f(b)
		return b
	}
	cases := []struct {
		name string
		in   []byte
		want error // nil: any error other than need-more and not-TLS
	}{
		{"http", []byte("GET / HTTP/1.1\r\n"), errNotTLS},
		{"bolt", []byte{0x01, 0x01, 0x00}, errNotTLS},
		{"ssl2-ish version", []byte{0x16, 0x02}, errNotTLS},
		{"record too large", []byte{0x16, 0x03, 0x01, 0x40, 0x01}, nil},
		{"record too short", []byte{0x16, 0x03, 0x01, 0x00, 0x02, 1, 0}, nil},
		{"not a client hello", corrupt(func(b []byte) { b[5] = 2 }), nil},
		{"hello longer than record", corrupt(func(b []byte) { b[6] = 0xff }), nil},
		{"session id overruns", corrupt(func(b []byte) { b[5+4+2+32] = 0xff }), nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseHello(tc.in)
			switch {
			case tc.want != nil && !errors.Is(err, tc.want):
				t.Fatalf("err = %v, want %v", err, tc.want)
			case tc.want == nil && (err == nil || errors.Is(err, errNeedMore) || errors.Is(err, errNotTLS)):
				t.Fatalf("err = %v, want a malformed-hello error", err)
			}
		})
	}
}

func TestNameLevel(t *testing.T) {
	cases := []struct {
		names []string
		sni   string
		want  int
	}{
		{nil, "a.example.com", 0},
		{[]string{"a.example.com"}, "a.example.com", 1 << 20},
		{[]string{"a.example.com"}, "b.example.com", -1},
		{[]string{"*.example.com"}, "a.example.com", len("*.example.com")},
		{[]string{"*.example.com"}, "x.a.example.com", len("*.example.com")},
		{[]string{"*.example.com"}, "example.com", -1},
		{[]string{"*.example.com", "*.a.example.com"}, "x.a.example.com", len("*.a.example.com")},
		{[]string{"a.example.com"}, "", -1},
	}
	for _, tc := range cases {
		if got := nameLevel(tc.names, tc.sni); got != tc.want {
			t.Errorf("nameLevel(%v, %q) = %d, want %d", tc.names, tc.sni, got, tc.want)
		}
	}
}

// FuzzParseHello: no input panics or reads out of bounds, and a parsed
// hello's names come from the input.
func FuzzParseHello(f *testing.F) {
	f.Add(clientHello(f, "a.example.com", []string{"http/1.1"}))
	f.Add(clientHello(f, "", nil))
	f.Add([]byte("GET / HTTP/1.1\r\n"))
	f.Add([]byte{0x16, 0x03, 0x01, 0x00, 0x04, 0x01, 0x00, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := ParseHello(b)
		if err == nil && len(h.ServerName) > len(b) {
			t.Fatalf("server name longer than the input")
		}
	})
}
