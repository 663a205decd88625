package api

import (
	"errors"
	"time"
)

// This file is the protocol plugin contract (SPEC D4) that the RPC codecs
// (Bolt, Dubbo; later Triple) implement and internal/rpc drives.

// ErrNeedMore means b holds only part of a frame; read more and retry.
var ErrNeedMore = errors.New("codec: need more bytes")

// FrameKind classifies an RPC frame.
type FrameKind uint8

// Frame kinds.
const (
	KindRequest        FrameKind = iota + 1 // expects a response
	KindOneway                              // expects none
	KindResponse                            // answers a request
	KindHeartbeat                           // heartbeat request
	KindHeartbeatReply                      // answers a heartbeat
)

// Detection is a codec's verdict on the first bytes of a connection.
type Detection uint8

// Detection results.
const (
	DetectNo Detection = iota
	DetectYes
	DetectNeedMore
)

// Frame is one decoded RPC message, the unit a multiplexed connection
// carries. Headers expose the routing fields under the unified names
// (":authority" is the service, ":path" the method, "version" and "group"
// when the protocol has them) next to every protocol header or attachment,
// so the router and stream filters need not know the protocol. The payload
// stays opaque and is forwarded untouched.
type Frame interface {
	Kind() FrameKind
	// RequestID is the frame's id; the proxy rewrites it (SetRequestID)
	// when it multiplexes many downstream requests onto one upstream.
	RequestID() uint64
	SetRequestID(id uint64)
	// Headers are the routing headers and protocol header map.
	Headers() HeaderMap
	// Timeout is the per-request timeout the frame carries, 0 for none.
	Timeout() time.Duration
	// Status is a response's protocol status code (0 for requests).
	Status() int
}

// GoingAway is implemented by frames that can announce that the peer is
// shutting down (Dubbo's READONLY event). The proxy then sends no new
// requests on that connection and closes it once its requests are
// answered, so a provider restart loses nothing.
type GoingAway interface {
	GoingAway() bool
}

// Codec reads and writes one protocol's frames. Decode never panics on
// bytes from a peer and allocates nothing for a reused frame.
type Codec interface {
	// Name is the protocol name ("bolt", "dubbo").
	Name() string
	// Detect tells from the first bytes of a connection whether it speaks
	// this protocol.
	Detect(b []byte) Detection
	// NewFrame returns an empty frame for Decode; frames are reusable.
	NewFrame() Frame
	// Decode parses one frame from the start of b into f and returns the
	// bytes it used, ErrNeedMore for an incomplete frame, or an error
	// naming what is malformed.
	Decode(f Frame, b []byte) (int, error)
	// Encode appends f's wire form to dst.
	Encode(dst []byte, f Frame) ([]byte, error)
	// Heartbeat returns a heartbeat request with id.
	Heartbeat(id uint64) Frame
	// HeartbeatReply returns the answer to the heartbeat request hb.
	HeartbeatReply(hb Frame) Frame
	// ErrorReply builds the protocol's error response to req for a failure
	// on the proxy side, given as an HTTP-like status (404 no route, 503
	// no upstream, 504 timeout, 502 bad upstream, 429/503 overload...)
	// mapped to the protocol's own code, with a message.
	ErrorReply(req Frame, status int, msg string) Frame
	// HTTPStatus maps a response's protocol status to its HTTP equivalent
	// (200 for success, 504 for a timeout, 503 for busy...), which stats,
	// access logs and retry policies use.
	HTTPStatus(resp Frame) int
}

// CodecLimits bound what a codec accepts from a peer; a zero field keeps
// the codec's default. Frames past a limit are refused before their bytes
// are buffered.
type CodecLimits struct {
	// MaxFrameBytes bounds a frame's payload (Bolt content, Dubbo body).
	MaxFrameBytes int
	// MaxHeaderBytes bounds the encoded header map (Bolt).
	MaxHeaderBytes int
	// MaxHeaders bounds header map entries / attachments.
	MaxHeaders int
}

// CodecFactory makes a codec with the given limits.
type CodecFactory func(l CodecLimits) Codec

// Codecs is the registry of RPC protocol codecs, keyed by name.
var Codecs = NewRegistry[CodecFactory]("codec")
