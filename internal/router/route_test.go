package router

import (
	"github.com/weftmesh/weft/internal/xxhash"
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"
)

// only returns the single route of the single virtual host of src.
func only(t *testing.T, src string) *Route {
	t.Helper()
	tbl := mustCompile(t, src)
	return tbl.VirtualHosts()[0].Routes[0]
}

func TestWeightedClusters(t *testing.T) {
	r := only(t, `
virtual_hosts:
- name: v
  domains: ["*"]
  routes:
  - match: {prefix: "/"}
    route:
      weighted_clusters:
        clusters:
        - {name: a, weight: 10}
        - {name: zero, weight: 0}
        - {name: b, weight: 30}
        - {name: c, weight: 60}
`)
	if r.TotalWeight != 100 {
		t.Fatalf("TotalWeight = %d, want 100", r.TotalWeight)
	}
	// Exact boundaries: rnd mod 100 in [0,10) -> a, [10,40) -> b, [40,100) -> c.
	for _, tt := range []struct {
		rnd  uint64
		want string
	}{{0, "a"}, {9, "a"}, {10, "b"}, {39, "b"}, {40, "c"}, {99, "c"}, {100, "a"}, {math.MaxUint64, "b"} /* 2^64-1 mod 100 = 15 */} {
		if got := r.PickCluster(tt.rnd); got != tt.want {
			t.Errorf("PickCluster(%d) = %q, want %q", tt.rnd, got, tt.want)
		}
	}
	// Distribution over random values.
	rng := rand.New(rand.NewPCG(7, 7))
	const n = 200000
	counts := map[string]int{}
	for i := 0; i < n; i++ {
		counts[r.PickCluster(rng.Uint64())]++
	}
	for name, w := range map[string]float64{"a": .1, "b": .3, "c": .6, "zero": 0} {
		got := float64(counts[name]) / n
		if math.Abs(got-w) > 0.01 {
			t.Errorf("cluster %s got share %.3f, want %.2f", name, got, w)
		}
	}
	if allocs := testing.AllocsPerRun(100, func() { _ = r.PickCluster(12345) }); allocs != 0 {
		t.Errorf("PickCluster allocates %v", allocs)
	}
}

func TestClusterSpecifiers(t *testing.T) {
	tbl := mustCompile(t, `
virtual_hosts:
- name: v
  domains: ["*"]
  routes:
  - match: {prefix: "/hdr"}
    route: {cluster_header: X-Cluster, cluster_not_found_response_code: NOT_FOUND}
  - match: {prefix: "/"}
    route: {cluster: single}
`)
	r := tbl.Route(req(":authority", "a", ":path", "/hdr"))
	if r.ClusterHeader != "x-cluster" || r.ClusterNotFoundStatus != 404 {
		t.Fatalf("cluster_header route: %+v", r)
	}
	if got := r.ClusterFor(req("X-Cluster", "dyn"), 0); got != "dyn" {
		t.Errorf("ClusterFor = %q, want dyn", got)
	}
	if got := r.ClusterFor(req(), 0); got != "" {
		t.Errorf("ClusterFor without header = %q", got)
	}
	r = tbl.Route(req(":authority", "a", ":path", "/x"))
	if r.Cluster != "single" || r.PickCluster(5) != "single" || r.ClusterNotFoundStatus != 503 {
		t.Errorf("single cluster route: %+v", r)
	}
}

