package http1

import (
	"bytes"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"
)

// readAllSmall reads b with reads of n bytes.
func readAllSmall(b *BodyReader, n int) ([]byte, error) {
	var out []byte
	p := make([]byte, n)
	for {
		k, err := b.Read(p)
		out = append(out, p[:k]...)
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
	}
}

// rest returns what is left in r after the body.
func rest(t *testing.T, r *Reader) string {
	t.Helper()
	b, err := io.ReadAll(r.Body(-1, false, true))
	if err != nil {
		t.Fatalf("reading rest: %v", err)
	}
	return string(b)
}

func TestChunkedValid(t *testing.T) {
	tests := []struct {
		name  string
		in    string
		data  string
		canon string // CopyTo(w, true) output
		rest  string
	}{
		{"RFC example with extensions and trailers", string(vector(t, "chunked_ext_trailers.body")),
			"Wikipedia in\r\n\r\nchunks.", "4\r\nWiki\r\n5\r\npedia\r\ne\r\n in\r\n\r\nchunks.\r\n0\r\n\r\n", ""},
		{"curl request body", "3b\r\nhello chunked world, this is the request body sent by curl\n\r\n0\r\n\r\n",
			"hello chunked world, this is the request body sent by curl\n",
			"3b\r\nhello chunked world, this is the request body sent by curl\n\r\n0\r\n\r\n", ""},
		{"empty", "0\r\n\r\n", "", "0\r\n\r\n", ""},
		{"upper-case hex and leading zeros", "000A\r\n0123456789\r\n00\r\n\r\n", "0123456789", "a\r\n0123456789\r\n0\r\n\r\n", ""},
		{"BWS before extension", "5 \t;a=b ; c\r\nhello\r\n0;last\r\n\r\n", "hello", "5\r\nhello\r\n0\r\n\r\n", ""},
		{"trailers dropped", "2\r\nhi\r\n0\r\nA: 1\r\nB-c:\r\nD: x y\t\r\n\r\n", "hi", "2\r\nhi\r\n0\r\n\r\n", ""},
		{"next message stays buffered", "1\r\nx\r\n0\r\n\r\nGET / HTTP/1.1\r\n", "x", "1\r\nx\r\n0\r\n\r\n", "GET / HTTP/1.1\r\n"},
	}
	for _, tt := range tests {
		for _, m := range readModes {
			t.Run(tt.name+"/"+m.name+"/Read", func(t *testing.T) {
				r := NewReader(m.src([]byte(tt.in)), m.pool())
				got, err := readAllSmall(r.Body(-1, true, false), 3)
				if err != nil || string(got) != tt.data {
					t.Fatalf("Read = %q, %v; want %q", got, err, tt.data)
				}
				if got := rest(t, r); got != tt.rest {
					t.Fatalf("rest = %q, want %q", got, tt.rest)
				}
			})
			for _, chunked := range []bool{false, true} {
				t.Run(tt.name+"/"+m.name+"/CopyTo"+strconv.FormatBool(chunked), func(t *testing.T) {
					r := NewReader(m.src([]byte(tt.in)), m.pool())
					var out bytes.Buffer
					b := r.Body(-1, true, false)
					n, err := b.CopyTo(&out, chunked)
					want := tt.data
					if chunked {
						want = tt.canon
					}
					if err != nil || out.String() != want || n != int64(len(tt.data)) {
						t.Fatalf("CopyTo = %d %q, %v; want %d %q", n, out.String(), err, len(tt.data), want)
					}
					if !b.Done() {
						t.Fatal("body not Done after CopyTo")
					}
					if got := rest(t, r); got != tt.rest {
						t.Fatalf("rest = %q, want %q", got, tt.rest)
					}
				})
			}
		}
	}
}

func TestChunkedErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		lim  Limits
		want error
	}{
		{"no body", "", Limits{}, io.ErrUnexpectedEOF},
		{"EOF in data", "5\r\nhel", Limits{}, io.ErrUnexpectedEOF},
		{"EOF before data CRLF", "5\r\nhello", Limits{}, io.ErrUnexpectedEOF},
		{"EOF in size line", "5", Limits{}, io.ErrUnexpectedEOF},
		{"EOF in trailers", "0\r\nX: 1\r\n", Limits{}, io.ErrUnexpectedEOF},
		{"EOF after last chunk", "0\r\n", Limits{}, io.ErrUnexpectedEOF},
		{"data longer than size", "5\r\nhelloXY\r\n0\r\n\r\n", Limits{}, ErrMalformed},
		{"LF after data", "5\r\nhello\n0\r\n\r\n", Limits{}, ErrMalformed},
		{"CR after data", "5\r\nhello\r0\r\n\r\n", Limits{}, ErrMalformed},
		{"not hex", "x\r\nhello\r\n", Limits{}, ErrMalformed},
		{"empty size", "\r\nhello\r\n", Limits{}, ErrMalformed},
		{"negative size", "-5\r\nhello\r\n", Limits{}, ErrMalformed},
		{"0x prefix", "0x5\r\nhello\r\n", Limits{}, ErrMalformed},
		{"space after size", "5 \r\nhello\r\n0\r\n\r\n", Limits{}, ErrMalformed},
		{"space before size", " 5\r\nhello\r\n0\r\n\r\n", Limits{}, ErrMalformed},
		{"bare LF size line", "5\nhello\r\n0\r\n\r\n", Limits{}, ErrMalformed},
		{"bare CR size line", "5\r\r\nhello\r\n0\r\n\r\n", Limits{}, ErrMalformed},
		{"control char in extension", "5;a\x00\r\nhello\r\n0\r\n\r\n", Limits{}, ErrMalformed},
		{"bare CR in extension", "5;a\rb\r\nhello\r\n0\r\n\r\n", Limits{}, ErrMalformed},
		{"size over 2^62", "4000000000000001\r\n", Limits{}, ErrMalformed},
		{"size 2^64", "10000000000000000\r\n", Limits{}, ErrMalformed},
		{"size overflow long", "FFFFFFFFFFFFFFFFFFFFFFFF\r\n", Limits{}, ErrMalformed},
		{"size 2^62 accepted then EOF", "4000000000000000\r\n", Limits{}, io.ErrUnexpectedEOF},
		{"size line too long", "1;" + strings.Repeat("x", 5000) + "\r\nx\r\n0\r\n\r\n", Limits{}, ErrMalformed},
		{"trailer without colon", "0\r\nX y: 1\r\n\r\n", Limits{}, ErrMalformed},
		{"trailer folded", "0\r\nX: 1\r\n folded\r\n\r\n", Limits{}, ErrMalformed},
		{"trailer control char", "0\r\nX: a\x00\r\n\r\n", Limits{}, ErrMalformed},
		{"trailer bare CR", "0\r\nX: a\rb\r\n\r\n", Limits{}, ErrMalformed},
		{"trailer bare LF", "0\r\nX: a\n\r\n", Limits{}, ErrMalformed},
		{"end bare LF", "0\r\n\n", Limits{}, ErrMalformed},
		{"end CR junk", "0\r\n\rX", Limits{}, ErrMalformed},
		{"trailers too large", "0\r\nX: " + strings.Repeat("a", 200) + "\r\n\r\n", Limits{MaxHeaderBytes: 100}, ErrHeaderTooLarge},
		{"too many trailers", "0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", Limits{MaxHeaders: 2}, ErrHeaderTooLarge},
	}
	head := "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
	for _, tt := range tests {
		for _, m := range readModes {
			for _, mode := range []string{"Read", "CopyTo", "CopyToChunked"} {
				t.Run(tt.name+"/"+m.name+"/"+mode, func(t *testing.T) {
					r := NewReader(m.src([]byte(head+tt.in)), m.pool())
					var h RequestHead
					if err := r.ReadRequestHead(&h, tt.lim); err != nil {
						t.Fatal(err)
					}
					b := r.Body(h.ContentLength, h.Chunked, false)
					var err error
					switch mode {
					case "Read":
						_, err = readAllSmall(b, 7)
					case "CopyTo":
						_, err = b.CopyTo(io.Discard, false)
					default:
						_, err = b.CopyTo(io.Discard, true)
					}
					if !errors.Is(err, tt.want) {
						t.Fatalf("%s error = %v, want %v", mode, err, tt.want)
					}
					// The error is sticky.
					if _, err2 := b.Read(make([]byte, 1)); !errors.Is(err2, tt.want) {
						t.Fatalf("Read after error = %v, want %v", err2, tt.want)
					}
					if b.Done() {
						t.Fatal("Done after error")
					}
				})
			}
		}
	}
}

