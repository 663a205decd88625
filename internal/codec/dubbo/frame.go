package dubbo

import (
	"encoding/binary"
	"fmt"
	"math"
	"strings"
	"time"

	hessian "github.com/apache/dubbo-go-hessian2"

	"github.com/weftmesh/weft/api"
)

// Frame is one Dubbo message. Decode fills every field; a frame is meant to
// be reused for the next Decode on the same connection, which is what
// keeps decoding allocation-free.
//
// The routing strings (DubboVersion ... ParamTypes, attachment keys and
// values) are views of Body, not copies: they are valid until the frame is
// decoded into again. Copy them (strings.Clone) to keep them longer.
type Frame struct {
	// Flags is header byte 2: FlagRequest, FlagTwoWay, FlagEvent and the
	// serialization id (always SerializationHessian2 after Decode).
	Flags byte
	// StatusCode is header byte 3, the response status (StatusOK ...); 0
	// in requests. (Status is the api.Frame method returning it as int.)
	StatusCode byte
	// ID is the request id; a response carries its request's id.
	ID int64
	// Body is the frame body, the frame's own copy. It is forwarded
	// untouched unless attachments are changed through Headers.
	Body []byte

	// The leading strings of a request body; empty for other frames.
	DubboVersion string // protocol version the client speaks, e.g. "2.0.2"
	Path         string // service path, normally the interface name
	Version      string // service version
	Method       string // method name
	ParamTypes   string // JVM parameter descriptor, e.g. "Ljava/lang/String;I"

	// Attachments are a request's attachments in wire order (path,
	// interface, group, version, timeout, trace ids...). Read them here or
	// through Headers; change them only through Headers, which is what
	// Encode watches.
	Attachments []Attachment

	parsed  bool          // request body parsed; attachments may be rewritten
	dirty   bool          // attachments changed since Decode
	attOff  int           // offset of the attachments value in Body
	mapBody int           // offset of the first entry (after 'H' or 'M' type); attOff if none
	timeout time.Duration // from the "timeout" attachment
	scratch []byte        // text of non-string attachment values
	scan    scanner
}

// Attachment is one entry of a request's attachments map.
type Attachment struct {
	Key string
	// Value is the value as text: strings as they are, null as "", booleans
	// as "true"/"false", ints, longs and doubles in decimal. Dates, binary,
	// lists, maps and objects have an empty Value and Text false; use
	// Frame.AttachmentValue to decode them.
	Value string
	// Text reports whether Value represents the value.
	Text bool

	kind  valueKind
	start int // offset of the key in Body; -1 for an entry set through Headers
	val   int // offset of the value
	end   int // offset after the value
}

var _ api.Frame = (*Frame)(nil)

// reset clears f for Decode, keeping the capacity of its buffers.
func (f *Frame) reset() {
	scan, scratch, atts, body := f.scan, f.scratch[:0], f.Attachments[:0], f.Body[:0]
	*f = Frame{Body: body, Attachments: atts, scratch: scratch, scan: scan}
}

// clearRouting drops what a failed parse left half-read, keeping the
// header and body.
func (f *Frame) clearRouting() {
	clear(f.Attachments)
	f.Attachments = f.Attachments[:0]
	f.DubboVersion, f.Path, f.Version, f.Method, f.ParamTypes = "", "", "", "", ""
	f.parsed, f.dirty, f.timeout = false, false, 0
}

// Kind classifies the frame. An event request that expects no answer (the
// READONLY event a provider sends when it shuts down) is KindOneway; tell
// it from a one-way call with IsEvent.
func (f *Frame) Kind() api.FrameKind {
	switch {
	case f.Flags&FlagRequest == 0 && f.Flags&FlagEvent != 0:
		return api.KindHeartbeatReply
	case f.Flags&FlagRequest == 0:
		return api.KindResponse
	case f.Flags&FlagTwoWay == 0:
		return api.KindOneway
	case f.Flags&FlagEvent != 0:
		return api.KindHeartbeat
	}
	return api.KindRequest
}

// IsEvent reports whether the event flag is set (heartbeats and their
// replies, READONLY notices).
func (f *Frame) IsEvent() bool { return f.Flags&FlagEvent != 0 }

// GoingAway implements api.GoingAway: it reports a READONLY event, the
// one-way event request (body hessian "R") a Dubbo provider sends to its
// consumers when it starts shutting down.
func (f *Frame) GoingAway() bool {
	return f.Flags&(FlagRequest|FlagEvent|FlagTwoWay) == FlagRequest|FlagEvent &&
		len(f.Body) == 2 && f.Body[0] == 0x01 && f.Body[1] == 'R'
}

