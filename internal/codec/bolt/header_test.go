package bolt

import (
	"testing"

	"github.com/weftmesh/weft/api"
)

func TestHeadersGet(t *testing.T) {
	cases := []struct {
		name   string
		header []string
		key    string
		want   string
		ok     bool
	}{
		{"authority from target service", []string{"sofa_head_target_service", "a.B:1.0"}, ":authority", "a.B", true},
		{"authority from service", []string{"service", "a.C:2.0"}, ":authority", "a.C", true},
		{"authority both", []string{"service", "a.B:1.0", "sofa_head_target_service", "a.B:1.0"}, ":authority", "a.B", true},
		{"authority target wins", []string{"service", "a.B:1.0", "sofa_head_target_service", "a.C:1.0"}, ":authority", "a.C", true},
		{"authority drops uniqueId", []string{"service", "a.B:2.1:blue"}, ":authority", "a.B", true},
		{"authority without version", []string{"service", "a.B"}, ":authority", "a.B", true},
		{"authority empty interface", []string{"service", ":1.0"}, ":authority", "", true},
		{"authority empty name", []string{"service", ""}, ":authority", "", true},
		{"authority target exact case only", []string{"SOFA_HEAD_TARGET_SERVICE", "a.C:1.0", "service", "a.B:1.0"}, ":authority", "a.B", true},
		{"authority exact case only", []string{"SERVICE", "a.B:1.0"}, ":authority", "", false},
		{"authority absent", []string{"x", "y"}, ":authority", "", false},
		{"path", []string{"sofa_head_method_name", "sayHello"}, ":path", "sayHello", true},
		{"path absent", nil, ":path", "", false},
		{"version derived", []string{"service", "a.B:1.0"}, "version", "1.0", true},
		{"version derived with uniqueId", []string{"service", "a.B:2.1:blue"}, "version", "2.1", true},
		{"version case-insensitive", []string{"service", "a.B:2.1:blue"}, "Version", "2.1", true},
		{"group derived", []string{"service", "a.B:2.1:blue"}, "group", "blue", true},
		{"group absent", []string{"service", "a.B:2.1"}, "group", "", false},
		{"version no colon", []string{"service", "a.B"}, "version", "", false},
		{"version empty", []string{"service", "a.B:"}, "version", "", false},
		{"version raw key wins", []string{"service", "a.B:1.0", "version", "9"}, "version", "9", true},
		{"version no service", nil, "version", "", false},
		{"raw key", []string{"rpc_trace_context.sofaTraceId", "abc"}, "rpc_trace_context.sofaTraceId", "abc", true},
		{"raw key case-insensitive", []string{"Trace", "abc"}, "trace", "abc", true},
		{"raw empty value", []string{"k", ""}, "k", "", true},
		{"raw service key", []string{"service", "a.B:1.0"}, "service", "a.B:1.0", true},
		{"raw service key with uniqueId", []string{"service", "a.B:1.0:blue"}, "service", "a.B:1.0:blue", true},
		{"raw target service key", []string{"sofa_head_target_service", "a.B:1.0:blue"}, "sofa_head_target_service", "a.B:1.0:blue", true},
		{"group derived from target", []string{"sofa_head_target_service", "a.B:1.0:blue"}, "group", "blue", true},
		{"other pseudo", []string{"service", "a.B:1.0"}, ":method", "", false},
		{"status pseudo", nil, ":status", "", false},
		{"missing", []string{"a", "b"}, "c", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := Frame{Header: withHeader(tc.header...)}
			v, ok := f.Headers().Get(tc.key)
			if v != tc.want || ok != tc.ok {
				t.Fatalf("Get(%q) = %q, %v; want %q, %v", tc.key, v, ok, tc.want, tc.ok)
			}
		})
	}
}

