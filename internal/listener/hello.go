package listener

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
)

// Hello is what the TLS inspector learns from a ClientHello.
type Hello struct {
	ServerName string   // SNI, lower-cased; "" when absent
	ALPN       []string // offered application protocols
}

// errNeedMore: the ClientHello is not complete in the bytes given yet.
var errNeedMore = errors.New("tls inspector: need more bytes")

// errNotTLS: the first bytes are not a TLS handshake record.
var errNotTLS = errors.New("tls inspector: not TLS")

// maxHello bounds what the inspector reads: one TLS record (5 + 2^14).
const maxHello = 5 + 1<<14

// ParseHello parses a ClientHello from the first bytes of a connection.
// It returns errNotTLS when they cannot start a TLS handshake (the
// connection is raw_buffer), errNeedMore when the hello is incomplete, or
// an error naming what is malformed. It never reads past b and never
// panics: every length is checked against what is left.
func ParseHello(b []byte) (Hello, error) {
	var h Hello
	if len(b) == 0 {
		return h, errNeedMore
	}
	if b[0] != 0x16 { // handshake record
		return h, errNotTLS
	}
	if len(b) < 5 {
		if len(b) >= 2 && b[1] != 3 {
			return h, errNotTLS
		}
		return h, errNeedMore
	}
	if b[1] != 3 {
		return h, errNotTLS
	}
	rlen := int(binary.BigEndian.Uint16(b[3:5]))
	if rlen > 1<<14 {
		return h, fmt.Errorf("tls inspector: record of %d bytes exceeds 16384", rlen)
	}
	if rlen < 4 {
		return h, errors.New("tls inspector: record too short for a handshake message")
	}
	if len(b) < 5+rlen {
		return h, errNeedMore
	}
	r := reader(b[5 : 5+rlen])
	typ, _ := r.u8()
	if typ != 1 {
		return h, fmt.Errorf("tls inspector: handshake message type %d is not a ClientHello", typ)
	}
	mlen, _ := r.u24()
	if mlen > len(r) {
		return h, errors.New("tls inspector: ClientHello fragmented over several records is not supported")
	}
	r = r[:mlen]
	if !r.skip(2+32) || !r.skipVec8() || !r.skipVec16() || !r.skipVec8() {
		return h, errors.New("tls inspector: malformed ClientHello")
	}
	if len(r) == 0 {
		return h, nil // no extensions
	}
	exts, ok := r.vec16()
	if !ok || len(r) != 0 {
		return h, errors.New("tls inspector: malformed ClientHello extensions")
	}
	for len(exts) > 0 {
		typ, ok1 := exts.u16()
		body, ok2 := exts.vec16()
		if !ok1 || !ok2 {
			return h, errors.New("tls inspector: malformed extension")
		}
		switch typ {
		case 0: // server_name
			list, ok := body.vec16()
			if !ok {
				return h, errors.New("tls inspector: malformed server_name")
			}
			for len(list) > 0 {
				nt, ok1 := list.u8()
				name, ok2 := list.vec16()
				if !ok1 || !ok2 {
					return h, errors.New("tls inspector: malformed server_name")
				}
				if nt == 0 && h.ServerName == "" {
					h.ServerName = strings.ToLower(strings.TrimSuffix(string(name), "."))
				}
			}
		case 16: // application_layer_protocol_negotiation
			list, ok := body.vec16()
			if !ok {
				return h, errors.New("tls inspector: malformed ALPN")
			}
			for len(list) > 0 {
				p, ok := list.vec8()
				if !ok || len(p) == 0 {
					return h, errors.New("tls inspector: malformed ALPN")
				}
				h.ALPN = append(h.ALPN, string(p))
			}
		}
	}
	return h, nil
}

// reader consumes big-endian TLS vectors; every method checks bounds.
type reader []byte

func (r *reader) u8() (int, bool) {
	if len(*r) < 1 {
		return 0, false
	}
	v := int((*r)[0])
	*r = (*r)[1:]
	return v, true
}

func (r *reader) u16() (int, bool) {
	if len(*r) < 2 {
		return 0, false
	}
	v := int(binary.BigEndian.Uint16(*r))
	*r = (*r)[2:]
	return v, true
}

func (r *reader) u24() (int, bool) {
	if len(*r) < 3 {
		return 0, false
	}
	v := int((*r)[0])<<16 | int((*r)[1])<<8 | int((*r)[2])
	*r = (*r)[3:]
	return v, true
}

func (r *reader) skip(n int) bool {
	if len(*r) < n {
		return false
	}
	*r = (*r)[n:]
	return true
}

func (r *reader) take(n int) (reader, bool) {
	if n < 0 || len(*r) < n {
		return nil, false
	}
	v := (*r)[:n]
	*r = (*r)[n:]
	return v, true
}

func (r *reader) vec8() (reader, bool) {
	n, ok := r.u8()
	if !ok {
		return nil, false
	}
	return r.take(n)
}

func (r *reader) vec16() (reader, bool) {
	n, ok := r.u16()
	if !ok {
		return nil, false
	}
	return r.take(n)
}

func (r *reader) skipVec8() bool  { _, ok := r.vec8(); return ok }
func (r *reader) skipVec16() bool { _, ok := r.vec16(); return ok }
