package rpcpeer

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"slices"
	"strconv"
	"time"
)

// Bolt field values.
const (
	boltTypeResponse = 0
	boltTypeRequest  = 1
	boltTypeOneway   = 2

	boltCmdHeartbeat = 0
	boltCmdRequest   = 1
	boltCmdResponse  = 2

	boltCodecHessian2 = 1
	boltSwitchCRC     = 0x01
)

// Bolt response status codes.
const (
	BoltSuccess                 = 0x00
	BoltError                   = 0x01
	BoltServerException         = 0x02
	BoltUnknown                 = 0x03
	BoltServerThreadpoolBusy    = 0x04
	BoltErrorComm               = 0x05
	BoltNoProcessor             = 0x06
	BoltTimeout                 = 0x07
	BoltClientSendError         = 0x08
	BoltCodecException          = 0x09
	BoltConnectionClosed        = 0x10
	BoltServerSerialException   = 0x11
	BoltServerDeserialException = 0x12
)

// Class names SOFARPC puts in Bolt frames.
const (
	SofaRequestClass  = "com.alipay.sofa.rpc.core.request.SofaRequest"
	SofaResponseClass = "com.alipay.sofa.rpc.core.response.SofaResponse"
	stringClass       = "java.lang.String"
)

// BoltFrame is every wire field of a Bolt frame.
type BoltFrame struct {
	Proto     byte   // 1 (v1) or 2 (v2)
	Ver1      byte   // v2 only: 1, or 2 (CRC possible)
	Type      byte   // 0 response, 1 request, 2 one-way
	CmdCode   uint16 // 0 heartbeat, 1 request, 2 response
	Ver2      byte
	ID        uint32
	Codec     byte   // 1 hessian2, 2 java, 11 protobuf
	Switch    byte   // v2 only; bit 0 asks for a CRC32 trailer when Ver1 is 2
	Timeout   int32  // requests only: ms, -1 for none
	Status    uint16 // responses only
	ClassName string
	Header    []KV // nil when empty
	Content   []byte
}

// HasCRC reports whether the frame carries a CRC32 trailer.
func (f *BoltFrame) HasCRC() bool { return f.Proto == 2 && f.Ver1 == 2 && f.Switch&boltSwitchCRC != 0 }

// DecodeBolt decodes the Bolt frame at the start of b (copying what it
// keeps) and returns its length. It returns ErrShortFrame when b holds only
// part of a frame and an error wrapping ErrMalformed when it is not one
// (bad proto, type, cmdcode, lengths, header map or CRC).
func DecodeBolt(b []byte) (*BoltFrame, int, error) {
	var v boltView
	if err := parseBolt(b, &v); err != nil {
		return nil, 0, err
	}
	f := &BoltFrame{
		Proto: v.proto, Ver1: v.ver1, Type: v.typ, CmdCode: v.cmd, Ver2: v.ver2, ID: v.id,
		Codec: v.codec, Switch: v.sw, Timeout: v.timeout, Status: v.status,
		ClassName: string(v.class),
	}
	if len(v.content) > 0 {
		f.Content = bytes.Clone(v.content)
	}
	walkBoltHeader(v.header, func(k, val []byte) bool {
		f.Header = append(f.Header, KV{string(k), string(val)})
		return true
	})
	return f, v.n, nil
}

// AppendBolt appends f's encoding to dst: lengths (and the CRC when
// HasCRC) are computed. It fails when the class name or header map does
// not fit its 16-bit length field, or the frame is over MaxFrame.
func AppendBolt(dst []byte, f *BoltFrame) ([]byte, error) {
	v := boltView{proto: f.Proto, ver1: f.Ver1, typ: f.Type, cmd: f.CmdCode, ver2: f.Ver2, id: f.ID,
		codec: f.Codec, sw: f.Switch, timeout: f.Timeout, status: f.Status}
	if v.proto != 1 && v.proto != 2 {
		return dst, fmt.Errorf("rpcpeer: bolt proto %d", v.proto)
	}
	hl := 0
	for _, kv := range f.Header {
		hl += 8 + len(kv.Key) + len(kv.Value)
	}
	if err := checkBoltLens(len(f.ClassName), hl, len(f.Content)); err != nil {
		return dst, err
	}
	start := len(dst)
	dst = appendBoltHead(dst, &v, len(f.ClassName), hl, len(f.Content))
	dst = append(dst, f.ClassName...)
	for _, kv := range f.Header {
		dst = appendBoltKV(dst, kv.Key, kv.Value)
	}
	dst = append(dst, f.Content...)
	return finishBolt(dst, start, &v), nil
}