func TestHeadersMutate(t *testing.T) {
	type op struct{ verb, key, value string }
	cases := []struct {
		name   string
		header []string
		ops    []op
		want   []string // raw entries afterwards
	}{
		{"set authority sets both keys", []string{"service", "a.B:1.0", "sofa_head_target_service", "a.B:1.0", "x", "1"},
			[]op{{"set", ":authority", "c.D"}},
			[]string{"service", "c.D:1.0", "sofa_head_target_service", "c.D:1.0", "x", "1"}},
		{"set authority adds missing", []string{"service", "a.B:1.0"},
			[]op{{"set", ":authority", "c.D"}},
			[]string{"service", "c.D:1.0", "sofa_head_target_service", "c.D:1.0"}},
		{"set authority keeps uniqueId", []string{"sofa_head_target_service", "a.B:1.0:blue"},
			[]op{{"set", ":authority", "c.D"}},
			[]string{"sofa_head_target_service", "c.D:1.0:blue", "service", "c.D:1.0:blue"}},
		{"set authority no suffix", []string{"service", "a.B"},
			[]op{{"set", ":authority", "c.D"}},
			[]string{"service", "c.D", "sofa_head_target_service", "c.D"}},
		{"set authority no name", []string{"x", "1"},
			[]op{{"set", ":authority", "c.D"}},
			[]string{"x", "1", "service", "c.D", "sofa_head_target_service", "c.D"}},
		{"set authority twice", []string{"service", "a.B:1.0:blue"},
			[]op{{"set", ":authority", "c.D"}, {"set", ":authority", "e.F"}},
			[]string{"service", "e.F:1.0:blue", "sofa_head_target_service", "e.F:1.0:blue"}},
		{"set authority whole name", []string{"service", "a.B:1.0:blue"},
			[]op{{"set", ":authority", "c.D:2.0"}, {"set", ":authority", "c.D:2.0"}},
			[]string{"service", "c.D:2.0", "sofa_head_target_service", "c.D:2.0"}},
		{"add authority keeps version", []string{"service", "a.B:1.0"},
			[]op{{"add", ":authority", "c.D"}},
			[]string{"service", "c.D:1.0", "sofa_head_target_service", "c.D:1.0"}},
		{"set authority respells", []string{"SERVICE", "a.B:1.0"},
			[]op{{"set", ":authority", "c.D:2.0"}},
			[]string{"service", "c.D:2.0", "sofa_head_target_service", "c.D:2.0"}},
		{"set authority ignores inexact key", []string{"SERVICE", "a.B:1.0"},
			[]op{{"set", ":authority", "c.D"}},
			[]string{"service", "c.D", "sofa_head_target_service", "c.D"}},
		{"set authority after del", []string{"service", "a.B:1.0"},
			[]op{{"del", ":authority", ""}, {"set", ":authority", "c.D"}},
			[]string{"service", "c.D", "sofa_head_target_service", "c.D"}},
		{"set path", []string{"sofa_head_method_name", "a"},
			[]op{{"set", ":path", "b"}},
			[]string{"sofa_head_method_name", "b"}},
		{"add path", nil,
			[]op{{"add", ":path", "b"}},
			[]string{"sofa_head_method_name", "b"}},
		{"del authority", []string{"service", "a.B:1.0", "k", "v", "sofa_head_target_service", "a.B:1.0"},
			[]op{{"del", ":authority", ""}},
			[]string{"k", "v"}},
		{"del path", []string{"sofa_head_method_name", "a", "k", "v"},
			[]op{{"del", ":path", ""}},
			[]string{"k", "v"}},
		{"other pseudo ignored", []string{"k", "v"},
			[]op{{"set", ":method", "x"}, {"add", ":status", "1"}, {"del", ":scheme", ""}},
			[]string{"k", "v"}},
		{"set raw keeps position and spelling", []string{"A", "1", "b", "2"},
			[]op{{"set", "a", "3"}},
			[]string{"A", "3", "b", "2"}},
		{"set raw appends", []string{"a", "1"},
			[]op{{"set", "rpc_trace_context.sofaRpcId", "0.1"}},
			[]string{"a", "1", "rpc_trace_context.sofaRpcId", "0.1"}},
		{"add present key replaces", []string{"a", "1"},
			[]op{{"add", "A", "2"}},
			[]string{"a", "2"}},
		{"del raw case-insensitive", []string{"a", "1", "b", "2", "c", "3"},
			[]op{{"del", "B", ""}},
			[]string{"a", "1", "c", "3"}},
		{"del missing", []string{"a", "1"},
			[]op{{"del", "z", ""}},
			[]string{"a", "1"}},
		{"set service syncs target", []string{"service", "a.B:1.0", "sofa_head_target_service", "a.B:1.0"},
			[]op{{"set", "service", "c.D:2.0"}},
			[]string{"service", "c.D:2.0", "sofa_head_target_service", "c.D:2.0"}},
		{"set service exact value", []string{"service", "a.B:1.0:blue"},
			[]op{{"set", "service", "c.D"}},
			[]string{"service", "c.D", "sofa_head_target_service", "c.D"}},
		{"set target service exact value", []string{"service", "a.B:1.0:blue"},
			[]op{{"set", "sofa_head_target_service", "c.D:2.0"}},
			[]string{"service", "c.D:2.0", "sofa_head_target_service", "c.D:2.0"}},
		{"add target service syncs service", []string{"Service", "a.B:1.0"},
			[]op{{"add", "SOFA_HEAD_TARGET_SERVICE", "c.D:2.0"}},
			[]string{"service", "c.D:2.0", "sofa_head_target_service", "c.D:2.0"}},
		{"del service keeps target", []string{"service", "a.B:1.0", "sofa_head_target_service", "a.B:1.0"},
			[]op{{"del", "service", ""}},
			[]string{"sofa_head_target_service", "a.B:1.0"}},
		{"set empty key", nil,
			[]op{{"set", "", "v"}},
			[]string{"", "v"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := Frame{Proto: 1, Type: TypeRequest, CmdCode: CmdRequest, Ver2: 1, Codec: 1, Header: withHeader(tc.header...)}
			h := f.Headers()
			for _, o := range tc.ops {
				switch o.verb {
				case "set":
					h.Set(o.key, o.value)
				case "add":
					h.Add(o.key, o.value)
				case "del":
					h.Del(o.key)
				}
			}
			checkEntries(t, pairs(h), tc.want)
			// The edit survives Encode and Decode.
			b, err := Encode(nil, &f)
			if err != nil {
				t.Fatal(err)
			}
			var g Frame
			if _, err := Decode(&g, b, Limits{}); err != nil {
				t.Fatalf("Decode of edited frame: %v", err)
			}
			checkEntries(t, pairs(g.Headers()), tc.want)
		})
	}
}

