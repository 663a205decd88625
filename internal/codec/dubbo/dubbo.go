// Package dubbo is Weft's codec for the Dubbo 2.x TCP protocol (magic
// 0xdabb) with hessian2 bodies: a strict frame decoder that reads a request
// far enough to route it (service, method, version, parameter types and the
// attachments) and forwards the body bytes untouched.
//
// A frame is a 16-byte header (magic, flags, status, int64 id, int32 body
// length) and a body. For a request the body is a row of hessian2 values:
// dubbo version, service path, service version, method, parameter type
// descriptor, one value per parameter, then the attachments map. Decode reads
// the strings and the attachments in place and skips the arguments without
// building them (see hessian.go), so routing a request allocates nothing for
// a reused Frame. Responses and events are not parsed past the header.
//
// Attachments can be changed through Frame.Headers; Encode then writes the
// body up to the attachments unchanged and a new attachments map after it.
package dubbo

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/weftmesh/weft/api"
)

// Name is the protocol name the codec registers under.
const Name = "dubbo"

// HeaderLen is the size of the fixed frame header.
const HeaderLen = 16

// Magic is the first two bytes of every frame.
const (
	MagicHigh = 0xda
	MagicLow  = 0xbb
)

// Flag bits of header byte 2; the low five bits are the serialization id.
const (
	FlagRequest       = 0x80
	FlagTwoWay        = 0x40
	FlagEvent         = 0x20
	SerializationMask = 0x1f
)

// SerializationHessian2 is the only serialization id the codec accepts.
const SerializationHessian2 = 2

// Response statuses (header byte 3).
const (
	StatusOK                        = 20
	StatusClientTimeout             = 30
	StatusServerTimeout             = 31
	StatusBadRequest                = 40
	StatusBadResponse               = 50
	StatusServiceNotFound           = 60
	StatusServiceError              = 70
	StatusServerError               = 80
	StatusClientError               = 90
	StatusServerThreadpoolExhausted = 100
)

// hessianNull is the body of heartbeat requests and replies.
const hessianNull = 'N'

// Limits bound what a peer may send.
type Limits struct {
	// MaxBody bounds the body length a header may announce; 0 means 8 MiB,
	// Dubbo's own default payload limit. A larger announcement fails as
	// soon as the header is read, without waiting for the body.
	MaxBody int
	// MaxAttachments bounds the entries of a request's attachments map;
	// 0 means 256.
	MaxAttachments int
	// MaxDepth bounds how deep hessian2 values (arguments and attachment
	// values) may nest; 0 means 512. Java serializes linked structures
	// recursively, so this is generous.
	MaxDepth int
}

// Default limits, used for zero fields of Limits.
const (
	DefaultMaxBody        = 8 << 20
	DefaultMaxAttachments = 256
	DefaultMaxDepth       = 512
)

func (l Limits) norm() Limits {
	if l.MaxBody <= 0 {
		l.MaxBody = DefaultMaxBody
	}
	if l.MaxAttachments <= 0 {
		l.MaxAttachments = DefaultMaxAttachments
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = DefaultMaxDepth
	}
	return l
}

var (
	// ErrMalformed reports bytes that are not a valid Dubbo frame: bad
	// magic, a negative length, a request body that does not parse.
	// Returned errors wrap it with a detail; test with errors.Is.
	ErrMalformed = errors.New("dubbo: malformed frame")
	// ErrTooLarge reports a body length over Limits.MaxBody.
	ErrTooLarge = errors.New("dubbo: frame too large")
	// ErrUnsupportedSerialization reports a serialization id other than
	// hessian2 (2). Such frames cannot be routed; the connection should be
	// closed (or handed to a codec that speaks the serialization).
	ErrUnsupportedSerialization = errors.New("dubbo: unsupported serialization")
)

// frameError is an error with a detail that wraps one of the sentinels.
type frameError struct {
	kind error
	msg  string
}

func (e *frameError) Error() string { return "dubbo: " + e.msg }

func (e *frameError) Unwrap() error { return e.kind }

func malformed(format string, args ...any) error {
	return &frameError{ErrMalformed, fmt.Sprintf(format, args...)}
}

