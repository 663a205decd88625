package config

import (
	"strings"
	"unicode"

	"google.golang.org/protobuf/reflect/protoreflect"
)

// pgvError is the shape of every protoc-gen-validate error.
type pgvError interface {
	Field() string
	Reason() string
	Cause() error
}

type multiError interface{ AllErrors() []error }

// flattenPGV turns a tree of generated validation errors into one
// FieldError per leaf, with snake_case proto paths such as
// static_resources.listeners[0].address.socket_address.port_value.
func flattenPGV(path string, err error) []FieldError {
	if err == nil {
		return nil
	}
	if m, ok := err.(multiError); ok {
		var out []FieldError
		for _, e := range m.AllErrors() {
			out = append(out, flattenPGV(path, e)...)
		}
		return out
	}
	if p, ok := err.(pgvError); ok {
		sub := join(path, snakePath(p.Field()))
		if c := p.Cause(); c != nil {
			return flattenPGV(sub, c)
		}
		return []FieldError{{Path: sub, Msg: p.Reason()}}
	}
	return []FieldError{{Path: path, Msg: err.Error()}}
}

// snakePath converts a generated Go field path ("StaticResources",
// "Listeners[0]") to the proto field name form.
func snakePath(f string) string {
	var b strings.Builder
	inBracket := false
	for i, r := range f {
		switch {
		case r == '[':
			inBracket = true
		case r == ']':
			inBracket = false
		case !inBracket && unicode.IsUpper(r):
			if i > 0 && f[i-1] != '.' && f[i-1] != ']' {
				b.WriteByte('_')
			}
			b.WriteRune(unicode.ToLower(r))
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

func protoreflectName(s string) protoreflect.FullName { return protoreflect.FullName(s) }
