package bolt

import (
	"encoding/binary"
	"unsafe"

	"github.com/weftmesh/weft/api"
)

// Header is a Bolt header map: the ordered (key, value) string pairs that
// SOFARPC's SimpleMapSerializer writes as (int32 length, bytes) twice per
// entry. It implements api.HeaderMap over the raw keys: keys compare
// case-insensitively (ASCII), and since the wire form is a map (a Java peer
// keeps the last of repeated keys) every key appears at most once: Add of a
// present key replaces it like Set. Keys starting with ':' are reserved for
// pseudo-headers and ignored by Set and Add.
//
// Validity: decoded keys and values view the Frame's buffer (see Frame).
// The zero Header is empty and ready to use.
type Header struct {
	fields []field
}

type field struct {
	key, value string
}

var _ api.HeaderMap = (*Header)(nil)

// Past this capacity a reset drops the entry slice.
const keepFieldsCap = 256

func (h *Header) reset() {
	if cap(h.fields) > keepFieldsCap {
		h.fields = nil
	}
	clear(h.fields)
	h.fields = h.fields[:0]
}

// view returns b[i:j] as a string sharing the bytes, which saves an
// allocation per key and value.
func view(b []byte, i, j int) string {
	if i >= j {
		return ""
	}
	return unsafe.String(&b[i], j-i)
}

// equalFold reports whether a and b are equal under ASCII case folding.
func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// Len returns the number of entries.
func (h *Header) Len() int { return len(h.fields) }

// index returns the position of key (case-insensitive), or -1.
func (h *Header) index(key string) int {
	for i := range h.fields {
		if equalFold(h.fields[i].key, key) {
			return i
		}
	}
	return -1
}

// Get returns the value of key.
func (h *Header) Get(key string) (string, bool) {
	if i := h.index(key); i >= 0 {
		return h.fields[i].value, true
	}
	return "", false
}

// getExact returns the value of key spelled exactly so, as SOFARPC's
// HashMap lookups see it.
func (h *Header) getExact(key string) (string, bool) {
	for i := range h.fields {
		if h.fields[i].key == key {
			return h.fields[i].value, true
		}
	}
	return "", false
}

// servicesAgree reports whether the service and sofa_head_target_service
// keys, when both present, hold the same value.
func (h *Header) servicesAgree() bool {
	svc, ok1 := h.getExact(KeyService)
	tgt, ok2 := h.getExact(KeyTargetService)
	return !ok1 || !ok2 || svc == tgt
}

// Set replaces the value of key, keeping the key's position and spelling,
// or appends the entry. Keys starting with ':' are ignored.
func (h *Header) Set(key, value string) {
	if len(key) > 0 && key[0] == ':' {
		return
	}
	h.set(key, value, false)
}

// set replaces or appends key; with respell, an existing entry takes key's
// spelling (routing keys must match SOFARPC's exact-case lookups).
func (h *Header) set(key, value string, respell bool) {
	i := h.index(key)
	if i < 0 {
		h.fields = append(h.fields, field{key, value})
		return
	}
	if respell {
		h.fields[i].key = key
	}
	h.fields[i].value = value
	h.del(key, i+1) // only Header values built by hand can hold more
}

// Add sets key to value: a Bolt header map holds one value per key, so Add
// of a present key replaces it (a Java peer would keep only the last).
func (h *Header) Add(key, value string) { h.Set(key, value) }

// Del removes key.
func (h *Header) Del(key string) { h.del(key, 0) }

// del removes the entries named key at index from and after, keeping order.
func (h *Header) del(key string, from int) {
	j := from
	for i := from; i < len(h.fields); i++ {
		if equalFold(h.fields[i].key, key) {
			continue
		}
		h.fields[j] = h.fields[i]
		j++
	}
	clear(h.fields[j:])
	h.fields = h.fields[:j]
}

// Range calls fn for each entry in order until fn returns false.
func (h *Header) Range(fn func(key, value string) bool) {
	for i := range h.fields {
		if !fn(h.fields[i].key, h.fields[i].value) {
			return
		}
	}
}

// wireLen returns the encoded length of the map.
func (h *Header) wireLen() int {
	n := 0
	for i := range h.fields {
		n += 8 + len(h.fields[i].key) + len(h.fields[i].value)
	}
	return n
}

// appendTo appends the encoded map.
func (h *Header) appendTo(dst []byte) []byte {
	for i := range h.fields {
		f := &h.fields[i]
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(f.key)))
		dst = append(dst, f.key...)
		dst = binary.BigEndian.AppendUint32(dst, uint32(len(f.value)))
		dst = append(dst, f.value...)
	}
	return dst
}

// parse replaces h's entries with those encoded in p, as views of p.
func (h *Header) parse(p []byte, maxEntries int) error {
	h.reset()
	for i := 0; i < len(p); {
		ks, ke, err := item(p, i, true)
		if err != nil {
			return err
		}
		vs, ve, err := item(p, ke, false)
		if err != nil {
			return err
		}
		i = ve
		key := view(p, ks, ke)
		if len(key) > 0 && key[0] == ':' {
			return malformed("header key starts with ':'")
		}
		if len(h.fields) == maxEntries {
			return tooLarge("header map entries")
		}
		// A repeated key means one thing to the proxy (first wins) and
		// another to a Java peer (last wins): refuse it.
		if h.index(key) >= 0 {
			return malformed("duplicate header key")
		}
		h.fields = append(h.fields, field{key, view(p, vs, ve)})
	}
	return nil
}

