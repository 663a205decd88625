package http1

import (
	"io"
	"strings"
	"testing"
)

func TestBufPool(t *testing.T) {
	tests := []struct{ size, want int }{{0, DefaultBufSize}, {-1, DefaultBufSize}, {1, minBufSize}, {4096, 4096}}
	for _, tt := range tests {
		p := NewBufPool(tt.size)
		b := p.Get()
		if len(*b) != tt.want || p.Size() != tt.want {
			t.Errorf("NewBufPool(%d): buffer of %d, Size %d, want %d", tt.size, len(*b), p.Size(), tt.want)
		}
		*b = (*b)[:1]
		p.Put(b)
		p.Put(nil)
		foreign := make([]byte, 3)
		p.Put(&foreign) // dropped: wrong size
		if b := p.Get(); len(*b) != tt.want {
			t.Errorf("after Put: buffer of %d, want %d", len(*b), tt.want)
		}
	}
}

func TestReaderBufferLifecycle(t *testing.T) {
	pool := NewBufPool(4096)
	in := "GET /a HTTP/1.1\r\nHost: a\r\n\r\nGET /b HTTP/1.1\r\nHost: a\r\n\r\n"
	r := NewReader(strings.NewReader(in), pool)
	if r.buf != nil {
		t.Fatal("buffer taken before the first read")
	}
	r.Release() // nothing to release
	var h RequestHead
	if err := r.ReadRequestHead(&h, Limits{}); err != nil {
		t.Fatal(err)
	}
	if r.buf == nil || r.Buffered() == 0 {
		t.Fatalf("after first head: buf %v, buffered %d", r.buf != nil, r.Buffered())
	}
	r.Release() // the second request is buffered: kept
	if r.buf == nil {
		t.Fatal("Release gave back a buffer holding data")
	}
	if err := r.ReadRequestHead(&h, Limits{}); err != nil || h.Target != "/b" {
		t.Fatalf("second head: %v %q", err, h.Target)
	}
	if r.Buffered() != 0 {
		t.Fatalf("buffered %d after both heads", r.Buffered())
	}
	// Parsed strings do not depend on the Reader's buffer.
	r.Release()
	if r.buf != nil {
		t.Fatal("Release kept an empty buffer")
	}
	if h.Target != "/b" || h.Host() != "a" {
		t.Fatalf("head changed after Release: %q %q", h.Target, h.Host())
	}
	if err := r.ReadRequestHead(&h, Limits{}); err != io.EOF {
		t.Fatalf("at end: %v", err)
	}

	r.Reset(strings.NewReader("GET /c HTTP/1.1\r\nHost: a\r\n\r\nleftover"))
	if err := r.ReadRequestHead(&h, Limits{}); err != nil || h.Target != "/c" {
		t.Fatalf("after Reset: %v %q", err, h.Target)
	}
	r.Reset(strings.NewReader(""))
	if r.buf != nil || r.Buffered() != 0 {
		t.Fatal("Reset kept buffered data or the buffer")
	}

	// A Reader without a pool keeps its own buffer.
	r = NewReader(strings.NewReader(in), nil)
	if err := r.ReadRequestHead(&h, Limits{}); err != nil {
		t.Fatal(err)
	}
	r.Release()
	if r.buf == nil {
		t.Fatal("pool-less Reader dropped its buffer")
	}
}

// zeroReader never makes progress.
type zeroReader struct{}

func (zeroReader) Read([]byte) (int, error) { return 0, nil }

func TestReaderNoProgress(t *testing.T) {
	err := NewReader(zeroReader{}, nil).ReadRequestHead(&RequestHead{}, Limits{})
	if err != io.ErrNoProgress {
		t.Fatalf("err = %v, want io.ErrNoProgress", err)
	}
}

func TestLargeHeadSpills(t *testing.T) {
	// A head several times the buffer size is parsed through spills.
	var sb strings.Builder
	sb.WriteString("GET /big HTTP/1.1\r\nHost: a\r\n")
	for i := range 50 {
		sb.WriteString("X-Long-")
		sb.WriteByte(byte('a' + i%26))
		sb.WriteString(": ")
		sb.WriteString(strings.Repeat("v", 300))
		sb.WriteString("\r\n")
	}
	sb.WriteString("\r\n")
	in := sb.String()
	for _, m := range readModes {
		t.Run(m.name, func(t *testing.T) {
			r := NewReader(m.src([]byte(in+"GET /next HTTP/1.1\r\nHost: b\r\n\r\n")), NewBufPool(1024))
			var h RequestHead
			if err := r.ReadRequestHead(&h, Limits{}); err != nil {
				t.Fatal(err)
			}
			if h.Len() != 51 || string(h.raw) != in {
				t.Fatalf("fields %d, raw equal %v", h.Len(), string(h.raw) == in)
			}
			if err := r.ReadRequestHead(&h, Limits{}); err != nil || h.Target != "/next" {
				t.Fatalf("next: %v %q", err, h.Target)
			}
			err := NewReader(m.src([]byte(in)), NewBufPool(1024)).ReadRequestHead(&h, Limits{MaxHeaderBytes: len(in) - 1})
			if err != ErrHeaderTooLarge {
				t.Fatalf("over limit: %v", err)
			}
		})
	}
}
