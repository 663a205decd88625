package xds_test

import (
	"context"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	clusterv3 "github.com/envoyproxy/go-control-plane/envoy/config/cluster/v3"
	endpointv3 "github.com/envoyproxy/go-control-plane/envoy/config/endpoint/v3"
	listenerv3 "github.com/envoyproxy/go-control-plane/envoy/config/listener/v3"
	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	tlsv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/transport_sockets/tls/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/grpc"
	"google.golang.org/protobuf/types/known/anypb"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/weftmesh/weft/internal/xds"
)

var allTypes = []string{cds, eds, lds, rds, sds}

// TestInitialFetch: over ADS the client fetches all five types, applies
// them, ACKs each, reports Initialized only once everything has arrived,
// and shows it all in Status.
func TestInitialFetch(t *testing.T) {
	protocols(t, func(t *testing.T, delta bool) {
		srv := startServer(t, true, "")
		srv.set(t, baseConfig("v1").snapshot(t))
		rec := newRecorder()
		cfg := adsConfig(t, srv.addr, delta)
		cfg.ADS.Authority = "xds-cluster"
		cfg.ADS.Metadata = []string{"x-weft-token", "secret"}
		c := startClient(t, cfg, rec)
		waitInitialized(t, c)

		want := map[string][]string{cds: {"c1"}, eds: {"c1"}, lds: {"l1"}, rds: {"r1"}, sds: {"s1"}}
		for typ, names := range want {
			if got := rec.names(typ); !slices.Equal(got, names) {
				t.Errorf("%s applied %v at Initialized, want %v", typ, got, names)
			}
		}
		until(t, &srv.notifier, "an ACK of every type", func() bool {
			for _, typ := range allTypes {
				acks := srv.find(typ, func(r request) bool {
					return r.nonce != "" && !r.hasErr && (delta || r.version == "v1")
				})
				if len(acks) == 0 {
					return false
				}
			}
			return true
		})
		if reqs := srv.requests(); reqs[0].node != nodeID {
			t.Errorf("first request has node %q, want %q", reqs[0].node, nodeID)
		}
		if !slices.Equal(srv.openedStreams(), []string{""}) {
			t.Errorf("streams opened %q, want one ADS stream", srv.openedStreams())
		}
		if md := srv.headers()[0]; !slices.Equal(md.Get(":authority"), []string{"xds-cluster"}) ||
			!slices.Equal(md.Get("x-weft-token"), []string{"secret"}) {
			t.Errorf("stream headers = %v, want the authority and initial metadata", md)
		}
		eventually(t, "status of five connected types at v1", func() bool {
			sts := c.Status()
			if len(sts) != 5 {
				return false
			}
			for _, st := range sts {
				if !st.Connected || st.Version != "v1" || len(st.Resources) != 1 || st.LastNACK != nil {
					return false
				}
			}
			return true
		})
		st := typeStatus(c, eds)
		if st.Server != srv.addr || !st.ADS || st.Delta != delta || st.Wildcard ||
			!slices.Equal(st.Subscribed, []string{"c1"}) || st.Resources[0].Name != "c1" || st.LastUpdated.IsZero() {
			t.Errorf("EDS status = %+v", st)
		}
		if st := typeStatus(c, lds); !st.Wildcard || st.Subscribed != nil {
			t.Errorf("LDS status = %+v, want a wildcard subscription", st)
		}
	})
}