func checkEntries(t *testing.T, got [][2]string, want []string) {
	t.Helper()
	if len(got)*2 != len(want) {
		t.Fatalf("entries = %q, want %q", got, want)
	}
	for i := range got {
		if got[i][0] != want[2*i] || got[i][1] != want[2*i+1] {
			t.Fatalf("entries = %q, want %q", got, want)
		}
	}
}

// TestHeaderSetEncodeDecode rewrites the routing of a 16-header request, as a
// route filter would, and checks the peer sees the new routing.
func TestHeaderSetEncodeDecode(t *testing.T) {
	var c Codec
	f := c.NewFrame()
	if _, err := c.Decode(f, vector(t, "v1_request_pb16.hex")); err != nil {
		t.Fatal(err)
	}
	h := f.Headers()
	if v, _ := h.Get(":authority"); v != "com.weftmesh.demo.OrderService" {
		t.Fatalf(":authority = %q", v)
	}
	if v, _ := h.Get("service"); v != "com.weftmesh.demo.OrderService:1.0" {
		t.Fatalf("service = %q", v)
	}
	if v, _ := h.Get("version"); v != "1.0" {
		t.Fatalf("version = %q", v)
	}
	h.Set(":authority", "com.example.Other")
	h.Set(":path", "bye")
	h.Set("x-weft-route", "r1")
	h.Del("rpc_trace_context.Elastic")
	b, err := c.Encode(nil, f)
	if err != nil {
		t.Fatal(err)
	}
	g := c.NewFrame()
	if n, err := c.Decode(g, b); err != nil || n != len(b) {
		t.Fatalf("Decode = %d, %v", n, err)
	}
	gh := g.Headers()
	for _, tc := range []struct{ key, want string }{
		{":authority", "com.example.Other"},
		{"service", "com.example.Other:1.0"},
		{"sofa_head_target_service", "com.example.Other:1.0"},
		{":path", "bye"},
		{"version", "1.0"},
		{"x-weft-route", "r1"},
		{"rpc_trace_context.sofaCallerApp", "frontend"},
	} {
		if v, ok := gh.Get(tc.key); !ok || v != tc.want {
			t.Errorf("Get(%q) = %q, %v; want %q", tc.key, v, ok, tc.want)
		}
	}
	if _, ok := gh.Get("rpc_trace_context.Elastic"); ok {
		t.Error("deleted key survived")
	}
	if v, ok := gh.Get("group"); ok {
		t.Errorf("group = %q, want none", v)
	}
	if string(g.(*Frame).Content) != "\x0a\x01a" || g.RequestID() != 109 || g.Timeout().Milliseconds() != 100 {
		t.Error("content, id or timeout changed")
	}
}

