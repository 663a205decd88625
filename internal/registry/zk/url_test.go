package zk

import (
	"net/url"
	"testing"

	"github.com/weftmesh/weft/internal/registry"
)

func TestDubboEncode(t *testing.T) {
	for in, want := range map[string]string{
		"com.foo.EchoService":  "com.foo.EchoService",
		"com.foo.Outer$Inner":  "com.foo.Outer%24Inner",
		"a b*c~d-e_f":          "a+b*c%7Ed-e_f",
		"dubbo://h:1/p?a=1&b":  "dubbo%3A%2F%2Fh%3A1%2Fp%3Fa%3D1%26b",
		"é":                    "%C3%A9",
		"methods=echo,ping%41": "methods%3Decho%2Cping%2541",
	} {
		if got := dubboEncode(in); got != want {
			t.Errorf("dubboEncode(%q) = %q, want %q", in, got, want)
		}
		if back, err := url.QueryUnescape(dubboEncode(in)); err != nil || back != in {
			t.Errorf("QueryUnescape(dubboEncode(%q)) = %q, %v", in, back, err)
		}
	}
}

func TestURLRoundTrip(t *testing.T) {
	for _, inst := range []registry.Instance{
		{Service: "com.foo.EchoService", Address: "10.0.0.1:20880", Protocol: "dubbo",
			Metadata: map[string]string{"version": "1.0.0", "group": "g1", "methods": "echo,ping", "meshed": "true", "unit": "u1"}},
		{Service: "com.foo.Outer$Inner", Address: "[::1]:12200", Protocol: "bolt",
			Metadata: map[string]string{"odd": "a&b=c%d+e f#g?h", "k=&%": "v", "path": "ctx/com.foo.Outer$Inner"}},
		{Service: "s", Address: "h.example:1", Protocol: "tri"},
	} {
		u := providerURL(inst, "weft", "1700000000000")
		got, err := decodeNode(inst.Service, dubboEncode(u))
		if err != nil {
			t.Fatalf("%s: %v", u, err)
		}
		if got.Service != inst.Service || got.Key() != inst.Key() {
			t.Errorf("%s: got %+v", u, got)
		}
		want := map[string]string{"interface": inst.Service, "side": "provider", "application": "weft", "timestamp": "1700000000000", "anyhost": "false"}
		for k, v := range inst.Metadata {
			want[k] = v
		}
		if len(got.Metadata) != len(want) {
			t.Errorf("%s: metadata %v, want %v", u, got.Metadata, want)
		}
		for k, v := range want {
			if got.Metadata[k] != v {
				t.Errorf("%s: metadata[%q] = %q, want %q", u, k, got.Metadata[k], v)
			}
		}
	}
}

func TestParseDubboURLs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		addr string
		md   map[string]string
	}{
		{"dubbo://127.0.0.1:20880/com.foo.Echo?anyhost=true&methods=a,b&version=1.0.0&group=g1",
			"127.0.0.1:20880", map[string]string{"anyhost": "true", "methods": "a,b", "version": "1.0.0", "group": "g1"}},
		// Raw values as Dubbo writes them: '+' and a stray '%' stay.
		{"dubbo://u:p@10.0.0.1:1/com.foo.Echo?x=a+b&y=50%&flag&z=1=2",
			"10.0.0.1:1", map[string]string{"x": "a+b", "y": "50%", "flag": "flag", "z": "1=2"}},
		{"tri://[fe80::1]:50051/ctx/com.foo.Echo", "[fe80::1]:50051", map[string]string{"path": "ctx/com.foo.Echo"}},
		{"dubbo://h:2", "h:2", map[string]string{}},
	} {
		got, err := parseProviderURL("com.foo.Echo", tc.in)
		if err != nil {
			t.Errorf("%s: %v", tc.in, err)
			continue
		}
		if got.Address != tc.addr || got.Service != "com.foo.Echo" || len(got.Metadata) != len(tc.md) {
			t.Errorf("%s: got %+v", tc.in, got)
		}
		for k, v := range tc.md {
			if got.Metadata[k] != v {
				t.Errorf("%s: %s=%q, want %q", tc.in, k, got.Metadata[k], v)
			}
		}
	}
	for _, bad := range []string{"", "x", "://h:1/a", "dubbo://h/a", "dubbo://:1/a", "dubbo://h:0/a",
		"dubbo://h:99999/a", "dubbo://h:p/a", "du bo://h:1/a", "dubbo://[::1/a"} {
		if got, err := parseProviderURL("a", bad); err == nil {
			t.Errorf("%q parsed: %+v", bad, got)
		}
	}
}
