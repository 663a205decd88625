package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	matcherv3 "github.com/envoyproxy/go-control-plane/envoy/type/matcher/v3"
	resourcev3 "github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/protobuf/types/known/durationpb"
)

// namedUpstream answers every request with its name in the body.
func namedUpstream(t *testing.T, name string) *testUpstream {
	return newUpstream(t, name, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		_, _ = io.WriteString(w, name)
	}))
}

// TestXDSServesAndACKs: weft takes listeners, routes, clusters and
// endpoints from go-control-plane's server (state of the world and delta),
// serves traffic with them, ACKs each version, and a new version applies.
func TestXDSServesAndACKs(t *testing.T) {
	t.Parallel()
	for _, delta := range []bool{false, true} {
		name := "sotw"
		if delta {
			name = "delta"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			a, b := namedUpstream(t, "a"), namedUpstream(t, "b")
			m := startMgmt(t)
			addr := freeAddr(t)
			m.set("1", snapshot(xdsEDSCluster("backend"), xdsEndpoints("backend", a.Port),
				xdsHTTPListener(t, "http", addr, "routes", "http"), xdsRoutes("routes", "v1", map[string]uint32{"backend": 1})))
			w := startWeft(t, xdsBootstrap(m, delta))
			if r := get(t, client(), "http://"+addr+"/x"); r.Status != 200 || r.Body != "a" || r.Header.Get("x-route-version") != "v1" {
				t.Fatalf("v1: %d %q %q", r.Status, r.Body, r.Header.Get("x-route-version"))
			}
			if !delta {
				m.waitAck("1", allTypes...)
			}
			// v2: endpoints move to b, routes change.
			m.set("2", snapshot(xdsEDSCluster("backend"), xdsEndpoints("backend", b.Port),
				xdsHTTPListener(t, "http", addr, "routes", "http"), xdsRoutes("routes", "v2", map[string]uint32{"backend": 1})))
			waitFor(t, 10*time.Second, "version 2 serving", func() bool {
				r := get(t, client(), "http://"+addr+"/x")
				return r.Status == 200 && r.Body == "b" && r.Header.Get("x-route-version") == "v2"
			})
			if !delta {
				m.waitAck("2", allTypes...)
			}
			if n := m.nackList(); len(n) > 0 {
				t.Fatalf("NACKs on good config: %+v", n)
			}
			dump := configDumpXDS(t, w)
			for _, want := range []string{`"dynamic_listeners"`, `"routes"`, `"backend"`} {
				if !strings.Contains(dump, want) {
					t.Errorf("/config_dump xds part lacks %s", want)
				}
			}
		})
	}
}