func TestTimeouts(t *testing.T) {
	tbl := mustCompile(t, `
virtual_hosts:
- name: v
  domains: ["*"]
  routes:
  - {name: default, match: {path: "/d"}, route: {cluster: c}}
  - {name: none, match: {path: "/n"}, route: {cluster: c, timeout: 0s, idle_timeout: 0s}}
  - {name: set, match: {path: "/s"}, route: {cluster: c, timeout: 2.5s, idle_timeout: 60s}}
`)
	rs := tbl.VirtualHosts()[0].Routes
	check := func(r *Route, timeout, idle time.Duration, hasIdle bool) {
		t.Helper()
		if r.Timeout != timeout || r.IdleTimeout != idle || r.HasIdleTimeout != hasIdle {
			t.Errorf("%s: timeout %v idle %v/%v, want %v %v/%v", r.Name, r.Timeout, r.IdleTimeout, r.HasIdleTimeout, timeout, idle, hasIdle)
		}
	}
	check(rs[0], 15*time.Second, 0, false)
	check(rs[1], 0, 0, true)
	check(rs[2], 2500*time.Millisecond, time.Minute, true)
}

func TestRetryPolicy(t *testing.T) {
	tbl := mustCompile(t, `
virtual_hosts:
- name: with-vhost-policy
  domains: ["a"]
  retry_policy: {retry_on: "5xx, connect-failure", num_retries: 3}
  routes:
  - {name: inherits, match: {path: "/inherit"}, route: {cluster: c}}
  - name: own
    match: {path: "/own"}
    route:
      cluster: c
      retry_policy:
        retry_on: gateway-error,retriable-4xx,refused-stream,reset,retriable-status-codes
        per_try_timeout: 1s
        per_try_idle_timeout: 2s
        retriable_status_codes: [418, 429]
        retry_back_off: {base_interval: 0.1s}
  - name: defaults
    match: {path: "/defaults"}
    route: {cluster: c, retry_policy: {}}
  - name: backoff
    match: {path: "/backoff"}
    route: {cluster: c, retry_policy: {retry_on: 5xx, num_retries: 0, retry_back_off: {base_interval: 0.01s, max_interval: 0.05s}}}
- name: no-policy
  domains: ["b"]
  routes:
  - {name: none, match: {prefix: "/"}, route: {cluster: c}}
`)
	get := func(host, path string) *RetryPolicy {
		t.Helper()
		r := tbl.Route(req(":authority", host, ":path", path))
		if r == nil {
			t.Fatalf("no route for %s%s", host, path)
		}
		return r.RetryPolicy
	}
	vh := get("a", "/inherit")
	want := &RetryPolicy{RetryOn: Retry5xx | RetryConnectFailure, NumRetries: 3, BackOffBase: 25 * time.Millisecond, BackOffMax: 250 * time.Millisecond}
	if !reflect.DeepEqual(vh, want) {
		t.Errorf("inherited policy = %+v, want %+v", vh, want)
	}
	own := get("a", "/own")
	want = &RetryPolicy{
		RetryOn:              RetryGatewayError | RetryRetriable4xx | RetryRefusedStream | RetryReset | RetryRetriableStatusCodes,
		NumRetries:           1,
		PerTryTimeout:        time.Second,
		PerTryIdleTimeout:    2 * time.Second,
		RetriableStatusCodes: []uint32{418, 429},
		BackOffBase:          100 * time.Millisecond,
		BackOffMax:           time.Second,
	}
	if !reflect.DeepEqual(own, want) {
		t.Errorf("route policy = %+v, want %+v", own, want)
	}
	if !own.RetryOn.Has(RetryReset|RetryRefusedStream) || own.RetryOn.Has(Retry5xx) {
		t.Errorf("RetryOn.Has wrong for %v", own.RetryOn)
	}
	if got := own.RetryOn.String(); got != "gateway-error,reset,retriable-4xx,refused-stream,retriable-status-codes" {
		t.Errorf("RetryOn.String() = %q", got)
	}
	def := get("a", "/defaults")
	if def.RetryOn != 0 || def.NumRetries != 1 || def.BackOffBase != DefaultRetryBackOffBase || def.BackOffMax != DefaultRetryBackOffMax {
		t.Errorf("default policy = %+v", def)
	}
	bo := get("a", "/backoff")
	if bo.NumRetries != 0 || bo.BackOffBase != 10*time.Millisecond || bo.BackOffMax != 50*time.Millisecond {
		t.Errorf("backoff policy = %+v", bo)
	}
	if p := get("b", "/"); p != nil {
		t.Errorf("route without any policy got %+v", p)
	}

	for _, tt := range []struct {
		p    *RetryPolicy
		code int
		want bool
	}{
		{vh, 500, true}, {vh, 599, true}, {vh, 409, false},
		{own, 502, true}, {own, 500, false}, {own, 409, true}, {own, 418, true}, {own, 429, true}, {own, 404, false},
	} {
		if got := tt.p.RetriableStatus(tt.code); got != tt.want {
			t.Errorf("%v RetriableStatus(%d) = %v", tt.p.RetryOn, tt.code, got)
		}
	}
	cf := &RetryPolicy{RetryOn: RetryConnectFailure}
	if !cf.RetriableReset(ResetConnectFailure) || cf.RetriableReset(ResetOther) || cf.RetriableReset(ResetRefusedStream) {
		t.Error("connect-failure reset classification wrong")
	}
	if !vh.RetriableReset(ResetOther) || !own.RetriableReset(ResetRefusedStream) {
		t.Error("5xx/gateway-error should retry resets")
	}
}

