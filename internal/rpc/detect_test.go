package rpc

import (
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/codec/bolt"
	"github.com/weftmesh/weft/internal/codec/dubbo"
)

type drainPipe struct {
	net.Conn
	hooked bool
}

func (d *drainPipe) OnDrain(func()) { d.hooked = true }

// TestDetectWithoutSocket: a conn that cannot be peeked (TLS) is read for
// detection, and the conn handed on replays those bytes first and still
// takes a drain hook.
func TestDetectWithoutSocket(t *testing.T) {
	p := &Proxy{cfg: Config{Codecs: []api.Codec{&bolt.Codec{}, dubbo.Codec{}}, DetectTimeout: 2 * time.Second}}
	dubboHead := []byte{0xda, 0xbb, 0xc2, 0x00, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 'x', 'y'}
	cases := []struct {
		name    string
		in      []byte
		want    api.Codec
		wantErr error
	}{
		{"dubbo in two writes", dubboHead, dubbo.Codec{}, nil},
		{"http", []byte("GET / HTTP/1.1\r\n\r\n"), nil, errNoCodec},
		{"eof before a decision", []byte{0xda}, nil, io.ErrUnexpectedEOF},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a, b := net.Pipe()
			defer a.Close()
			go func() {
				_, _ = b.Write(tc.in[:1]) // the first byte alone: detect must read on
				_, _ = b.Write(tc.in[1:])
				if tc.wantErr == io.ErrUnexpectedEOF {
					_ = b.Close()
				}
			}()
			dp := &drainPipe{Conn: a}
			c, nc, err := p.detect(dp)
			if !errors.Is(err, tc.wantErr) || c != tc.want {
				t.Fatalf("detect = %v, %v; want %v, %v", c, err, tc.want, tc.wantErr)
			}
			if err != nil {
				return
			}
			got := make([]byte, len(tc.in))
			if _, err := io.ReadFull(nc, got); err != nil || string(got) != string(tc.in) {
				t.Fatalf("replayed %q, %v; want %q", got, err, tc.in)
			}
			nc.(api.DrainNotifier).OnDrain(func() {})
			if !dp.hooked {
				t.Fatal("the drain hook did not reach the conn")
			}
			b.Close()
		})
	}
}
