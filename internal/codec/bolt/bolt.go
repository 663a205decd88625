// Package bolt is Weft's codec for SOFARPC's Bolt protocol, versions 1
// (first byte 0x01) and 2 (first byte 0x02, adding a protocol version byte,
// a switch byte and an optional CRC32 trailer).
//
// The package is built for the proxy hot path. A connection owns one Frame
// per direction and reuses it for every message: Decode copies the frame's
// variable part (class name, header map, content) into the Frame's own
// buffer in one copy and parses the header map into a slice of key/value
// views of that buffer, so in steady state decoding and encoding allocate
// nothing and the caller may reuse its read buffer as soon as Decode returns.
//
// The decoder is strict where leniency would let the proxy and the Java peer
// disagree about a frame: unknown protocol, type, command code, codec or
// response status values, class and header lengths the Java decoder reads as
// negative, header maps whose entries overrun, duplicate header keys, and a
// "service" header that disagrees with "sofa_head_target_service" are all
// errors, and lengths over Limits fail as soon as the fixed head has arrived
// instead of waiting for the bytes.
package bolt

import "errors"

// Name is the protocol name under which the codec is known.
const Name = "bolt"

// Protocol codes, the first byte of every frame.
const (
	ProtoV1 byte = 0x01
	ProtoV2 byte = 0x02
)

// Command types.
const (
	TypeResponse byte = 0
	TypeRequest  byte = 1
	TypeOneway   byte = 2
)

// Command codes.
const (
	CmdHeartbeat uint16 = 0
	CmdRequest   uint16 = 1
	CmdResponse  uint16 = 2
)

// Serialization (codec) ids, as SOFARPC assigns them.
const (
	CodecHessian2       byte = 1  // hessian2, SOFARPC's default
	CodecJava           byte = 2  // Java serialization
	CodecHessian2Legacy byte = 4  // deprecated hessian2 id from the TR protocol
	CodecProtobuf       byte = 11 // protobuf
	CodecJSON           byte = 12 // Jackson JSON
	CodecMsgpack        byte = 13 // MessagePack
)

// SwitchCRC is the bit of the v2 switch byte that, with Ver1 = 2, appends a
// CRC32 (IEEE) of the whole frame after the content.
const SwitchCRC byte = 0x01

// Response statuses (SOFABolt's com.alipay.remoting.ResponseStatus). Note
// the hex-looking gap: CONNECTION_CLOSED is 0x0010, not 0x000A.
const (
	StatusSuccess                 uint16 = 0x0000
	StatusError                   uint16 = 0x0001
	StatusServerException         uint16 = 0x0002
	StatusUnknown                 uint16 = 0x0003
	StatusServerThreadpoolBusy    uint16 = 0x0004
	StatusErrorComm               uint16 = 0x0005
	StatusNoProcessor             uint16 = 0x0006
	StatusTimeout                 uint16 = 0x0007
	StatusClientSendError         uint16 = 0x0008
	StatusCodecException          uint16 = 0x0009
	StatusConnectionClosed        uint16 = 0x0010
	StatusServerSerialException   uint16 = 0x0011
	StatusServerDeserialException uint16 = 0x0012
)

// Fixed head lengths in bytes.
const (
	RequestHeadLenV1  = 22
	ResponseHeadLenV1 = 20
	RequestHeadLenV2  = 24
	ResponseHeadLenV2 = 22
)

// MaxWireLen16 is the largest class name or header map length a Java peer
// accepts: it reads both as a signed 16-bit value.
const MaxWireLen16 = 0x7fff

// Header map keys SOFARPC uses for routing.
const (
	KeyService       = "service"                  // interface:version[:uniqueId]
	KeyTargetService = "sofa_head_target_service" // same, since SOFARPC 5.1
	KeyMethodName    = "sofa_head_method_name"
	KeyTargetApp     = "sofa_head_target_app"
)

// Limits bound what a peer may send in one frame. Zero fields take the
// defaults.
type Limits struct {
	// MaxClassName bounds the class name length; 0 means 1 KiB.
	MaxClassName int
	// MaxHeader bounds the encoded header map length; 0 means 32767, the
	// most a Java peer accepts.
	MaxHeader int
	// MaxContent bounds the content length; 0 means 16 MiB.
	MaxContent int
	// MaxHeaderEntries bounds the number of header map entries; 0 means 256.
	// It also bounds the duplicate-key check, which is quadratic.
	MaxHeaderEntries int
}

// Default limits, used for zero fields of Limits.
const (
	DefaultMaxClassName     = 1 << 10
	DefaultMaxHeader        = MaxWireLen16
	DefaultMaxContent       = 16 << 20
	DefaultMaxHeaderEntries = 256
)

