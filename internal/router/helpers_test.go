package router

import (
	"strings"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"sigs.k8s.io/yaml"

	"github.com/weftmesh/weft/api"
)

// hdrs is a minimal api.HeaderMap for tests: ordered pairs, keys compared
// case-insensitively, no allocation on Get.
type hdrs struct{ kv [][2]string }

var _ api.HeaderMap = (*hdrs)(nil)

// req builds request headers from key, value pairs.
func req(kv ...string) *hdrs {
	h := &hdrs{}
	for i := 0; i+1 < len(kv); i += 2 {
		h.Add(kv[i], kv[i+1])
	}
	return h
}

func (h *hdrs) Get(k string) (string, bool) {
	for _, p := range h.kv {
		if strings.EqualFold(p[0], k) {
			return p[1], true
		}
	}
	return "", false
}

func (h *hdrs) Set(k, v string) {
	h.Del(k)
	h.Add(k, v)
}

func (h *hdrs) Add(k, v string) { h.kv = append(h.kv, [2]string{strings.ToLower(k), v}) }

func (h *hdrs) Del(k string) {
	out := h.kv[:0]
	for _, p := range h.kv {
		if !strings.EqualFold(p[0], k) {
			out = append(out, p)
		}
	}
	h.kv = out
}

func (h *hdrs) Range(fn func(k, v string) bool) {
	for _, p := range h.kv {
		if strings.HasPrefix(p[0], ":") {
			continue
		}
		if !fn(p[0], p[1]) {
			return
		}
	}
}

// values returns every value of k, in order.
func (h *hdrs) values(k string) []string {
	var out []string
	for _, p := range h.kv {
		if strings.EqualFold(p[0], k) {
			out = append(out, p[1])
		}
	}
	return out
}

// parseRC decodes a RouteConfiguration from YAML (or JSON).
func parseRC(t testing.TB, src string) *routev3.RouteConfiguration {
	t.Helper()
	js, err := yaml.YAMLToJSON([]byte(src))
	if err != nil {
		t.Fatalf("yaml: %v", err)
	}
	rc := &routev3.RouteConfiguration{}
	if err := protojson.Unmarshal(js, rc); err != nil {
		t.Fatalf("protojson: %v\n%s", err, js)
	}
	return rc
}

// mustCompile parses and compiles src, failing the test on error.
func mustCompile(t testing.TB, src string) *Table {
	t.Helper()
	tbl, err := Compile(parseRC(t, src))
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return tbl
}

// routeName routes h and returns the matched route's StatName, or "".
func routeName(tbl *Table, h api.HeaderMap) string {
	r := tbl.Route(h)
	if r == nil {
		return ""
	}
	return r.StatName
}

// linearRoute is the reference matcher: Envoy's linear scan.
func linearRoute(tbl *Table, h api.HeaderMap) *Route {
	path, ok := h.Get(":path")
	if !ok {
		return nil
	}
	host, ok := h.Get(tbl.hostHeader)
	if !ok && tbl.hostHeader == ":authority" {
		host, _ = h.Get("host")
	}
	vh := tbl.VirtualHost(host)
	if vh == nil {
		return nil
	}
	for _, r := range vh.Routes {
		if r.m.matches(h, path) {
			return r
		}
	}
	return nil
}
