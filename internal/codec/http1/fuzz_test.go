package http1

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/iotest"
)

// fuzzLimits are small so the fuzzer reaches the limit paths too.
var fuzzLimits = Limits{MaxHeaderBytes: 4096, MaxHeaders: 32}

// addVectors seeds f with the byte vectors whose names have suffix.
func addVectors(f *testing.F, suffix string) {
	names, err := filepath.Glob(filepath.Join("testdata", "vectors", "*"+suffix))
	if err != nil {
		f.Fatal(err)
	}
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
}

// errClass names the error kinds the API promises.
func errClass(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, ErrMalformed):
		return "malformed"
	case errors.Is(err, ErrHeaderTooLarge):
		return "too large"
	case err == io.EOF:
		return "EOF"
	case err == io.ErrUnexpectedEOF:
		return "unexpected EOF"
	}
	return "other: " + err.Error()
}

// checkClass fails on an error outside the promised kinds.
func checkClass(t *testing.T, err error) {
	t.Helper()
	if c := errClass(err); strings.HasPrefix(c, "other") {
		t.Fatalf("unexpected error kind: %v", err)
	}
}

func FuzzReadRequestHead(f *testing.F) {
	addVectors(f, ".http")
	for _, s := range []string{
		"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
		"POST /x HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
		"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n5;e=1\r\nhello\r\n0\r\nT: 1\r\n\r\n",
		"GET http://u@h:1/p?q HTTP/1.0\r\nConnection: keep-alive, X-A\r\nX-A: 1\r\n\r\n",
		"\r\n\r\nOPTIONS * HTTP/1.1\r\nHost: [::1]:80\r\nExpect: 100-continue\r\n\r\n",
		"CONNECT h:443 HTTP/1.1\r\nHost: h:443\r\nConnection: upgrade\r\nUpgrade: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n",
		"GET / HTTP/1.1\nHost: a\n\n",
		"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var h1, h2 RequestHead
		r1 := NewReader(bytes.NewReader(data), NewBufPool(4096))
		err1 := r1.ReadRequestHead(&h1, fuzzLimits)
		r2 := NewReader(iotest.OneByteReader(bytes.NewReader(data)), NewBufPool(16))
		err2 := r2.ReadRequestHead(&h2, fuzzLimits)
		checkClass(t, err1)
		checkClass(t, err2)
		if (err1 == nil) != (err2 == nil) {
			t.Fatalf("whole read: %v, byte by byte: %v", err1, err2)
		}
		if err1 != nil {
			return
		}
		if !bytes.Equal(h1.raw, h2.raw) || h1.Method != h2.Method || h1.Target != h2.Target ||
			!equalPairs(fields(&h1.Header), fields(&h2.Header)) || h1.ContentLength != h2.ContentLength ||
			h1.Chunked != h2.Chunked || h1.Close != h2.Close || h1.Upgrade != h2.Upgrade || h1.Expect100 != h2.Expect100 {
			t.Fatalf("read patterns disagree: %q vs %q", h1.raw, h2.raw)
		}
		checkRequestRoundTrip(t, &h1)
		// The body and the next message must not panic either.
		b1, berr1 := io.ReadAll(r1.Body(h1.ContentLength, h1.Chunked, false))
		b2, berr2 := io.ReadAll(r2.Body(h2.ContentLength, h2.Chunked, false))
		checkClass(t, berr1)
		if !bytes.Equal(b1, b2) || errClass(berr1) != errClass(berr2) {
			t.Fatalf("bodies disagree: %q %v vs %q %v", b1, berr1, b2, berr2)
		}
		if berr1 == nil {
			checkClass(t, r1.ReadRequestHead(&h1, fuzzLimits))
		}
		// Filters editing the head keep it serializable.
		h2.Set(":path", "/edited")
		h2.Set(":authority", "edited")
		h2.Add("X-Added", "v")
		h2.Del("Cookie")
		checkRequestRoundTrip(t, &h2)
	})
}

