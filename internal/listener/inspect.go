package listener

import (
	"errors"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/weftmesh/weft/internal/network"
)

var helloBufs = sync.Pool{New: func() any { b := make([]byte, maxHello); return &b }}

// inspect is the TLS inspector: it peeks at the first bytes of c (MSG_PEEK,
// so the TLS handshake or the plain handler still reads them from the
// start) until they are a complete ClientHello or cannot be one, within
// timeout. A connection whose first bytes are not a TLS record is
// raw_buffer; a malformed hello, a hello over 16 KiB, EOF or the timeout
// are errors (the connection is closed, as Envoy does).
func inspect(c net.Conn, timeout time.Duration) (Inspected, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return Inspected{}, errors.New("tls inspector: connection has no socket to peek")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return Inspected{}, err
	}
	if err := c.SetReadDeadline(time.Now().Add(timeout)); err != nil {
		return Inspected{}, err
	}
	defer func() { _ = c.SetReadDeadline(time.Time{}) }()
	bp := helloBufs.Get().(*[]byte)
	defer helloBufs.Put(bp)
	b := *bp
	have := 0
	for {
		n, eof, err := network.PeekMore(rc, b, have)
		if err != nil {
			return Inspected{}, err
		}
		if eof {
			return Inspected{}, errPeerClosed
		}
		have = n
		h, err := ParseHello(b[:n])
		switch {
		case err == nil:
			return Inspected{TLS: true, Hello: h}, nil
		case errors.Is(err, errNotTLS):
			return Inspected{}, nil
		case !errors.Is(err, errNeedMore):
			return Inspected{}, err
		case n == len(b):
			return Inspected{}, errors.New("tls inspector: ClientHello too large")
		}
	}
}

// errPeerClosed: the client closed before its first bytes made sense.
var errPeerClosed = errors.New("tls inspector: connection closed before a complete ClientHello")