// RequestID returns the header id.
func (f *Frame) RequestID() uint64 { return uint64(f.ID) }

// SetRequestID rewrites the header id; the body is not touched.
func (f *Frame) SetRequestID(id uint64) { f.ID = int64(id) }

// Timeout returns the request's "timeout" attachment (milliseconds, as a
// string or an int), 0 when there is none or it is not a positive number.
func (f *Frame) Timeout() time.Duration { return f.timeout }

// Status returns the response status, 0 for requests.
func (f *Frame) Status() int {
	if f.Flags&FlagRequest != 0 {
		return 0
	}
	return int(f.StatusCode)
}

// Headers returns the frame's routing headers, a view of the frame (no
// allocation):
//
//	":authority"  the service path (Path)
//	":path"       the method
//	"version"     the "version" attachment, else the body's service version
//	any other key the attachment of that name ("group", "timeout",
//	              "interface", trace ids...), text values only
//
// Keys match case-insensitively, an exact match first. Range yields the
// text attachments in wire order. Set, Add and Del change attachments of a
// decoded request and Encode writes them; they have no effect on
// pseudo-headers, on other frames, or on an entry whose value is a list,
// map or object (such values may share hessian2 reference numbering with
// the arguments, so they are kept verbatim). Add on an existing key acts as
// Set: attachments are a map.
func (f *Frame) Headers() api.HeaderMap { return (*headers)(f) }

// AttachmentValue decodes the value of attachment key with
// dubbo-go-hessian2, for values that are not text (dates, binary, lists,
// maps, objects). A value that refers to classes or objects defined in the
// arguments cannot be decoded on its own and returns an error. It allocates.
func (f *Frame) AttachmentValue(key string) (v any, err error) {
	i := f.lookup(key)
	if i < 0 {
		return nil, fmt.Errorf("dubbo: no attachment %q", key)
	}
	a := &f.Attachments[i]
	if a.start < 0 {
		return a.Value, nil
	}
	defer func() {
		if r := recover(); r != nil {
			v, err = nil, fmt.Errorf("dubbo: attachment %q: hessian2: %v", key, r)
		}
	}()
	// The span was bounded by the scanner, so no length prefix in it can
	// claim more than the span holds.
	v, err = hessian.NewDecoder(f.Body[a.val:a.end]).Decode()
	if err != nil {
		return nil, fmt.Errorf("dubbo: attachment %q: %w", key, err)
	}
	return v, nil
}

// AppendTo appends f's wire form to dst (see Codec.Encode).
func (f *Frame) AppendTo(dst []byte) ([]byte, error) {
	start := len(dst)
	dst = append(dst, MagicHigh, MagicLow, f.Flags, f.StatusCode)
	dst = binary.BigEndian.AppendUint64(dst, uint64(f.ID))
	dst = append(dst, 0, 0, 0, 0)
	if !f.dirty {
		dst = append(dst, f.Body...)
	} else {
		dst = f.appendRewritten(dst)
	}
	n := len(dst) - start - HeaderLen
	if n > math.MaxInt32 {
		return dst[:start], fmt.Errorf("dubbo: body of %d bytes is too long to encode", n)
	}
	binary.BigEndian.PutUint32(dst[start+12:], uint32(n))
	return dst, nil
}

// appendRewritten appends the body with a new attachments map: the bytes
// before it unchanged, the map's own opening (tag and type) unchanged,
// untouched entries copied byte for byte, new ones encoded as hessian2
// strings.
func (f *Frame) appendRewritten(dst []byte) []byte {
	dst = append(dst, f.Body[:f.attOff]...)
	if f.mapBody > f.attOff {
		dst = append(dst, f.Body[f.attOff:f.mapBody]...)
	} else {
		dst = append(dst, 'H')
	}
	for i := range f.Attachments {
		a := &f.Attachments[i]
		if a.start >= 0 {
			dst = append(dst, f.Body[a.start:a.end]...)
			continue
		}
		dst = appendString(dst, a.Key)
		dst = appendString(dst, a.Value)
	}
	return append(dst, 'Z')
}

