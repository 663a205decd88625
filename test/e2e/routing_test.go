package e2e

import (
	"net/http"
	"testing"
)

// TestRouting checks the route matchers and actions through real
// requests: which upstream answered (X-Upstream) and what it saw.
func TestRouting(t *testing.T) {
	t.Parallel()
	secretHandler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Upstream-Secret", "leak")
		echoHandler().ServeHTTP(w, r)
	})
	a := newUpstream(t, "a", secretHandler)
	b := newUpstream(t, "b", nil)
	c := newUpstream(t, "c", nil)
	w, base := startHTTPProxy(t, hcmConfig{VirtualHosts: `
- name: api
  domains: ["api.example.com", "api.example.com:*"]
  routes:
  - match: {prefix: "/"}
    route: {cluster: c}
- name: all
  domains: ["*"]
  routes:
  - match: {prefix: "/", headers: [{name: x-target, string_match: {exact: b}}]}
    route: {cluster: b}
  - match: {path: "/exact"}
    route: {cluster: b}
  - match: {prefix: "/exact"}
    route: {cluster: c}
  - match: {safe_regex: {regex: "/items/[0-9]+"}}
    route: {cluster: c}
  - match: {prefix: "/rewrite/"}
    route: {cluster: a, prefix_rewrite: "/v2/"}
  - match: {prefix: "/hostrw"}
    route: {cluster: a, host_rewrite_literal: backend.internal}
  - match: {prefix: "/direct"}
    direct_response: {status: 418, body: {inline_string: "i am a teapot"}}
  - match: {prefix: "/old"}
    redirect: {path_redirect: "/new", response_code: PERMANENT_REDIRECT}
  - match: {prefix: "/https"}
    redirect: {https_redirect: true}
  - match: {prefix: "/hdrs"}
    route: {cluster: a}
    request_headers_to_add:
    - header: {key: x-added, value: req-val}
    - header: {key: x-client-ip, value: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"}
    request_headers_to_remove: [x-secret]
    response_headers_to_add:
    - header: {key: x-resp-added, value: resp-val}
    response_headers_to_remove: [x-upstream-secret]
  - match: {prefix: "/api"}
    route: {cluster: a}
`}, staticCluster("a", a.Port), staticCluster("b", b.Port), staticCluster("c", c.Port))
	hc := client()

	for _, tc := range []struct {
		name, path string
		headers    []string
		upstream   string
		seenPath   string
	}{
		{"prefix", "/api/users?id=1", nil, "a", "/api/users?id=1"},
		{"header match wins", "/api/users", []string{"X-Target: b"}, "b", "/api/users"},
		{"header mismatch", "/api/users", []string{"X-Target: bb"}, "a", "/api/users"},
		{"exact path", "/exact", nil, "b", "/exact"},
		{"exact path ignores query", "/exact?q=1", nil, "b", "/exact?q=1"},
		{"prefix beyond exact", "/exact/more", nil, "c", "/exact/more"},
		{"prefix not a word", "/exactly", nil, "c", "/exactly"},
		{"regex", "/items/12345", nil, "c", "/items/12345"},
		{"prefix rewrite", "/rewrite/x/y?z=1", nil, "a", "/v2/x/y?z=1"},
		{"virtual host by authority", "/exact", []string{"Host: api.example.com"}, "c", "/exact"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := get(t, hc, base+tc.path, tc.headers...)
			if r.Status != 200 {
				t.Fatalf("status %d: %s", r.Status, r.Body)
			}
			if got := r.Header.Get("X-Upstream"); got != tc.upstream {
				t.Errorf("answered by %q, want %q", got, tc.upstream)
			}
			if e := decodeEcho(t, r); e.Path != tc.seenPath {
				t.Errorf("upstream saw path %q, want %q", e.Path, tc.seenPath)
			}
		})
	}

	t.Run("not found", func(t *testing.T) {
		before := a.Hits() + b.Hits() + c.Hits()
		for _, p := range []string{"/nothing", "/items/abc", "/items/12/x", "/"} {
			if r := get(t, hc, base+p); r.Status != 404 {
				t.Errorf("%s: status %d, want 404", p, r.Status)
			}
		}
		if after := a.Hits() + b.Hits() + c.Hits(); after != before {
			t.Errorf("unrouted requests reached an upstream (%d -> %d hits)", before, after)
		}
	})

	t.Run("host_rewrite_literal", func(t *testing.T) {
		r := get(t, hc, base+"/hostrw", "Host: original.example")
		if e := decodeEcho(t, r); e.Host != "backend.internal" {
			t.Errorf("upstream saw Host %q, want backend.internal", e.Host)
		}
	})

	t.Run("direct_response", func(t *testing.T) {
		before := a.Hits() + b.Hits() + c.Hits()
		body, code := curlCode(t, base+"/direct")
		if code != 418 || body != "i am a teapot" {
			t.Errorf("got %d %q, want 418 %q", code, body, "i am a teapot")
		}
		if after := a.Hits() + b.Hits() + c.Hits(); after != before {
			t.Errorf("direct response reached an upstream")
		}
	})

	t.Run("redirect", func(t *testing.T) {
		r := get(t, hc, base+"/old?keep=1", "Host: site.example")
		if r.Status != 308 {
			t.Fatalf("status %d, want 308", r.Status)
		}
		if loc := r.Header.Get("Location"); loc != "http://site.example/new?keep=1" {
			t.Errorf("Location %q, want http://site.example/new?keep=1", loc)
		}
		r = get(t, hc, base+"/https/x", "Host: site.example")
		if r.Status != 301 || r.Header.Get("Location") != "https://site.example/https/x" {
			t.Errorf("https redirect: %d %q, want 301 https://site.example/https/x", r.Status, r.Header.Get("Location"))
		}
	})

	t.Run("header operations", func(t *testing.T) {
		r := get(t, hc, base+"/hdrs", "X-Secret: hunter2", "X-Keep: yes")
		if r.Status != 200 {
			t.Fatalf("status %d", r.Status)
		}
		e := decodeEcho(t, r)
		if got := e.Header["X-Added"]; len(got) != 1 || got[0] != "req-val" {
			t.Errorf("upstream x-added = %q, want [req-val]", got)
		}
		if got := e.Header["X-Client-Ip"]; len(got) != 1 || got[0] != "127.0.0.1" {
			t.Errorf("upstream x-client-ip = %q, want [127.0.0.1]", got)
		}
		if _, ok := e.Header["X-Secret"]; ok {
			t.Errorf("x-secret was not removed before the upstream")
		}
		if got := e.Header["X-Keep"]; len(got) != 1 {
			t.Errorf("x-keep lost: %v", e.Header)
		}
		if got := r.Header.Get("X-Resp-Added"); got != "resp-val" {
			t.Errorf("client x-resp-added = %q, want resp-val", got)
		}
		if got := r.Header.Get("X-Upstream-Secret"); got != "" {
			t.Errorf("x-upstream-secret reached the client: %q", got)
		}
		// Another route of the same upstream keeps the header.
		if r := get(t, hc, base+"/api"); r.Header.Get("X-Upstream-Secret") != "leak" || r.Header.Get("X-Resp-Added") != "" {
			t.Errorf("header ops leaked onto another route: %v", r.Header)
		}
	})

	// The subtests above ran in order: 4 unrouted requests, 1 direct
	// response, 2 redirects.
	t.Run("counters", func(t *testing.T) {
		_, body := w.Admin("/stats/prometheus")
		for name, min := range map[string]float64{
			"weft_http_no_route_total":           4,
			"weft_http_rq_direct_response_total": 1,
			"weft_http_rq_redirect_total":        2,
		} {
			if v := promValue(body, name, "stat_prefix=ingress"); v < min {
				t.Errorf("%s = %v, want >= %v", name, v, min)
			}
		}
	})
}