func checkBoltLens(class, header, content int) error {
	if class > 0xffff || header > 0xffff {
		return fmt.Errorf("rpcpeer: bolt class name (%d) or header map (%d) over 65535 bytes", class, header)
	}
	if content > MaxFrame {
		return fmt.Errorf("rpcpeer: bolt content of %d bytes over MaxFrame", content)
	}
	return nil
}

// boltView is a parsed Bolt frame whose byte fields view the input.
type boltView struct {
	proto, ver1, typ byte
	cmd              uint16
	ver2             byte
	id               uint32
	codec, sw        byte
	timeout          int32
	status           uint16
	class            []byte
	header           []byte // raw header map
	content          []byte
	n                int // frame length
}

func (v *boltView) hasCRC() bool { return v.proto == 2 && v.ver1 == 2 && v.sw&boltSwitchCRC != 0 }

// boltHeadLen returns the fixed header length for proto and type.
func boltHeadLen(proto, typ byte) int {
	n := 22
	if typ == boltTypeResponse {
		n = 20
	}
	if proto == 2 {
		n += 2
	}
	return n
}

func boltNeed(b []byte) (int, bool, error) {
	if len(b) < 1 {
		return 1, false, nil
	}
	p := 0 // offset of the v2 extra byte
	switch b[0] {
	case 1:
	case 2:
		if len(b) < 2 {
			return 2, false, nil
		}
		if b[1] != 1 && b[1] != 2 {
			return 0, false, malformed("bolt v2 ver1 %d", b[1])
		}
		p = 1
	default:
		return 0, false, malformed("bolt proto %#x", b[0])
	}
	if len(b) < p+2 {
		return p + 2, false, nil
	}
	typ := b[p+1]
	if typ > boltTypeOneway {
		return 0, false, malformed("bolt type %d", typ)
	}
	hl := boltHeadLen(b[0], typ)
	if len(b) < hl {
		return hl, false, nil
	}
	lens := b[hl-8:]
	cl := int(binary.BigEndian.Uint16(lens))
	hdr := int(binary.BigEndian.Uint16(lens[2:]))
	ct := binary.BigEndian.Uint32(lens[4:])
	if ct > MaxFrame {
		return 0, false, malformed("bolt content length %d", ct)
	}
	n := hl + cl + hdr + int(ct)
	if b[0] == 2 && b[1] == 2 && b[p+10]&boltSwitchCRC != 0 {
		n += 4
	}
	return n, true, nil
}

// parseBolt parses the frame at the start of b into v.
func parseBolt(b []byte, v *boltView) error {
	n, complete, err := boltNeed(b)
	if err != nil {
		return err
	}
	if !complete || len(b) < n {
		return ErrShortFrame
	}
	b = b[:n:n]
	v.proto = b[0]
	p := 0
	v.ver1, v.sw = 0, 0
	if v.proto == 2 {
		v.ver1 = b[1]
		p = 1
	}
	v.typ = b[p+1]
	v.cmd = binary.BigEndian.Uint16(b[p+2:])
	v.ver2 = b[p+4]
	v.id = binary.BigEndian.Uint32(b[p+5:])
	v.codec = b[p+9]
	q := p + 10
	if v.proto == 2 {
		v.sw = b[q]
		q++
	}
	v.timeout, v.status = 0, 0
	if v.typ == boltTypeResponse {
		v.status = binary.BigEndian.Uint16(b[q:])
		q += 2
	} else {
		v.timeout = int32(binary.BigEndian.Uint32(b[q:]))
		q += 4
	}
	switch {
	case v.typ == boltTypeResponse && (v.cmd == boltCmdHeartbeat || v.cmd == boltCmdResponse):
	case v.typ == boltTypeRequest && (v.cmd == boltCmdHeartbeat || v.cmd == boltCmdRequest):
	case v.typ == boltTypeOneway && v.cmd == boltCmdRequest:
	default:
		return malformed("bolt type %d with cmdcode %d", v.typ, v.cmd)
	}
	cl := int(binary.BigEndian.Uint16(b[q:]))
	hl := int(binary.BigEndian.Uint16(b[q+2:]))
	q += 8
	v.class = b[q : q+cl]
	q += cl
	v.header = b[q : q+hl]
	q += hl
	end := n
	if v.hasCRC() {
		end -= 4
		if got, want := crc32.ChecksumIEEE(b[:end]), binary.BigEndian.Uint32(b[end:]); got != want {
			return malformed("bolt CRC32 %08x, computed %08x", want, got)
		}
	}
	v.content = b[q:end]
	if err := walkBoltHeader(v.header, nil); err != nil {
		return err
	}
	v.n = n
	return nil
}

