package http1

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// headOnly returns a vector up to and including its empty line.
func headOnly(b testing.TB, name string) []byte {
	v := vector(b, name)
	i := bytes.Index(v, []byte("\r\n\r\n"))
	return v[:i+4]
}

// BenchmarkReadRequestHead parses a 301-byte curl request (8 fields) from a
// keep-alive connection, as the proxy does per request.
func BenchmarkReadRequestHead(b *testing.B) {
	req := vector(b, "curl_get_headers.http")
	r := NewReader(&repeatReader{data: req}, NewBufPool(16<<10))
	var h RequestHead
	b.SetBytes(int64(len(req)))
	b.ReportAllocs()
	for b.Loop() {
		if err := r.ReadRequestHead(&h, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadRequestHeadWrk parses wrk's minimal request.
func BenchmarkReadRequestHeadWrk(b *testing.B) {
	req := vector(b, "wrk_get.http")
	r := NewReader(&repeatReader{data: req}, NewBufPool(16<<10))
	var h RequestHead
	b.SetBytes(int64(len(req)))
	b.ReportAllocs()
	for b.Loop() {
		if err := r.ReadRequestHead(&h, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkReadResponseHead parses the head of a Go net/http JSON response.
func BenchmarkReadResponseHead(b *testing.B) {
	resp := headOnly(b, "go_json_response.http")
	r := NewReader(&repeatReader{data: resp}, NewBufPool(16<<10))
	var h ResponseHead
	b.SetBytes(int64(len(resp)))
	b.ReportAllocs()
	for b.Loop() {
		if err := r.ReadResponseHead(&h, Limits{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAppendTo serializes the parsed curl request for an upstream and
// the parsed response for the client into reused buffers.
func BenchmarkAppendTo(b *testing.B) {
	var req RequestHead
	if err := NewReader(bytes.NewReader(vector(b, "curl_get_headers.http")), nil).ReadRequestHead(&req, Limits{}); err != nil {
		b.Fatal(err)
	}
	var resp ResponseHead
	if err := NewReader(bytes.NewReader(headOnly(b, "go_json_response.http")), nil).ReadResponseHead(&resp, Limits{}); err != nil {
		b.Fatal(err)
	}
	b.Run("request", func(b *testing.B) {
		buf := make([]byte, 0, 1024)
		b.ReportAllocs()
		for b.Loop() {
			buf = req.AppendTo(buf[:0])
		}
		b.SetBytes(int64(len(buf)))
	})
	b.Run("response", func(b *testing.B) {
		buf := make([]byte, 0, 1024)
		b.ReportAllocs()
		for b.Loop() {
			buf = resp.AppendTo(buf[:0], 1, false)
		}
		b.SetBytes(int64(len(buf)))
	})
}

// BenchmarkProxyHead is one request's head work in the proxy: parse the
// client request, set a header, serialize for the upstream.
func BenchmarkProxyHead(b *testing.B) {
	req := vector(b, "curl_get_headers.http")
	r := NewReader(&repeatReader{data: req}, NewBufPool(16<<10))
	var h RequestHead
	buf := make([]byte, 0, 1024)
	b.ReportAllocs()
	for b.Loop() {
		if err := r.ReadRequestHead(&h, Limits{}); err != nil {
			b.Fatal(err)
		}
		h.Set("X-Forwarded-For", "127.0.0.1")
		buf = h.AppendTo(buf[:0])
	}
}

// BenchmarkChunkedCopyTo re-chunks a 64 KiB body of 4 KiB chunks.
func BenchmarkChunkedCopyTo(b *testing.B) {
	var body bytes.Buffer
	cw := NewChunkedWriter(&body)
	chunk := bytes.Repeat([]byte("x"), 4096)
	for range 16 {
		cw.Write(chunk)
	}
	cw.Close()
	raw := body.Bytes()
	src := bytes.NewReader(raw)
	r := NewReader(src, NewBufPool(16<<10))
	b.SetBytes(16 * 4096)
	b.ReportAllocs()
	for b.Loop() {
		src.Reset(raw)
		r.Reset(src)
		if _, err := r.Body(-1, true, false).CopyTo(io.Discard, true); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkChunkedWriter writes 1 KiB chunks.
func BenchmarkChunkedWriter(b *testing.B) {
	cw := NewChunkedWriter(io.Discard)
	p := []byte(strings.Repeat("y", 1024))
	b.SetBytes(int64(len(p)))
	b.ReportAllocs()
	for b.Loop() {
		cw.Write(p)
	}
}