// TestRoutingWeightedClusters sends 500 requests over an 80/20 split.
func TestRoutingWeightedClusters(t *testing.T) {
	t.Parallel()
	a := newUpstream(t, "a", nil)
	b := newUpstream(t, "b", nil)
	_, base := startHTTPProxy(t, hcmConfig{Routes: `
- match: {prefix: "/"}
  route:
    weighted_clusters:
      clusters:
      - {name: a, weight: 80, request_headers_to_add: [{header: {key: x-split, value: big}}]}
      - {name: b, weight: 20, request_headers_to_add: [{header: {key: x-split, value: small}}]}
`}, staticCluster("a", a.Port), staticCluster("b", b.Port))
	hc := client()
	const n = 500
	counts := map[string]int{}
	for i := 0; i < n; i++ {
		r := get(t, hc, base+"/w")
		if r.Status != 200 {
			t.Fatalf("request %d: status %d", i, r.Status)
		}
		up := r.Header.Get("X-Upstream")
		counts[up]++
		want := map[string]string{"a": "big", "b": "small"}[up]
		if e := decodeEcho(t, r); len(e.Header["X-Split"]) != 1 || e.Header["X-Split"][0] != want {
			t.Fatalf("cluster %s saw x-split %q, want %q", up, e.Header["X-Split"], want)
		}
	}
	// Binomial(500, 0.8): sd ~ 8.9; allow ~5.5 sd.
	if counts["a"] < 350 || counts["a"] > 450 || counts["a"]+counts["b"] != n {
		t.Errorf("split %v, want about 400/100", counts)
	}
	t.Logf("split: %v", counts)
}