// TestNACK: an update the Applier rejects is NACKed with the Applier's
// error and the previous version; the proxy keeps its state; a repeated
// NACK does not spin; the next good update is ACKed.
func TestNACK(t *testing.T) {
	protocols(t, func(t *testing.T, delta bool) {
		srv := startServer(t, true, "")
		srv.set(t, baseConfig("v1").snapshot(t))
		rec := newRecorder()
		c := startClient(t, adsConfig(t, srv.addr, delta), rec)
		waitInitialized(t, c)

		rec.setReject(rejectNamed(lds, "bad"))
		v2 := baseConfig("v2")
		v2.listeners = append(v2.listeners, listener("bad", 10002, "r1"))
		srv.set(t, v2.snapshot(t))
		const detail = `rejected: listener "bad" is not allowed`
		until(t, &srv.notifier, "a NACK of v2", func() bool {
			return len(srv.find(lds, func(r request) bool {
				return r.hasErr && r.errDetail == detail && r.nonce != "" && (delta || r.version == "v1")
			})) > 0
		})
		if !rec.has(lds, "l1") {
			t.Fatalf("listeners after the NACK = %v, want the previous [l1]", rec.names(lds))
		}
		// go-control-plane answers every SotW NACK with the rejected
		// version again: the client must NACK again, paced by the
		// back-off, not in a busy loop.
		time.Sleep(500 * time.Millisecond) // the measuring window
		nacks := len(srv.find(lds, func(r request) bool { return r.hasErr }))
		if delta && nacks != 1 || !delta && (nacks < 2 || nacks > 15) {
			t.Errorf("%d NACKs of one bad version in 500ms (back-off 20ms..200ms)", nacks)
		}
		eventually(t, "the NACK in Status", func() bool {
			st := typeStatus(c, lds)
			return st.LastNACK != nil && st.LastNACK.Version == "v2" && st.LastNACK.Detail == detail && st.Version == "v1"
		})

		v3 := baseConfig("v3")
		v3.listeners = append(v3.listeners, listener("l2", 10003, "r1"))
		srv.set(t, v3.snapshot(t))
		until(t, &rec.notifier, "v3 applied", func() bool { return rec.has(lds, "l1", "l2") })
		until(t, &srv.notifier, "an ACK of v3", func() bool {
			reqs := srv.find(lds, func(request) bool { return true })
			last := reqs[len(reqs)-1]
			return !last.hasErr && last.nonce != "" && (delta || last.version == "v3")
		})
		eventually(t, "v3 in Status", func() bool {
			st := typeStatus(c, lds)
			return st.Version == "v3" && st.LastNACK != nil && st.LastNACK.Version == "v2"
		})
	})
}

// TestInvalidResource: a resource that fails Envoy's validation rules is
// NACKed, naming it, and the Applier never sees the update.
func TestInvalidResource(t *testing.T) {
	protocols(t, func(t *testing.T, delta bool) {
		srv := startServer(t, true, "")
		srv.set(t, baseConfig("v1").snapshot(t))
		rec := newRecorder()
		c := startClient(t, adsConfig(t, srv.addr, delta), rec)
		waitInitialized(t, c)
		before := rec.callCount(cds)

		v2 := baseConfig("v2")
		bad := edsCluster("bad", "")
		bad.ConnectTimeout = durationpb.New(0)
		v2.clusters = append(v2.clusters, bad)
		srv.set(t, v2.snapshot(t))
		until(t, &srv.notifier, "a NACK naming the cluster", func() bool {
			return len(srv.find(cds, func(r request) bool {
				return r.hasErr && strings.Contains(r.errDetail, `cluster "bad"`) && strings.Contains(r.errDetail, "ConnectTimeout")
			})) > 0
		})
		if n := rec.callCount(cds); n != before {
			t.Errorf("Apply called %d times for the invalid update", n-before)
		}
		if !rec.has(cds, "c1") {
			t.Errorf("clusters = %v, want [c1]", rec.names(cds))
		}
		eventually(t, "the NACK in Status", func() bool {
			st := typeStatus(c, cds)
			return st.LastNACK != nil && st.LastNACK.Version == "v2" && st.Version == "v1"
		})
	})
}

// TestSubscriptionFollowsWants: RDS, EDS and SDS subscriptions follow
// what the applied listeners and clusters refer to; names no longer
// referred to are unsubscribed and removed from the Applier.
func TestSubscriptionFollowsWants(t *testing.T) {
	protocols(t, func(t *testing.T, delta bool) {
		srv := startServer(t, true, "")
		srv.set(t, baseConfig("v1").snapshot(t))
		rec := newRecorder()
		c := startClient(t, adsConfig(t, srv.addr, delta), rec)
		waitInitialized(t, c)

		v2 := config{
			version:   "v2",
			clusters:  []*clusterv3.Cluster{edsCluster("c2", "s2")},
			endpoints: []*endpointv3.ClusterLoadAssignment{endpoints("c2", 8002)},
			listeners: []*listenerv3.Listener{listener("l1", 10001, "r2")},
			routes:    []*routev3.RouteConfiguration{routeConfig("r2", "c2")},
			secrets:   []*tlsv3.Secret{secret("s2")},
		}
		srv.set(t, v2.snapshot(t))
		until(t, &rec.notifier, "the v2 resources, and only those", func() bool {
			return rec.has(cds, "c2") && rec.has(eds, "c2") && rec.has(lds, "l1") && rec.has(rds, "r2") && rec.has(sds, "s2")
		})
		for typ, pair := range map[string][2]string{eds: {"c2", "c1"}, rds: {"r2", "r1"}, sds: {"s2", "s1"}} {
			newName, oldName := pair[0], pair[1]
			got := srv.find(typ, func(r request) bool {
				if delta {
					return slices.Contains(r.subscribe, newName)
				}
				return slices.Equal(r.names, []string{newName})
			})
			if len(got) == 0 {
				t.Errorf("%s: no request subscribing to exactly %s", typ, newName)
			}
			if delta && len(srv.find(typ, func(r request) bool { return slices.Contains(r.unsubscribe, oldName) })) == 0 {
				t.Errorf("%s: %s never unsubscribed", typ, oldName)
			}
			if st := typeStatus(c, typ); !slices.Equal(st.Subscribed, []string{newName}) {
				t.Errorf("%s: Status.Subscribed = %v", typ, st.Subscribed)
			}
		}
	})
}