func TestLengthBodies(t *testing.T) {
	tests := []struct {
		name     string
		in       string
		length   int64
		untilEOF bool
		data     string
		rest     string
		err      error
	}{
		{"content length", "hello world", 5, false, "hello", " world", nil},
		{"zero length", "next", 0, false, "", "next", nil},
		{"no body", "next", -1, false, "", "next", nil},
		{"until EOF", "all of it", -1, true, "all of it", "", nil},
		{"length wins over untilEOF", "abcdef", 2, true, "ab", "cdef", nil},
		{"short body", "short", 10, false, "short", "", io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		for _, m := range readModes {
			t.Run(tt.name+"/"+m.name+"/Read", func(t *testing.T) {
				r := NewReader(m.src([]byte(tt.in)), m.pool())
				got, err := readAllSmall(r.Body(tt.length, false, tt.untilEOF), 2)
				if string(got) != tt.data || !errors.Is(err, tt.err) {
					t.Fatalf("Read = %q, %v; want %q, %v", got, err, tt.data, tt.err)
				}
				if tt.err == nil {
					if got := rest(t, r); got != tt.rest {
						t.Fatalf("rest = %q, want %q", got, tt.rest)
					}
				}
			})
			t.Run(tt.name+"/"+m.name+"/CopyTo", func(t *testing.T) {
				r := NewReader(m.src([]byte(tt.in)), m.pool())
				var out bytes.Buffer
				n, err := r.Body(tt.length, false, tt.untilEOF).CopyTo(&out, true) // chunkedOut is ignored
				if out.String() != tt.data || n != int64(len(tt.data)) || !errors.Is(err, tt.err) {
					t.Fatalf("CopyTo = %d %q, %v; want %q, %v", n, out.String(), err, tt.data, tt.err)
				}
				if tt.err == nil {
					if got := rest(t, r); got != tt.rest {
						t.Fatalf("rest = %q, want %q", got, tt.rest)
					}
				}
			})
		}
	}
}

// encodeChunks builds a chunked body from chunks with noise the decoder must
// drop: extensions, leading zeros, upper-case hex and trailers.
func encodeChunks(rng *rand.Rand, chunks [][]byte) (raw []byte, canon []byte) {
	for _, c := range chunks {
		size := strconv.FormatInt(int64(len(c)), 16)
		canon = append(canon, size...)
		canon = append(canon, "\r\n"...)
		canon = append(canon, c...)
		canon = append(canon, "\r\n"...)
		if rng.IntN(3) == 0 {
			size = "00" + strings.ToUpper(size)
		}
		raw = append(raw, size...)
		if rng.IntN(3) == 0 {
			raw = append(raw, " ;ext=\"v\""...)
		}
		raw = append(raw, "\r\n"...)
		raw = append(raw, c...)
		raw = append(raw, "\r\n"...)
	}
	raw = append(raw, "0\r\n"...)
	if rng.IntN(2) == 0 {
		raw = append(raw, "X-Trailer: t\r\n"...)
	}
	raw = append(raw, "\r\n"...)
	canon = append(canon, "0\r\n\r\n"...)
	return raw, canon
}

func TestChunkedRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		var chunks [][]byte
		var data []byte
		for range rng.IntN(10) {
			c := make([]byte, 1+rng.IntN(40000))
			for j := range c {
				c[j] = byte(rng.Uint32())
			}
			chunks = append(chunks, c)
			data = append(data, c...)
		}
		raw, canon := encodeChunks(rng, chunks)
		bufSize := []int{16, 100, 4096, 16 << 10}[i%4]
		src := func() io.Reader {
			if i%2 == 0 {
				return &smallReader{b: raw, rng: rng}
			}
			return bytes.NewReader(raw)
		}
		r := NewReader(src(), NewBufPool(bufSize))
		got, err := readAllSmall(r.Body(-1, true, false), 1+rng.IntN(70000))
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("case %d Read: %v, equal %v", i, err, bytes.Equal(got, data))
		}
		for _, chunked := range []bool{false, true} {
			r := NewReader(src(), NewBufPool(bufSize))
			var out bytes.Buffer
			n, err := r.Body(-1, true, false).CopyTo(&out, chunked)
			want := data
			if chunked {
				want = canon
			}
			if err != nil || n != int64(len(data)) || !bytes.Equal(out.Bytes(), want) {
				t.Fatalf("case %d CopyTo(%v): n=%d err=%v equal=%v", i, chunked, n, err, bytes.Equal(out.Bytes(), want))
			}
		}
	}
}

// smallReader returns random-sized pieces of b.
type smallReader struct {
	b   []byte
	rng *rand.Rand
}

func (s *smallReader) Read(p []byte) (int, error) {
	if len(s.b) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(s.b), 1+s.rng.IntN(5000))
	copy(p, s.b[:n])
	s.b = s.b[n:]
	return n, nil
}

