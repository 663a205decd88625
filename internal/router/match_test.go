package router

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

const domainsYAML = `
name: domains
virtual_hosts:
- name: exact
  domains: ["foo.com", "Bar.COM", "port.com:8080", "[::1]", "10.0.0.1"]
  routes: [{match: {prefix: "/"}, route: {cluster: c}}]
- name: exact-port-9000
  domains: ["foo.com:9000"]
  routes: [{match: {prefix: "/"}, route: {cluster: c}}]
- name: suffix-api
  domains: ["*.api.foo.com"]
  routes: [{match: {prefix: "/"}, route: {cluster: c}}]
- name: suffix
  domains: ["*.foo.com"]
  routes: [{match: {prefix: "/"}, route: {cluster: c}}]
- name: suffix-dash
  domains: ["*-bar.example.org"]
  routes: [{match: {prefix: "/"}, route: {cluster: c}}]
- name: suffix-port
  domains: ["*.port.com:8443"]
  routes: [{match: {prefix: "/"}, route: {cluster: c}}]
- name: prefix
  domains: ["foo.*"]
  routes: [{match: {prefix: "/"}, route: {cluster: c}}]
- name: prefix-long
  domains: ["foo.bar.*"]
  routes: [{match: {prefix: "/"}, route: {cluster: c}}]
- name: default
  domains: ["*"]
  routes: [{match: {prefix: "/"}, route: {cluster: c}}]
`

func TestVirtualHostDomains(t *testing.T) {
	tbl := mustCompile(t, domainsYAML)
	tests := []struct {
		host string
		want string
	}{
		{"foo.com", "exact"},
		{"FOO.Com", "exact"},
		{"bar.com", "exact"},
		{"foo.com:443", "exact"},            // no domain with :443, port ignored
		{"foo.com:9000", "exact-port-9000"}, // exact match with the port wins
		{"port.com:8080", "exact"},
		{"port.com", "default"}, // a domain with a port needs that port
		{"port.com:9999", "default"},
		{"[::1]", "exact"},
		{"[::1]:80", "exact"},
		{"10.0.0.1:15001", "exact"},
		{"x.api.foo.com", "suffix-api"}, // longest suffix first
		{"a.b.api.foo.com", "suffix-api"},
		{"api.foo.com", "suffix"},
		{"x.foo.com", "suffix"},
		{"X.FOO.COM:80", "suffix"},
		{".foo.com", "default"}, // the wildcard must match at least one byte
		{"baz-bar.example.org", "suffix-dash"},
		{"-bar.example.org", "default"},
		{"a.port.com:8443", "suffix-port"},
		{"a.port.com", "default"},
		{"foo.org", "prefix"},
		{"foo.bar.baz", "prefix-long"},
		{"foo.", "default"},
		{"foo.net:8080", "prefix"}, // prefix wildcards match without the port
		{"unknown.net", "default"},
		{"", "default"},
	}
	for _, tt := range tests {
		t.Run(tt.host, func(t *testing.T) {
			vh := tbl.VirtualHost(tt.host)
			got := ""
			if vh != nil {
				got = vh.Name
			}
			if got != tt.want {
				t.Errorf("VirtualHost(%q) = %q, want %q", tt.host, got, tt.want)
			}
		})
	}
}

func TestVirtualHostNoDefault(t *testing.T) {
	tbl := mustCompile(t, `
virtual_hosts:
- name: a
  domains: ["a.com"]
  routes: [{match: {prefix: "/"}, route: {cluster: c}}]
`)
	if vh := tbl.VirtualHost("b.com"); vh != nil {
		t.Fatalf("VirtualHost(b.com) = %q, want nil", vh.Name)
	}
	if r := tbl.Route(req(":authority", "b.com", ":path", "/")); r != nil {
		t.Fatalf("Route = %q, want nil", r.StatName)
	}
	if r := tbl.Route(req("host", "A.com", ":path", "/")); r == nil {
		t.Fatal("host header fallback: no route")
	}
}

