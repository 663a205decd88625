package main

import (
	"fmt"
	"math/rand/v2"
	"strings"

	corev3 "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	typev3 "github.com/envoyproxy/go-control-plane/envoy/type/v3"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/weftmesh/weft/internal/codec/http1"
	"github.com/weftmesh/weft/internal/router"
)

// numSpecific is how many distinct specific route shapes specificRoute
// knows before it falls back to "/ext/<k>/" prefixes.
const numSpecific = 8

// shape describes the generated route table: vhosts virtual hosts holding
// routes routes in all. Virtual host i gets base-2, base or base+2 routes
// (i%3), base = routes/vhosts, and the last one takes the remainder, so the
// count is exact.
type shape struct {
	vhosts, routes int
}

// counts returns how many routes each virtual host has.
func (s shape) counts() []int {
	out := make([]int, s.vhosts)
	base := s.routes / s.vhosts
	total := 0
	for i := range out {
		out[i] = base
		if base >= 3 {
			out[i] = base - 2 + 2*(i%3)
		}
		total += out[i]
	}
	out[s.vhosts-1] = max(1, out[s.vhosts-1]+s.routes-total)
	return out
}

// catchAll reports whether virtual host i ends with a "/" prefix route;
// one in four does not, so a path outside its routes is a miss.
func catchAll(i int) bool { return i%4 != 3 }

// host names of virtual host i.
func fqdn(i int) string  { return fmt.Sprintf("svc-%d.ns-%d.svc.cluster.local", i, i%100) }
func short(i int) string { return fmt.Sprintf("svc-%d.ns-%d", i, i%100) }
func ipOf(i int) string  { return fmt.Sprintf("10.%d.%d.%d", 96+i>>16, i>>8&255, i&255) }
func tenant(i int) string {
	return fmt.Sprintf("tenant-%d.example.com", i)
}

// cluster names follow Istio's outbound|port||host form.
func clusterName(i int, sub string) string {
	if sub == "" {
		return "outbound|8080||" + fqdn(i)
	}
	return "outbound|8080|" + sub + "|" + fqdn(i)
}

// routeConfig builds the RouteConfiguration of shape s. It is shaped like
// an Istio sidecar's outbound table: every virtual host has its service's
// FQDN, short name and cluster IP, each bare and with the port; one in 50
// also a suffix wildcard ("*.tenant-i.example.com") and one in 500 a prefix
// wildcard ("legacy-i.*"). Routes are exact paths, prefixes (some case
// insensitive), path_separated_prefix, header matchers (exact, prefix,
// present, range) and gRPC matchers; a third of the actions are weighted
// clusters. There is no regex and no "*" virtual host, so an unknown
// authority is a miss. gen only changes the configuration's name.
func routeConfig(s shape, gen int) *routev3.RouteConfiguration {
	rc := &routev3.RouteConfiguration{
		Name:             fmt.Sprintf("outbound-8080-g%d", gen),
		ValidateClusters: wrapperspb.Bool(false),
		VirtualHosts:     make([]*routev3.VirtualHost, 0, s.vhosts),
	}
	for i, n := range s.counts() {
		vh := &routev3.VirtualHost{
			Name: fmt.Sprintf("%s:8080", fqdn(i)),
			Domains: []string{
				fqdn(i), fqdn(i) + ":8080",
				short(i), short(i) + ":8080",
				ipOf(i), ipOf(i) + ":8080",
			},
			Routes: make([]*routev3.Route, 0, n),
		}
		if i%50 == 0 {
			vh.Domains = append(vh.Domains, "*."+tenant(i))
		}
		if i%500 == 0 {
			vh.Domains = append(vh.Domains, fmt.Sprintf("legacy-%d.*", i))
		}
		if i%10 == 0 {
			vh.RetryPolicy = &routev3.RetryPolicy{RetryOn: "connect-failure,refused-stream,gateway-error", NumRetries: wrapperspb.UInt32(2)}
		}
		specific := n
		if catchAll(i) {
			specific = n - 1
		}
		for k := 0; k < specific; k++ {
			vh.Routes = append(vh.Routes, specificRoute(i, k))
		}
		if catchAll(i) {
			vh.Routes = append(vh.Routes, defaultRoute(i))
		}
		rc.VirtualHosts = append(rc.VirtualHosts, vh)
	}
	return rc
}