// TestWarming: listeners of a CDS update that introduces an EDS cluster
// are held until that cluster's endpoints arrive.
func TestWarming(t *testing.T) {
	protocols(t, func(t *testing.T, delta bool) {
		srv := startServer(t, true, "")
		srv.set(t, baseConfig("v1").snapshot(t))
		rec := newRecorder()
		c := startClient(t, adsConfig(t, srv.addr, delta), rec)
		waitInitialized(t, c)

		v2 := baseConfig("v2")
		v2.clusters = append(v2.clusters, edsCluster("c2", ""))
		v2.listeners = append(v2.listeners, listener("l2", 10002, "r2"))
		v2.routes = append(v2.routes, routeConfig("r2", "c2"))
		srv.set(t, v2.snapshot(t))
		until(t, &rec.notifier, "CDS v2", func() bool { return rec.has(cds, "c1", "c2") })
		eventually(t, "LDS held", func() bool { return typeStatus(c, lds).Held })
		if rec.has(lds, "l1", "l2") {
			t.Fatal("listener l2 applied before cluster c2 had endpoints")
		}

		v3 := v2
		v3.version = "v3"
		v3.endpoints = append(slices.Clone(v2.endpoints), endpoints("c2", 8002))
		srv.set(t, v3.snapshot(t))
		until(t, &rec.notifier, "l2 and r2 applied", func() bool {
			return rec.has(lds, "l1", "l2") && rec.has(rds, "r1", "r2")
		})
		if e, l := rec.firstCall(eds, "c2"), rec.firstCall(lds, "l2"); e < 0 || e > l {
			t.Errorf("endpoints of c2 applied at call %d, listener l2 at call %d", e, l)
		}
		eventually(t, "LDS no longer held", func() bool { return !typeStatus(c, lds).Held })
	})
}

// TestWarmingTimeout: endpoints that never come hold listeners for
// InitialFetchTimeout only.
func TestWarmingTimeout(t *testing.T) {
	srv := startServer(t, true, "")
	srv.set(t, baseConfig("v1").snapshot(t))
	rec := newRecorder()
	cfg := adsConfig(t, srv.addr, false)
	cfg.InitialFetchTimeout = 300 * time.Millisecond
	c := startClient(t, cfg, rec)
	waitInitialized(t, c)

	v2 := baseConfig("v2")
	v2.clusters = append(v2.clusters, edsCluster("c2", ""))
	v2.listeners = append(v2.listeners, listener("l2", 10002, "r1"))
	srv.set(t, v2.snapshot(t))
	start := time.Now()
	until(t, &rec.notifier, "l2 applied after the timeout", func() bool { return rec.has(lds, "l1", "l2") })
	if d := time.Since(start); d < 200*time.Millisecond {
		t.Errorf("l2 applied after %v, before the warming timeout", d)
	}
}

