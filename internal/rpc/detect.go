package rpc

import (
	"errors"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/weftmesh/weft/api"
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
// cannot be peeked: the first codec is used.
func (p *Proxy) detect(nc net.Conn) (api.Codec, error) {
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return p.cfg.Codecs[0], nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return p.cfg.Codecs[0], nil
	}
	_ = nc.SetReadDeadline(time.Now().Add(p.cfg.DetectTimeout))
	defer func() { _ = nc.SetReadDeadline(time.Time{}) }()
	var b [detectBytes]byte
	have := 0
	for {
		n, eof, err := peekMore(rc, b[:], have)
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

// peekMore waits until more than have bytes are readable (or EOF) and
// copies them into b without consuming them.
func peekMore(rc syscall.RawConn, b []byte, have int) (n int, eof bool, err error) {
	var perr error
	err = rc.Read(func(fd uintptr) bool {
		m, _, e := syscall.Recvfrom(int(fd), b, syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case e == syscall.EAGAIN || e == syscall.EINTR:
			return false
		case e != nil:
			perr = e
			return true
		case m == 0:
			eof = true
			return true
		case m <= have:
			return false // nothing new yet: wait for the next bytes
		}
		n = m
		return true
	})
	if err == nil {
		err = perr
	}
	if eof && err == nil {
		n = have
	}
	return n, eof, err
}