func TestIgnorePortAndVhostHeader(t *testing.T) {
	tbl := mustCompile(t, `
ignore_port_in_host_matching: true
vhost_header: X-Vhost
virtual_hosts:
- name: a
  domains: ["a.com"]
  routes: [{match: {prefix: "/"}, route: {cluster: c}}]
- name: a-port
  domains: ["a.com:8080"]
  routes: [{match: {prefix: "/"}, route: {cluster: c}}]
`)
	if got := tbl.VirtualHost("a.com:8080").Name; got != "a" {
		t.Errorf("ignore_port_in_host_matching: got %q, want a", got)
	}
	r := tbl.Route(req(":authority", "zzz", "x-vhost", "A.COM", ":path", "/"))
	if r == nil || r.VirtualHost.Name != "a" {
		t.Errorf("vhost_header not used: %v", r)
	}
}

const matchYAML = `
name: match
virtual_hosts:
- name: v
  domains: ["*"]
  routes:
  - {name: exact, match: {path: "/exact"}, route: {cluster: c}}
  - {name: exact-ci, match: {path: "/Exact-CI", case_sensitive: false}, route: {cluster: c}}
  - {name: sep, match: {path_separated_prefix: "/sep"}, route: {cluster: c}}
  - {name: regex, match: {safe_regex: {regex: "/items/[0-9]+"}}, route: {cluster: c}}
  - {name: prefix-ci, match: {prefix: "/CI/", case_sensitive: false}, route: {cluster: c}}
  - {name: grpc, match: {prefix: "/pkg.Svc/", grpc: {}}, route: {cluster: c}}
  - {name: runtime, match: {prefix: "/rt", runtime_fraction: {default_value: {numerator: 0}}}, route: {cluster: c}}
  - {name: query-exact, match: {prefix: "/q", query_parameters: [{name: a, string_match: {exact: "1"}}]}, route: {cluster: c}}
  - {name: query-present, match: {prefix: "/q", query_parameters: [{name: b, present_match: true}]}, route: {cluster: c}}
  - {name: query-prefix-ic, match: {prefix: "/q", query_parameters: [{name: c, string_match: {prefix: "ab", ignore_case: true}}]}, route: {cluster: c}}
  - {name: api-v2, match: {prefix: "/api/v2"}, route: {cluster: c}}
  - {name: api, match: {prefix: "/api"}, route: {cluster: c}}
  - {name: api-v1-shadowed, match: {prefix: "/api/v1"}, route: {cluster: c}}
  - {name: catchall, match: {prefix: "/"}, route: {cluster: c}}
`

func TestRouteMatchKinds(t *testing.T) {
	tbl := mustCompile(t, matchYAML)
	tests := []struct {
		path  string
		extra []string
		want  string
	}{
		{"/exact", nil, "exact"},
		{"/exact?x=1", nil, "exact"},
		{"/exact#frag", nil, "exact"},
		{"/exact/", nil, "catchall"},
		{"/EXACT", nil, "catchall"},
		{"/exact-ci", nil, "exact-ci"},
		{"/EXACT-ci?z", nil, "exact-ci"},
		{"/sep", nil, "sep"},
		{"/sep/x", nil, "sep"},
		{"/sep?q", nil, "sep"},
		{"/separate", nil, "catchall"},
		{"/SEP", nil, "catchall"},
		{"/items/42", nil, "regex"},
		{"/items/42?a=b", nil, "regex"},
		{"/items/42x", nil, "catchall"}, // full match only
		{"/x/items/42", nil, "catchall"},
		{"/ci/a", nil, "prefix-ci"},
		{"/cI/A", nil, "prefix-ci"},
		{"/ci", nil, "catchall"},
		{"/pkg.Svc/Call", []string{"content-type", "application/grpc"}, "grpc"},
		{"/pkg.Svc/Call", []string{"content-type", "application/grpc+proto"}, "grpc"},
		{"/pkg.Svc/Call", []string{"content-type", "application/grpcx"}, "catchall"},
		{"/pkg.Svc/Call", nil, "catchall"},
		{"/rt", nil, "runtime"},
		{"/q?a=1", nil, "query-exact"},
		{"/q?z=0&a=1&a=2", nil, "query-exact"},
		{"/q?a=2&a=1", nil, "catchall"}, // first value counts
		{"/q?a=10", nil, "catchall"},
		{"/q?b", nil, "query-present"},
		{"/q?b=", nil, "query-present"},
		{"/q?bb=1", nil, "catchall"},
		{"/q?c=ABc", nil, "query-prefix-ic"},
		{"/q?c=xab", nil, "catchall"},
		{"/q#a=1", nil, "catchall"},
		{"/api/v2/x", nil, "api-v2"},
		{"/api/v1/x", nil, "api"}, // first match wins: /api shadows /api/v1
		{"/apix", nil, "api"},
		{"/", nil, "catchall"},
		{"", nil, ""}, // an empty :path matches no prefix but the empty one
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			h := req(append([]string{":authority", "x", ":path", tt.path}, tt.extra...)...)
			if got := routeName(tbl, h); got != tt.want {
				t.Errorf("route(%q) = %q, want %q", tt.path, got, tt.want)
			}
			if ref := linearRoute(tbl, h); ref != tbl.Route(h) {
				t.Errorf("radix tree and linear scan disagree on %q", tt.path)
			}
		})
	}
	if r := tbl.Route(req(":authority", "x")); r != nil {
		t.Errorf("pathless request matched %q", r.StatName)
	}
}

