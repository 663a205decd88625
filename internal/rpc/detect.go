package rpc

import (
	"errors"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/weftmesh/weft/api"
	"github.com/weftmesh/weft/internal/network"
)

// errNoCodec: no codec of the listener claims the first bytes.
var errNoCodec = errors.New("rpc: the first bytes match no protocol of this listener")

// detectBytes is the most the detection looks at; every codec decides
// within its fixed header (Bolt 11 bytes, Dubbo 2).
const detectBytes = 32

// detect peeks at the first bytes of nc (MSG_PEEK: nothing is consumed, so
// the chosen handler, including the HTTP one, reads the connection from
// its first byte) until a codec claims them or none can. It returns
// errNoCodec when every codec refuses. A connection without a raw socket
// (TLS) is read instead, and the conn returned replays those bytes first:
// the handler must use it in place of nc.
func (p *Proxy) detect(nc net.Conn) (api.Codec, net.Conn, error) {
	sc, ok := nc.(syscall.Conn)
	var rc syscall.RawConn
	var err error
	if ok {
		rc, err = sc.SyscallConn()
	}
	if !ok || err != nil {
		return p.detectRead(nc)
	}
	c, err := p.detectPeek(nc, rc)
	return c, nc, err
}

// detectRead is detect for a conn that cannot be peeked: it reads the
// first bytes and hands back a conn that replays them.
func (p *Proxy) detectRead(nc net.Conn) (api.Codec, net.Conn, error) {
	_ = nc.SetReadDeadline(time.Now().Add(p.cfg.DetectTimeout))
	defer func() { _ = nc.SetReadDeadline(time.Time{}) }()
	b := make([]byte, 0, detectBytes)
	for {
		n, err := nc.Read(b[len(b):cap(b)])
		b = b[:len(b)+n]
		rc := &replayConn{Conn: nc, head: b}
		more := false
		for _, c := range p.cfg.Codecs {
			switch c.Detect(b) {
			case api.DetectYes:
				return c, rc, nil
			case api.DetectNeedMore:
				more = true
			}
		}
		if !more || len(b) == cap(b) {
			return nil, rc, errNoCodec
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return nil, rc, err
		}
	}
}

// replayConn returns head before reading on from the conn; the rest of
// what handlers rely on (drain hook, half close) goes to the conn.
type replayConn struct {
	net.Conn
	head []byte
}

func (c *replayConn) Read(b []byte) (int, error) {
	if len(c.head) > 0 {
		n := copy(b, c.head)
		c.head = c.head[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// Unwrap returns the conn under the replayed bytes (for its TLS state).
func (c *replayConn) Unwrap() net.Conn { return c.Conn }

// OnDrain passes the hook to the conn when it takes one.
func (c *replayConn) OnDrain(hook func()) {
	if d, ok := c.Conn.(api.DrainNotifier); ok {
		d.OnDrain(hook)
	}
}

// CloseWrite half-closes the conn when it can, else closes it.
func (c *replayConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

func (p *Proxy) detectPeek(nc net.Conn, rc syscall.RawConn) (api.Codec, error) {
	_ = nc.SetReadDeadline(time.Now().Add(p.cfg.DetectTimeout))
	defer func() { _ = nc.SetReadDeadline(time.Time{}) }()
	var b [detectBytes]byte
	have := 0
	for {
		n, eof, err := network.PeekMore(rc, b[:], have)
		if err != nil {
			return nil, err
		}
		have = n
		more := false
		for _, c := range p.cfg.Codecs {
			switch c.Detect(b[:n]) {
			case api.DetectYes:
				return c, nil
			case api.DetectNeedMore:
				more = true
			}
		}
		if !more || n == len(b) {
			return nil, errNoCodec
		}
		if eof {
			return nil, io.ErrUnexpectedEOF
		}
	}
}
