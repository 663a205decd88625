package router

import (
	"fmt"
	"reflect"
	"testing"
)

type fakeVars string

func (v fakeVars) DownstreamRemoteAddress() string { return string(v) }

func TestHeaderOpsAppendActions(t *testing.T) {
	r := only(t, `
virtual_hosts:
- name: v
  domains: ["*"]
  routes:
  - match: {prefix: "/"}
    route: {cluster: c}
    request_headers_to_remove: [X-Removed, x-readd]
    request_headers_to_add:
    - {header: {key: x-append, value: new}}
    - {header: {key: x-append-absent, value: new}, append_action: APPEND_IF_EXISTS_OR_ADD}
    - {header: {key: x-if-absent, value: new}, append_action: ADD_IF_ABSENT}
    - {header: {key: x-if-absent-missing, value: new}, append_action: ADD_IF_ABSENT}
    - {header: {key: x-overwrite, value: new}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}
    - {header: {key: x-overwrite-missing, value: new}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}
    - {header: {key: x-if-exists, value: new}, append_action: OVERWRITE_IF_EXISTS}
    - {header: {key: x-if-exists-missing, value: new}, append_action: OVERWRITE_IF_EXISTS}
    - {header: {key: x-legacy-true, value: new}, append: true}
    - {header: {key: x-legacy-false, value: new}, append: false}
    - {header: {key: x-readd, value: new}}
    - {header: {key: x-same-level, value: "1"}}
    - {header: {key: x-same-level, value: "2"}, append_action: ADD_IF_ABSENT}
    - {header: {key: x-empty, value: ""}}
    - {header: {key: x-empty-kept, value: ""}, keep_empty_value: true}
    - {header: {key: X-Upper, raw_value: "cmF3"}}
`)
	h := req(
		"x-removed", "gone",
		"x-readd", "old",
		"x-append", "old",
		"x-if-absent", "old",
		"x-overwrite", "old", "x-overwrite", "old2",
		"x-if-exists", "old",
		"x-legacy-true", "old",
		"x-legacy-false", "old",
	)
	r.RequestHeaders.Apply(h, nil)
	want := map[string][]string{
		"x-removed":           nil,
		"x-readd":             {"new"},
		"x-append":            {"old", "new"},
		"x-append-absent":     {"new"},
		"x-if-absent":         {"old"},
		"x-if-absent-missing": {"new"},
		"x-overwrite":         {"new"},
		"x-overwrite-missing": {"new"},
		"x-if-exists":         {"new"},
		"x-if-exists-missing": nil,
		"x-legacy-true":       {"old", "new"},
		"x-legacy-false":      {"new"},
		"x-same-level":        {"1", "2"}, // ADD_IF_ABSENT decides before this level adds
		"x-empty":             nil,
		"x-empty-kept":        {""},
		"x-upper":             {"raw"},
	}
	for k, v := range want {
		if got := h.values(k); !reflect.DeepEqual(got, v) {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
}

func TestHeaderOpsLevels(t *testing.T) {
	const src = `
most_specific_header_mutations_wins: %v
request_headers_to_add: [{header: {key: x-level, value: rc}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}, {header: {key: x-trace, value: rc}}]
response_headers_to_add: [{header: {key: x-resp, value: rc}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}]
response_headers_to_remove: [x-secret]
virtual_hosts:
- name: v
  domains: ["*"]
  request_headers_to_add: [{header: {key: x-level, value: vhost}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}, {header: {key: x-trace, value: vhost}}]
  response_headers_to_add: [{header: {key: x-resp, value: vhost}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}]
  routes:
  - match: {prefix: "/w"}
    request_headers_to_add: [{header: {key: x-level, value: route}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}, {header: {key: x-trace, value: route}}]
    route:
      weighted_clusters:
        clusters:
        - name: a
          weight: 1
          request_headers_to_add: [{header: {key: x-level, value: cluster}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}, {header: {key: x-trace, value: cluster}}]
        - {name: b, weight: 1}
  - match: {prefix: "/"}
    request_headers_to_add: [{header: {key: x-level, value: route}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}, {header: {key: x-trace, value: route}}]
    route: {cluster: c}
`
	for _, tt := range []struct {
		mostSpecific bool
		level        string
		trace        []string
		clusterLevel string
		clusterTrace []string
		resp         string
	}{
		// Envoy's default: route, then vhost, then route config, so the
		// most general overwrite wins.
		{false, "rc", []string{"route", "vhost", "rc"}, "rc", []string{"cluster", "route", "vhost", "rc"}, "rc"},
		{true, "route", []string{"rc", "vhost", "route"}, "cluster", []string{"rc", "vhost", "route", "cluster"}, "vhost"},
	} {
		tbl := mustCompile(t, fmt.Sprintf(src, tt.mostSpecific))
		r := tbl.Route(req(":authority", "h", ":path", "/"))
		h := req()
		r.RequestHeaders.Apply(h, nil)
		if got := h.values("x-level"); !reflect.DeepEqual(got, []string{tt.level}) {
			t.Errorf("mostSpecific=%v: x-level = %q, want %q", tt.mostSpecific, got, tt.level)
		}
		if got := h.values("x-trace"); !reflect.DeepEqual(got, tt.trace) {
			t.Errorf("mostSpecific=%v: x-trace = %q, want %q", tt.mostSpecific, got, tt.trace)
		}
		resp := req("x-secret", "s")
		r.ResponseHeaders.Apply(resp, nil)
		if got := resp.values("x-resp"); !reflect.DeepEqual(got, []string{tt.resp}) || resp.values("x-secret") != nil {
			t.Errorf("mostSpecific=%v: response headers %v", tt.mostSpecific, resp.kv)
		}

		w := tbl.Route(req(":authority", "h", ":path", "/w"))
		a, b := &w.WeightedClusters[0], &w.WeightedClusters[1]
		h = req()
		a.RequestHeaders.Apply(h, nil)
		if got := h.values("x-level"); !reflect.DeepEqual(got, []string{tt.clusterLevel}) {
			t.Errorf("mostSpecific=%v: cluster x-level = %q, want %q", tt.mostSpecific, got, tt.clusterLevel)
		}
		if got := h.values("x-trace"); !reflect.DeepEqual(got, tt.clusterTrace) {
			t.Errorf("mostSpecific=%v: cluster x-trace = %q, want %q", tt.mostSpecific, got, tt.clusterTrace)
		}
		if b.RequestHeaders != w.RequestHeaders {
			t.Error("a weighted cluster without headers should share the route's chain")
		}
	}
}

func TestHeaderOpsVariables(t *testing.T) {
	r := only(t, `
virtual_hosts:
- name: v
  domains: ["*"]
  routes:
  - match: {prefix: "/"}
    route: {cluster: c}
    request_headers_to_add:
    - {header: {key: x-addr, value: "%DOWNSTREAM_REMOTE_ADDRESS%"}}
    - {header: {key: x-ip, value: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"}}
    - {header: {key: x-mixed, value: "ip=%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%;100%%"}}
    - {header: {key: x-pct, value: "50%%"}}
`)
	for _, tt := range []struct {
		addr, ip string
	}{{"10.1.2.3:4567", "10.1.2.3"}, {"[2001:db8::1]:443", "2001:db8::1"}, {"/tmp/sock", "/tmp/sock"}} {
		h := req()
		r.RequestHeaders.Apply(h, fakeVars(tt.addr))
		got := map[string]string{}
		for _, k := range []string{"x-addr", "x-ip", "x-mixed", "x-pct"} {
			got[k], _ = h.Get(k)
		}
		want := map[string]string{"x-addr": tt.addr, "x-ip": tt.ip, "x-mixed": "ip=" + tt.ip + ";100%", "x-pct": "50%"}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("addr %s: got %v, want %v", tt.addr, got, want)
		}
	}
	// Without a VarSource, variables are empty and skipped.
	h := req()
	r.RequestHeaders.Apply(h, nil)
	if _, ok := h.Get("x-addr"); ok {
		t.Error("x-addr added without a VarSource")
	}
	if v, _ := h.Get("x-mixed"); v != "ip=;100%" {
		t.Errorf("x-mixed = %q", v)
	}
}

func TestHeaderOpsNilAndAllocs(t *testing.T) {
	var o *HeaderOps
	o.Apply(req(), nil) // must not panic
	if !o.Empty() {
		t.Error("nil HeaderOps not Empty")
	}
	r := only(t, `
virtual_hosts:
- name: v
  domains: ["*"]
  routes:
  - match: {prefix: "/"}
    route: {cluster: c}
    request_headers_to_add: [{header: {key: x-a, value: "1"}, append_action: OVERWRITE_IF_EXISTS_OR_ADD}]
    request_headers_to_remove: [x-b]
`)
	h := &hdrs{kv: make([][2]string, 0, 8)}
	h.Add("x-a", "0")
	if allocs := testing.AllocsPerRun(100, func() { r.RequestHeaders.Apply(h, nil) }); allocs != 0 {
		t.Errorf("literal Apply allocates %v per run", allocs)
	}
}
