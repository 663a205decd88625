package app

import (
	udpaannotations "github.com/cncf/xds/go/udpa/annotations"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
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

func redactMsg(m protoreflect.Message) { rewriteMessages(m, redactField) }

// redactField blanks fd in m when it is sensitive.
func redactField(m protoreflect.Message, fd protoreflect.FieldDescriptor) bool {
	if !sensitive(fd) {
		return false
	}
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

func sensitive(fd protoreflect.FieldDescriptor) bool {
	s, _ := proto.GetExtension(fd.Options(), udpaannotations.E_Sensitive).(bool)
	return s
}