// TestReconnect: when the server goes away the client keeps the applied
// configuration, retries with back-off (not in a busy loop), and on
// reconnect re-sends its subscriptions with what it already has.
func TestReconnect(t *testing.T) {
	protocols(t, func(t *testing.T, delta bool) {
		srv := startServer(t, true, "")
		srv.set(t, baseConfig("v1").snapshot(t))
		rec := newRecorder()
		c := startClient(t, adsConfig(t, srv.addr, delta), rec)
		waitInitialized(t, c)
		addr := srv.addr
		rec.mu.Lock()
		callsBefore := len(rec.calls)
		rec.mu.Unlock()

		srv.stop()
		eventually(t, "disconnected status", func() bool {
			for _, st := range c.Status() {
				if st.Connected {
					return false
				}
			}
			return true
		})
		if !rec.has(lds, "l1") || !rec.has(eds, "c1") || !rec.has(sds, "s1") {
			t.Errorf("configuration lost with the server")
		}

		// The new server's listener first counts connection attempts,
		// hanging up on each, for a while.
		lis := &countingListener{Listener: listen(t, addr)}
		lis.counting.Store(true)
		srv2 := startServerOn(t, true, lis)
		time.Sleep(time.Second) // the measuring window
		lis.counting.Store(false)
		if n := lis.n.Load(); n < 2 || n > 40 {
			t.Errorf("%d connection attempts in 1s with back-off 20ms..200ms", n)
		}

		srv2.set(t, baseConfig("v1").snapshot(t))
		until(t, &srv2.notifier, "resubscription with what the client has", func() bool {
			if delta {
				return len(srv2.find(lds, func(r request) bool { return r.initial["l1"] != "" })) > 0 &&
					len(srv2.find(eds, func(r request) bool {
						return slices.Equal(r.subscribe, []string{"c1"}) && r.initial["c1"] != ""
					})) > 0
			}
			return len(srv2.find(lds, func(r request) bool { return r.version == "v1" && r.nonce == "" })) > 0 &&
				len(srv2.find(eds, func(r request) bool {
					return r.version == "v1" && slices.Equal(r.names, []string{"c1"})
				})) > 0
		})
		eventually(t, "connected again", func() bool { return typeStatus(c, lds).Connected })

		v2 := baseConfig("v2")
		v2.listeners = append(v2.listeners, listener("l2", 10002, "r1"))
		srv2.set(t, v2.snapshot(t))
		until(t, &rec.notifier, "v2 from the new server", func() bool { return rec.has(lds, "l1", "l2") })
		rec.mu.Lock()
		defer rec.mu.Unlock()
		for _, call := range rec.calls[callsBefore:] {
			if len(call.removed) > 0 {
				t.Errorf("the reconnect removed %s %v", call.typeURL, call.removed)
			}
		}
	})
}

// TestHangingServer: a server that accepts and never answers, at the TCP
// or at the gRPC level, blocks neither Initialized nor Close.
func TestHangingServer(t *testing.T) {
	t.Run("tcp", func(t *testing.T) {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		var conns []net.Conn
		go func() {
			for {
				conn, err := lis.Accept()
				if err != nil {
					return
				}
				mu.Lock()
				conns = append(conns, conn)
				mu.Unlock()
			}
		}()
		t.Cleanup(func() {
			lis.Close()
			mu.Lock()
			defer mu.Unlock()
			for _, c := range conns {
				c.Close()
			}
		})
		cfg := adsConfig(t, lis.Addr().String(), false)
		cfg.InitialFetchTimeout = 300 * time.Millisecond
		c := startClient(t, cfg, newRecorder())
		waitInitialized(t, c)
		if st := typeStatus(c, lds); st.Connected {
			t.Errorf("connected to a server that never completed the handshake")
		}
	})
	t.Run("grpc", func(t *testing.T) {
		protocols(t, func(t *testing.T, delta bool) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			release := make(chan struct{})
			srv := grpc.NewServer()
			discoveryv3.RegisterAggregatedDiscoveryServiceServer(srv, blockingADS{release: release})
			go func() { _ = srv.Serve(lis) }()
			t.Cleanup(func() {
				close(release)
				srv.Stop()
			})
			cfg := adsConfig(t, lis.Addr().String(), delta)
			cfg.InitialFetchTimeout = 300 * time.Millisecond
			c := startClient(t, cfg, newRecorder())
			waitInitialized(t, c)
			eventually(t, "connected", func() bool { return typeStatus(c, lds).Connected })
			closeAndCheck(t, c)
		})
	})
}

// blockingADS accepts streams and never reads or answers them.
type blockingADS struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
	release chan struct{}
}

func (b blockingADS) StreamAggregatedResources(discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	<-b.release
	return nil
}

func (b blockingADS) DeltaAggregatedResources(discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	<-b.release
	return nil
}