func TestHeaderMatchers(t *testing.T) {
	tbl := mustCompile(t, `
virtual_hosts:
- name: v
  domains: ["*"]
  routes:
  - {name: exact, match: {prefix: "/exact", headers: [{name: X-A, string_match: {exact: "Foo"}}]}, route: {cluster: c}}
  - {name: exact-ic, match: {prefix: "/exactic", headers: [{name: x-a, string_match: {exact: "Foo", ignore_case: true}}]}, route: {cluster: c}}
  - {name: prefix, match: {prefix: "/prefix", headers: [{name: x-a, string_match: {prefix: "ab"}}]}, route: {cluster: c}}
  - {name: suffix, match: {prefix: "/suffix", headers: [{name: x-a, string_match: {suffix: "yz", ignore_case: true}}]}, route: {cluster: c}}
  - {name: contains, match: {prefix: "/contains", headers: [{name: x-a, string_match: {contains: "MID", ignore_case: true}}]}, route: {cluster: c}}
  - {name: regex, match: {prefix: "/regex", headers: [{name: x-a, string_match: {safe_regex: {regex: "v[0-9]"}}}]}, route: {cluster: c}}
  - {name: legacy-regex, match: {prefix: "/lregex", headers: [{name: x-a, safe_regex_match: {regex: "v[0-9]"}}]}, route: {cluster: c}}
  - {name: legacy-exact-any, match: {prefix: "/lany", headers: [{name: x-a, exact_match: ""}]}, route: {cluster: c}}
  - {name: legacy-prefix, match: {prefix: "/lprefix", headers: [{name: x-a, prefix_match: "ab"}]}, route: {cluster: c}}
  - {name: present, match: {prefix: "/present", headers: [{name: x-a, present_match: true}]}, route: {cluster: c}}
  - {name: absent, match: {prefix: "/absent", headers: [{name: x-a, present_match: false}]}, route: {cluster: c}}
  - {name: present-inv, match: {prefix: "/pinv", headers: [{name: x-a, present_match: true, invert_match: true}]}, route: {cluster: c}}
  - {name: exact-inv, match: {prefix: "/einv", headers: [{name: x-a, string_match: {exact: "no"}, invert_match: true}]}, route: {cluster: c}}
  - {name: exact-inv-empty, match: {prefix: "/eeinv", headers: [{name: x-a, string_match: {exact: "no"}, invert_match: true, treat_missing_header_as_empty: true}]}, route: {cluster: c}}
  - {name: range, match: {prefix: "/range", headers: [{name: x-n, range_match: {start: -10, end: 10}}]}, route: {cluster: c}}
  - {name: range-inv, match: {prefix: "/rinv", headers: [{name: x-n, range_match: {start: 0, end: 10}, invert_match: true}]}, route: {cluster: c}}
  - {name: pseudo, match: {prefix: "/method", headers: [{name: ":method", string_match: {exact: "POST"}}]}, route: {cluster: c}}
  - {name: both, match: {prefix: "/both", headers: [{name: x-a, string_match: {exact: "1"}}, {name: x-b, string_match: {exact: "2"}}]}, route: {cluster: c}}
  - {name: fallback, match: {prefix: "/"}, route: {cluster: c}}
`)
	tests := []struct {
		path string
		hdr  []string
		want string
	}{
		{"/exact", []string{"x-a", "Foo"}, "exact"},
		{"/exact", []string{"X-A", "foo"}, "fallback"},
		{"/exactic", []string{"x-a", "fOO"}, "exact-ic"},
		{"/prefix", []string{"x-a", "abc"}, "prefix"},
		{"/prefix", []string{"x-a", "Abc"}, "fallback"},
		{"/suffix", []string{"x-a", "xYZ"}, "suffix"},
		{"/contains", []string{"x-a", "a-mid-b"}, "contains"},
		{"/contains", []string{"x-a", "mi"}, "fallback"},
		{"/regex", []string{"x-a", "v1"}, "regex"},
		{"/regex", []string{"x-a", "v12"}, "fallback"}, // full match
		{"/lregex", []string{"x-a", "v3"}, "legacy-regex"},
		{"/lany", []string{"x-a", "whatever"}, "legacy-exact-any"},
		{"/lany", nil, "fallback"},
		{"/lprefix", []string{"x-a", "abz"}, "legacy-prefix"},
		{"/present", []string{"x-a", ""}, "present"},
		{"/present", nil, "fallback"},
		{"/absent", nil, "absent"},
		{"/absent", []string{"x-a", "1"}, "fallback"},
		{"/pinv", nil, "present-inv"},
		{"/pinv", []string{"x-a", "1"}, "fallback"},
		{"/einv", []string{"x-a", "yes"}, "exact-inv"},
		{"/einv", []string{"x-a", "no"}, "fallback"},
		{"/einv", nil, "fallback"}, // a missing header never matches a value matcher, inverted or not
		{"/eeinv", nil, "exact-inv-empty"},
		{"/range", []string{"x-n", "-10"}, "range"},
		{"/range", []string{"x-n", "9"}, "range"},
		{"/range", []string{"x-n", " 5 "}, "range"},
		{"/range", []string{"x-n", "+3"}, "range"},
		{"/range", []string{"x-n", "10"}, "fallback"}, // end is exclusive
		{"/range", []string{"x-n", "1.5"}, "fallback"},
		{"/range", []string{"x-n", "99999999999999999999"}, "fallback"},
		{"/rinv", []string{"x-n", "10"}, "range-inv"},
		{"/rinv", []string{"x-n", "abc"}, "range-inv"}, // not a number: no match, inverted
		{"/rinv", []string{"x-n", "5"}, "fallback"},
		{"/method", []string{":method", "POST"}, "pseudo"},
		{"/method", []string{":method", "GET"}, "fallback"},
		{"/both", []string{"x-a", "1", "x-b", "2"}, "both"},
		{"/both", []string{"x-a", "1"}, "fallback"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.path, tt.hdr), func(t *testing.T) {
			h := req(append([]string{":authority", "x", ":path", tt.path}, tt.hdr...)...)
			if got := routeName(tbl, h); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestRouteOrderingAcrossIndexes(t *testing.T) {
	// Regex, case-insensitive and case-sensitive routes interleave; the
	// first in configuration order must win whichever index holds it.
	tbl := mustCompile(t, `
virtual_hosts:
- name: v
  domains: ["*"]
  routes:
  - {name: hdr-gated, match: {prefix: "/a", headers: [{name: x-go, present_match: true}]}, route: {cluster: c}}
  - {name: regex-first, match: {safe_regex: {regex: "/a/b.*"}}, route: {cluster: c}}
  - {name: ci, match: {prefix: "/A/B/C", case_sensitive: false}, route: {cluster: c}}
  - {name: cs, match: {prefix: "/a"}, route: {cluster: c}}
  - {name: never, match: {prefix: "/a/b/c/d"}, route: {cluster: c}}
`)
	tests := []struct {
		path string
		hdr  []string
		want string
	}{
		{"/a/b/c/d", []string{"x-go", "1"}, "hdr-gated"},
		{"/a/b/c/d", nil, "regex-first"},
		{"/a/B/c", nil, "ci"},
		{"/a/x", nil, "cs"},
		{"/b", nil, ""},
	}
	for _, tt := range tests {
		h := req(append([]string{":authority", "x", ":path", tt.path}, tt.hdr...)...)
		if got := routeName(tbl, h); got != tt.want {
			t.Errorf("%s %v: got %q, want %q", tt.path, tt.hdr, got, tt.want)
		}
	}
}

func TestRadixTreeMatchesLinearScan(t *testing.T) {
	// Many overlapping prefixes; every path must pick the same route as
	// Envoy's linear scan.
	segs := []string{"", "/", "/a", "/ab", "/abc", "/a/b", "/A", "/b", "/b/", "/ba", "/abd", "/a/bc"}
	src := "virtual_hosts:\n- name: v\n  domains: ['*']\n  routes:\n"
	rng := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 200; i++ {
		s := segs[rng.IntN(len(segs))] + segs[rng.IntN(len(segs))]
		kind := []string{"prefix", "path", "path_separated_prefix"}[rng.IntN(3)]
		if kind == "path_separated_prefix" && (s == "" || s[len(s)-1] == '/') {
			kind = "prefix"
		}
		cs := rng.IntN(3) != 0
		src += fmt.Sprintf("  - {match: {%s: %q, case_sensitive: %v}, route: {cluster: c}}\n", kind, s, cs)
	}
	tbl := mustCompile(t, src)
	for i := 0; i < 5000; i++ {
		p := segs[rng.IntN(len(segs))] + segs[rng.IntN(len(segs))] + []string{"", "?x", "/", "/z"}[rng.IntN(4)]
		h := req(":authority", "h", ":path", p)
		if got, want := tbl.Route(h), linearRoute(tbl, h); got != want {
			t.Fatalf("path %q: tree %v, linear %v", p, name(got), name(want))
		}
	}
}

func name(r *Route) string {
	if r == nil {
		return "<nil>"
	}
	return r.StatName
}

func TestRouteConcurrent(t *testing.T) {
	tbl := mustCompile(t, matchYAML)
	done := make(chan struct{})
	for g := 0; g < 4; g++ {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := 0; i < 1000; i++ {
				h := req(":authority", "x", ":path", fmt.Sprintf("/api/v%d/x", i%3))
				if tbl.Route(h) == nil {
					t.Error("no route")
					return
				}
			}
		}()
	}
	for g := 0; g < 4; g++ {
		<-done
	}
}

func TestRadixTreeWideFanOut(t *testing.T) {
	// More children per node than the linear child scan handles, in both
	// trees, so the binary search is exercised.
	src := "virtual_hosts:\n- name: v\n  domains: ['*']\n  routes:\n"
	for c := byte('0'); c <= 'z'; c++ {
		if c == '\'' || c == '\\' {
			continue
		}
		src += fmt.Sprintf("  - {match: {prefix: %q}, route: {cluster: c}}\n", "/"+string(c)+"/")
		src += fmt.Sprintf("  - {match: {path: %q, case_sensitive: false}, route: {cluster: c}}\n", "/X"+string(c))
	}
	tbl := mustCompile(t, src)
	for c := 0; c < 256; c++ {
		for _, p := range []string{"/" + string(rune(c)) + "/x", "/x" + string(rune(c)), "/X" + string(rune(c)) + "?q"} {
			h := req(":authority", "h", ":path", p)
			if got, want := tbl.Route(h), linearRoute(tbl, h); got != want {
				t.Fatalf("path %q: tree %s, linear %s", p, name(got), name(want))
			}
		}
	}
	if r := tbl.VirtualHosts()[0].Route(req(":path", "/a/b")); r == nil || r.m.key != "/a/" {
		t.Errorf("VirtualHost.Route(/a/b) = %s", name(r))
	}
}
