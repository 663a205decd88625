package bolt

import (
	"encoding/binary"
	"hash/crc32"

	"github.com/weftmesh/weft/api"
)

// layout holds the offsets of one fixed head: v1 or v2, request or
// response. The fields follow one pattern, shifted by one byte in v2 (ver1)
// and by one more after the codec (switch):
//
//	v1 request   proto type cmd(2) ver2 id(4) codec        timeout(4) lens(8) = 22
//	v1 response  proto type cmd(2) ver2 id(4) codec        status(2)  lens(8) = 20
//	v2 request   proto ver1 type cmd(2) ver2 id(4) codec switch timeout(4) lens(8) = 24
//	v2 response  proto ver1 type cmd(2) ver2 id(4) codec switch status(2)  lens(8) = 22
//
// where lens is class name length (2), header length (2), content length (4).
type layout struct {
	typ, cmd, ver2, id, codec, sw, field, lens, head int
}

// layoutOf returns the layout for a frame whose type byte is at offset
// base (1 in v1, 2 in v2).
func layoutOf(base int, typ byte) layout {
	l := layout{typ: base, cmd: base + 1, ver2: base + 3, id: base + 4, codec: base + 8, sw: -1}
	l.field = l.codec + 1
	if base == 2 {
		l.sw = l.codec + 1
		l.field++
	}
	if typ == TypeResponse {
		l.lens = l.field + 2 // status
	} else {
		l.lens = l.field + 4 // timeout
	}
	l.head = l.lens + 8
	return l
}

// Decode parses one frame from the start of b into f and returns the
// number of bytes it used. It returns api.ErrNeedMore while b holds only a
// prefix of a valid frame, and an error wrapping ErrMalformed or
// ErrTooLarge, naming the field, as soon as the bytes present are invalid:
// lengths over lim fail once the fixed head is in, without waiting for the
// body. It never panics and, for a reused f, allocates nothing.
//
// f's class name, header map and content are copied into f's own buffer
// (one copy), so b may be reused as soon as Decode returns. On error f's
// contents are unspecified.
func Decode(f *Frame, b []byte, lim Limits) (int, error) {
	if len(b) == 0 {
		return 0, api.ErrNeedMore
	}
	base := 1
	switch b[0] {
	case ProtoV1:
	case ProtoV2:
		base = 2
		if len(b) < 2 {
			return 0, api.ErrNeedMore
		}
		if b[1] != 1 && b[1] != 2 {
			return 0, malformed("unknown protocol version (ver1)")
		}
	default:
		return 0, malformed("unknown protocol code")
	}
	if len(b) <= base {
		return 0, api.ErrNeedMore
	}
	typ := b[base]
	if typ > TypeOneway {
		return 0, malformed("unknown command type")
	}
	l := layoutOf(base, typ)
	// Check each fixed field as soon as it has arrived, so garbage after a
	// plausible first byte fails at once rather than after a whole head.
	if len(b) >= l.cmd+2 && kindOf(typ, binary.BigEndian.Uint16(b[l.cmd:])) == 0 {
		return 0, malformed("unknown command code for the command type")
	}
	if len(b) > l.codec && !validCodec(b[l.codec]) {
		return 0, malformed("unknown codec")
	}
	if typ == TypeResponse && len(b) >= l.field+2 && !validStatus(binary.BigEndian.Uint16(b[l.field:])) {
		return 0, malformed("unknown response status")
	}
	if len(b) < l.head {
		return 0, api.ErrNeedMore
	}

	// Java reads the class and header lengths as signed shorts.
	classLen := int(int16(binary.BigEndian.Uint16(b[l.lens:])))
	headerLen := int(int16(binary.BigEndian.Uint16(b[l.lens+2:])))
	contentLen := int64(int32(binary.BigEndian.Uint32(b[l.lens+4:])))
	lim = lim.norm()
	switch {
	case classLen < 0:
		return 0, malformed("class name length negative")
	case headerLen < 0:
		return 0, malformed("header length negative")
	case contentLen < 0:
		return 0, malformed("content length negative")
	case classLen > lim.MaxClassName:
		return 0, tooLarge("class name length")
	case headerLen > lim.MaxHeader:
		return 0, tooLarge("header length")
	case contentLen > int64(lim.MaxContent):
		return 0, tooLarge("content length")
	}
	var sw byte
	crc := 0
	if base == 2 {
		sw = b[l.sw]
		if b[1] == 2 && sw&SwitchCRC != 0 {
			crc = 4
		}
	}
	body := classLen + headerLen + int(contentLen)
	total := l.head + body + crc
	if len(b) < total {
		return 0, api.ErrNeedMore
	}
	if crc != 0 && crc32.ChecksumIEEE(b[:total-4]) != binary.BigEndian.Uint32(b[total-4:]) {
		return 0, malformed("CRC32 mismatch")
	}

	if cap(f.buf) > keepBufCap && body <= keepBufCap {
		f.buf = nil
	}
	f.buf = append(f.buf[:0], b[l.head:l.head+body]...)
	if err := f.Header.parse(f.buf[classLen:classLen+headerLen], lim.MaxHeaderEntries); err != nil {
		return 0, err
	}
	if !f.Header.servicesAgree() {
		// The proxy would route on one, the server dispatch on the other.
		return 0, malformed("service and sofa_head_target_service headers disagree")
	}
	f.ClassName = f.buf[:classLen:classLen]
	f.Content = f.buf[classLen+headerLen : body : body]

	f.Proto = b[0]
	f.Ver1 = 0
	if base == 2 {
		f.Ver1 = b[1]
	}
	f.Type = typ
	f.CmdCode = binary.BigEndian.Uint16(b[l.cmd:])
	f.Ver2 = b[l.ver2]
	f.ID = binary.BigEndian.Uint32(b[l.id:])
	f.Codec = b[l.codec]
	f.Switch = sw
	f.TimeoutMs, f.RespStatus = 0, 0
	if typ == TypeResponse {
		f.RespStatus = binary.BigEndian.Uint16(b[l.field:])
	} else {
		f.TimeoutMs = int32(binary.BigEndian.Uint32(b[l.field:]))
	}
	return total, nil
}
