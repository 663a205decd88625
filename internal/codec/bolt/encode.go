package bolt

import (
	"encoding/binary"
	"hash/crc32"
	"math"
)

// Encode appends f's wire form to dst: the fixed head for f's protocol
// version and type with the lengths recomputed from ClassName, Header and
// Content, those three parts, and the CRC32 trailer when f is v2 with
// Ver1 = 2 and the SwitchCRC bit set. It refuses (returning dst unchanged)
// a frame that Decode would reject: unknown protocol, version, type and
// command code pairs, codec or status, or parts longer than the wire
// carries, or service keys that disagree (set them through Frame.Headers,
// which keeps them in step). It allocates nothing when dst has room.
func Encode(dst []byte, f *Frame) ([]byte, error) {
	base := 1
	switch f.Proto {
	case ProtoV1:
	case ProtoV2:
		base = 2
		if f.Ver1 != 1 && f.Ver1 != 2 {
			return dst, malformed("unknown protocol version (ver1)")
		}
	default:
		return dst, malformed("unknown protocol code")
	}
	if f.Kind() == 0 {
		return dst, malformed("unknown command type and code")
	}
	if !validCodec(f.Codec) {
		return dst, malformed("unknown codec")
	}
	if f.Type == TypeResponse && !validStatus(f.RespStatus) {
		return dst, malformed("unknown response status")
	}
	if !f.Header.servicesAgree() {
		return dst, malformed("service and sofa_head_target_service headers disagree")
	}
	headerLen := f.Header.wireLen()
	switch {
	case len(f.ClassName) > MaxWireLen16:
		return dst, tooLarge("class name length")
	case headerLen > MaxWireLen16:
		return dst, tooLarge("header length")
	case int64(len(f.Content)) > math.MaxInt32:
		return dst, tooLarge("content length")
	}

	start := len(dst)
	dst = append(dst, f.Proto)
	if base == 2 {
		dst = append(dst, f.Ver1)
	}
	dst = append(dst, f.Type)
	dst = binary.BigEndian.AppendUint16(dst, f.CmdCode)
	dst = append(dst, f.Ver2)
	dst = binary.BigEndian.AppendUint32(dst, f.ID)
	dst = append(dst, f.Codec)
	if base == 2 {
		dst = append(dst, f.Switch)
	}
	if f.Type == TypeResponse {
		dst = binary.BigEndian.AppendUint16(dst, f.RespStatus)
	} else {
		dst = binary.BigEndian.AppendUint32(dst, uint32(f.TimeoutMs))
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(f.ClassName)))
	dst = binary.BigEndian.AppendUint16(dst, uint16(headerLen))
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(f.Content)))
	dst = append(dst, f.ClassName...)
	dst = f.Header.appendTo(dst)
	dst = append(dst, f.Content...)
	if base == 2 && f.Ver1 == 2 && f.Switch&SwitchCRC != 0 {
		dst = binary.BigEndian.AppendUint32(dst, crc32.ChecksumIEEE(dst[start:]))
	}
	return dst, nil
}

// Size returns the length of f's wire form, so a caller can size a buffer
// before Encode.
func Size(f *Frame) int {
	n := RequestHeadLenV1
	if f.Type == TypeResponse {
		n = ResponseHeadLenV1
	}
	if f.Proto == ProtoV2 {
		n += 2
		if f.Ver1 == 2 && f.Switch&SwitchCRC != 0 {
			n += 4
		}
	}
	return n + len(f.ClassName) + f.Header.wireLen() + len(f.Content)
}
