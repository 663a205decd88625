package router

import (
	"fmt"
	"math/rand/v2"
	"testing"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

func prefixRoute(prefix, cluster string) *routev3.Route {
	return &routev3.Route{
		Match:  &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: prefix}},
		Action: &routev3.Route_Route{Route: &routev3.RouteAction{ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: cluster}}},
	}
}

// largeRC builds n virtual hosts with five routes each; only the fifth
// matches "/api/v2/items?id=7" (the fourth is gated on a header the
// request lacks). Every 100th virtual host is a suffix wildcard.
func largeRC(n int) *routev3.RouteConfiguration {
	rc := &routev3.RouteConfiguration{Name: "large"}
	for i := 0; i < n; i++ {
		c := fmt.Sprintf("cluster-%d", i)
		domains := []string{fmt.Sprintf("svc-%d.mesh.local", i), fmt.Sprintf("svc-%d.mesh.local:8080", i)}
		if i%100 == 0 {
			domains = []string{fmt.Sprintf("*.w%d.example.com", i)}
		}
		exact := prefixRoute("", c)
		exact.Match.PathSpecifier = &routev3.RouteMatch_Path{Path: "/healthz"}
		sep := prefixRoute("", c)
		sep.Match.PathSpecifier = &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: "/static"}
		canary := prefixRoute("/api/v2", c+"-canary")
		canary.Match.Headers = []*routev3.HeaderMatcher{{
			Name:                 "x-canary",
			HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true},
		}}
		rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{
			Name:    fmt.Sprintf("vh-%d", i),
			Domains: domains,
			Routes: []*routev3.Route{
				exact,
				prefixRoute("/api/v1/orders", c+"-orders"),
				sep,
				canary,
				prefixRoute("/api", c),
			},
		})
	}
	rc.VirtualHosts = append(rc.VirtualHosts, &routev3.VirtualHost{
		Name: "default", Domains: []string{"*"}, Routes: []*routev3.Route{prefixRoute("/", "default")},
	})
	return rc
}

func BenchmarkRouteSmall(b *testing.B) {
	tbl := mustCompile(b, `
name: small
virtual_hosts:
- name: api
  domains: ["api.example.com", "api.example.com:443"]
  routes:
  - {match: {path: "/healthz"}, direct_response: {status: 200}}
  - {match: {prefix: "/v1/users", headers: [{name: x-canary, present_match: true}]}, route: {cluster: users-canary}}
  - {match: {prefix: "/v1/users"}, route: {cluster: users}}
  - {match: {prefix: "/v1/orders"}, route: {cluster: orders}}
  - {match: {prefix: "/"}, route: {cluster: api}}
- name: web
  domains: ["*.example.com"]
  routes:
  - {match: {prefix: "/static/", case_sensitive: false}, route: {cluster: cdn}}
  - {match: {safe_regex: {regex: "/p/[0-9]+"}}, route: {cluster: pages}}
  - {match: {prefix: "/"}, route: {cluster: web}}
- name: default
  domains: ["*"]
  routes:
  - {match: {prefix: "/grpc.", grpc: {}}, route: {cluster: grpc}}
  - {match: {prefix: "/"}, direct_response: {status: 404}}
`)
	h := req(":method", "GET", ":authority", "API.example.com:443", ":path", "/v1/users/42?fields=name", "user-agent", "bench")
	if r := tbl.Route(h); r == nil || r.Cluster != "users" {
		b.Fatalf("wrong route %v", r)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		_ = tbl.Route(h)
	}
}

func BenchmarkRouteLarge(b *testing.B) {
	const n = 10000
	tbl, err := Compile(largeRC(n))
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	reqs := make([]*hdrs, 1024)
	for i := range reqs {
		v := rng.IntN(n)
		host := fmt.Sprintf("svc-%d.mesh.local", v)
		if v%100 == 0 {
			host = fmt.Sprintf("x.w%d.example.com", v)
		}
		reqs[i] = req(":method", "GET", ":authority", host, ":path", "/api/v2/items?id=7")
		r := tbl.Route(reqs[i])
		if want := fmt.Sprintf("cluster-%d", v); r == nil || r.Cluster != want || r.Index != 4 {
			b.Fatalf("host %s: route %+v, want the last route to %s", host, r, want)
		}
	}
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		_ = tbl.Route(reqs[i&1023])
		i++
	}
}

// BenchmarkRouteManyRoutes is one virtual host with 5,000 prefix routes,
// matching the last; "linear" is Envoy's scan for comparison.
func BenchmarkRouteManyRoutes(b *testing.B) {
	vhost := &routev3.VirtualHost{Name: "big", Domains: []string{"*"}}
	for i := 0; i < 5000; i++ {
		r := prefixRoute(fmt.Sprintf("/svc/%d/", i), fmt.Sprintf("c%d", i))
		if i%2 == 1 {
			r.Match.CaseSensitive = wrapperspb.Bool(false)
		}
		vhost.Routes = append(vhost.Routes, r)
	}
	tbl, err := Compile(&routev3.RouteConfiguration{VirtualHosts: []*routev3.VirtualHost{vhost}})
	if err != nil {
		b.Fatal(err)
	}
	h := req(":authority", "x", ":path", "/SVC/4999/get")
	if r := tbl.Route(h); r == nil || r.Cluster != "c4999" {
		b.Fatalf("wrong route %v", r)
	}
	b.Run("radix", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = tbl.Route(h)
		}
	})
	b.Run("linear", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			_ = linearRoute(tbl, h)
		}
	})
}

func BenchmarkCompileLarge(b *testing.B) {
	rc := largeRC(10000)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(rc); err != nil {
			b.Fatal(err)
		}
	}
}

func TestRouteDoesNotAllocate(t *testing.T) {
	tbl, err := Compile(largeRC(200))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []*hdrs{
		req(":authority", "svc-7.mesh.local", ":path", "/api/v2/items?id=7"),
		req(":authority", "SVC-7.MESH.LOCAL:8080", ":path", "/static/x"),
		req(":authority", "a.w100.example.com:443", ":path", "/healthz"),
		req(":authority", "unknown", ":path", "/"),
	} {
		if r := tbl.Route(h); r == nil {
			t.Fatalf("no route for %v", h.kv)
		}
		if allocs := testing.AllocsPerRun(200, func() { _ = tbl.Route(h) }); allocs != 0 {
			t.Errorf("Route(%v) allocates %v", h.kv, allocs)
		}
	}
}