func toCluster(c string) *routev3.Route_Route {
	return &routev3.Route_Route{Route: &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_Cluster{Cluster: c},
		Timeout:          durationpb.New(0),
	}}
}

func weighted(i int, subsets ...string) *routev3.Route_Route {
	wc := &routev3.WeightedCluster{}
	w := uint32(100)
	for k, sub := range subsets {
		share := uint32(90)
		if k > 0 {
			share = 10 / uint32(len(subsets)-1)
		}
		if k == len(subsets)-1 {
			share = w
		}
		w -= share
		wc.Clusters = append(wc.Clusters, &routev3.WeightedCluster_ClusterWeight{
			Name: clusterName(i, sub), Weight: wrapperspb.UInt32(share),
		})
	}
	return &routev3.Route_Route{Route: &routev3.RouteAction{
		ClusterSpecifier: &routev3.RouteAction_WeightedClusters{WeightedClusters: wc},
		Timeout:          durationpb.New(0),
	}}
}

func prefix(p string) *routev3.RouteMatch {
	return &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Prefix{Prefix: p}}
}

// specificRoute is route k of virtual host i (k < the specific count).
// Each shape is reached by specificRequest(i, k) and by no earlier route.
func specificRoute(i, k int) *routev3.Route {
	r := &routev3.Route{Name: fmt.Sprintf("r%d", k)}
	switch k {
	case 0:
		r.Match = &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/healthz"}}
		r.Action = toCluster(clusterName(i, ""))
	case 1:
		r.Match = prefix("/api/v1/orders")
		r.Match.Headers = []*routev3.HeaderMatcher{{
			Name: "x-canary",
			HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
				MatchPattern: &matcherv3.StringMatcher_Exact{Exact: "1"},
			}},
		}}
		r.Action = weighted(i, "v2", "v3")
	case 2:
		r.Match = prefix("/api/v1/orders")
		r.Action = toCluster(clusterName(i, "v1"))
	case 3:
		r.Match = &routev3.RouteMatch{
			PathSpecifier: &routev3.RouteMatch_PathSeparatedPrefix{PathSeparatedPrefix: "/static"},
			CaseSensitive: wrapperspb.Bool(false),
		}
		r.Action = toCluster(clusterName(i, "static"))
	case 4:
		r.Match = prefix("/api/v2/")
		r.Match.Headers = []*routev3.HeaderMatcher{
			{Name: "x-user", HeaderMatchSpecifier: &routev3.HeaderMatcher_StringMatch{StringMatch: &matcherv3.StringMatcher{
				MatchPattern: &matcherv3.StringMatcher_Prefix{Prefix: "premium-"},
			}}},
			{Name: "x-tier", HeaderMatchSpecifier: &routev3.HeaderMatcher_PresentMatch{PresentMatch: true}},
		}
		r.Action = toCluster(clusterName(i, "premium"))
	case 5:
		r.Match = prefix("/api/v2/")
		r.Action = weighted(i, "v1", "v2", "v3")
	case 6:
		r.Match = &routev3.RouteMatch{PathSpecifier: &routev3.RouteMatch_Path{Path: "/login"}}
		r.Match.Headers = []*routev3.HeaderMatcher{{
			Name:                 "x-build",
			HeaderMatchSpecifier: &routev3.HeaderMatcher_RangeMatch{RangeMatch: rangeOf(100, 1000)},
			InvertMatch:          true,
		}}
		r.Action = toCluster(clusterName(i, "auth"))
	case 7:
		r.Match = prefix(fmt.Sprintf("/pkg%d.Service/", i%97))
		r.Match.Grpc = &routev3.RouteMatch_GrpcRouteMatchOptions{}
		r.Action = toCluster(clusterName(i, "grpc"))
	default:
		r.Match = prefix(fmt.Sprintf("/ext/%d/", k))
		r.Action = toCluster(clusterName(i, fmt.Sprintf("ext%d", k)))
	}
	if k%4 == 2 {
		r.RequestHeadersToAdd = []*corev3.HeaderValueOption{{
			Header: &corev3.HeaderValue{Key: "x-route", Value: r.Name},
		}}
	}
	return r
}