// TestXDSNackKeepsLastGood: an invalid route config, an unknown
// non-optional filter, and a listener on a port already taken are each
// NACKed with a detail naming them; traffic keeps using the last good
// config; the next good version is ACKed; /config_dump shows the NACK.
func TestXDSNackKeepsLastGood(t *testing.T) {
	t.Parallel()
	a := namedUpstream(t, "a")
	m := startMgmt(t)
	addr := freeAddr(t)
	good := func(v string) {
		m.set(v, snapshot(xdsEDSCluster("backend"), xdsEndpoints("backend", a.Port),
			xdsHTTPListener(t, "http", addr, "routes", "http"), xdsRoutes("routes", v, map[string]uint32{"backend": 1})))
	}
	good("1")
	w := startWeft(t, xdsBootstrap(m, false))
	m.waitAck("1", allTypes...)
	check := func(what, version string) {
		t.Helper()
		r := get(t, client(), "http://"+addr+"/x")
		if r.Status != 200 || r.Header.Get("x-route-version") != version {
			t.Fatalf("%s: %d, route version %q, want %s", what, r.Status, r.Header.Get("x-route-version"), version)
		}
	}
	waitNack := func(typeURL, version, part string) {
		t.Helper()
		waitFor(t, 10*time.Second, "a NACK of "+typeURL+" naming "+part, func() bool {
			for _, n := range m.nackList() {
				if n.TypeURL == typeURL && strings.Contains(n.Detail, part) {
					if version != "" && n.Version != version {
						t.Errorf("NACK carries version %q, want the last good %q", n.Version, version)
					}
					return true
				}
			}
			return false
		})
	}

	// A regex RE2 refuses passes PGV but not the router.
	bad := xdsRoutes("routes", "2", map[string]uint32{"backend": 1})
	bad.VirtualHosts[0].Routes[0].Match.PathSpecifier = &routev3.RouteMatch_SafeRegex{SafeRegex: &matcherv3.RegexMatcher{Regex: "(unclosed"}}
	m.set("2", snapshot(xdsEDSCluster("backend"), xdsEndpoints("backend", a.Port),
		xdsHTTPListener(t, "http", addr, "routes", "http"), bad))
	waitNack(resourcev3.RouteType, "1", `"routes"`)
	check("after a bad route config", "1")

	// A port already taken: the listener is NACKed, the old one serves.
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	m.set("3", snapshot(xdsEDSCluster("backend"), xdsEndpoints("backend", a.Port),
		xdsHTTPListener(t, "http", addr, "routes", "http"), xdsHTTPListener(t, "second", taken.Addr().String(), "routes", "second"),
		xdsRoutes("routes", "1", map[string]uint32{"backend": 1})))
	waitNack(resourcev3.ListenerType, "", `second`)
	check("after a listener on a taken port", "1")

	// An unknown, non-optional network filter.
	unk := xdsHTTPListener(t, "http", addr, "routes", "http")
	unk.FilterChains[0].Filters[0].Name = "envoy.filters.network.nope"
	unk.FilterChains[0].Filters[0].GetTypedConfig().TypeUrl = "type.googleapis.com/envoy.extensions.filters.network.nope.v3.Nope"
	m.set("4", snapshot(xdsEDSCluster("backend"), xdsEndpoints("backend", a.Port), unk,
		xdsRoutes("routes", "1", map[string]uint32{"backend": 1})))
	waitNack(resourcev3.ListenerType, "", "envoy.filters.network.nope")
	check("after an unknown filter", "1")

	dump := configDumpXDS(t, w)
	if !strings.Contains(dump, "nope") {
		t.Errorf("/config_dump does not show the last NACK:\n%s", dump)
	}
	good("5")
	m.waitAck("5", allTypes...)
	check("after a good version", "5")
}

// TestXDSClusterBeforeItExists: a route naming a cluster that does not
// exist yet gets 503 (no healthy upstream / cluster not found) and works
// as soon as the cluster arrives; nothing is NACKed.
func TestXDSClusterBeforeItExists(t *testing.T) {
	t.Parallel()
	a := namedUpstream(t, "a")
	m := startMgmt(t)
	addr := freeAddr(t)
	// Some other cluster exists: a server that sends no clusters at all
	// leaves the listeners waiting for the first CDS (Envoy's order) until
	// initial_fetch_timeout.
	m.set("1", snapshot(xdsEDSCluster("other"), xdsEndpoints("other", a.Port),
		xdsHTTPListener(t, "http", addr, "routes", "http"), xdsRoutes("routes", "1", map[string]uint32{"later": 1})))
	startWeft(t, xdsBootstrap(m, false))
	if r := get(t, client(), "http://"+addr+"/"); r.Status != 503 {
		t.Fatalf("a route to a missing cluster: %d, want 503", r.Status)
	}
	m.set("2", snapshot(xdsEDSCluster("other"), xdsEndpoints("other", a.Port), xdsEDSCluster("later"), xdsEndpoints("later", a.Port),
		xdsHTTPListener(t, "http", addr, "routes", "http"), xdsRoutes("routes", "1", map[string]uint32{"later": 1})))
	waitFor(t, 10*time.Second, "the cluster serving", func() bool {
		r := get(t, client(), "http://"+addr+"/")
		return r.Status == 200 && r.Body == "a"
	})
	if n := m.nackList(); len(n) > 0 {
		t.Fatalf("NACKs: %+v", n)
	}
}