// walkBoltHeader checks the raw header map h and calls fn (when not nil)
// for each entry in order until fn returns false.
func walkBoltHeader(h []byte, fn func(k, v []byte) bool) error {
	for len(h) > 0 {
		var kv [2][]byte
		for i := range kv {
			if len(h) < 4 {
				return malformed("bolt header map: truncated length")
			}
			l := int32(binary.BigEndian.Uint32(h))
			if l < 0 || int(l) > len(h)-4 {
				return malformed("bolt header map: length %d with %d bytes left", l, len(h)-4)
			}
			kv[i] = h[4 : 4+l]
			h = h[4+l:]
		}
		if fn != nil && !fn(kv[0], kv[1]) {
			return nil
		}
	}
	return nil
}

// boltHeaderGet returns the value of the first entry named key.
func boltHeaderGet(h []byte, key string) (val []byte, ok bool) {
	walkBoltHeader(h, func(k, v []byte) bool {
		if string(k) == key {
			val, ok = v, true
			return false
		}
		return true
	})
	return val, ok
}

func boltHeaderMap(h []byte) map[string]string {
	if len(h) == 0 {
		return nil
	}
	m := make(map[string]string, 8)
	walkBoltHeader(h, func(k, v []byte) bool {
		m[string(k)] = string(v)
		return true
	})
	return m
}

// appendBoltHead appends the fixed header of v with the given lengths.
func appendBoltHead(dst []byte, v *boltView, classLen, headerLen, contentLen int) []byte {
	dst = append(dst, v.proto)
	if v.proto == 2 {
		dst = append(dst, v.ver1)
	}
	dst = append(dst, v.typ)
	dst = binary.BigEndian.AppendUint16(dst, v.cmd)
	dst = append(dst, v.ver2)
	dst = binary.BigEndian.AppendUint32(dst, v.id)
	dst = append(dst, v.codec)
	if v.proto == 2 {
		dst = append(dst, v.sw)
	}
	if v.typ == boltTypeResponse {
		dst = binary.BigEndian.AppendUint16(dst, v.status)
	} else {
		dst = binary.BigEndian.AppendUint32(dst, uint32(v.timeout))
	}
	dst = binary.BigEndian.AppendUint16(dst, uint16(classLen))
	dst = binary.BigEndian.AppendUint16(dst, uint16(headerLen))
	return binary.BigEndian.AppendUint32(dst, uint32(contentLen))
}

func appendBoltKV(dst []byte, k, v string) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(k)))
	dst = append(dst, k...)
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(v)))
	return append(dst, v...)
}

// finishBolt appends the CRC32 trailer of the frame dst[start:] if v asks
// for one.
func finishBolt(dst []byte, start int, v *boltView) []byte {
	if v.hasCRC() {
		dst = binary.BigEndian.AppendUint32(dst, crc32.ChecksumIEEE(dst[start:]))
	}
	return dst
}

// timeoutMs converts a timeout to whole milliseconds, rounding a positive
// sub-millisecond timeout up to 1.
func timeoutMs(d time.Duration) int64 {
	ms := int64(d / time.Millisecond)
	if ms == 0 && d > 0 {
		ms = 1
	}
	return ms
}

// requestEntries returns the routing entries defaults followed by
// extra sorted by key; an extra entry whose key is already among the
// defaults replaces that entry's value in place.
func requestEntries(defaults []KV, extra map[string]string) []KV {
	if len(extra) == 0 {
		return defaults
	}
	keys := make([]string, 0, len(extra))
	for k := range extra {
		keys = append(keys, k)
	}
	slices.Sort(keys)
outer:
	for _, k := range keys {
		for i := range defaults {
			if defaults[i].Key == k {
				defaults[i].Value = extra[k]
				continue outer
			}
		}
		defaults = append(defaults, KV{k, extra[k]})
	}
	return defaults
}

// appendBoltRequest appends the frame Call writes for r.
func appendBoltRequest(dst []byte, id uint32, r *Request) ([]byte, error) {
	ver := r.Version
	if ver == "" {
		ver = "1.0"
	}
	svc := r.Service + ":" + ver
	if r.Group != "" {
		svc += ":" + r.Group
	}
	var arr [12]KV
	entries := append(arr[:0],
		KV{"service", svc},
		KV{"sofa_head_target_service", svc},
		KV{"sofa_head_method_name", r.Method},
		KV{"sofa_head_target_app", "rpcpeer"},
	)
	entries = requestEntries(entries, r.Headers)
	hl := 0
	for _, kv := range entries {
		hl += 8 + len(kv.Key) + len(kv.Value)
	}
	if err := checkBoltLens(len(SofaRequestClass), hl, len(r.Body)); err != nil {
		return dst, err
	}
	v := boltView{proto: 1, typ: boltTypeRequest, cmd: boltCmdRequest, ver2: 1, id: id, codec: boltCodecHessian2, timeout: -1}
	if r.BoltV2 || r.BoltCRC {
		v.proto, v.ver1 = 2, 1
		if r.BoltCRC {
			v.ver1, v.sw = 2, boltSwitchCRC
		}
	}
	if r.Oneway {
		v.typ = boltTypeOneway
	}
	if r.Timeout > 0 {
		v.timeout = int32(min(timeoutMs(r.Timeout), 1<<31-1))
	}
	start := len(dst)
	dst = appendBoltHead(dst, &v, len(SofaRequestClass), hl, len(r.Body))
	dst = append(dst, SofaRequestClass...)
	for _, kv := range entries {
		dst = appendBoltKV(dst, kv.Key, kv.Value)
	}
	dst = append(dst, r.Body...)
	return finishBolt(dst, start, &v), nil
}

