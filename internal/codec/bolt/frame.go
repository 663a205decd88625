package bolt

import (
	"time"

	"github.com/weftmesh/weft/api"
)

// Frame is one Bolt command: a request, one-way request, response,
// heartbeat or heartbeat reply. The zero Frame is empty and ready for
// Decode; fill the fields to build one for Encode.
//
// Validity: after Decode, ClassName, Content and every header key and value
// view the Frame's own buffer, not the bytes passed to Decode (which the
// caller may reuse at once). They stay valid until the Frame is decoded
// into again, Reset or Released; copy them (bytes.Clone, strings.Clone) to
// keep them longer. A Frame is not safe for concurrent use.
type Frame struct {
	// Proto is the protocol code: ProtoV1 or ProtoV2.
	Proto byte
	// Ver1 is the v2 protocol version, 1 or 2 (0 in v1 frames). With 2, a
	// SwitchCRC bit in Switch adds a CRC32 trailer.
	Ver1 byte
	// Type is TypeRequest, TypeOneway or TypeResponse.
	Type byte
	// CmdCode is CmdHeartbeat, CmdRequest or CmdResponse.
	CmdCode uint16
	// Ver2 is the command version, 1 in every known implementation.
	Ver2 byte
	// ID is the request id; a response carries its request's id.
	ID uint32
	// Codec is the serialization id of the class name and content
	// (CodecHessian2, CodecProtobuf...).
	Codec byte
	// Switch is the v2 switch byte (0 in v1 frames).
	Switch byte
	// TimeoutMs is a request's timeout in milliseconds; -1 (or any value
	// <= 0) means none. Not on the wire for responses.
	TimeoutMs int32
	// RespStatus is a response's status (StatusSuccess...). Not on the
	// wire for requests.
	RespStatus uint16
	// ClassName names the content's class, e.g.
	// "com.alipay.sofa.rpc.core.request.SofaRequest". At most 32767 bytes.
	ClassName []byte
	// Header is the Bolt header map.
	Header Header
	// Content is the serialized payload, forwarded untouched.
	Content []byte

	buf []byte // Decode's copy of class name, header map and content
}

var _ api.Frame = (*Frame)(nil)

// Past this capacity Decode drops the buffer before reading a small frame,
// so one large frame does not pin memory for the life of the connection.
const keepBufCap = 64 << 10

// kindOf classifies a type and command code pair, 0 for a pair no Bolt
// implementation sends.
func kindOf(typ byte, cmd uint16) api.FrameKind {
	switch {
	case typ == TypeRequest && cmd == CmdRequest:
		return api.KindRequest
	case typ == TypeOneway && cmd == CmdRequest:
		return api.KindOneway
	case typ == TypeRequest && cmd == CmdHeartbeat:
		return api.KindHeartbeat
	case typ == TypeResponse && cmd == CmdResponse:
		return api.KindResponse
	case typ == TypeResponse && cmd == CmdHeartbeat:
		return api.KindHeartbeatReply
	}
	return 0
}

// Kind classifies the frame from its type and command code; it is 0 for a
// combination that Decode rejects and Encode refuses.
func (f *Frame) Kind() api.FrameKind { return kindOf(f.Type, f.CmdCode) }

// RequestID returns the frame's request id.
func (f *Frame) RequestID() uint64 { return uint64(f.ID) }

// SetRequestID sets the request id. Bolt ids are 32 bits: higher bits of id
// are dropped, so a multiplexing proxy allocates ids below 1<<32.
func (f *Frame) SetRequestID(id uint64) { f.ID = uint32(id) }

// Timeout returns a request's timeout, 0 for none and for responses.
func (f *Frame) Timeout() time.Duration {
	if f.Type == TypeResponse || f.TimeoutMs <= 0 {
		return 0
	}
	return time.Duration(f.TimeoutMs) * time.Millisecond
}

// Status returns a response's status code, 0 for requests.
func (f *Frame) Status() int {
	if f.Type != TypeResponse {
		return 0
	}
	return int(f.RespStatus)
}

// Headers returns the routing view of the header map: ":authority" is the
// interface part of the service unique name (as for Dubbo), ":path" the
// method, "version" and "group" the version and uniqueId parts of the
// service name; every raw key is readable too, "service" and
// "sofa_head_target_service" giving the whole unique name. Set(":authority")
// replaces the interface and keeps the version and uniqueId. See README.md
// for the mapping. The view allocates nothing.
func (f *Frame) Headers() api.HeaderMap { return (*routeHeaders)(f) }

// Reset empties the frame, keeping its storage for the next Decode.
func (f *Frame) Reset() {
	buf := f.buf
	if cap(buf) > keepBufCap {
		buf = nil
	}
	h := f.Header
	h.reset()
	*f = Frame{buf: buf[:0], Header: h}
}

// Release empties the frame and drops its storage, so an idle connection
// keeps none; the next Decode allocates it again.
func (f *Frame) Release() { *f = Frame{} }

// Clone returns a deep copy of f that shares no storage with it and so stays
// valid after f is decoded into again, for the rare frame that must outlive
// its connection's next Decode. It allocates.
func (f *Frame) Clone() *Frame {
	c := &Frame{
		Proto: f.Proto, Ver1: f.Ver1, Type: f.Type, CmdCode: f.CmdCode, Ver2: f.Ver2,
		ID: f.ID, Codec: f.Codec, Switch: f.Switch, TimeoutMs: f.TimeoutMs, RespStatus: f.RespStatus,
	}
	n := len(f.ClassName) + len(f.Content)
	for i := range f.Header.fields {
		n += len(f.Header.fields[i].key) + len(f.Header.fields[i].value)
	}
	c.buf = make([]byte, 0, n)
	c.buf = append(c.buf, f.ClassName...)
	c.ClassName = c.buf[:len(f.ClassName):len(f.ClassName)]
	c.Header.fields = make([]field, 0, len(f.Header.fields))
	for _, fl := range f.Header.fields {
		i := len(c.buf)
		c.buf = append(c.buf, fl.key...)
		j := len(c.buf)
		c.buf = append(c.buf, fl.value...)
		c.Header.fields = append(c.Header.fields, field{view(c.buf, i, j), view(c.buf, j, len(c.buf))})
	}
	i := len(c.buf)
	c.buf = append(c.buf, f.Content...)
	c.Content = c.buf[i:len(c.buf):len(c.buf)]
	return c
}