// Header is the fixed 16-byte frame header.
type Header struct {
	// Flags is header byte 2: FlagRequest, FlagTwoWay, FlagEvent and the
	// serialization id.
	Flags byte
	// Status is header byte 3, a response status (0 in requests).
	Status byte
	// ID is the request id a response echoes.
	ID int64
	// BodyLen is the length of the body that follows the header.
	BodyLen int
}

// Codec is the Dubbo codec. The zero value uses default Limits. It holds no
// state, so one value serves every connection.
type Codec struct {
	Limits Limits
}

var _ api.Codec = Codec{}

// Name returns "dubbo".
func (Codec) Name() string { return Name }

// Detect recognises the magic 0xdabb.
func (Codec) Detect(b []byte) api.Detection {
	switch {
	case len(b) == 0:
		return api.DetectNeedMore
	case b[0] != MagicHigh:
		return api.DetectNo
	case len(b) == 1:
		return api.DetectNeedMore
	case b[1] == MagicLow:
		return api.DetectYes
	}
	return api.DetectNo
}

// NewFrame returns an empty *Frame for Decode.
func (Codec) NewFrame() api.Frame { return new(Frame) }

// DecodeHeader parses the 16-byte header at the start of b. Bad magic, an
// unsupported serialization and an oversized or negative body length are
// reported as soon as the bytes that show them have arrived; otherwise
// fewer than 16 bytes give api.ErrNeedMore. It allocates nothing unless it
// fails.
func (c Codec) DecodeHeader(b []byte) (Header, error) {
	if len(b) >= 1 && b[0] != MagicHigh || len(b) >= 2 && b[1] != MagicLow {
		if len(b) == 1 {
			return Header{}, malformed("bad magic 0x%02x", b[0])
		}
		return Header{}, malformed("bad magic 0x%02x%02x", b[0], b[1])
	}
	if len(b) >= 3 {
		if id := b[2] & SerializationMask; id != SerializationHessian2 {
			return Header{}, &frameError{ErrUnsupportedSerialization, fmt.Sprintf("unsupported serialization %d", id)}
		}
	}
	if len(b) < HeaderLen {
		return Header{}, api.ErrNeedMore
	}
	n := int32(binary.BigEndian.Uint32(b[12:16]))
	if n < 0 {
		return Header{}, malformed("negative body length %d", n)
	}
	if max := c.Limits.norm().MaxBody; int(n) > max {
		return Header{}, &frameError{ErrTooLarge, fmt.Sprintf("body length %d exceeds limit %d", n, max)}
	}
	return Header{
		Flags:   b[2],
		Status:  b[3],
		ID:      int64(binary.BigEndian.Uint64(b[4:12])),
		BodyLen: int(n),
	}, nil
}

// Decode parses one frame from the start of b into f, which must be a
// *Frame, and returns the bytes it used. The body is copied into f's own
// buffer, reusing its capacity, so b may be reused as soon as Decode
// returns. A two-way or one-way request (not an event) has its body read
// for routing; responses and events are not parsed past the header.
//
// Incomplete frames give api.ErrNeedMore. Header errors (see DecodeHeader)
// return 0. A complete frame whose request body does not parse returns the
// frame's full length with an error wrapping ErrMalformed, and f holds the
// header and body: the caller may skip the frame and answer it with
// ErrorReply(f, 400, ...), as a Dubbo server answers BAD_REQUEST, or close
// the connection.
func (c Codec) Decode(f api.Frame, b []byte) (int, error) {
	fr, ok := f.(*Frame)
	if !ok {
		return 0, fmt.Errorf("dubbo: cannot decode into %T", f)
	}
	h, err := c.DecodeHeader(b)
	if err != nil {
		return 0, err
	}
	total := HeaderLen + h.BodyLen
	if len(b) < total {
		return 0, api.ErrNeedMore
	}
	fr.reset()
	fr.Flags, fr.StatusCode, fr.ID = h.Flags, h.Status, h.ID
	if cap(fr.Body) > maxRetainedBody && h.BodyLen <= maxRetainedBody {
		fr.Body = nil // let one large frame's buffer go
	}
	fr.Body = append(fr.Body[:0], b[HeaderLen:total]...)
	if h.Flags&(FlagRequest|FlagEvent) == FlagRequest {
		if err := fr.parseRequest(c.Limits.norm()); err != nil {
			fr.clearRouting()
			return total, err
		}
	}
	return total, nil
}