func defaultRoute(i int) *routev3.Route {
	r := &routev3.Route{Name: "default", Match: prefix("/")}
	if i%5 == 0 {
		r.Action = weighted(i, "v1", "v2")
	} else {
		r.Action = toCluster(clusterName(i, ""))
	}
	return r
}

// request is one prepared request and what the table must answer.
type request struct {
	h     *http1.RequestHead
	class class
	vhost int // expected virtual host index, -1 for a miss
	route int // expected route index, -1 for a miss
}

// class groups requests in the latency table.
type class int

const (
	hit       class = iota // a random route of a random virtual host
	last                   // the last route of the last virtual host
	missHost               // an authority no virtual host serves
	missRoute              // a known virtual host without a catch-all, a path none of its routes take
	numClasses
)

func (c class) String() string {
	return [...]string{"hit (random vhost, random route)", "last vhost, last route", "miss: unknown host", "miss: no route in vhost"}[c]
}

func newHead(authority, path string, kv ...string) *http1.RequestHead {
	h := &http1.RequestHead{Method: "GET", Target: path, Minor: 1, ContentLength: -1}
	h.Header.Add("Host", authority)
	h.Header.Add("user-agent", "weft-xds-scale")
	h.Header.Add("accept", "*/*")
	for i := 0; i+1 < len(kv); i += 2 {
		h.Header.Add(kv[i], kv[i+1])
	}
	return h
}

// authority picks one of the forms a client may send for virtual host i:
// any configured domain, an unlisted port (matched without it), upper case,
// or a name under its wildcard.
func authority(rng *rand.Rand, i int) string {
	var a string
	switch rng.IntN(8) {
	case 0:
		a = fqdn(i)
	case 1, 2:
		a = fqdn(i) + ":8080"
	case 3:
		a = short(i) + ":8080"
	case 4:
		a = ipOf(i) + ":8080"
	case 5:
		a = short(i) + ":9090" // port no domain lists: matched without it
	case 6:
		a = strings.ToUpper(fqdn(i))
	default:
		a = short(i)
	}
	if i%50 == 0 && rng.IntN(2) == 0 {
		a = fmt.Sprintf("app%d.%s", rng.IntN(100), tenant(i))
	}
	return a
}

// routeRequest builds a request for route k of virtual host i, which has n
// routes.
func routeRequest(rng *rand.Rand, i, k, n int) *http1.RequestHead {
	a := authority(rng, i)
	if catchAll(i) && k == n-1 {
		return newHead(a, fmt.Sprintf("/index-%d.html", rng.IntN(1000)))
	}
	switch k {
	case 0:
		return newHead(a, "/healthz")
	case 1:
		return newHead(a, fmt.Sprintf("/api/v1/orders/%d?expand=items", rng.IntN(1e6)), "x-canary", "1")
	case 2:
		return newHead(a, fmt.Sprintf("/api/v1/orders/%d", rng.IntN(1e6)))
	case 3:
		return newHead(a, fmt.Sprintf("/Static/js/app-%d.js", rng.IntN(100)))
	case 4:
		return newHead(a, "/api/v2/items?page=2", "x-user", fmt.Sprintf("premium-%d", rng.IntN(1e4)), "x-tier", "gold")
	case 5:
		return newHead(a, "/api/v2/items?page=2", "x-user", "basic-1")
	case 6:
		return newHead(a, "/login", "x-build", "42")
	case 7:
		return newHead(a, fmt.Sprintf("/pkg%d.Service/Get", i%97), "content-type", "application/grpc")
	default:
		return newHead(a, fmt.Sprintf("/ext/%d/item/%d", k, rng.IntN(100)))
	}
}

