package config

import (
	"bytes"
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
)

// protojsonPos matches the "(line L:C)" position protojson puts in its
// errors.
var protojsonPos = regexp.MustCompile(`\(line (\d+):(\d+)\)`)

var protoPrefix = regexp.MustCompile(`^proto:[\s\x{00a0}]*`)

// decodeError turns a protojson error on js into a FieldError whose path
// names the field (static_resources.clusters[0].connect_timeout) instead
// of a column in the YAML-to-JSON conversion the user never saw.
func decodeError(js []byte, err error) FieldError {
	// protobuf randomises the space after "proto:" (sometimes U+00A0).
	msg := protoPrefix.ReplaceAllString(err.Error(), "")
	m := protojsonPos.FindStringSubmatchIndex(msg)
	if m == nil {
		return FieldError{Msg: msg}
	}
	line, _ := strconv.Atoi(msg[m[2]:m[3]])
	col, _ := strconv.Atoi(msg[m[4]:m[5]])
	off := lineColOffset(js, line, col)
	path := pathAt(js, off)
	rest := strings.Trim(msg[:m[0]]+msg[m[1]:], " :\u00a0")
	return FieldError{Path: path, Msg: rest}
}

func lineColOffset(js []byte, line, col int) int {
	off := 0
	for l := 1; l < line; l++ {
		i := bytes.IndexByte(js[off:], '\n')
		if i < 0 {
			break
		}
		off += i + 1
	}
	return off + col - 1
}

// pathAt walks js with a tokenizer and returns the path of the value (or
// key) that starts at or just before byte offset off.
func pathAt(js []byte, off int) string {
	dec := json.NewDecoder(bytes.NewReader(js))
	type frame struct {
		obj   bool
		key   string
		index int
	}
	var stack []frame
	expectKey := false
	best := ""
	render := func() string {
		var b strings.Builder
		for _, f := range stack {
			if f.obj {
				if f.key == "" {
					continue
				}
				if b.Len() > 0 {
					b.WriteByte('.')
				}
				b.WriteString(toSnake(f.key))
			} else {
				b.WriteString("[" + strconv.Itoa(f.index) + "]")
			}
		}
		return b.String()
	}
	for {
		start := int(dec.InputOffset())
		if start > off {
			return best
		}
		tok, err := dec.Token()
		if err != nil {
			return best
		}
		top := len(stack) - 1
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				if top >= 0 && !stack[top].obj {
					stack[top].index++
				}
				best = render()
				stack = append(stack, frame{obj: t == '{', index: -1})
				expectKey = t == '{'
				continue
			case '}', ']':
				stack = stack[:top]
				if len(stack) > 0 && stack[len(stack)-1].obj {
					expectKey = true
				}
				continue
			}
		default:
			if top >= 0 && stack[top].obj && expectKey {
				stack[top].key, _ = t.(string)
				best = render()
				expectKey = false
				continue
			}
			if top >= 0 && !stack[top].obj {
				stack[top].index++
			}
			best = render()
			if top >= 0 && stack[top].obj {
				expectKey = true
			}
		}
	}
}

// toSnake turns a protojson camelCase name into the proto field name.
func toSnake(s string) string {
	if strings.ContainsAny(s, "_@") || strings.ToLower(s) == s {
		return s
	}
	return snakePath(strings.ToUpper(s[:1]) + s[1:])
}