// maxRetainedBody is the largest body buffer a Frame keeps between frames
// of ordinary size: a connection that once carried a multi-megabyte frame
// does not hold on to that much memory for good.
const maxRetainedBody = 64 << 10

// Encode appends f's wire form to dst. f must be a *Frame. The body is
// written as decoded unless attachments were changed through Headers, in
// which case the body up to the attachments is written unchanged, followed
// by the new attachments map, and the header's length is recomputed.
func (Codec) Encode(dst []byte, f api.Frame) ([]byte, error) {
	fr, ok := f.(*Frame)
	if !ok {
		return dst, fmt.Errorf("dubbo: cannot encode %T", f)
	}
	return fr.AppendTo(dst)
}

// Heartbeat returns a heartbeat request (flags 0xe2, body hessian null) with
// id, as Dubbo clients and servers send on an idle connection.
func (Codec) Heartbeat(id uint64) api.Frame {
	return &Frame{
		Flags: FlagRequest | FlagTwoWay | FlagEvent | SerializationHessian2,
		ID:    int64(id),
		Body:  []byte{hessianNull},
	}
}

// HeartbeatReply returns the answer to hb: flags 0x22, status OK, body
// hessian null, hb's id.
func (Codec) HeartbeatReply(hb api.Frame) api.Frame {
	var id uint64
	if hb != nil {
		id = hb.RequestID()
	}
	return &Frame{
		Flags:      FlagEvent | SerializationHessian2,
		StatusCode: StatusOK,
		ID:         int64(id),
		Body:       []byte{hessianNull},
	}
}

// ErrorReply returns a response to req with the Dubbo status for the
// HTTP-like status and msg as the body (a hessian2 string, as Java and Go
// Dubbo servers send the error message of a non-OK response):
//
//	400          -> 40  BAD_REQUEST
//	404          -> 60  SERVICE_NOT_FOUND
//	408, 504     -> 31  SERVER_TIMEOUT
//	429, 503     -> 100 SERVER_THREADPOOL_EXHAUSTED
//	anything else (500, 502, ...) -> 80 SERVER_ERROR
//
// 503 (no healthy upstream, overload) maps to 100 rather than 80 because
// that is what a Dubbo client reads as "this provider is busy": a transient
// failure that failover clusters retry on another address.
func (Codec) ErrorReply(req api.Frame, status int, msg string) api.Frame {
	var id uint64
	if req != nil {
		id = req.RequestID()
	}
	return &Frame{
		Flags:      SerializationHessian2,
		StatusCode: StatusFor(status),
		ID:         int64(id),
		Body:       appendString(nil, msg),
	}
}

// HTTPStatus maps a response's Dubbo status to its HTTP equivalent: OK 200,
// timeouts 504, bad request 400, service not found 404, thread pool
// exhausted 503, bad response 502, any other error 500. A business
// exception carried in an OK response is a 200: the call was delivered.
func (Codec) HTTPStatus(resp api.Frame) int {
	switch byte(resp.Status()) {
	case StatusOK:
		return 200
	case StatusClientTimeout, StatusServerTimeout:
		return 504
	case StatusBadRequest:
		return 400
	case StatusServiceNotFound:
		return 404
	case StatusServerThreadpoolExhausted:
		return 503
	case StatusBadResponse:
		return 502
	}
	return 500
}

// StatusFor maps an HTTP-like proxy status to a Dubbo response status (see
// ErrorReply).
func StatusFor(httpStatus int) byte {
	switch httpStatus {
	case 200:
		return StatusOK
	case 400:
		return StatusBadRequest
	case 404:
		return StatusServiceNotFound
	case 408, 504:
		return StatusServerTimeout
	case 429, 503:
		return StatusServerThreadpoolExhausted
	}
	return StatusServerError
}
