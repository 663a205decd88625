package accesslog

import (
	"encoding/json"
	"fmt"
	"sort"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/structpb"
)

// jsonKind is the kind of a JSON format value.
type jsonKind uint8

const (
	jsonFormat  jsonKind = iota // a format string
	jsonObject                  // a nested object
	jsonLiteral                 // a constant (number, bool, null)
)

// jsonValue is one compiled value of a JSON format.
type jsonValue struct {
	kind   jsonKind
	segs   []segment   // jsonFormat
	fields []jsonField // jsonObject, sorted by key
	lit    []byte      // jsonLiteral, already encoded
}

// jsonField is one key of a JSON object; key is encoded with its quotes
// and the colon.
type jsonField struct {
	key   []byte
	value jsonValue
}

// CompileJSON compiles Envoy's json_format: each value is a format string.
// Lines are JSON objects with sorted keys, one per line. A value that is a
// single command operator is typed: numbers (RESPONSE_CODE, DURATION,
// BYTES_*) are JSON numbers and an unavailable value is null; other values
// are strings with "-" for what is unavailable.
func CompileJSON(fields map[string]string) (*Format, error) {
	m := make(map[string]any, len(fields))
	for k, v := range fields {
		m[k] = v
	}
	root, err := compileJSONObject(m, "json_format")
	if err != nil {
		return nil, err
	}
	return &Format{json: &root}, nil
}

// compileJSONStruct compiles a json_format given as a protobuf Struct,
// which may nest objects and hold constant numbers and booleans.
func compileJSONStruct(s *structpb.Struct) (*Format, error) {
	root, err := compileJSONObject(s.AsMap(), "json_format")
	if err != nil {
		return nil, err
	}
	return &Format{json: &root}, nil
}

func compileJSONObject(m map[string]any, path string) (jsonValue, error) {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	obj := jsonValue{kind: jsonObject}
	for _, k := range keys {
		fieldPath := path + "." + k
		var v jsonValue
		switch x := m[k].(type) {
		case string:
			segs, err := parseSegments(x)
			if err != nil {
				return jsonValue{}, fmt.Errorf("accesslog: %s: %w", fieldPath, err)
			}
			v = jsonValue{kind: jsonFormat, segs: segs}
		case map[string]any:
			sub, err := compileJSONObject(x, fieldPath)
			if err != nil {
				return jsonValue{}, err
			}
			v = sub
		case nil, bool, float64:
			b, err := json.Marshal(x)
			if err != nil {
				return jsonValue{}, fmt.Errorf("accesslog: %s: %w", fieldPath, err)
			}
			v = jsonValue{kind: jsonLiteral, lit: b}
		default:
			return jsonValue{}, fmt.Errorf("accesslog: %s: unsupported value type %T", fieldPath, x)
		}
		key := appendJSONString([]byte{'"'}, k)
		key = append(key, '"', ':')
		obj.fields = append(obj.fields, jsonField{key: key, value: v})
	}
	return obj, nil
}

// appendJSON appends an object; with omitEmpty, fields whose value is
// null are left out.
func (v *jsonValue) appendJSON(dst []byte, e *Entry, omitEmpty bool) []byte {
	dst = append(dst, '{')
	wrote := false
	for i := range v.fields {
		f := &v.fields[i]
		mark := len(dst)
		if wrote {
			dst = append(dst, ',')
		}
		dst = append(dst, f.key...)
		var ok bool
		dst, ok = f.value.appendValue(dst, e, omitEmpty)
		if !ok && omitEmpty {
			dst = dst[:mark]
			continue
		}
		wrote = true
	}
	return append(dst, '}')
}

// appendValue appends one value; ok is false when it wrote null.
func (v *jsonValue) appendValue(dst []byte, e *Entry, omitEmpty bool) ([]byte, bool) {
	switch v.kind {
	case jsonObject:
		return v.appendJSON(dst, e, omitEmpty), true
	case jsonLiteral:
		return append(dst, v.lit...), string(v.lit) != "null"
	}
	if len(v.segs) == 1 && v.segs[0].op != opLiteral {
		s := &v.segs[0]
		if s.numeric {
			out, ok := s.appendValue(dst, e, escJSON)
			if !ok {
				return append(dst, "null"...), false
			}
			return out, true
		}
		mark := len(dst)
		out, ok := s.appendValue(append(dst, '"'), e, escJSON)
		if !ok {
			return append(dst[:mark], "null"...), false
		}
		return append(out, '"'), true
	}
	dst = append(dst, '"')
	for i := range v.segs {
		s := &v.segs[i]
		if s.op == opLiteral {
			dst = appendJSONString(dst, s.lit)
			continue
		}
		var ok bool
		dst, ok = s.appendValue(dst, e, escJSON)
		if !ok && !omitEmpty {
			dst = append(dst, '-')
		}
	}
	return append(dst, '"'), true
}

// appendJSONString appends the contents of a JSON string (no quotes).
// Invalid UTF-8 becomes U+FFFD.
func appendJSONString(dst []byte, s string) []byte {
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != 0x7f {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	return append(dst, s[start:]...)
}
