package bolt

import (
	"encoding/binary"
	"unicode/utf8"

	"github.com/weftmesh/weft/api"
)

// Codec is the Bolt implementation of api.Codec. The zero Codec uses the
// default Limits. A Codec holds no per-connection state and is safe for
// concurrent use.
type Codec struct {
	// Limits bound what Decode accepts from a peer.
	Limits Limits
}

var _ api.Codec = (*Codec)(nil)

// Name returns "bolt".
func (c *Codec) Name() string { return Name }

// Detect tells from the first bytes of a connection whether it speaks Bolt:
// a protocol code of 1 or 2 (with ver1 1 or 2), then a command type and
// code pair and a codec id that SOFA peers send. It needs at most 10 bytes
// (v1) or 11 (v2) to answer, less than the shortest frame, and never claims
// HTTP/1 ("GET "...), the HTTP/2 preface, TLS or Dubbo (0xda 0xbb).
func (c *Codec) Detect(b []byte) api.Detection {
	if len(b) == 0 {
		return api.DetectNeedMore
	}
	base := 1
	switch b[0] {
	case ProtoV1:
	case ProtoV2:
		base = 2
		if len(b) < 2 {
			return api.DetectNeedMore
		}
		if b[1] != 1 && b[1] != 2 {
			return api.DetectNo
		}
	default:
		return api.DetectNo
	}
	if len(b) <= base {
		return api.DetectNeedMore
	}
	typ := b[base]
	if typ > TypeOneway {
		return api.DetectNo
	}
	l := layoutOf(base, typ)
	if len(b) < l.cmd+2 {
		return api.DetectNeedMore
	}
	if kindOf(typ, binary.BigEndian.Uint16(b[l.cmd:])) == 0 {
		return api.DetectNo
	}
	if len(b) <= l.codec {
		return api.DetectNeedMore
	}
	if !validCodec(b[l.codec]) {
		return api.DetectNo
	}
	return api.DetectYes
}

// NewFrame returns an empty *Frame.
func (c *Codec) NewFrame() api.Frame { return &Frame{} }

// Decode is Decode(f.(*Frame), b, c.Limits); f must come from NewFrame (or
// be a *Frame).
func (c *Codec) Decode(f api.Frame, b []byte) (int, error) {
	fr, ok := f.(*Frame)
	if !ok {
		return 0, ErrForeignFrame
	}
	return Decode(fr, b, c.Limits)
}

// Encode is Encode(dst, f.(*Frame)).
func (c *Codec) Encode(dst []byte, f api.Frame) ([]byte, error) {
	fr, ok := f.(*Frame)
	if !ok {
		return dst, ErrForeignFrame
	}
	return Encode(dst, fr)
}

// Heartbeat returns a v1 heartbeat request with id, as SOFABolt's
// RpcHeartbeatTrigger sends it: type request, command code heartbeat,
// hessian2 codec, timeout -1 and no class name, header or content (22
// bytes on the wire). Ids above 32 bits are truncated.
func (c *Codec) Heartbeat(id uint64) api.Frame {
	return &Frame{
		Proto: ProtoV1, Type: TypeRequest, CmdCode: CmdHeartbeat, Ver2: 1,
		ID: uint32(id), Codec: CodecHessian2, TimeoutMs: -1,
	}
}

// HeartbeatReply returns the answer to hb: a response with command code
// heartbeat and status SUCCESS for hb's id, in hb's protocol version (20
// bytes for v1). A v2 reply keeps hb's ver1 and switch, so a peer that asked
// for a CRC gets one.
func (c *Codec) HeartbeatReply(hb api.Frame) api.Frame {
	r := replyTo(hb)
	r.CmdCode = CmdHeartbeat
	r.RespStatus = StatusSuccess
	return r
}

// ErrorClassName is the class name of ErrorReply's content.
const ErrorClassName = "java.lang.String"