// TestXDSServerGoesAway: the management server stops: traffic goes on
// with the last config; it comes back: weft reconnects by itself and takes
// the next version.
func TestXDSServerGoesAway(t *testing.T) {
	t.Parallel()
	a, b := namedUpstream(t, "a"), namedUpstream(t, "b")
	m := startMgmt(t)
	addr := freeAddr(t)
	m.set("1", snapshot(xdsEDSCluster("backend"), xdsEndpoints("backend", a.Port),
		xdsHTTPListener(t, "http", addr, "routes", "http"), xdsRoutes("routes", "1", map[string]uint32{"backend": 1})))
	startWeft(t, xdsBootstrap(m, false))
	m.waitAck("1", allTypes...)
	m.srv.Stop()
	for i := 0; i < 20; i++ {
		if r := get(t, client(), "http://"+addr+"/"); r.Status != 200 || r.Body != "a" {
			t.Fatalf("with the server gone: %d %q", r.Status, r.Body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	m.set("2", snapshot(xdsEDSCluster("backend"), xdsEndpoints("backend", b.Port),
		xdsHTTPListener(t, "http", addr, "routes", "http"), xdsRoutes("routes", "2", map[string]uint32{"backend": 1})))
	m.serve(m.Addr)
	waitFor(t, 45*time.Second, "version 2 after the server came back", func() bool {
		r := get(t, client(), "http://"+addr+"/")
		return r.Status == 200 && r.Body == "b"
	})
}

// TestXDSHitlessUnderLoad: 1,000 config changes (route weights, cluster
// settings, endpoints added and removed, listener filter chains replaced)
// while clients keep sending: not one request fails.
func TestXDSHitlessUnderLoad(t *testing.T) {
	t.Parallel()
	ups := []*testUpstream{namedUpstream(t, "a"), namedUpstream(t, "b"), namedUpstream(t, "c")}
	ports := make([]int, len(ups))
	for i, u := range ups {
		ports[i] = u.Port
	}
	m := startMgmt(t)
	addr := freeAddr(t)
	version := func(i int) {
		green, blue := xdsEDSCluster("green"), xdsEDSCluster("blue")
		// Cluster settings change every 7th version (the cluster is
		// rebuilt), endpoints rotate, weights shift, the listener's chain
		// changes every 50th (its connections drain).
		green.ConnectTimeout = durationpb.New(time.Duration(1+i%7%2) * time.Second)
		gEps := []int{ports[i%3], ports[(i+1)%3]}
		bEps := []int{ports[(i+2)%3]}
		if i%5 == 0 {
			bEps = append(bEps, ports[i%3])
		}
		w := uint32(i % 101)
		weights := map[string]uint32{"green": w, "blue": 100 - w}
		if w == 0 {
			weights = map[string]uint32{"blue": 1}
		} else if w == 100 {
			weights = map[string]uint32{"green": 1}
		}
		m.set(fmt.Sprint(i), snapshot(green, blue, xdsEndpoints("green", gEps...), xdsEndpoints("blue", bEps...),
			xdsHTTPListener(t, "http", addr, "routes", fmt.Sprintf("http%d", i/50)), xdsRoutes("routes", fmt.Sprint(i), weights)))
	}
	version(0)
	startWeft(t, xdsBootstrap(m, false))
	ctx, cancel := context.WithCancel(context.Background())
	var ok, failed atomic.Int64
	var firstErr atomic.Value
	var wg sync.WaitGroup
	for c := 0; c < 8; c++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hc := client()
			for ctx.Err() == nil {
				req, _ := http.NewRequest("GET", "http://"+addr+"/load", nil)
				resp, err := hc.Do(req)
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, fmt.Sprintf("status %d: %s", resp.StatusCode, body))
					continue
				}
				ok.Add(1)
			}
		}()
	}
	const changes = 1000
	for i := 1; i <= changes; i++ {
		version(i)
		time.Sleep(5 * time.Millisecond)
	}
	waitFor(t, 30*time.Second, "the last version ACKed", func() bool {
		return m.acked(resourcev3.RouteType) == fmt.Sprint(changes) && m.acked(resourcev3.ListenerType) == fmt.Sprint(changes)
	})
	time.Sleep(200 * time.Millisecond)
	cancel()
	wg.Wait()
	t.Logf("%d requests during %d config changes, %d failed", ok.Load(), changes, failed.Load())
	if failed.Load() > 0 {
		t.Fatalf("%d requests failed during config changes (first: %v)", failed.Load(), firstErr.Load())
	}
	if ok.Load() < 1000 {
		t.Fatalf("only %d requests ran during the changes", ok.Load())
	}
	if n := m.nackList(); len(n) > 0 {
		t.Fatalf("NACKs: %+v", n[0])
	}
}