func TestCopyToOneWritePerFill(t *testing.T) {
	in := "3\r\nabc\r\n0004;x=1\r\ndefg\r\nA\r\n0123456789\r\n0\r\nT: v\r\n\r\n"
	for _, chunked := range []bool{false, true} {
		r := NewReader(strings.NewReader(in), NewBufPool(4096))
		var w writeCounter
		if _, err := r.Body(-1, true, false).CopyTo(&w, chunked); err != nil {
			t.Fatal(err)
		}
		want := "abcdefg0123456789"
		if chunked {
			want = "3\r\nabc\r\n4\r\ndefg\r\na\r\n0123456789\r\n0\r\n\r\n"
		}
		if w.String() != want || w.writes != 1 {
			t.Errorf("CopyTo(%v) = %q in %d writes, want %q in 1", chunked, w.String(), w.writes, want)
		}
	}
}

func TestLargeBodyDirectRead(t *testing.T) {
	data := bytes.Repeat([]byte("0123456789abcdef"), 10000)
	in := append([]byte("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: "+strconv.Itoa(len(data))+"\r\n\r\n"), data...)
	in = append(in, "GET /next HTTP/1.1\r\nHost: a\r\n\r\n"...)
	r := NewReader(bytes.NewReader(in), NewBufPool(4096))
	var h RequestHead
	if err := r.ReadRequestHead(&h, Limits{}); err != nil {
		t.Fatal(err)
	}
	got, err := readAllSmall(r.Body(h.ContentLength, h.Chunked, false), 64<<10)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("body: %v, equal %v", err, bytes.Equal(got, data))
	}
	if err := r.ReadRequestHead(&h, Limits{}); err != nil || h.Target != "/next" {
		t.Fatalf("next request: %v %q", err, h.Target)
	}
}

func TestChunkedWriter(t *testing.T) {
	var out bytes.Buffer
	cw := NewChunkedWriter(&out)
	for _, s := range []string{"hello", "", "world, this is a longer chunk"} {
		if n, err := cw.Write([]byte(s)); n != len(s) || err != nil {
			t.Fatalf("Write(%q) = %d, %v", s, n, err)
		}
	}
	if err := cw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := cw.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	want := "5\r\nhello\r\n1d\r\nworld, this is a longer chunk\r\n0\r\n\r\n"
	if out.String() != want {
		t.Fatalf("output %q, want %q", out.String(), want)
	}
	if _, err := cw.Write([]byte("x")); err == nil {
		t.Fatal("Write after Close succeeded")
	}
	got, err := io.ReadAll(NewReader(&out, nil).Body(-1, true, false))
	if err != nil || string(got) != "helloworld, this is a longer chunk" {
		t.Fatalf("decoded %q, %v", got, err)
	}
	var out2 bytes.Buffer
	cw.Reset(&out2)
	cw.Write([]byte("ab"))
	cw.Close()
	if out2.String() != "2\r\nab\r\n0\r\n\r\n" {
		t.Fatalf("after Reset: %q", out2.String())
	}
}

// TestChunkedWriterConn checks the vectored-write path over a real loopback
// connection and that an unframed body copied through CopyTo into a
// ChunkedWriter decodes to the same bytes.
func TestChunkedWriterConn(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	data := bytes.Repeat([]byte("weft "), 20000)
	type result struct {
		b   []byte
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- result{nil, err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		b, err := io.ReadAll(NewReader(c, NewBufPool(4096)).Body(-1, true, false))
		done <- result{b, err}
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	cw := NewChunkedWriter(c)
	src := NewReader(bytes.NewReader(data), NewBufPool(4096))
	if _, err := src.Body(-1, false, true).CopyTo(cw, false); err != nil {
		t.Fatal(err)
	}
	if err := cw.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case res := <-done:
		if res.err != nil || !bytes.Equal(res.b, data) {
			t.Fatalf("peer got %d bytes, %v", len(res.b), res.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("timeout waiting for the peer")
	}
}

// shortWriter accepts at most n bytes per Write without an error.
type shortWriter struct{ n int }

func (w shortWriter) Write(p []byte) (int, error) { return min(len(p), w.n), nil }

func TestCopyToWriteErrors(t *testing.T) {
	in := "5\r\nhello\r\n0\r\n\r\n"
	for _, chunked := range []bool{false, true} {
		r := NewReader(strings.NewReader(in), nil)
		if _, err := r.Body(-1, true, false).CopyTo(shortWriter{2}, chunked); err != io.ErrShortWrite {
			t.Errorf("chunked CopyTo(%v) to short writer: %v", chunked, err)
		}
	}
	r := NewReader(strings.NewReader("hello"), nil)
	if _, err := r.Body(5, false, false).CopyTo(shortWriter{2}, false); err != io.ErrShortWrite {
		t.Errorf("length CopyTo to short writer: %v", err)
	}
}
