package rpcpeer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"sync"

	hessian "github.com/apache/dubbo-go-hessian2"
)

const (
	dubboHeadLen = 16
	dubboMagic0  = 0xda
	dubboMagic1  = 0xbb

	dubboFlagRequest   = 0x80
	dubboFlagTwoWay    = 0x40
	dubboFlagEvent     = 0x20
	dubboSerialMask    = 0x1f
	dubboSerialHessian = 2

	dubboVersion     = "2.0.2"
	dubboStringParam = "Ljava/lang/String;"
)

// Dubbo response status codes.
const (
	DubboOK                  = 20
	DubboClientTimeout       = 30
	DubboServerTimeout       = 31
	DubboBadRequest          = 40
	DubboBadResponse         = 50
	DubboServiceNotFound     = 60
	DubboServiceError        = 70
	DubboServerError         = 80
	DubboClientError         = 90
	DubboThreadpoolExhausted = 100
)

// Dubbo response body types (the hessian int leading an OK response).
const (
	DubboResponseException                = 0
	DubboResponseValue                    = 1
	DubboResponseNull                     = 2
	DubboResponseExceptionWithAttachments = 3
	DubboResponseValueWithAttachments     = 4
	DubboResponseNullWithAttachments      = 5
)

// DubboFrame is a Dubbo frame: the 16-byte header's fields and the body.
type DubboFrame struct {
	Flags  byte // 0x80 request, 0x40 two-way, 0x20 event, low 5 bits serialization
	Status byte
	ID     uint64
	Body   []byte
}

// DecodeDubbo decodes the frame at the start of b (copying the body) and
// returns its length; ErrShortFrame when b holds only part of it.
func DecodeDubbo(b []byte) (*DubboFrame, int, error) {
	var v dubboView
	if err := parseDubbo(b, &v); err != nil {
		return nil, 0, err
	}
	f := &DubboFrame{Flags: v.flags, Status: v.status, ID: v.id}
	if len(v.body) > 0 {
		f.Body = slices.Clone(v.body)
	}
	return f, v.n, nil
}

// AppendDubbo appends f's encoding (body length computed) to dst.
func AppendDubbo(dst []byte, f *DubboFrame) []byte {
	return append(appendDubboHead(dst, f.Flags, f.Status, f.ID, len(f.Body)), f.Body...)
}

type dubboView struct {
	flags, status byte
	id            uint64
	body          []byte
	n             int
}

func dubboNeed(b []byte) (int, bool, error) {
	if len(b) >= 1 && b[0] != dubboMagic0 || len(b) >= 2 && b[1] != dubboMagic1 {
		return 0, false, malformed("dubbo magic %x", b[:min(2, len(b))])
	}
	if len(b) < dubboHeadLen {
		return dubboHeadLen, false, nil
	}
	l := int32(binary.BigEndian.Uint32(b[12:]))
	if l < 0 || l > MaxFrame {
		return 0, false, malformed("dubbo body length %d", l)
	}
	return dubboHeadLen + int(l), true, nil
}

func parseDubbo(b []byte, v *dubboView) error {
	n, complete, err := dubboNeed(b)
	if err != nil {
		return err
	}
	if !complete || len(b) < n {
		return ErrShortFrame
	}
	v.flags, v.status = b[2], b[3]
	v.id = binary.BigEndian.Uint64(b[4:])
	v.body = b[dubboHeadLen:n:n]
	v.n = n
	return nil
}

func appendDubboHead(dst []byte, flags, status byte, id uint64, bodyLen int) []byte {
	dst = append(dst, dubboMagic0, dubboMagic1, flags, status)
	dst = binary.BigEndian.AppendUint64(dst, id)
	return binary.BigEndian.AppendUint32(dst, uint32(bodyLen))
}

// Hessian encoders and decoders are pooled: a decoder carries a 4 KiB
// read buffer.
var (
	encPool = sync.Pool{New: func() any { return hessian.NewEncoder() }}
	decPool = sync.Pool{New: func() any { return hessian.NewDecoder(nil) }}
)

// withEncoder runs fn with a clean pooled encoder and appends what it
// encoded to dst.
func withEncoder(dst []byte, fn func(e *hessian.Encoder) error) ([]byte, error) {
	e := encPool.Get().(*hessian.Encoder)
	e.ReuseBufferClean()
	err := fn(e)
	if err == nil {
		dst = append(dst, e.Buffer()...)
	}
	e.ReuseBufferClean()
	encPool.Put(e)
	return dst, err
}

