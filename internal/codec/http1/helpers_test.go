package http1

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"
	"testing/iotest"
)

// vector returns a byte vector from testdata/vectors.
func vector(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "vectors", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// readModes are the ways tests feed the same bytes to a Reader: whole, one
// byte per Read, and through a 16-byte buffer that forces heads to spill.
var readModes = []struct {
	name string
	src  func([]byte) io.Reader
	pool func() *BufPool
}{
	{"whole", func(b []byte) io.Reader { return bytes.NewReader(b) }, func() *BufPool { return NewBufPool(0) }},
	{"onebyte", func(b []byte) io.Reader { return iotest.OneByteReader(bytes.NewReader(b)) }, func() *BufPool { return NewBufPool(0) }},
	{"tinybuf", func(b []byte) io.Reader { return iotest.HalfReader(bytes.NewReader(b)) }, func() *BufPool { return NewBufPool(16) }},
}

// repeatReader returns data over and over, as a keep-alive client does.
type repeatReader struct {
	data []byte
	off  int
}

func (r *repeatReader) Read(p []byte) (int, error) {
	n := copy(p, r.data[r.off:])
	r.off = (r.off + n) % len(r.data)
	return n, nil
}

// errAfter returns data then err.
type errAfter struct {
	data []byte
	err  error
}

func (r *errAfter) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, r.err
	}
	n := copy(p, r.data)
	r.data = r.data[n:]
	return n, nil
}

// fields returns h's fields as name/value pairs.
func fields(h *Header) [][2]string {
	var out [][2]string
	h.Range(func(k, v string) bool {
		out = append(out, [2]string{k, v})
		return true
	})
	return out
}

// writeCounter counts Write calls.
type writeCounter struct {
	bytes.Buffer
	writes int
}

func (w *writeCounter) Write(p []byte) (int, error) {
	w.writes++
	return w.Buffer.Write(p)
}

// endToEnd returns the fields AppendTo forwards: all but hop-by-hop ones and
// those the Connection field names (Host excepted).
func endToEnd(h *Header) [][2]string {
	_, connOpts := h.scanHeaders()
	var out [][2]string
	for _, f := range h.fields {
		if hopByHop(f.name) || connOpts && h.connListed(f.name) {
			continue
		}
		out = append(out, [2]string{f.name, f.value})
	}
	return out
}

// checkRequestRoundTrip serializes h with AppendTo, parses the result and
// compares what must survive: method, target, end-to-end fields and framing.
func checkRequestRoundTrip(t testing.TB, h *RequestHead) {
	t.Helper()
	out := h.AppendTo(nil)
	var h2 RequestHead
	if err := NewReader(bytes.NewReader(out), nil).ReadRequestHead(&h2, Limits{MaxHeaderBytes: len(out) + 1, MaxHeaders: len(h.fields) + 8}); err != nil {
		t.Fatalf("reparse of %q: %v", out, err)
	}
	if h2.Method != h.Method || h2.Target != h.Target {
		t.Fatalf("reparse of %q: got %q %q, want %q %q", out, h2.Method, h2.Target, h.Method, h.Target)
	}
	want := endToEnd(&h.Header)
	if _, ok := h.Header.Get("Host"); !ok {
		want = append(want, [2]string{"Host", targetAuthority(h.Target)})
	}
	got := endToEnd(&h2.Header)
	if !equalPairs(got, want) {
		t.Fatalf("reparse of %q: fields %q, want %q", out, got, want)
	}
	if h2.ContentLength != h.ContentLength && !h.Chunked || h2.Chunked != h.Chunked || h2.Upgrade != h.Upgrade {
		t.Fatalf("reparse of %q: framing CL=%d chunked=%v upgrade=%q, want %d %v %q", out,
			h2.ContentLength, h2.Chunked, h2.Upgrade, h.ContentLength, h.Chunked, h.Upgrade)
	}
}

func equalPairs(a, b [][2]string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
