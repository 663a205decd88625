package router

import (
	"bytes"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"
)

// FuzzCompile feeds JSON or YAML to protojson and Compile, which must
// never panic; a table that compiles must route like the linear scan.
// Seeds are in testdata/fuzz/FuzzCompile.
func FuzzCompile(f *testing.F) {
	f.Add([]byte(matchYAML))
	f.Add([]byte(`{"virtual_hosts":[{"name":"v","domains":["*"],"routes":[{"match":{"prefix":"/"},"route":{"cluster":"c"}}]}]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		js := data
		if !bytes.HasPrefix(bytes.TrimSpace(data), []byte("{")) {
			var err error
			if js, err = yaml.YAMLToJSON(data); err != nil {
				return
			}
		}
		rc := &routev3.RouteConfiguration{}
		if err := protojson.Unmarshal(js, rc); err != nil {
			return
		}
		tbl, err := Compile(rc)
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		probe(t, tbl)
	})
}

// probe routes a few requests derived from the table itself and checks
// the radix trees against the linear scan, exercising the route helpers.
func probe(t *testing.T, tbl *Table) {
	for _, v := range tbl.VirtualHosts() {
		host := v.Domains[0]
		for _, r := range v.Routes {
			paths := []string{"/", r.m.key, r.m.key + "/x", r.m.key + "?a=1", "/" + r.m.key}
			for _, p := range paths {
				h := req(":authority", host, ":path", p)
				got, want := tbl.Route(h), linearRoute(tbl, h)
				if got != want {
					t.Fatalf("host %q path %q: tree %s, linear %s", host, p, name(got), name(want))
				}
				if got != nil {
					exercise(got, h, p)
				}
			}
		}
	}
}

func exercise(r *Route, h *hdrs, path string) {
	_ = r.PickCluster(12345)
	_ = r.ClusterFor(h, 1)
	_, _ = r.Hash(h, "10.0.0.1")
	_ = r.RewritePath(path)
	_ = r.RedirectLocation(h)
	r.RequestHeaders.Apply(h, fakeVars("10.0.0.1:1234"))
	r.ResponseHeaders.Apply(h, nil)
	for _, m := range r.MirrorPolicies {
		_ = m.Sample(7)
	}
	if r.RetryPolicy != nil {
		_ = r.RetryPolicy.RetriableStatus(503)
	}
}

const fuzzRouteYAML = `
virtual_hosts:
- name: exact
  domains: ["foo.com", "foo.com:8080", "[::1]:80"]
  routes:
  - {match: {prefix: "/api/", case_sensitive: false}, route: {cluster: c, prefix_rewrite: "/"}}
  - {match: {path_separated_prefix: "/sep"}, route: {cluster: c}}
  - {match: {path: "/exact"}, redirect: {https_redirect: true, strip_query: true}}
  - {match: {safe_regex: {regex: "/re/([a-z]+)/.*"}}, route: {cluster: c, regex_rewrite: {pattern: {regex: "/re/([a-z]+)"}, substitution: "/\\1"}}}
  - match: {prefix: "/h", headers: [{name: x-n, range_match: {start: 0, end: 100}}, {name: x-s, string_match: {contains: "Ab", ignore_case: true}, invert_match: true}]}
    route: {cluster: c, hash_policy: [{header: {header_name: x-s}}, {cookie: {name: sid}}, {query_parameter: {name: q}}]}
  - {match: {prefix: "/q", query_parameters: [{name: a, string_match: {suffix: "z"}}]}, route: {cluster: c}}
  - {match: {prefix: "/"}, route: {weighted_clusters: {clusters: [{name: a, weight: 3}, {name: b, weight: 7}]}}}
- name: wild
  domains: ["*.foo.com", "foo.*", "*"]
  routes:
  - {match: {prefix: ""}, direct_response: {status: 404}}
`

// FuzzRoute matches random hosts, paths and header values against a fixed
// table: no panic, and the same answer as the linear scan.
func FuzzRoute(f *testing.F) {
	for _, s := range [][3]string{
		{"foo.com", "/api/x?q=1", "42"},
		{"FOO.COM:8080", "/sep/", "abc"},
		{"a.foo.com", "/", ""},
		{"[::1]:80", "/re/abc/d", "-5"},
		{"foo.org", "/h?q=", "99"},
		{"", "", ""},
	} {
		f.Add(s[0], s[1], s[2])
	}
	tbl := mustCompile(f, fuzzRouteYAML)
	f.Fuzz(func(t *testing.T, host, path, val string) {
		h := req(":authority", host, ":path", path, "x-n", val, "x-s", val, "cookie", val)
		got, want := tbl.Route(h), linearRoute(tbl, h)
		if got != want {
			t.Fatalf("host %q path %q: tree %s, linear %s", host, path, name(got), name(want))
		}
		if got != nil {
			exercise(got, h, path)
		}
	})
}