// TestHeadersSetAuthorityKeepsVersionGroup checks that Set(":authority")
// moves a request to another interface and keeps the version and group it
// asked for, in the view and on the wire.
func TestHeadersSetAuthorityKeepsVersionGroup(t *testing.T) {
	for _, tc := range []struct {
		name       string
		header     []string
		value      string
		full       string // unique name afterwards
		ver, group string // "" for none
	}{
		{"version and group", []string{"service", "a.B:1.0:blue", "sofa_head_target_service", "a.B:1.0:blue"}, "c.D", "c.D:1.0:blue", "1.0", "blue"},
		{"target only", []string{"sofa_head_target_service", "a.B:2.0:canary"}, "c.D", "c.D:2.0:canary", "2.0", "canary"},
		{"version only", []string{"service", "a.B:1.0"}, "c.D", "c.D:1.0", "1.0", ""},
		{"empty version kept", []string{"service", "a.B::blue"}, "c.D", "c.D::blue", "", "blue"},
		{"group with colons kept", []string{"service", "a.B:1.0:u:v"}, "c.D", "c.D:1.0:u:v", "1.0", "u:v"},
		{"no suffix", []string{"service", "a.B"}, "c.D", "c.D", "", ""},
		{"no name", nil, "c.D", "c.D", "", ""},
		{"whole name replaces", []string{"service", "a.B:1.0:blue"}, "c.D:2.0", "c.D:2.0", "2.0", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := Frame{Proto: 1, Type: TypeRequest, CmdCode: CmdRequest, Ver2: 1, Codec: 1, Header: withHeader(tc.header...)}
			f.Headers().Set(":authority", tc.value)
			b, err := Encode(nil, &f)
			if err != nil {
				t.Fatal(err)
			}
			var g Frame
			if _, err := Decode(&g, b, Limits{}); err != nil {
				t.Fatalf("Decode of edited frame: %v", err)
			}
			iface := tc.full
			if i := indexByte(iface, ':'); i >= 0 {
				iface = iface[:i]
			}
			for _, h := range []api.HeaderMap{f.Headers(), g.Headers()} {
				for _, kv := range []struct {
					key, want string
					ok        bool
				}{
					{":authority", iface, true},
					{"service", tc.full, true},
					{"sofa_head_target_service", tc.full, true},
					{"version", tc.ver, tc.ver != ""},
					{"group", tc.group, tc.group != ""},
				} {
					if v, ok := h.Get(kv.key); v != kv.want || ok != kv.ok {
						t.Errorf("Get(%q) = %q, %v; want %q, %v", kv.key, v, ok, kv.want, kv.ok)
					}
				}
			}
		})
	}
}

func TestHeaderRangeStops(t *testing.T) {
	h := withHeader("a", "1", "b", "2", "c", "3")
	n := 0
	h.Range(func(k, v string) bool {
		n++
		return k != "b"
	})
	if n != 2 {
		t.Fatalf("Range visited %d entries after fn returned false at the 2nd", n)
	}
	if h.Len() != 3 {
		t.Fatalf("Len = %d", h.Len())
	}
	h.Set(":x", "y")
	h.Add(":x", "y")
	if h.Len() != 3 {
		t.Fatal("raw Header accepted a pseudo key")
	}
}

func TestServiceParts(t *testing.T) {
	for _, tc := range []struct{ in, ver, grp string }{
		{"a.B:1.0", "1.0", ""},
		{"a.B:1.0:u", "1.0", "u"},
		{"a.B:1.0:u:v", "1.0", "u:v"},
		{"a.B", "", ""},
		{"", "", ""},
		{":", "", ""},
	} {
		v, g := serviceParts(tc.in)
		if v != tc.ver || g != tc.grp {
			t.Errorf("serviceParts(%q) = %q, %q; want %q, %q", tc.in, v, g, tc.ver, tc.grp)
		}
	}
}
