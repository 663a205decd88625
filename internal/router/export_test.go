package router

import (
	"testing"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
)

func TestCompileHeaderMatchers(t *testing.T) {
	hm, err := CompileHeaderMatchers([]*routev3.HeaderMatcher{
		{Name: "X-A", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}},
		{Name: "x-b", HeaderMatchSpecifier: &routev3.HeaderMatcher_PrefixMatch{PrefixMatch: "v"}, InvertMatch: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		h    *hdrs
		want bool
	}{
		{req("x-a", "1", "x-b", "w"), true},
		{req("x-a", "1", "x-b", "v1"), false},
		{req("x-b", "w"), false},
	} {
		if got := hm.Match(tt.h); got != tt.want {
			t.Errorf("Match(%v) = %v", tt.h.kv, got)
		}
	}
	if empty, _ := CompileHeaderMatchers(nil); !empty.Match(req()) {
		t.Error("empty matcher list must match")
	}
	_, err = CompileHeaderMatchers([]*routev3.HeaderMatcher{{Name: "a"}, {Name: ""}})
	if err == nil || err.Error() != "headers[1].name: must not be empty" {
		t.Errorf("error = %v", err)
	}
}

func TestCompileHeaderMutations(t *testing.T) {
	ops, err := CompileHeaderMutations("mutations.request_mutations", []HeaderMutation{
		{Add: &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: "x-a", Value: "1"}}},
		{Remove: "x-a"},
		{Add: &corev3.HeaderValueOption{Header: &corev3.HeaderValue{Key: "x-b", Value: "2"}, AppendAction: corev3.HeaderValueOption_ADD_IF_ABSENT}},
	})
	if err != nil {
		t.Fatal(err)
	}
	h := req("x-b", "0")
	ops.Apply(h, nil)
	if _, ok := h.Get("x-a"); ok || len(h.values("x-b")) != 1 {
		t.Errorf("mutations applied out of order: %v", h.kv)
	}
	_, err = CompileHeaderMutations("m", []HeaderMutation{{Remove: ":path"}})
	if err == nil || err.Error() != `m[0].remove[0]: header ":path" may not be modified (pseudo-headers and host are reserved)` {
		t.Errorf("error = %v", err)
	}
}