// appendBoltHeartbeat appends a v1 heartbeat request.
func appendBoltHeartbeat(dst []byte, id uint32) []byte {
	v := boltView{proto: 1, typ: boltTypeRequest, cmd: boltCmdHeartbeat, ver2: 1, id: id, codec: boltCodecHessian2, timeout: -1}
	return appendBoltHead(dst, &v, 0, 0, 0)
}

// appendBoltHeartbeatReply appends the answer to heartbeat req, in its
// version.
func appendBoltHeartbeatReply(dst []byte, req *boltView) []byte {
	v := *req
	v.typ, v.cmd, v.status = boltTypeResponse, boltCmdHeartbeat, BoltSuccess
	start := len(dst)
	dst = appendBoltHead(dst, &v, 0, 0, 0)
	return finishBolt(dst, start, &v)
}

// appendBoltReply appends a response to req in req's version: status,
// class name, header = the raw header entries hdr (may be nil) followed by
// extra, content.
func appendBoltReply(dst []byte, req *boltView, status uint16, class string, hdr []byte, extra []KV, content []byte) []byte {
	v := *req
	v.typ, v.cmd, v.status = boltTypeResponse, boltCmdResponse, status
	hl := len(hdr)
	for _, kv := range extra {
		hl += 8 + len(kv.Key) + len(kv.Value)
	}
	start := len(dst)
	dst = appendBoltHead(dst, &v, len(class), hl, len(content))
	dst = append(dst, class...)
	dst = append(dst, hdr...)
	for _, kv := range extra {
		dst = appendBoltKV(dst, kv.Key, kv.Value)
	}
	dst = append(dst, content...)
	return finishBolt(dst, start, &v)
}

// withoutBoltKey returns the raw header map h without entries named key
// (h itself when it has none).
func withoutBoltKey(h []byte, key string) []byte {
	if !bytes.Contains(h, []byte(key)) {
		return h
	}
	out := make([]byte, 0, len(h))
	walkBoltHeader(h, func(k, v []byte) bool {
		if string(k) != key {
			out = binary.BigEndian.AppendUint32(out, uint32(len(k)))
			out = append(out, k...)
			out = binary.BigEndian.AppendUint32(out, uint32(len(v)))
			out = append(out, v...)
		}
		return true
	})
	return out
}

// appendBoltResponse appends the frame EncodeResponse writes: v1,
// hessian2, headers sorted by key.
func appendBoltResponse(dst []byte, id uint32, r *Response) ([]byte, error) {
	keys := make([]string, 0, len(r.Headers))
	for k := range r.Headers {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	f := BoltFrame{Proto: 1, Type: boltTypeResponse, CmdCode: boltCmdResponse, Ver2: 1, ID: id,
		Codec: boltCodecHessian2, Status: uint16(r.Status), ClassName: r.ClassName, Content: r.Body}
	if r.Heartbeat {
		f.CmdCode = boltCmdHeartbeat
	}
	for _, k := range keys {
		f.Header = append(f.Header, KV{k, r.Headers[k]})
	}
	return AppendBolt(dst, &f)
}

// boltResponse converts a parsed response frame to a Response.
func boltResponse(v *boltView) *Response {
	r := &Response{
		Status:    int(v.status),
		Headers:   boltHeaderMap(v.header),
		Heartbeat: v.cmd == boltCmdHeartbeat,
	}
	if len(v.content) > 0 {
		r.Body = bytes.Clone(v.content)
	}
	if len(v.class) > 0 {
		r.ClassName = string(v.class)
	}
	return r
}

// sleepHeader parses an "x-sleep-ms" value; bad values count as 0.
func sleepHeader(b []byte) time.Duration {
	n, err := strconv.Atoi(string(b))
	if err != nil || n < 0 {
		return 0
	}
	return time.Duration(n) * time.Millisecond
}
