package app

import (
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/anypb"
)

// rewriteMessages visits every message inside m, typed_config Anys
// included: an Any whose type is linked in is unpacked, visited and packed
// again deterministically (so equal configs get equal bytes). field, when
// not nil, sees each set field first and reports whether it took care of
// it (then its value is not descended into).
func rewriteMessages(m protoreflect.Message, field func(m protoreflect.Message, fd protoreflect.FieldDescriptor) bool) {
	if a, ok := m.Interface().(*anypb.Any); ok {
		inner, err := a.UnmarshalNew()
		if err != nil {
			return // a type not linked in: its bytes are all there is
		}
		rewriteMessages(inner.ProtoReflect(), field)
		if b, err := (proto.MarshalOptions{Deterministic: true}).Marshal(inner); err == nil {
			a.Value = b
		}
		return
	}
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		if field != nil && field(m, fd) {
			return true
		}
		switch {
		case fd.IsList() && fd.Message() != nil:
			l := v.List()
			for i := 0; i < l.Len(); i++ {
				rewriteMessages(l.Get(i).Message(), field)
			}
		case fd.IsMap() && fd.MapValue().Message() != nil:
			v.Map().Range(func(_ protoreflect.MapKey, mv protoreflect.Value) bool {
				rewriteMessages(mv.Message(), field)
				return true
			})
		case !fd.IsList() && !fd.IsMap() && fd.Message() != nil:
			rewriteMessages(v.Message(), field)
		}
		return true
	})
}