func TestMirrorPolicies(t *testing.T) {
	tbl := mustCompile(t, `
request_mirror_policies: [{cluster: rc-shadow}]
virtual_hosts:
- name: a
  domains: ["a"]
  request_mirror_policies:
  - {cluster: vh-shadow, runtime_fraction: {default_value: {numerator: 25, denominator: HUNDRED}}}
  routes:
  - name: own
    match: {path: "/own"}
    route:
      cluster: c
      request_mirror_policies:
      - {cluster: s1, runtime_fraction: {default_value: {numerator: 5, denominator: TEN_THOUSAND}}}
      - {cluster_header: X-Shadow, runtime_fraction: {default_value: {numerator: 2000000, denominator: MILLION}}}
  - {name: vh, match: {prefix: "/"}, route: {cluster: c}}
- name: b
  domains: ["b"]
  routes:
  - {name: rc, match: {prefix: "/"}, route: {cluster: c}}
`)
	own := tbl.Route(req(":authority", "a", ":path", "/own")).MirrorPolicies
	if len(own) != 2 || own[0].Cluster != "s1" || own[0].Probability() != 0.0005 ||
		own[1].ClusterHeader != "x-shadow" || own[1].Probability() != 1 {
		t.Errorf("route mirrors = %+v", own)
	}
	vh := tbl.Route(req(":authority", "a", ":path", "/x")).MirrorPolicies
	if len(vh) != 1 || vh[0].Cluster != "vh-shadow" || vh[0].Probability() != 0.25 {
		t.Errorf("vhost mirrors = %+v", vh)
	}
	if !vh[0].Sample(24) || vh[0].Sample(25) || !vh[0].Sample(100) {
		t.Error("Sample does not follow numerator/denominator")
	}
	rc := tbl.Route(req(":authority", "b", ":path", "/")).MirrorPolicies
	if len(rc) != 1 || rc[0].Cluster != "rc-shadow" || rc[0].Probability() != 1 || !rc[0].Sample(12345) {
		t.Errorf("route config mirrors = %+v", rc)
	}
}