// maxErrorChars bounds ErrorReply's message, in UTF-16 units, to what a
// single hessian2 string chunk in the compact form holds.
const maxErrorChars = 1023

// ErrorReply returns the response to req for a failure on the proxy side.
// The status is StatusFromHTTP(status) (404 -> NO_PROCESSOR, 503 ->
// SERVER_THREADPOOL_BUSY, 504 -> TIMEOUT, 502 -> CONNECTION_CLOSED, 400 ->
// CODEC_EXCEPTION...). The content is msg (cut to 1023 characters) as a
// hessian2-serialized java.lang.String with ClassName "java.lang.String"
// and codec hessian2, so any client that deserializes it reads the message.
// SOFABolt's Java client does not read the content for these statuses: it
// raises the exception the status names (InvokeTimeoutException,
// InvokeServerBusyException...) with its own message. The reply keeps
// req's protocol version, ver1 and switch; a reply to a heartbeat is a
// heartbeat reply carrying the status.
func (c *Codec) ErrorReply(req api.Frame, status int, msg string) api.Frame {
	r := replyTo(req)
	r.CmdCode = CmdResponse
	if req != nil && req.Kind() == api.KindHeartbeat {
		r.CmdCode = CmdHeartbeat
	}
	r.RespStatus = StatusFromHTTP(status)
	r.Codec = CodecHessian2
	r.ClassName = []byte(ErrorClassName)
	r.Content = appendHessianString(nil, msg, maxErrorChars)
	return r
}

// HTTPStatus is HTTPStatus(resp.Status()) for a response, 200 for a
// heartbeat reply with status SUCCESS.
func (c *Codec) HTTPStatus(resp api.Frame) int { return HTTPStatus(uint16(resp.Status())) }

// replyTo returns an empty response frame for req's id, protocol and
// codec.
func replyTo(req api.Frame) *Frame {
	r := &Frame{Proto: ProtoV1, Type: TypeResponse, Ver2: 1, Codec: CodecHessian2}
	if req == nil {
		return r
	}
	r.SetRequestID(req.RequestID())
	if q, ok := req.(*Frame); ok {
		if q.Proto == ProtoV2 {
			r.Proto, r.Ver1, r.Switch = ProtoV2, q.Ver1, q.Switch
		}
		if q.Ver2 != 0 {
			r.Ver2 = q.Ver2
		}
		if validCodec(q.Codec) {
			r.Codec = q.Codec
		}
	}
	return r
}

// appendHessianString appends s as a hessian2 string of at most max UTF-16
// units (max <= 1023, so the short or medium form suffices). Hessian counts
// UTF-16 units and encodes each as 1-3 bytes, a supplementary character as
// its two surrogates (CESU-8), which is what Java's Hessian2Input reads.
func appendHessianString(dst []byte, s string, max int) []byte {
	units, n := 0, 0 // UTF-16 units and bytes of s that fit
	for i := 0; i < len(s); {
		r, w := utf8.DecodeRuneInString(s[i:])
		u := 1
		if r >= 0x10000 {
			u = 2
		}
		if units+u > max {
			break
		}
		units += u
		i += w
		n = i
	}
	if units < 32 {
		dst = append(dst, byte(units))
	} else {
		dst = append(dst, 0x30+byte(units>>8), byte(units))
	}
	for _, r := range s[:n] {
		switch {
		case r < 0x80:
			dst = append(dst, byte(r))
		case r < 0x800:
			dst = append(dst, 0xc0|byte(r>>6), 0x80|byte(r&0x3f))
		case r < 0x10000:
			dst = append(dst, 0xe0|byte(r>>12), 0x80|byte(r>>6&0x3f), 0x80|byte(r&0x3f))
		default:
			r -= 0x10000
			for _, u := range [2]rune{0xd800 + r>>10, 0xdc00 + r&0x3ff} {
				dst = append(dst, 0xe0|byte(u>>12), 0x80|byte(u>>6&0x3f), 0x80|byte(u&0x3f))
			}
		}
	}
	return dst
}