// parseRequest reads the routing fields of a request body.
func (f *Frame) parseRequest(lim Limits) error {
	s := &f.scan
	s.reset(f.Body, lim.MaxDepth)
	off := 0
	fields := [...]struct {
		name string
		dst  *string
	}{
		{"dubbo version", &f.DubboVersion},
		{"service path", &f.Path},
		{"service version", &f.Version},
		{"method", &f.Method},
		{"parameter types", &f.ParamTypes},
	}
	for _, fl := range fields {
		if off < len(f.Body) && f.Body[off] == 'N' {
			off++
			continue
		}
		v, end, err := s.readString(off)
		if err != nil {
			return bodyError(fl.name, off, f.Body, err)
		}
		*fl.dst, off = v, end
	}
	nargs := countParams(f.ParamTypes)
	for i := 0; i < nargs; i++ {
		end, err := s.skip(off, 0)
		if err != nil {
			return bodyError(fmt.Sprintf("argument %d of %d", i+1, nargs), end, f.Body, err)
		}
		off = end
	}
	if err := f.parseAttachments(off, lim); err != nil {
		return err
	}
	f.parsed = true
	f.timeout = parseTimeout(f.attachment("timeout"))
	return nil
}

// parseAttachments reads the attachments map at off, which must end the
// body: an untyped ('H') or typed ('M') map of string keys, or null.
func (f *Frame) parseAttachments(off int, lim Limits) error {
	s, b := &f.scan, f.Body
	f.attOff, f.mapBody = off, off
	if off >= len(b) {
		return bodyError("attachments", off, b, errTruncated)
	}
	switch b[off] {
	case 'N':
		off++
	case 'H', 'M':
		if b[off] == 'M' {
			end, err := s.skipType(off + 1)
			if err != nil {
				return bodyError("attachments type", end, b, err)
			}
			off = end
		} else {
			off++
		}
		f.mapBody = off
		for {
			if off >= len(b) {
				return bodyError("attachments", off, b, errTruncated)
			}
			if b[off] == 'Z' {
				off++
				break
			}
			if len(f.Attachments) >= lim.MaxAttachments {
				return malformed("request body: more than %d attachments", lim.MaxAttachments)
			}
			end, err := f.parseEntry(off)
			if err != nil {
				return err
			}
			off = end
		}
	default:
		return malformed("request body: attachments at offset %d: tag 0x%02x is not a map", off, b[off])
	}
	if off != len(b) {
		return malformed("request body: %d bytes after the attachments", len(b)-off)
	}
	return nil
}

// parseEntry reads one attachment at off and appends it.
func (f *Frame) parseEntry(off int) (int, error) {
	s, b := &f.scan, f.Body
	key, voff, err := s.readString(off)
	if err != nil {
		return 0, bodyError("attachment key", voff, b, err)
	}
	for i := range f.Attachments {
		if f.Attachments[i].Key == key {
			return 0, malformed("request body: duplicate attachment %q", key)
		}
	}
	if voff >= len(b) {
		return 0, bodyError(fmt.Sprintf("attachment %q", key), voff, b, errTruncated)
	}
	a := Attachment{Key: key, start: off, val: voff}
	var ok bool
	a.Value, a.end, f.scratch, ok, err = s.scalar(voff, f.scratch)
	if err != nil {
		return 0, bodyError(fmt.Sprintf("attachment %q", key), a.end, b, err)
	}
	if ok {
		a.Text, a.kind = true, kindText
	} else {
		a.kind = kindOf(b[voff])
		if a.end, err = s.skip(voff, 0); err != nil {
			return 0, bodyError(fmt.Sprintf("attachment %q", key), a.end, b, err)
		}
	}
	f.Attachments = append(f.Attachments, a)
	return a.end, nil
}

// bodyError describes a hessian2 error in a request body.
func bodyError(what string, off int, b []byte, err error) error {
	if off < len(b) {
		return malformed("request body: %s at offset %d (tag 0x%02x): %v", what, off, b[off], err)
	}
	return malformed("request body: %s at offset %d: %v", what, off, err)
}

// countParams counts the parameter types in a JVM method descriptor the way
// Dubbo does (Java ReflectUtils.desc2classArray and dubbo-go's DescRegex
// both find successive matches of
// [VZBCDFIJS] | L ident(/ident)* ; | \[+ ([VZBCDFIJS] | L ident(/ident)* ;)
// and skip characters where no match starts). Each match is one argument.
func countParams(desc string) int {
	n := 0
	for i := 0; i < len(desc); {
		if end := matchDesc(desc, i); end > i {
			n++
			i = end
		} else {
			i++
		}
	}
	return n
}

// matchDesc returns the end of the descriptor match at i, or i.
func matchDesc(d string, i int) int {
	j := i
	for j < len(d) && d[j] == '[' {
		j++
	}
	if j == len(d) {
		return i
	}
	switch d[j] {
	case 'V', 'Z', 'B', 'C', 'D', 'F', 'I', 'J', 'S':
		return j + 1
	case 'L':
		if end := matchClass(d, j+1); end > 0 {
			return end
		}
	}
	return i
}