// item reads one (int32 length, bytes) item of a header map at p[i:] and
// returns the bounds of its bytes.
func item(p []byte, i int, key bool) (start, end int, err error) {
	if len(p)-i < 4 {
		return 0, 0, malformed("header map entry truncated")
	}
	l := int32(binary.BigEndian.Uint32(p[i:]))
	i += 4
	switch {
	case l < 0 && key:
		// SOFARPC writes -1 only for null, and skips null keys and values.
		return 0, 0, malformed("header key length negative")
	case l < 0:
		return 0, 0, malformed("header value length negative")
	case int64(l) > int64(len(p)-i) && key:
		return 0, 0, malformed("header key overruns header map")
	case int64(l) > int64(len(p)-i):
		return 0, 0, malformed("header value overruns header map")
	}
	return i, i + int(l), nil
}

// routeHeaders is the api.HeaderMap that Frame.Headers returns: the raw map
// plus the unified routing keys. A conversion of *Frame, so it costs no
// allocation.
type routeHeaders Frame

// authority returns the service unique name "interface:version[:uniqueId]":
// sofa_head_target_service, else service (exact keys, as SOFARPC reads
// them). Get(":authority") is its interface part.
func (r *routeHeaders) authority() (string, bool) {
	if v, ok := r.Header.getExact(KeyTargetService); ok {
		return v, true
	}
	return r.Header.getExact(KeyService)
}

// serviceParts splits a unique name "interface:version[:uniqueId]".
func serviceParts(s string) (version, group string) {
	i := indexByte(s, ':')
	if i < 0 {
		return "", ""
	}
	rest := s[i+1:]
	if j := indexByte(rest, ':'); j >= 0 {
		return rest[:j], rest[j+1:]
	}
	return rest, ""
}

func indexByte(s string, c byte) int {
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			return i
		}
	}
	return -1
}

// Get returns the value of key: ":authority" is the interface part of the
// service unique name (the text before its first ':'), so that a Bolt and a
// Dubbo request for one service route alike; ":path" is the method;
// "version" and "group" fall back to the second and third parts of the
// service name when the map has no such key; other pseudo-headers are
// absent, and every other key, "service" and "sofa_head_target_service"
// included (the whole unique name), is looked up in the raw map.
func (r *routeHeaders) Get(key string) (string, bool) {
	switch key {
	case ":authority":
		svc, ok := r.authority()
		if i := indexByte(svc, ':'); i >= 0 {
			svc = svc[:i]
		}
		return svc, ok
	case ":path":
		return r.Header.getExact(KeyMethodName)
	}
	if len(key) > 0 && key[0] == ':' {
		return "", false
	}
	if v, ok := r.Header.Get(key); ok {
		return v, true
	}
	if equalFold(key, "version") || equalFold(key, "group") {
		svc, ok := r.authority()
		if !ok {
			return "", false
		}
		ver, grp := serviceParts(svc)
		if equalFold(key, "version") {
			return ver, ver != ""
		}
		return grp, grp != ""
	}
	return "", false
}

// Set sets key. ":authority" replaces the interface part of the service
// name and keeps its ":version[:uniqueId]" suffix; a value that itself
// holds a ':' is a whole unique name and replaces the name. Either service
// key sets the name to exactly value. All three write both service keys,
// which SOFARPC reads interchangeably and Decode requires to agree. ":path"
// sets sofa_head_method_name; other pseudo-headers are ignored. The content
// is not touched: a hessian SofaRequest also names the service and method
// in its body.
func (r *routeHeaders) Set(key, value string) {
	switch {
	case key == ":authority":
		// The interface changes; version and uniqueId stay. A value with
		// its own suffix replaces the whole name: appending the old suffix
		// would add parts, and more on every Set.
		if indexByte(value, ':') < 0 {
			if svc, ok := r.authority(); ok {
				if i := indexByte(svc, ':'); i >= 0 {
					value += svc[i:]
				}
			}
		}
		r.Header.set(KeyService, value, true)
		r.Header.set(KeyTargetService, value, true)
	case equalFold(key, KeyService) || equalFold(key, KeyTargetService):
		r.Header.set(KeyService, value, true)
		r.Header.set(KeyTargetService, value, true)
	case key == ":path":
		r.Header.set(KeyMethodName, value, true)
	default:
		r.Header.Set(key, value)
	}
}

// Add is Set: a Bolt header map holds one value per key.
func (r *routeHeaders) Add(key, value string) { r.Set(key, value) }

// Del removes key; ":authority" removes both service keys, ":path" the
// method key.
func (r *routeHeaders) Del(key string) {
	switch key {
	case ":authority":
		r.Header.Del(KeyService)
		r.Header.Del(KeyTargetService)
	case ":path":
		r.Header.Del(KeyMethodName)
	default:
		if len(key) == 0 || key[0] != ':' {
			r.Header.Del(key)
		}
	}
}

// Range calls fn for each raw header map entry in order until fn returns
// false; the pseudo-headers are not included.
func (r *routeHeaders) Range(fn func(key, value string) bool) { r.Header.Range(fn) }