// withDecoder runs fn with a pooled decoder reading body. The library can
// panic on truncated input; that becomes a malformed error.
func withDecoder(body []byte, fn func(d *hessian.Decoder) error) (err error) {
	d := decPool.Get().(*hessian.Decoder)
	d.Reset(body)
	defer func() {
		if r := recover(); r != nil {
			err = malformed("hessian: %v", r)
			return // a decoder that panicked is not reused
		}
		d.Reset(nil)
		decPool.Put(d)
	}()
	return fn(d)
}

// appendOrderedMap encodes an untyped hessian map with the entries in
// order.
func appendOrderedMap(e *hessian.Encoder, kvs []KV) error {
	e.Append([]byte{'H'})
	for _, kv := range kvs {
		if err := e.Encode(kv.Key); err != nil {
			return err
		}
		if err := e.Encode(kv.Value); err != nil {
			return err
		}
	}
	e.Append([]byte{'Z'})
	return nil
}

// appendDubboRequest appends the frame Call writes for r.
func appendDubboRequest(dst []byte, id uint64, r *Request) ([]byte, error) {
	var arr [12]KV
	att := append(arr[:0], KV{"path", r.Service}, KV{"interface", r.Service})
	if r.Version != "" {
		att = append(att, KV{"version", r.Version})
	}
	if r.Group != "" {
		att = append(att, KV{"group", r.Group})
	}
	if r.Timeout > 0 {
		att = append(att, KV{"timeout", strconv.FormatInt(timeoutMs(r.Timeout), 10)})
	}
	att = requestEntries(att, r.Headers)
	flags := byte(dubboFlagRequest | dubboSerialHessian)
	if !r.Oneway {
		flags |= dubboFlagTwoWay
	}
	start := len(dst)
	dst = appendDubboHead(dst, flags, 0, id, 0)
	dst, err := withEncoder(dst, func(e *hessian.Encoder) error {
		for _, s := range [...]string{dubboVersion, r.Service, r.Version, r.Method, dubboStringParam, string(r.Body)} {
			if err := e.Encode(s); err != nil {
				return err
			}
		}
		return appendOrderedMap(e, att)
	})
	if err != nil {
		return dst[:start], err
	}
	return setDubboBodyLen(dst, start)
}

func setDubboBodyLen(dst []byte, start int) ([]byte, error) {
	n := len(dst) - start - dubboHeadLen
	if n > MaxFrame {
		return dst[:start], fmt.Errorf("rpcpeer: dubbo body of %d bytes over MaxFrame", n)
	}
	binary.BigEndian.PutUint32(dst[start+12:], uint32(n))
	return dst, nil
}

// appendDubboHeartbeat appends a heartbeat request (flags 0xe2, body N).
func appendDubboHeartbeat(dst []byte, id uint64) []byte {
	dst = appendDubboHead(dst, dubboFlagRequest|dubboFlagTwoWay|dubboFlagEvent|dubboSerialHessian, 0, id, 1)
	return append(dst, 'N')
}

// appendDubboHeartbeatReply appends the answer to a heartbeat request.
func appendDubboHeartbeatReply(dst []byte, req *dubboView) []byte {
	dst = appendDubboHead(dst, dubboFlagEvent|req.flags&dubboSerialMask, DubboOK, req.id, 1)
	return append(dst, 'N')
}

// appendDubboError appends a response with a non-OK status whose body is
// msg as a hessian string.
func appendDubboError(dst []byte, serial byte, status byte, id uint64, msg string) []byte {
	start := len(dst)
	dst = appendDubboHead(dst, serial, status, id, 0)
	dst, _ = withEncoder(dst, func(e *hessian.Encoder) error { return e.Encode(msg) })
	dst, _ = setDubboBodyLen(dst, start)
	return dst
}

// appendDubboValue appends an OK response: body type, value unless null,
// attachments in order when the type has them.
func appendDubboValue(dst []byte, serial byte, id uint64, typ int32, value any, att []KV) ([]byte, error) {
	start := len(dst)
	dst = appendDubboHead(dst, serial, DubboOK, id, 0)
	dst, err := withEncoder(dst, func(e *hessian.Encoder) error {
		if err := e.Encode(typ); err != nil {
			return err
		}
		if typ != DubboResponseNull && typ != DubboResponseNullWithAttachments {
			if err := e.Encode(value); err != nil {
				return err
			}
		}
		if typ >= DubboResponseExceptionWithAttachments {
			return appendOrderedMap(e, att)
		}
		return nil
	})
	if err != nil {
		return dst[:start], err
	}
	return setDubboBodyLen(dst, start)
}