// requests returns n requests in random order: about 90% hits on a
// uniformly random route of a virtual host drawn by pick, 1% the last route
// of the last virtual host, 4.5% unknown hosts and 4.5% paths no route of a
// (catch-all free) virtual host takes.
func requests(s shape, n int, seed uint64, pick vhostPicker) []request {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	if pick == nil {
		pick = uniform
	}
	next := pick(rng, s.vhosts)
	counts := s.counts()
	out := make([]request, 0, n)
	for len(out) < n {
		switch p := rng.IntN(1000); {
		case p < 10:
			i := s.vhosts - 1
			out = append(out, request{h: routeRequest(rng, i, counts[i]-1, counts[i]), class: last, vhost: i, route: counts[i] - 1})
		case p < 55:
			a := fmt.Sprintf("unknown-%d.ns-%d.svc.cluster.local:8080", rng.IntN(1e6), rng.IntN(100))
			out = append(out, request{h: newHead(a, "/api/v1/orders/1"), class: missHost, vhost: -1, route: -1})
		case p < 100:
			i := next() | 3 // catchAll(i) is false
			if i >= s.vhosts {
				i = 3
			}
			out = append(out, request{h: newHead(authority(rng, i), "/nothing/here"), class: missRoute, vhost: i, route: -1})
		default:
			i := next()
			k := rng.IntN(counts[i])
			out = append(out, request{h: routeRequest(rng, i, k, counts[i]), class: hit, vhost: i, route: k})
		}
	}
	return out
}

// vhostPicker returns a generator of virtual host indexes in [0, n).
type vhostPicker func(rng *rand.Rand, n int) func() int

// uniform spreads traffic evenly over every virtual host: the worst case
// for caches.
func uniform(rng *rand.Rand, n int) func() int {
	return func() int { return rng.IntN(n) }
}

// zipf draws virtual hosts by popularity, Zipf with exponent 1.1 (a few
// services take most requests, as in most meshes); the popular ones are
// spread over the table at random.
func zipf(rng *rand.Rand, n int) func() int {
	z := rand.NewZipf(rng, 1.1, 1, uint64(n-1))
	perm := rng.Perm(n)
	return func() int { return perm[z.Uint64()] }
}

// warm reads every field of the request so that it is in cache, as the
// head of a request the codec has just parsed is; it returns a value so the
// reads are not optimised away.
func warm(q *request) int {
	h := q.h
	n := len(h.Target) + int(h.Target[0])
	h.Range(func(k, v string) bool {
		n += len(k) + len(v) + int(k[0])
		if v != "" {
			n += int(v[0])
		}
		return true
	})
	return n
}

// check reports whether r is what req expects from table t: the expected
// route object of t itself (so a half-built or mixed table fails).
func (req *request) check(t *router.Table, r *router.Route) error {
	if req.route < 0 {
		if r != nil {
			return fmt.Errorf("%s: got route %s of %s, want none", req.h.Target, r.StatName, r.VirtualHost.Name)
		}
		return nil
	}
	if r == nil {
		return fmt.Errorf("%s %s: no route, want vhost %d route %d", authorityOf(req.h), req.h.Target, req.vhost, req.route)
	}
	if want := t.VirtualHosts()[req.vhost].Routes[req.route]; r != want {
		return fmt.Errorf("%s %s: got %s of %s, want %s of %s", authorityOf(req.h), req.h.Target, r.StatName, r.VirtualHost.Name, want.StatName, want.VirtualHost.Name)
	}
	return nil
}

func authorityOf(h *http1.RequestHead) string {
	v, _ := h.Get(":authority")
	return v
}

func rangeOf(start, end int64) *typev3.Int64Range { return &typev3.Int64Range{Start: start, End: end} }
