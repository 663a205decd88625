package http1

import (
	"unsafe"

	"github.com/weftmesh/weft/api"
)

// Header is the ordered list of header fields of a message head. It
// implements api.HeaderMap: keys compare case-insensitively (ASCII) and
// names keep the case they were received or added with.
//
// Validity: the names and values a parsed Header returns (from Get, Range,
// and the string fields of RequestHead and ResponseHead) are not copies.
// They view the head's own byte buffer, which saves an allocation per field.
// They stay valid until the head is Reset or reused by the next
// Reader.ReadRequestHead/ReadResponseHead, after which their bytes change.
// Copy them (strings.Clone) to keep them longer, and never use them as map
// keys that outlive the message.
//
// The zero Header is empty and ready to use. A Header is not safe for
// concurrent use.
type Header struct {
	raw    []byte  // the head as received; parsed strings view it
	fields []field // in order, pseudo-headers never included
}

type field struct {
	name, value string
}

var _ api.HeaderMap = (*Header)(nil)

// Past these capacities a Reset drops the buffers, so one oversized head does
// not pin memory for the life of a keep-alive connection.
const (
	keepRawCap    = 16 << 10
	keepFieldsCap = 128
)

func (h *Header) reset() {
	if cap(h.raw) > keepRawCap {
		h.raw = nil
	}
	h.raw = h.raw[:0]
	if cap(h.fields) > keepFieldsCap {
		h.fields = nil
	}
	h.fields = h.fields[:0]
}

// Release drops the header's storage so an idle connection keeps none; the
// next parse allocates it again. Strings obtained earlier stay valid.
func (h *Header) Release() {
	h.raw = nil
	h.fields = nil
}

// view returns h.raw[i:j] as a string sharing the bytes.
func (h *Header) view(i, j int) string {
	if i >= j {
		return ""
	}
	return unsafe.String(&h.raw[i], j-i)
}

// Len returns the number of header fields.
func (h *Header) Len() int { return len(h.fields) }

// Get returns the first value of key.
func (h *Header) Get(key string) (string, bool) {
	for i := range h.fields {
		if equalFold(h.fields[i].name, key) {
			return h.fields[i].value, true
		}
	}
	return "", false
}

// Set replaces every value of key with value, keeping the position of the
// first one. A key that is not a valid field name (including pseudo-headers)
// or a value with control characters other than HTAB is ignored, so no
// header can inject lines into a serialized head.
func (h *Header) Set(key, value string) {
	if !validToken(key) || !validValue(value) {
		return
	}
	for i := range h.fields {
		if equalFold(h.fields[i].name, key) {
			h.fields[i].value = value
			h.del(key, i+1)
			return
		}
	}
	h.fields = append(h.fields, field{key, value})
}

// Add appends a value for key. Invalid keys and values are ignored as in Set.
func (h *Header) Add(key, value string) {
	if !validToken(key) || !validValue(value) {
		return
	}
	h.fields = append(h.fields, field{key, value})
}

// Del removes every value of key.
func (h *Header) Del(key string) { h.del(key, 0) }

// del removes the fields named key at index from and after, keeping order.
func (h *Header) del(key string, from int) {
	j := from
	for i := from; i < len(h.fields); i++ {
		if equalFold(h.fields[i].name, key) {
			continue
		}
		h.fields[j] = h.fields[i]
		j++
	}
	clear(h.fields[j:])
	h.fields = h.fields[:j]
}

// Range calls fn for each header field in order until fn returns false.
// Pseudo-headers are not included.
func (h *Header) Range(fn func(key, value string) bool) {
	for i := range h.fields {
		if !fn(h.fields[i].name, h.fields[i].value) {
			return
		}
	}
}

// hopByHop reports whether name is a hop-by-hop or framing field that
// AppendTo drops and, where needed, regenerates.
func hopByHop(name string) bool {
	switch len(name) {
	case 2:
		return isLowerFold(name, "te")
	case 6:
		return isLowerFold(name, "expect")
	case 7:
		return isLowerFold(name, "upgrade") || isLowerFold(name, "trailer")
	case 10:
		return isLowerFold(name, "connection") || isLowerFold(name, "keep-alive")
	case 14:
		return isLowerFold(name, "content-length")
	case 16:
		return isLowerFold(name, "proxy-connection")
	case 17:
		return isLowerFold(name, "transfer-encoding")
	}
	return false
}

// connListed reports whether name is an option of a Connection field, which
// makes it hop-by-hop too (RFC 9110 7.6.1). Host is never dropped this way:
// a client must not be able to strip the routing key from a forwarded request.
func (h *Header) connListed(name string) bool {
	if isLowerFold(name, "host") {
		return false
	}
	for i := range h.fields {
		f := &h.fields[i]
		if isLowerFold(f.name, "connection") {
			for s := f.value; s != ""; {
				var e string
				e, s = nextListElem(s)
				if equalFold(e, name) {
					return true
				}
			}
		}
	}
	return false
}

// appendFields appends the end-to-end fields as "Name: value\r\n" lines.
// connOpts says whether a Connection field named other fields to drop.
func (h *Header) appendFields(dst []byte, connOpts bool) []byte {
	for i := range h.fields {
		f := &h.fields[i]
		if hopByHop(f.name) || connOpts && h.connListed(f.name) {
			continue
		}
		dst = append(dst, f.name...)
		dst = append(dst, ": "...)
		dst = append(dst, f.value...)
		dst = append(dst, "\r\n"...)
	}
	return dst
}