func FuzzReadResponseHead(f *testing.F) {
	addVectors(f, "_response.http")
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.0 200\r\nConnection: keep-alive\r\n\r\nbody until close",
		"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
		"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\nContent-Length: 1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var h1, h2 ResponseHead
		r1 := NewReader(bytes.NewReader(data), NewBufPool(4096))
		err1 := r1.ReadResponseHead(&h1, fuzzLimits)
		r2 := NewReader(iotest.OneByteReader(bytes.NewReader(data)), NewBufPool(16))
		err2 := r2.ReadResponseHead(&h2, fuzzLimits)
		checkClass(t, err1)
		checkClass(t, err2)
		if (err1 == nil) != (err2 == nil) {
			t.Fatalf("whole read: %v, byte by byte: %v", err1, err2)
		}
		if err1 != nil {
			return
		}
		if !bytes.Equal(h1.raw, h2.raw) || h1.Status != h2.Status || h1.Reason != h2.Reason ||
			!equalPairs(fields(&h1.Header), fields(&h2.Header)) || h1.ContentLength != h2.ContentLength ||
			h1.Chunked != h2.Chunked || h1.Close != h2.Close || h1.Upgrade != h2.Upgrade {
			t.Fatalf("read patterns disagree: %q vs %q", h1.raw, h2.raw)
		}
		checkResponseRoundTrip(t, &h1)
		for _, minor := range []int{0, 1} {
			out := h1.AppendTo(nil, minor, false)
			var h3 ResponseHead
			if err := NewReader(bytes.NewReader(out), nil).ReadResponseHead(&h3, Limits{MaxHeaderBytes: len(out), MaxHeaders: h1.Len() + 8}); err != nil {
				t.Fatalf("AppendTo(minor %d) = %q does not parse: %v", minor, out, err)
			}
		}
		_ = h1.NoBody("GET")
		untilEOF := !h1.NoBody("GET")
		b1, berr1 := io.ReadAll(r1.Body(h1.ContentLength, h1.Chunked, untilEOF))
		b2, berr2 := io.ReadAll(r2.Body(h2.ContentLength, h2.Chunked, untilEOF))
		checkClass(t, berr1)
		if !bytes.Equal(b1, b2) || errClass(berr1) != errClass(berr2) {
			t.Fatalf("bodies disagree: %q %v vs %q %v", b1, berr1, b2, berr2)
		}
	})
}

func FuzzChunked(f *testing.F) {
	f.Add(vector(f, "chunked_ext_trailers.body"))
	for _, s := range []string{
		"0\r\n\r\n",
		"5\r\nhello\r\n0\r\n\r\nGET / HTTP/1.1\r\n",
		"000A;a=\"b\"\r\n0123456789\r\n0\r\nX: y\r\n\r\n",
		"4000000000000000\r\n",
		"5 ; x\r\nhello\r\n0\r\n\r\n",
		"5\r\nhello\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// Reference: whole reads, large buffer.
		r1 := NewReader(bytes.NewReader(data), NewBufPool(4096))
		r1.lim = fuzzLimits
		out1, err1 := io.ReadAll(r1.Body(-1, true, false))
		checkClass(t, err1)
		rest1, _ := io.ReadAll(r1.Body(-1, false, true))

		// Byte by byte, 16-byte buffer, odd read sizes.
		r2 := NewReader(iotest.OneByteReader(bytes.NewReader(data)), NewBufPool(16))
		r2.lim = fuzzLimits
		out2, err2 := readAllSmall(r2.Body(-1, true, false), 3)
		if !bytes.Equal(out1, out2) || errClass(err1) != errClass(err2) {
			t.Fatalf("read patterns disagree: %q %v vs %q %v", out1, err1, out2, err2)
		}

		// CopyTo, decoded.
		r3 := NewReader(iotest.HalfReader(bytes.NewReader(data)), NewBufPool(64))
		r3.lim = fuzzLimits
		var out3 bytes.Buffer
		n3, err3 := r3.Body(-1, true, false).CopyTo(&out3, false)
		if errClass(err3) != errClass(err1) || err1 == nil && (!bytes.Equal(out3.Bytes(), out1) || n3 != int64(len(out1))) {
			t.Fatalf("CopyTo raw: %q %v, Read: %q %v", out3.Bytes(), err3, out1, err1)
		}

		// CopyTo, chunked: the output decodes to the same data.
		r4 := NewReader(bytes.NewReader(data), NewBufPool(4096))
		r4.lim = fuzzLimits
		var out4 bytes.Buffer
		_, err4 := r4.Body(-1, true, false).CopyTo(&out4, true)
		if errClass(err4) != errClass(err1) {
			t.Fatalf("CopyTo chunked: %v, Read: %v", err4, err1)
		}
		if err1 != nil {
			return
		}
		if rest4, _ := io.ReadAll(r4.Body(-1, false, true)); !bytes.Equal(rest4, rest1) {
			t.Fatalf("CopyTo left %q, Read left %q", rest4, rest1)
		}
		back, err := io.ReadAll(NewReader(&out4, nil).Body(-1, true, false))
		if err != nil || !bytes.Equal(back, out1) {
			t.Fatalf("re-chunked %q decodes to %q, %v; want %q", out4.Bytes(), back, err, out1)
		}
	})
}