func TestHashPolicies(t *testing.T) {
	tbl := mustCompile(t, `
virtual_hosts:
- name: v
  domains: ["*"]
  routes:
  - name: multi
    match: {prefix: "/multi"}
    route:
      cluster: c
      hash_policy:
      - header: {header_name: X-User}
      - cookie: {name: session, ttl: 10s, path: /}
      - connection_properties: {source_ip: true}
      - query_parameter: {name: shard}
  - name: terminal
    match: {prefix: "/terminal"}
    route:
      cluster: c
      hash_policy:
      - {header: {header_name: x-user}, terminal: true}
      - connection_properties: {source_ip: true}
  - name: rewrite
    match: {prefix: "/rewrite"}
    route:
      cluster: c
      hash_policy:
      - header: {header_name: x-user, regex_rewrite: {pattern: {regex: "^([a-z]+)-.*$"}, substitution: "\\1"}}
  - {name: none, match: {prefix: "/"}, route: {cluster: c}}
`)
	route := func(path string) *Route { return tbl.Route(req(":authority", "h", ":path", path)) }
	mix := func(hs ...uint64) uint64 {
		var k uint64
		for i, h := range hs {
			if i == 0 {
				k = h
			} else {
				k = (k<<1 | k>>63) ^ h
			}
		}
		return k
	}
	multi := route("/multi")
	if p := multi.HashPolicies[1]; p.Kind != HashCookie || p.CookieTTL != 10*time.Second || p.CookiePath != "/" {
		t.Errorf("cookie policy = %+v", p)
	}
	tests := []struct {
		name  string
		r     *Route
		h     *hdrs
		src   string
		want  uint64
		found bool
	}{
		{"nothing", multi, req(":path", "/multi"), "", 0, false},
		{"header", multi, req(":path", "/multi", "x-user", "u1"), "", xxh("u1"), true},
		{"source ip", multi, req(":path", "/multi"), "10.0.0.1", xxh("10.0.0.1"), true},
		{"cookie", multi, req(":path", "/multi", "cookie", `a=b; session="s1"; c=d`), "", xxh("s1"), true},
		{"query", multi, req(":path", "/multi?x=1&shard=7"), "", xxh("7"), true},
		{"all", multi, req(":path", "/multi?shard=7", "x-user", "u1", "cookie", "session=s1"), "1.2.3.4",
			mix(xxh("u1"), xxh("s1"), xxh("1.2.3.4"), xxh("7")), true},
		{"terminal stops", route("/terminal"), req("x-user", "u1"), "1.2.3.4", xxh("u1"), true},
		{"terminal without value continues", route("/terminal"), req(), "1.2.3.4", xxh("1.2.3.4"), true},
		{"header rewrite", route("/rewrite"), req("x-user", "alice-123"), "", xxh("alice"), true},
		{"no policy", route("/"), req("x-user", "u1"), "1.2.3.4", 0, false},
	}
	for _, tt := range tests {
		got, found := tt.r.Hash(tt.h, tt.src)
		if got != tt.want || found != tt.found {
			t.Errorf("%s: Hash = %x,%v want %x,%v", tt.name, got, found, tt.want, tt.found)
		}
	}
	h := req(":path", "/multi?shard=7", "x-user", "u1", "cookie", "session=s1")
	if allocs := testing.AllocsPerRun(100, func() { _, _ = multi.Hash(h, "1.2.3.4") }); allocs != 0 {
		t.Errorf("Hash allocates %v", allocs)
	}
}

func TestXXHash64(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want uint64
	}{
		{"", 0xef46db3751d8e999},
		{"a", 0xd24ec4f1a98c6e5b},
		{"abc", 0x44bc2cf5ad770999},
		{"Nobody inspects the spammish repetition", 0xfbcea83c8a378bf1},
	} {
		if got := xxh(tt.in); got != tt.want {
			t.Errorf("xxh(%q) = %#x, want %#x", tt.in, got, tt.want)
		}
	}
}

