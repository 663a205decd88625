package main

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	routev3 "github.com/envoyproxy/go-control-plane/envoy/config/route/v3"
	discoveryv3 "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/weftmesh/weft/internal/router"
	"github.com/weftmesh/weft/internal/stream"
)

// rdsTypeURL is the RouteConfiguration resource type.
const rdsTypeURL = "type.googleapis.com/envoy.config.route.v3.RouteConfiguration"

// encodeRDS returns the wire bytes of a DiscoveryResponse carrying rc, as
// the management server sends it.
func encodeRDS(rc *routev3.RouteConfiguration, version string) ([]byte, error) {
	a, err := anypb.New(rc)
	if err != nil {
		return nil, err
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(&discoveryv3.DiscoveryResponse{
		VersionInfo: version,
		TypeUrl:     rdsTypeURL,
		Nonce:       version,
		Resources:   []*anypb.Any{a},
	})
}

// decodeRDS decodes a DiscoveryResponse and its one RouteConfiguration,
// as the xDS client does with what gRPC hands it.
func decodeRDS(b []byte) (*routev3.RouteConfiguration, error) {
	var resp discoveryv3.DiscoveryResponse
	if err := proto.Unmarshal(b, &resp); err != nil {
		return nil, err
	}
	if len(resp.Resources) != 1 {
		return nil, fmt.Errorf("%d resources, want 1", len(resp.Resources))
	}
	rc := &routev3.RouteConfiguration{}
	if err := resp.Resources[0].UnmarshalTo(rc); err != nil {
		return nil, err
	}
	return rc, nil
}

// phases is the time one RDS update spends in each step.
type phases struct {
	Decode, Validate, Compile, Swap time.Duration
}

func (p phases) total() time.Duration { return p.Decode + p.Validate + p.Compile + p.Swap }

// applyRDS is a full RDS update: decode the response bytes, run the
// protoc-gen-validate rules (ValidateAll), compile with the router and
// swap the table into dst; with dst nil it returns the table instead.
func applyRDS(b []byte, dst *stream.StaticRoutes) (*router.Table, phases, error) {
	var p phases
	t0 := time.Now()
	rc, err := decodeRDS(b)
	t1 := time.Now()
	p.Decode = t1.Sub(t0)
	if err != nil {
		return nil, p, err
	}
	if err := rc.ValidateAll(); err != nil {
		return nil, p, err
	}
	t2 := time.Now()
	p.Validate = t2.Sub(t1)
	t, err := router.Compile(rc)
	t3 := time.Now()
	p.Compile = t3.Sub(t2)
	if err != nil {
		return nil, p, err
	}
	if dst != nil {
		dst.Store(t)
		p.Swap = time.Since(t3)
	}
	return t, p, nil
}

// classDists are per-call match latencies by request class, plus all.
type classDists struct {
	byClass [numClasses]dist
	all     dist
	sink    int
}

// matchLatency times every Route call separately, passes times over reqs
// (in their random order), and checks every answer. With warmed, each
// request's own memory is read just before the call (see warm), so the
// figure is the table's cost, not that of fetching a cold request.
func matchLatency(t *router.Table, reqs []request, passes int, warmed bool) (classDists, error) {
	var per [numClasses][]int64
	all := make([]int64, 0, passes*len(reqs))
	sink := 0
	for range passes {
		for i := range reqs {
			q := &reqs[i]
			if warmed {
				sink += warm(q)
			}
			t0 := time.Now()
			r := t.Route(q.h)
			d := int64(time.Since(t0))
			if err := q.check(t, r); err != nil {
				return classDists{}, err
			}
			per[q.class] = append(per[q.class], d)
			all = append(all, d)
		}
	}
	var out classDists
	out.sink = sink
	for c := range per {
		out.byClass[c] = summarize(per[c])
	}
	out.all = summarize(all)
	return out, nil
}

// matchThroughput is the mean time per request over passes sweeps of reqs
// with no clock read per call: warm (see matchLatency) plus Route.
func matchThroughput(t *router.Table, reqs []request, passes int) time.Duration {
	var sink *router.Route
	n := 0
	t0 := time.Now()
	for range passes {
		for i := range reqs {
			n += warm(&reqs[i])
			sink = t.Route(reqs[i].h)
		}
	}
	d := time.Since(t0)
	_, _ = sink, n
	return d / time.Duration(passes*len(reqs))
}

// reader matches requests against whatever table src holds until stopped,
// checking that every table it loads is whole: not nil, every virtual host
// present, and each answer the expected route object of that same table.
type reader struct {
	src     *stream.StaticRoutes
	reqs    []request
	vhosts  int
	stop    atomic.Bool
	wg      sync.WaitGroup
	matches int64
	tables  int     // distinct tables seen
	lat     []int64 // per-call latency, ns
	err     error
}

func startReader(src *stream.StaticRoutes, reqs []request, vhosts int) *reader {
	r := &reader{src: src, reqs: reqs, vhosts: vhosts, lat: make([]int64, 0, 1<<22)}
	r.wg.Add(1)
	go r.run()
	return r
}

func (r *reader) run() {
	defer r.wg.Done()
	var prev *router.Table
	for i := 0; !r.stop.Load(); i++ {
		q := &r.reqs[i%len(r.reqs)]
		t0 := time.Now()
		t := r.src.Table()
		if t == nil {
			r.err = errors.New("reader saw a nil table")
			return
		}
		rt := t.Route(q.h)
		d := int64(time.Since(t0))
		if len(r.lat) < cap(r.lat) {
			r.lat = append(r.lat, d)
		}
		if t != prev {
			prev = t
			r.tables++
			if n := len(t.VirtualHosts()); n != r.vhosts {
				r.err = fmt.Errorf("reader saw a table with %d virtual hosts, want %d", n, r.vhosts)
				return
			}
		}
		if err := q.check(t, rt); err != nil {
			r.err = fmt.Errorf("reader: %w", err)
			return
		}
		r.matches++
	}
}

// halt stops the reader and returns its error.
func (r *reader) halt() error {
	r.stop.Store(true)
	r.wg.Wait()
	return r.err
}