// matchClass matches ident(/ident)*; at i and returns its end, or 0.
func matchClass(d string, i int) int {
	for {
		if i >= len(d) || !identStart(d[i]) {
			return 0
		}
		i++
		for i < len(d) && (identStart(d[i]) || d[i] >= '0' && d[i] <= '9') {
			i++
		}
		if i >= len(d) {
			return 0
		}
		switch d[i] {
		case ';':
			return i + 1
		case '/':
			i++
		default:
			return 0
		}
	}
}

func identStart(c byte) bool {
	return c == '_' || c == '$' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// parseTimeout reads milliseconds, allocation-free; anything but a positive
// decimal number gives 0.
func parseTimeout(s string) time.Duration {
	if s == "" || len(s) > 12 {
		return 0
	}
	var ms int64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0
		}
		ms = ms*10 + int64(c-'0')
	}
	return time.Duration(ms) * time.Millisecond
}

// lookup returns the index of attachment key, an exact match first, then a
// case-insensitive one; -1 if none.
func (f *Frame) lookup(key string) int {
	for i := range f.Attachments {
		if f.Attachments[i].Key == key {
			return i
		}
	}
	for i := range f.Attachments {
		if strings.EqualFold(f.Attachments[i].Key, key) {
			return i
		}
	}
	return -1
}

// attachment returns the text of attachment key, "" if none.
func (f *Frame) attachment(key string) string {
	if i := f.lookup(key); i >= 0 && f.Attachments[i].Text {
		return f.Attachments[i].Value
	}
	return ""
}

// headers is the api.HeaderMap view of a Frame.
type headers Frame

func (h *headers) Get(key string) (string, bool) {
	f := (*Frame)(h)
	if !f.parsed {
		return "", false
	}
	switch {
	case key == ":authority" || strings.EqualFold(key, ":authority"):
		return f.Path, true
	case key == ":path" || strings.EqualFold(key, ":path"):
		return f.Method, true
	}
	if i := f.lookup(key); i >= 0 {
		a := &f.Attachments[i]
		return a.Value, a.Text
	}
	if strings.EqualFold(key, "version") && f.Version != "" {
		return f.Version, true
	}
	return "", false
}

func (h *headers) Range(fn func(key, value string) bool) {
	if !h.parsed {
		return
	}
	for i := range h.Attachments {
		a := &h.Attachments[i]
		if a.Text && !fn(a.Key, a.Value) {
			return
		}
	}
}

func (h *headers) Set(key, value string) {
	f := (*Frame)(h)
	if !f.mutable(key) {
		return
	}
	first := -1
	for i := range f.Attachments {
		if strings.EqualFold(f.Attachments[i].Key, key) {
			if f.Attachments[i].kind == kindComplex {
				return
			}
			if first < 0 {
				first = i
			}
		}
	}
	if first < 0 {
		f.Attachments = append(f.Attachments, Attachment{Key: key, Value: value, Text: true, start: -1})
	} else {
		f.Attachments[first] = Attachment{Key: f.Attachments[first].Key, Value: value, Text: true, start: -1}
		f.removeFold(key, first+1)
	}
	f.changed(key)
}

func (h *headers) Add(key, value string) { h.Set(key, value) }

func (h *headers) Del(key string) {
	f := (*Frame)(h)
	if !f.mutable(key) {
		return
	}
	found := false
	for i := range f.Attachments {
		if strings.EqualFold(f.Attachments[i].Key, key) {
			if f.Attachments[i].kind == kindComplex {
				return
			}
			found = true
		}
	}
	if found {
		f.removeFold(key, 0)
		f.changed(key)
	}
}

// mutable reports whether attachments may be changed under key.
func (f *Frame) mutable(key string) bool {
	return f.parsed && key != "" && key[0] != ':'
}

// removeFold deletes the attachments matching key at or after index from.
func (f *Frame) removeFold(key string, from int) {
	out := f.Attachments[:from]
	for _, a := range f.Attachments[from:] {
		if !strings.EqualFold(a.Key, key) {
			out = append(out, a)
		}
	}
	clear(f.Attachments[len(out):])
	f.Attachments = out
}

// changed marks the attachments for re-encoding and refreshes what is
// derived from key.
func (f *Frame) changed(key string) {
	f.dirty = true
	if strings.EqualFold(key, "timeout") {
		f.timeout = parseTimeout(f.attachment("timeout"))
	}
}