func TestRewritePath(t *testing.T) {
	tbl := mustCompile(t, `
virtual_hosts:
- name: v
  domains: ["*"]
  routes:
  - {match: {prefix: "/api/"}, route: {cluster: c, prefix_rewrite: "/"}}
  - {match: {prefix: "/CI", case_sensitive: false}, route: {cluster: c, prefix_rewrite: "/ci-upstream"}}
  - {match: {path: "/exact"}, route: {cluster: c, prefix_rewrite: "/other"}}
  - {match: {path_separated_prefix: "/sep"}, route: {cluster: c, prefix_rewrite: "/s"}}
  - {match: {safe_regex: {regex: "/re/.*"}}, route: {cluster: c, prefix_rewrite: "/whole"}}
  - match: {prefix: "/users/"}
    route:
      cluster: c
      regex_rewrite: {pattern: {regex: "^/users/([^/]+)/(\\w+)$"}, substitution: "/u/\\2/\\1?cost=$5"}
  - match: {prefix: "/all"}
    route: {cluster: c, regex_rewrite: {pattern: {regex: "a"}, substitution: "\\\\"}}
  - {match: {prefix: "/"}, route: {cluster: c}}
`)
	tests := []struct{ in, want string }{
		{"/api/v1/x?q=1", "/v1/x?q=1"},
		{"/ci/x", "/ci-upstream/x"},
		{"/cI", "/ci-upstream"},
		{"/exact?z=1", "/other?z=1"},
		{"/sep/x", "/s/x"},
		{"/sep", "/s"},
		{"/re/abc?x", "/whole?x"},
		{"/users/bob/profile?x=1", "/u/profile/bob?cost=$5?x=1"},
		{"/users/bob/a/b", "/users/bob/a/b"}, // no match: unchanged
		{"/all/a/b/a", `/\ll/\/b/\`},
		{"/plain?x", "/plain?x"},
	}
	for _, tt := range tests {
		r := tbl.Route(req(":authority", "h", ":path", tt.in))
		if got := r.RewritePath(tt.in); got != tt.want {
			t.Errorf("RewritePath(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestHostRewrite(t *testing.T) {
	tbl := mustCompile(t, `
virtual_hosts:
- name: v
  domains: ["*"]
  routes:
  - {match: {path: "/lit"}, route: {cluster: c, host_rewrite_literal: upstream.local}}
  - {match: {path: "/auto"}, route: {cluster: c, auto_host_rewrite: true}}
  - {match: {path: "/hdr"}, route: {cluster: c, host_rewrite_header: X-Host}}
`)
	rs := tbl.VirtualHosts()[0].Routes
	if rs[0].HostRewriteLiteral != "upstream.local" || !rs[1].AutoHostRewrite || rs[2].HostRewriteHeader != "x-host" {
		t.Errorf("host rewrites: %q %v %q", rs[0].HostRewriteLiteral, rs[1].AutoHostRewrite, rs[2].HostRewriteHeader)
	}
}

func TestDirectResponseAndRedirect(t *testing.T) {
	tbl := mustCompile(t, `
virtual_hosts:
- name: v
  domains: ["*"]
  routes:
  - {name: direct, match: {path: "/health"}, direct_response: {status: 200, body: {inline_string: "ok"}}}
  - {name: direct-bytes, match: {path: "/bytes"}, direct_response: {status: 503, body: {inline_bytes: "aGk="}}}
  - {name: https, match: {prefix: "/secure"}, redirect: {https_redirect: true}}
  - {name: host-port, match: {prefix: "/hp"}, redirect: {host_redirect: new.com, port_redirect: 8443, response_code: PERMANENT_REDIRECT}}
  - {name: path, match: {prefix: "/old"}, redirect: {path_redirect: "/new", response_code: FOUND}}
  - {name: path-query, match: {prefix: "/pq"}, redirect: {path_redirect: "/new?a=b", strip_query: true}}
  - {name: prefix, match: {prefix: "/pre/"}, redirect: {prefix_rewrite: "/post/", strip_query: true, response_code: SEE_OTHER}}
  - {name: regex, match: {prefix: "/rx"}, redirect: {regex_rewrite: {pattern: {regex: "rx"}, substitution: "ry"}, scheme_redirect: HTTPS, response_code: TEMPORARY_REDIRECT}}
`)
	get := func(path string) *Route { return tbl.Route(req(":authority", "h", ":path", path)) }
	if d := get("/health").DirectResponse; d == nil || d.Status != 200 || d.Body != "ok" {
		t.Errorf("direct = %+v", d)
	}
	if d := get("/bytes").DirectResponse; d == nil || d.Status != 503 || d.Body != "hi" {
		t.Errorf("direct bytes = %+v", d)
	}
	tests := []struct {
		path, host, scheme string
		wantStatus         int
		want               string
	}{
		{"/secure/x?y=1", "example.com", "http", 301, "https://example.com/secure/x?y=1"},
		{"/secure", "example.com:80", "http", 301, "https://example.com/secure"},
		{"/secure", "example.com:8080", "http", 301, "https://example.com:8080/secure"},
		{"/hp/x", "example.com:80", "http", 308, "http://new.com:8443/hp/x"},
		{"/old/x?q", "example.com", "https", 302, "https://example.com/new?q"},
		{"/pq?q", "example.com", "http", 301, "http://example.com/new?a=b"},
		{"/pre/a?q=1", "example.com", "http", 303, "http://example.com/post/a"},
		{"/rx/rx", "example.com", "http", 307, "https://example.com/ry/ry"},
	}
	for _, tt := range tests {
		r := get(tt.path)
		if r.Redirect == nil || r.Redirect.Status != tt.wantStatus {
			t.Errorf("%s: redirect %+v, want status %d", tt.path, r.Redirect, tt.wantStatus)
			continue
		}
		h := req(":authority", tt.host, ":path", tt.path, ":scheme", tt.scheme)
		if got := r.RedirectLocation(h); got != tt.want {
			t.Errorf("%s: Location = %q, want %q", tt.path, got, tt.want)
		}
	}
}

func TestStatNamesAndPerFilterConfig(t *testing.T) {
	tbl := mustCompile(t, `
name: rc1
typed_per_filter_config:
  envoy.filters.http.a: {"@type": type.googleapis.com/google.protobuf.StringValue, value: rc-a}
  envoy.filters.http.b: {"@type": type.googleapis.com/google.protobuf.StringValue, value: rc-b}
virtual_hosts:
- name: v
  domains: ["*"]
  typed_per_filter_config:
    envoy.filters.http.b: {"@type": type.googleapis.com/google.protobuf.StringValue, value: vh-b}
  routes:
  - name: named
    match: {path: "/n"}
    route: {cluster: c}
    typed_per_filter_config:
      envoy.filters.http.c: {"@type": type.googleapis.com/google.protobuf.StringValue, value: r-c}
  - {match: {prefix: "/"}, route: {cluster: c}}
`)
	if tbl.Name() != "rc1" {
		t.Errorf("Name = %q", tbl.Name())
	}
	rs := tbl.VirtualHosts()[0].Routes
	if rs[0].StatName != "named" || rs[1].StatName != "v/1" || rs[1].Index != 1 || rs[1].VirtualHost.Name != "v" {
		t.Errorf("stat names %q %q", rs[0].StatName, rs[1].StatName)
	}
	pfc := rs[0].PerFilterConfig
	if len(pfc) != 3 || !contains(pfc["envoy.filters.http.a"].Value, "rc-a") ||
		!contains(pfc["envoy.filters.http.b"].Value, "vh-b") || !contains(pfc["envoy.filters.http.c"].Value, "r-c") {
		t.Errorf("merged per-filter config = %v", pfc)
	}
	if len(rs[1].PerFilterConfig) != 2 || !contains(rs[1].PerFilterConfig["envoy.filters.http.b"].Value, "vh-b") {
		t.Errorf("inherited per-filter config = %v", rs[1].PerFilterConfig)
	}
}

func contains(b []byte, s string) bool { return len(s) <= len(b) && string(b[len(b)-len(s):]) == s }

func xxh(s string) uint64 { return xxhash.Sum64(s, 0) }