func (l Limits) norm() Limits {
	if l.MaxClassName <= 0 {
		l.MaxClassName = DefaultMaxClassName
	}
	if l.MaxHeader <= 0 {
		l.MaxHeader = DefaultMaxHeader
	}
	if l.MaxContent <= 0 {
		l.MaxContent = DefaultMaxContent
	}
	if l.MaxHeaderEntries <= 0 {
		l.MaxHeaderEntries = DefaultMaxHeaderEntries
	}
	return l
}

var (
	// ErrMalformed reports bytes that are not a valid Bolt frame. Returned
	// errors wrap it with the offending field; test with errors.Is.
	ErrMalformed = errors.New("bolt: malformed frame")
	// ErrTooLarge reports a length over Limits (or, when encoding, over
	// what the wire can carry). Returned errors wrap it with the field.
	ErrTooLarge = errors.New("bolt: frame too large")
	// ErrForeignFrame reports an api.Frame that this codec did not create.
	ErrForeignFrame = errors.New("bolt: frame is not a *bolt.Frame")
)

// malformed is an ErrMalformed with a fixed detail. Being a constant string
// type, returning one never allocates, so a flood of bad frames costs no
// garbage.
type malformed string

func (e malformed) Error() string { return ErrMalformed.Error() + ": " + string(e) }

func (e malformed) Unwrap() error { return ErrMalformed }

// tooLarge is an ErrTooLarge naming the field.
type tooLarge string

func (e tooLarge) Error() string { return ErrTooLarge.Error() + ": " + string(e) }

func (e tooLarge) Unwrap() error { return ErrTooLarge }

// StatusText returns the SOFABolt name of a response status, or "" for a
// value SOFABolt does not define.
func StatusText(s uint16) string {
	switch s {
	case StatusSuccess:
		return "SUCCESS"
	case StatusError:
		return "ERROR"
	case StatusServerException:
		return "SERVER_EXCEPTION"
	case StatusUnknown:
		return "UNKNOWN"
	case StatusServerThreadpoolBusy:
		return "SERVER_THREADPOOL_BUSY"
	case StatusErrorComm:
		return "ERROR_COMM"
	case StatusNoProcessor:
		return "NO_PROCESSOR"
	case StatusTimeout:
		return "TIMEOUT"
	case StatusClientSendError:
		return "CLIENT_SEND_ERROR"
	case StatusCodecException:
		return "CODEC_EXCEPTION"
	case StatusConnectionClosed:
		return "CONNECTION_CLOSED"
	case StatusServerSerialException:
		return "SERVER_SERIAL_EXCEPTION"
	case StatusServerDeserialException:
		return "SERVER_DESERIAL_EXCEPTION"
	}
	return ""
}

// validStatus reports whether SOFABolt's decoder accepts s; its
// ResponseStatus.valueOf throws on anything else.
func validStatus(s uint16) bool { return StatusText(s) != "" }

// validCodec reports whether c is a serialization id SOFARPC defines.
func validCodec(c byte) bool {
	switch c {
	case CodecHessian2, CodecJava, CodecHessian2Legacy, CodecProtobuf, CodecJSON, CodecMsgpack:
		return true
	}
	return false
}

// StatusFromHTTP maps a proxy-side failure, given as an HTTP status, to the
// Bolt response status a SOFA client handles best:
//
//	400, 413, 431 -> CODEC_EXCEPTION (the request could not be handled as sent)
//	404           -> NO_PROCESSOR (no route for the service)
//	408, 504      -> TIMEOUT (InvokeTimeoutException on the client)
//	429, 503      -> SERVER_THREADPOOL_BUSY (InvokeServerBusyException, which
//	                 SOFARPC's failover cluster retries elsewhere)
//	502           -> CONNECTION_CLOSED (ConnectionClosedException)
//	500           -> ERROR
//	200           -> SUCCESS
//	anything else -> UNKNOWN
//
// SERVER_EXCEPTION is never used: a SOFA client then deserializes the content
// as a Throwable, which a proxy cannot produce.
func StatusFromHTTP(code int) uint16 {
	switch code {
	case 200:
		return StatusSuccess
	case 400, 413, 431:
		return StatusCodecException
	case 404:
		return StatusNoProcessor
	case 408, 504:
		return StatusTimeout
	case 429, 503:
		return StatusServerThreadpoolBusy
	case 502:
		return StatusConnectionClosed
	case 500:
		return StatusError
	}
	return StatusUnknown
}

// HTTPStatus maps a Bolt response status to an HTTP status for access logs
// and statistics, the reverse of StatusFromHTTP where that is one to one.
func HTTPStatus(s uint16) int {
	switch s {
	case StatusSuccess:
		return 200
	case StatusCodecException, StatusServerDeserialException:
		return 400
	case StatusNoProcessor:
		return 404
	case StatusTimeout:
		return 504
	case StatusServerThreadpoolBusy:
		return 503
	case StatusConnectionClosed, StatusErrorComm, StatusClientSendError:
		return 502
	}
	return 500
}
