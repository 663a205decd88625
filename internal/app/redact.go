package app

import (
	udpaannotations "github.com/cncf/xds/go/udpa/annotations"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// redacted replaces sensitive strings and bytes in dumps, as in Envoy.
const redacted = "[redacted]"

// redact returns a copy of m with every field annotated
// udpa.annotations.sensitive (TLS private keys, passwords, session ticket
// keys) redacted, inside typed_config Anys too, so /config_dump never
// shows key material.
func redact(m proto.Message) proto.Message {
	c := proto.Clone(m)
	redactMsg(c.ProtoReflect())
	return c
}

func redactMsg(m protoreflect.Message) {
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err != nil {
			return // a type not linked in: no schema to find sensitive fields
		}
		redactMsg(inner.ProtoReflect())
		if b, err := (proto.MarshalOptions{Deterministic: true}).Marshal(inner); err == nil {
			a.Value = b
		}
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if sensitive(fd) {
			switch {
			case fd.IsList() || fd.IsMap():
				m.Clear(fd)
			case fd.Kind() == protoreflect.StringKind:
				m.Set(fd, protoreflect.ValueOfString(redacted))
			case fd.Kind() == protoreflect.BytesKind:
				m.Set(fd, protoreflect.ValueOfBytes([]byte(redacted)))
			case fd.Message() != nil:
				m.Set(fd, protoreflect.ValueOfMessage(m.NewField(fd).Message()))
			default:
				m.Clear(fd)
			}
			return true
		}
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				redactMsg(l.Get(i).Message())
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				redactMsg(mv.Message())
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			redactMsg(v.Message())
		}
		return true
	})
}

func sensitive(fd protoreflect.FieldDescriptor) bool {
	s, _ := proto.GetExtension(fd.Options(), udpaannotations.E_Sensitive).(bool)
	return s
}