// TestPerTypeSources: without ADS, each type has its own stream: routes on
// the LDS source, endpoints and secrets on the CDS source.
func TestPerTypeSources(t *testing.T) {
	protocols(t, func(t *testing.T, delta bool) {
		srv := startServer(t, false, "")
		srv.set(t, baseConfig("v1").snapshot(t))
		rec := newRecorder()
		cfg := newConfig(t)
		cfg.LDS = &xds.Source{Target: srv.addr, Delta: delta}
		cfg.CDS = &xds.Source{Target: srv.addr, Delta: delta}
		c := startClient(t, cfg, rec)
		waitInitialized(t, c)
		for _, typ := range allTypes {
			if len(rec.names(typ)) != 1 {
				t.Errorf("%s applied %v", typ, rec.names(typ))
			}
		}
		opened := srv.openedStreams()
		slices.Sort(opened)
		want := slices.Sorted(slices.Values(allTypes))
		if !slices.Equal(opened, want) {
			t.Errorf("streams opened for %q, want one per type %q", opened, want)
		}
		until(t, &srv.notifier, "an ACK on every stream", func() bool {
			for _, typ := range allTypes {
				if len(srv.find(typ, func(r request) bool { return r.nonce != "" && !r.hasErr })) == 0 {
					return false
				}
			}
			return true
		})
		if st := typeStatus(c, rds); st.ADS || st.Server != srv.addr {
			t.Errorf("RDS status = %+v", st)
		}
	})
}

// TestStaticWants: names the static configuration refers to are
// subscribed at Start, before any LDS or CDS update.
func TestStaticWants(t *testing.T) {
	srv := startServer(t, true, "")
	srv.set(t, config{version: "v1", endpoints: []*endpointv3.ClusterLoadAssignment{endpoints("static", 8001)}}.snapshot(t))
	rec := newRecorder()
	rec.static[eds] = []string{"static"}
	cfg := newConfig(t)
	cfg.ADS = &xds.Source{Target: srv.addr}
	c := startClient(t, cfg, rec)
	waitInitialized(t, c)
	if !rec.has(eds, "static") {
		t.Errorf("endpoints = %v", rec.names(eds))
	}
	if sts := c.Status(); len(sts) != 3 {
		t.Errorf("Status lists %d types, want EDS, RDS, SDS", len(sts))
	}
}

// TestMisbehavingServer: responses that break the protocol are NACKed
// with a reason and never reach the Applier: an unknown type, a duplicate
// name, a resource of the wrong type.
func TestMisbehavingServer(t *testing.T) {
	c1, _ := anypb.New(edsCluster("c1", ""))
	l1, _ := anypb.New(listener("l1", 1, "r"))
	cases := []struct {
		name   string
		resp   *discoveryv3.DiscoveryResponse
		detail string
	}{
		{"unknown type", &discoveryv3.DiscoveryResponse{TypeUrl: "type.googleapis.com/acme.Unknown", VersionInfo: "1", Nonce: "n1"},
			"type type.googleapis.com/acme.Unknown is not subscribed on this stream"},
		{"duplicate", &discoveryv3.DiscoveryResponse{TypeUrl: cds, VersionInfo: "1", Nonce: "n1", Resources: []*anypb.Any{c1, c1}},
			`duplicate cluster "c1"`},
		{"wrong type", &discoveryv3.DiscoveryResponse{TypeUrl: cds, VersionInfo: "1", Nonce: "n1", Resources: []*anypb.Any{l1}},
			"resource 0: type \"" + lds + "\" in a response for " + cds},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ads := &scriptedADS{resp: tc.resp, reqs: make(chan *discoveryv3.DiscoveryRequest, 100)}
			srv := grpc.NewServer()
			discoveryv3.RegisterAggregatedDiscoveryServiceServer(srv, ads)
			go func() { _ = srv.Serve(lis) }()
			t.Cleanup(srv.Stop)
			rec := newRecorder()
			startClient(t, adsConfig(t, lis.Addr().String(), false), rec)
			timeout := time.After(waitFor)
			for {
				select {
				case r := <-ads.reqs:
					if r.GetResponseNonce() != "n1" {
						continue
					}
					if r.GetErrorDetail().GetMessage() != tc.detail || r.GetTypeUrl() != tc.resp.GetTypeUrl() || r.GetVersionInfo() != "" {
						t.Fatalf("answer = %v, want a NACK %q", r, tc.detail)
					}
					if rec.callCount(cds) != 0 {
						t.Fatal("Apply called")
					}
					return
				case <-timeout:
					t.Fatal("no NACK")
				}
			}
		})
	}
}