// appendDubboResponse appends the frame EncodeResponse writes.
func appendDubboResponse(dst []byte, id uint64, r *Response) ([]byte, error) {
	if r.Heartbeat {
		return appendDubboHeartbeatReply(dst, &dubboView{flags: dubboSerialHessian, id: id}), nil
	}
	if r.Status != DubboOK {
		if r.Status < 0 || r.Status > 255 {
			return dst, fmt.Errorf("rpcpeer: dubbo status %d", r.Status)
		}
		return appendDubboError(dst, dubboSerialHessian, byte(r.Status), id, string(r.Body)), nil
	}
	keys := make([]string, 0, len(r.Headers))
	for k := range r.Headers {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	att := make([]KV, 0, len(keys))
	for _, k := range keys {
		att = append(att, KV{k, r.Headers[k]})
	}
	typ, value := int32(DubboResponseValueWithAttachments), any(string(r.Body))
	switch {
	case r.Exception:
		typ = DubboResponseExceptionWithAttachments
	case r.Body == nil:
		typ, value = DubboResponseNullWithAttachments, nil
	}
	return appendDubboValue(dst, dubboSerialHessian, id, typ, value, att)
}

// DubboInvocation is a decoded Dubbo request body.
type DubboInvocation struct {
	DubboVersion string
	Path         string // service path (interface)
	Version      string // service version
	Method       string
	ParamTypes   string // JVM descriptors, e.g. "Ljava/lang/String;"
	Args         []any  // one per parameter type, as the hessian library decodes them
	Attachments  map[string]any
}

// ParseDubboRequest decodes a hessian2 Dubbo request body. Unregistered
// classes decode to maps.
func ParseDubboRequest(body []byte) (*DubboInvocation, error) {
	inv, raw, err := parseDubboInvocation(body)
	if err != nil {
		return nil, err
	}
	if raw != nil {
		inv.Attachments = make(map[string]any, len(raw))
		for k, v := range raw {
			if ks, ok := k.(string); ok {
				inv.Attachments[ks] = v
			}
		}
	}
	return inv, nil
}

// parseDubboInvocation decodes a request body; the attachments are left
// as the library's map.
func parseDubboInvocation(body []byte) (*DubboInvocation, map[any]any, error) {
	inv := &DubboInvocation{}
	var raw map[any]any
	err := withDecoder(body, func(d *hessian.Decoder) error {
		for _, dst := range [...]*string{&inv.DubboVersion, &inv.Path, &inv.Version, &inv.Method, &inv.ParamTypes} {
			v, err := d.Decode()
			if err != nil {
				return malformed("dubbo request: %v", err)
			}
			switch s := v.(type) {
			case string:
				*dst = s
			case nil:
			default:
				return malformed("dubbo request: %T where a string belongs", v)
			}
		}
		n, err := countParamTypes(inv.ParamTypes)
		if err != nil {
			return err
		}
		inv.Args = make([]any, n)
		for i := range inv.Args {
			if inv.Args[i], err = d.Decode(); err != nil {
				return malformed("dubbo request: argument %d: %v", i, err)
			}
		}
		v, err := d.Decode()
		if errors.Is(err, io.EOF) {
			return nil // no attachments
		}
		if err != nil {
			return malformed("dubbo request: attachments: %v", err)
		}
		switch m := v.(type) {
		case map[any]any:
			raw = m
		case nil:
		default:
			return malformed("dubbo request: attachments are %T", v)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return inv, raw, nil
}

// countParamTypes counts the JVM type descriptors in desc.
func countParamTypes(desc string) (int, error) {
	n := 0
	for i := 0; i < len(desc); n++ {
		for i < len(desc) && desc[i] == '[' {
			i++
		}
		if i == len(desc) {
			return 0, malformed("dubbo parameter types %q", desc)
		}
		switch desc[i] {
		case 'L':
			j := strings.IndexByte(desc[i:], ';')
			if j < 0 {
				return 0, malformed("dubbo parameter types %q", desc)
			}
			i += j + 1
		case 'Z', 'B', 'C', 'D', 'F', 'I', 'J', 'S':
			i++
		default:
			return 0, malformed("dubbo parameter types %q", desc)
		}
	}
	return n, nil
}

// DubboResult is a decoded OK (status 20) Dubbo response body.
type DubboResult struct {
	Type        int32 // DubboResponseException ... DubboResponseNullWithAttachments
	Value       any   // the value or exception; nil for the null types
	Attachments map[string]any
}

// ParseDubboResponse decodes the body of an OK Dubbo response.
func ParseDubboResponse(body []byte) (*DubboResult, error) {
	res, raw, err := parseDubboResult(body)
	if err != nil {
		return nil, err
	}
	if raw != nil {
		res.Attachments = make(map[string]any, len(raw))
		for k, v := range raw {
			if ks, ok := k.(string); ok {
				res.Attachments[ks] = v
			}
		}
	}
	return res, nil
}

func parseDubboResult(body []byte) (*DubboResult, map[any]any, error) {
	res := &DubboResult{}
	var raw map[any]any
	err := withDecoder(body, func(d *hessian.Decoder) error {
		v, err := d.Decode()
		if err != nil {
			return malformed("dubbo response: type: %v", err)
		}
		t, ok := toInt64(v)
		if !ok || t < 0 || t > DubboResponseNullWithAttachments {
			return malformed("dubbo response: type %v", v)
		}
		res.Type = int32(t)
		if t != DubboResponseNull && t != DubboResponseNullWithAttachments {
			if res.Value, err = d.Decode(); err != nil {
				return malformed("dubbo response: value: %v", err)
			}
		}
		if t < DubboResponseExceptionWithAttachments {
			return nil
		}
		v, err = d.Decode()
		if err != nil {
			return malformed("dubbo response: attachments: %v", err)
		}
		switch m := v.(type) {
		case map[any]any:
			raw = m
		case nil:
		default:
			return malformed("dubbo response: attachments are %T", v)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	return res, raw, nil
}

func toInt64(v any) (int64, bool) {
	switch n := v.(type) {
	case int32:
		return int64(n), true
	case int64:
		return n, true
	case int:
		return int64(n), true
	}
	return 0, false
}

// parseHessianString decodes a body holding one hessian string.
func parseHessianString(body []byte) (string, error) {
	var s string
	err := withDecoder(body, func(d *hessian.Decoder) error {
		v, err := d.Decode()
		if err != nil {
			return malformed("hessian string: %v", err)
		}
		s = valueText(v)
		return nil
	})
	return s, err
}

// valueText renders a decoded value as text: strings as they are.
func valueText(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case []byte:
		return string(x)
	case nil:
		return ""
	case error:
		return x.Error()
	}
	return fmt.Sprint(v)
}

// attachmentText converts library attachments to strings: all of them
// (non-strings formatted) or, with onlyStrings, just the string values.
func attachmentText(raw map[any]any, onlyStrings bool) map[string]string {
	if len(raw) == 0 {
		return nil
	}
	m := make(map[string]string, len(raw))
	for k, v := range raw {
		ks, ok := k.(string)
		if !ok || v == nil {
			continue
		}
		if s, ok := v.(string); ok {
			m[ks] = s
		} else if !onlyStrings {
			m[ks] = valueText(v)
		}
	}
	return m
}

// dubboResponse converts a parsed response frame to a Response.
func dubboResponse(v *dubboView) (*Response, error) {
	r := &Response{Status: int(v.status)}
	if v.flags&dubboFlagEvent != 0 {
		r.Heartbeat = true
		return r, nil
	}
	if v.flags&dubboSerialMask != dubboSerialHessian {
		r.Body = slices.Clone(v.body)
		return r, fmt.Errorf("rpcpeer: dubbo serialization %d", v.flags&dubboSerialMask)
	}
	if r.Status != DubboOK {
		s, err := parseHessianString(v.body)
		if err != nil {
			r.Body = slices.Clone(v.body)
			return r, nil
		}
		r.Body = []byte(s)
		return r, nil
	}
	res, raw, err := parseDubboResult(v.body)
	if err != nil {
		return r, err
	}
	r.Headers = attachmentText(raw, false)
	r.Exception = res.Type == DubboResponseException || res.Type == DubboResponseExceptionWithAttachments
	if res.Value != nil {
		r.Body = []byte(valueText(res.Value))
	}
	return r, nil
}