// TestMisbehavingDeltaServer: the delta protocol's own ways to break it
// are NACKed too.
func TestMisbehavingDeltaServer(t *testing.T) {
	c1, _ := anypb.New(edsCluster("c1", ""))
	cases := []struct {
		name   string
		resp   *discoveryv3.DeltaDiscoveryResponse
		detail string
	}{
		{"unknown type", &discoveryv3.DeltaDiscoveryResponse{TypeUrl: "type.googleapis.com/acme.Unknown", Nonce: "n1"},
			"type type.googleapis.com/acme.Unknown is not subscribed on this stream"},
		{"duplicate", &discoveryv3.DeltaDiscoveryResponse{TypeUrl: cds, Nonce: "n1", Resources: []*discoveryv3.Resource{
			{Name: "c1", Version: "1", Resource: c1}, {Name: "c1", Version: "1", Resource: c1}}},
			`duplicate cluster "c1"`},
		{"name mismatch", &discoveryv3.DeltaDiscoveryResponse{TypeUrl: cds, Nonce: "n1", Resources: []*discoveryv3.Resource{
			{Name: "c9", Version: "1", Resource: c1}}},
			`resource 0: named "c9" in the response but cluster "c1" in its body`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lis, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ads := &scriptedADS{deltaResp: tc.resp, deltaReqs: make(chan *discoveryv3.DeltaDiscoveryRequest, 100)}
			srv := grpc.NewServer()
			discoveryv3.RegisterAggregatedDiscoveryServiceServer(srv, ads)
			go func() { _ = srv.Serve(lis) }()
			t.Cleanup(srv.Stop)
			rec := newRecorder()
			startClient(t, adsConfig(t, lis.Addr().String(), true), rec)
			timeout := time.After(waitFor)
			for {
				select {
				case r := <-ads.deltaReqs:
					if r.GetResponseNonce() != "n1" {
						continue
					}
					if r.GetErrorDetail().GetMessage() != tc.detail || r.GetTypeUrl() != tc.resp.GetTypeUrl() {
						t.Fatalf("answer = %v, want a NACK %q", r, tc.detail)
					}
					if rec.callCount(cds) != 0 {
						t.Fatal("Apply called")
					}
					return
				case <-timeout:
					t.Fatal("no NACK")
				}
			}
		})
	}
}

// scriptedADS sends one response after the first request and records
// every request.
type scriptedADS struct {
	discoveryv3.UnimplementedAggregatedDiscoveryServiceServer
	resp      *discoveryv3.DiscoveryResponse
	reqs      chan *discoveryv3.DiscoveryRequest
	deltaResp *discoveryv3.DeltaDiscoveryResponse
	deltaReqs chan *discoveryv3.DeltaDiscoveryRequest
}

func (s *scriptedADS) DeltaAggregatedResources(st discoveryv3.AggregatedDiscoveryService_DeltaAggregatedResourcesServer) error {
	sent := false
	for {
		r, err := st.Recv()
		if err != nil {
			return err
		}
		s.deltaReqs <- r
		if !sent {
			sent = true
			if err := st.Send(s.deltaResp); err != nil {
				return err
			}
		}
	}
}

func (s *scriptedADS) StreamAggregatedResources(st discoveryv3.AggregatedDiscoveryService_StreamAggregatedResourcesServer) error {
	sent := false
	for {
		r, err := st.Recv()
		if err != nil {
			return err
		}
		s.reqs <- r
		if !sent {
			sent = true
			if err := st.Send(s.resp); err != nil {
				return err
			}
		}
	}
}

// TestLifecycle: Close before Start, twice, and Start after Close do
// nothing harmful; a Start context that ends stops the client.
func TestLifecycle(t *testing.T) {
	cfg := adsConfig(t, "127.0.0.1:1", false)
	c := xds.New(cfg, newRecorder())
	c.Close()
	c.Close()
	c.Start(context.Background())
	checkNoLeaks(t)

	ctx, cancel := context.WithCancel(context.Background())
	c = xds.New(cfg, newRecorder())
	c.Start(ctx)
	cancel()
	closeAndCheck(t, c)
}
